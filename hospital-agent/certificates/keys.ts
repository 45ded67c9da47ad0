import { createPrivateKey, generateKeyPairSync, X509Certificate, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeProtectedHeader } from 'jose';
import { writeFileAtomic, type Identity } from '../../certs/index.ts';
import { issuerJwk, signKeyBinding, type IssuerJwk } from '../../certs/shc/index.ts';

/** Files of the hospital's card-signing key under the agent's keys directory. */
export const ISSUER_KEY_FILES = { key: 'issuer-es256.key.pem', binding: 'issuer-key.jws' } as const;

/** The hospital's ES256 card-signing key, its public JWK (kid = RFC 7638 thumbprint) and its binding to the federation certificate. */
export interface IssuerKey {
  privateKey: KeyObject;
  jwk: IssuerJwk;
  /** JWS by the agent's certificate key over the JWK (`x5c` = the certificate): what the operator lists in the issuer directory. */
  binding: string;
  bindingPath: string;
}

/**
 * Loads the card-signing key from `keysDir`, creating it (0600) on first use,
 * and the key binding, signed again whenever the agent's certificate changed
 * (a renewed certificate binds the same key).
 */
export async function loadIssuerKey(keysDir: string, identity: Pick<Identity, 'certificate' | 'privateKey'>): Promise<IssuerKey> {
  mkdirSync(keysDir, { recursive: true, mode: 0o700 });
  const keyPath = join(keysDir, ISSUER_KEY_FILES.key);
  if (!existsSync(keyPath)) {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileAtomic(keyPath, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  }
  const privateKey = createPrivateKey(readFileSync(keyPath, 'utf8'));
  const jwk = await issuerJwk(privateKey);
  const bindingPath = join(keysDir, ISSUER_KEY_FILES.binding);
  let binding = existsSync(bindingPath) ? readFileSync(bindingPath, 'utf8').trim() : '';
  if (!binding || !boundTo(binding, identity.certificate, jwk.kid)) {
    binding = await signKeyBinding(identity, jwk);
    writeFileAtomic(bindingPath, `${binding}\n`, 0o644);
  }
  return { privateKey, jwk, binding, bindingPath };
}

function boundTo(binding: string, cert: X509Certificate, kid: string): boolean {
  try {
    const x5c = decodeProtectedHeader(binding).x5c;
    const payload = JSON.parse(Buffer.from(binding.split('.')[1] ?? '', 'base64url').toString('utf8')) as { jwk?: { kid?: string } };
    return Array.isArray(x5c) && x5c[0] === cert.raw.toString('base64') && payload.jwk?.kid === kid;
  } catch {
    return false;
  }
}
