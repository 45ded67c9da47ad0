/**
 * Small messages signed by the sender and encrypted to the recipient
 * (records requests): a compact JWS (EdDSA, by the sender's Ed25519 key)
 * inside a compact JWE (`ECDH-ES+A256KW`, `A256GCM`, to the recipient's
 * X25519 key), so the relay can neither read nor forge one. Sealed and
 * opened with node:crypto (jws.ts, jwe.ts: what jose makes and opens, at a
 * fraction of its WebCrypto cost); the signature is verified with jose.
 */
import type { KeyObject } from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { openJwe, sealJwe } from './jwe.ts';
import { signCompactEdDsa } from './jws.ts';
import { CryptoError } from './errors.ts';

/** Longest sealed message opened, in characters: they travel in agent messages of at most 64 KiB of JSON. */
export const MAX_SEALED_MESSAGE_CHARS = 64 * 1024;

/** A key and the id it is known by. */
export interface KeyWithId {
  key: KeyObject;
  kid: string;
}

/** Signs `payload` with `signer` and encrypts the JWS to `recipient`; returns the compact JWE. */
export async function sealSignedMessage(payload: Uint8Array, signer: KeyWithId, recipient: KeyWithId): Promise<string> {
  const jws = signCompactEdDsa(payload, { kid: signer.kid }, signer.key);
  return sealJwe(Buffer.from(jws, 'utf8'), recipient.key, { kid: recipient.kid });
}

/**
 * Decrypts `jwe` with `decryptionKey` and verifies the JWS inside with the
 * key `resolveSigner` gives for its kid; returns the signed payload. Throws
 * ERR_SEALED_MESSAGE_INVALID when any step fails.
 */
export async function openSignedMessage(
  jwe: string,
  decryptionKey: KeyObject,
  resolveSigner: (kid: string) => Promise<KeyObject | undefined>,
): Promise<Uint8Array> {
  try {
    const jws = openJwe(jwe, decryptionKey, { parties: false, maxChars: MAX_SEALED_MESSAGE_CHARS }).plaintext.toString('utf8');
    const kid = decodeProtectedHeader(jws).kid;
    if (typeof kid !== 'string') throw new CryptoError('ERR_SEALED_MESSAGE_INVALID', 'the signature names no key (kid)');
    const signer = await resolveSigner(kid);
    if (!signer) throw new CryptoError('ERR_SEALED_MESSAGE_INVALID', 'unknown signer');
    return (await compactVerify(jws, signer)).payload;
  } catch (err) {
    if (err instanceof CryptoError && err.code === 'ERR_SEALED_MESSAGE_INVALID') throw err;
    throw new CryptoError('ERR_SEALED_MESSAGE_INVALID', `the message does not open: ${(err as Error).message}`, { cause: err });
  }
}
