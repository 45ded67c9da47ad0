import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { PkiError } from './errors.ts';

/** RSA modulus size for the federation CA key. */
export const DEFAULT_CA_KEY_BITS = 3072;
/** RSA modulus size for relay and agent keys. */
export const DEFAULT_LEAF_KEY_BITS = 2048;

/** A freshly generated key pair, as Node key objects. */
export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** Generates an RSA key pair with Node's native crypto (node-forge's is pure JS and slow). */
export function generateRsaKeyPair(bits: number): KeyPair {
  return generateKeyPairSync('rsa', { modulusLength: bits, publicExponent: 0x10001 });
}

/** Exports a private key as PKCS#8 PEM, encrypted with AES-256-CBC when a passphrase is given. */
export function exportPrivateKey(key: KeyObject, passphrase?: string): string {
  if (passphrase !== undefined) {
    return key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }) as string;
  }
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** True when a PEM private key is passphrase-encrypted. */
export function isEncryptedPem(pem: string): boolean {
  return pem.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') || /Proc-Type:\s*4,ENCRYPTED/.test(pem);
}

/**
 * Parses a PEM private key, decrypting it with `passphrase` when encrypted.
 * Throws ERR_PKI_PASSPHRASE_REQUIRED, ERR_PKI_BAD_PASSPHRASE or ERR_PKI_KEY_UNREADABLE.
 */
export function parsePrivateKey(pem: string, passphrase: string | undefined, label: string): KeyObject {
  const encrypted = isEncryptedPem(pem);
  if (encrypted && passphrase === undefined) {
    throw new PkiError('ERR_PKI_PASSPHRASE_REQUIRED', `${label} is passphrase-protected: pass --passphrase-env VAR`);
  }
  try {
    const key = encrypted ? createPrivateKey({ key: pem, format: 'pem', passphrase: passphrase ?? '' }) : createPrivateKey({ key: pem, format: 'pem' });
    return key;
  } catch (err) {
    if (encrypted) {
      throw new PkiError('ERR_PKI_BAD_PASSPHRASE', `cannot decrypt ${label}: wrong passphrase`, { cause: err });
    }
    throw new PkiError('ERR_PKI_KEY_UNREADABLE', `cannot read ${label}: not a valid PEM private key`, { cause: err });
  }
}
