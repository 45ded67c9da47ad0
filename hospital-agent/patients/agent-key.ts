// One job: the agent's patient-channel key (ECDH P-256) kept across restarts, since every enrolled device pins it.
import { existsSync, readFileSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { webcrypto } from 'node:crypto';
import { publicEcJwk, type EcPublicJwk } from '../../patient-app/protocol.js';

/**
 * The key at `path` (a private JWK, file mode 0600), made on first use. Loaded into WebCrypto non-extractable; the public
 * half is what enrolment codes pin, so a new key would cut off every enrolled device (they enrol again).
 */
export async function loadAgentPatientKey(path: string): Promise<{ privateKey: webcrypto.CryptoKey; publicJwk: EcPublicJwk }> {
  if (!existsSync(path)) {
    const pair = await webcrypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);
    const jwk = await webcrypto.subtle.exportKey('jwk', pair.privateKey);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(`${path}.tmp`, JSON.stringify({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d }), { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
  }
  const jwk = JSON.parse(readFileSync(path, 'utf8')) as webcrypto.JsonWebKey;
  const privateKey = await webcrypto.subtle.importKey('jwk', jwk, { name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  return { privateKey, publicJwk: publicEcJwk({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }) };
}
