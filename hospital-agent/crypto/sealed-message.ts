/**
 * Small messages signed by the sender and encrypted to the recipient
 * (records requests): a compact JWS (EdDSA, by the sender's Ed25519 key)
 * inside a compact JWE (`ECDH-ES+A256KW`, `A256GCM`, to the recipient's
 * X25519 key), both through jose, so the relay can neither read nor forge
 * one.
 */
import type { KeyObject } from 'node:crypto';
import { CompactEncrypt, CompactSign, compactDecrypt, compactVerify, decodeProtectedHeader } from 'jose';
import { CryptoError } from './errors.ts';

/** A key and the id it is known by. */
export interface KeyWithId {
  key: KeyObject;
  kid: string;
}

/** Signs `payload` with `signer` and encrypts the JWS to `recipient`; returns the compact JWE. */
export async function sealSignedMessage(payload: Uint8Array, signer: KeyWithId, recipient: KeyWithId): Promise<string> {
  const jws = await new CompactSign(payload).setProtectedHeader({ alg: 'EdDSA', kid: signer.kid }).sign(signer.key);
  return new CompactEncrypt(Buffer.from(jws, 'utf8')).setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', kid: recipient.kid }).encrypt(recipient.key);
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
    const { plaintext } = await compactDecrypt(jwe, decryptionKey);
    const jws = Buffer.from(plaintext).toString('utf8');
    const kid = decodeProtectedHeader(jws).kid;
    if (typeof kid !== 'string') throw new CryptoError('ERR_SEALED_MESSAGE_INVALID', 'the signature names no key (kid)');
    const signer = await resolveSigner(kid);
    if (!signer) throw new CryptoError('ERR_SEALED_MESSAGE_INVALID', 'unknown signer');
    return (await compactVerify(jws, signer)).payload;
  } catch (err) {
    if (err instanceof CryptoError) throw err;
    throw new CryptoError('ERR_SEALED_MESSAGE_INVALID', `the message does not open: ${(err as Error).message}`, { cause: err });
  }
}
