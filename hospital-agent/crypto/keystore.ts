import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { jwkThumbprint, publicJwk, writeFileAtomic, type AgentKeys } from '../../certs/index.ts';
import { CryptoError } from './errors.ts';
import type { DecryptionKey, RecipientKeys } from './open.ts';
import type { SenderKeys } from './seal.ts';

/** File names of the agent's private keys inside a key directory. */
export const KEY_FILES = { signing: 'signing.key.pem', encryption: 'encryption.key.pem' } as const;

/** The agent's own key pairs with their key ids (RFC 7638 thumbprints, as in its bundle). */
export interface LocalKeys extends AgentKeys {
  signingKid: string;
  encryptionKid: string;
}

/** Adds key ids to freshly generated or loaded keys. */
export async function withKids(keys: AgentKeys): Promise<LocalKeys> {
  return {
    ...keys,
    signingKid: await jwkThumbprint(publicJwk(keys.signing.publicKey)),
    encryptionKid: await jwkThumbprint(publicJwk(keys.encryption.publicKey)),
  };
}

/**
 * Writes the private keys as PKCS#8 PEM files, mode 0600, in `dir` (created
 * 0700). Refuses to overwrite existing keys (rotate into a new directory).
 */
export async function saveAgentKeys(dir: string, keys: AgentKeys): Promise<LocalKeys> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (const name of Object.values(KEY_FILES)) {
    const exists = await stat(join(dir, name)).then(
      () => true,
      () => false,
    );
    if (exists) throw new TypeError(`${join(dir, name)} already exists; keys are never overwritten`);
  }
  writeFileAtomic(join(dir, KEY_FILES.signing), keys.signing.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  writeFileAtomic(join(dir, KEY_FILES.encryption), keys.encryption.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  return withKids(keys);
}

async function loadKey(path: string, type: 'ed25519' | 'x25519'): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> {
  let pem: string;
  try {
    const st = await stat(path);
    if ((st.mode & 0o077) !== 0) throw new Error(`mode ${(st.mode & 0o777).toString(8)} lets others read it (want 600)`);
    pem = await readFile(path, 'utf8');
  } catch (err) {
    throw new CryptoError('ERR_KEYS_UNREADABLE', `cannot use key file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      cause: err,
    });
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new CryptoError('ERR_KEYS_UNREADABLE', `key file ${path} is not a PEM private key`, { cause: err });
  }
  if (privateKey.asymmetricKeyType !== type)
    throw new CryptoError('ERR_KEYS_UNREADABLE', `key file ${path} holds a ${privateKey.asymmetricKeyType} key, expected ${type}`);
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/** Loads the private keys written by {@link saveAgentKeys}; throws ERR_KEYS_UNREADABLE. */
export async function loadAgentKeys(dir: string): Promise<LocalKeys> {
  const signing = await loadKey(join(dir, KEY_FILES.signing), 'ed25519');
  const encryption = await loadKey(join(dir, KEY_FILES.encryption), 'x25519');
  return withKids({ signing, encryption });
}

/** The sealer's and receipt signer's view of the agent's current keys. */
export function senderKeys(agent: string, keys: LocalKeys): SenderKeys {
  return { agent, signingKid: keys.signingKid, signingKey: keys.signing.privateKey };
}

/** The opener's view: every generation of decryption keys the agent still holds. */
export function recipientKeys(agent: string, generations: readonly LocalKeys[]): RecipientKeys {
  const keys: DecryptionKey[] = generations.map((k) => ({ kid: k.encryptionKid, privateKey: k.encryption.privateKey }));
  return { agent, keys };
}
