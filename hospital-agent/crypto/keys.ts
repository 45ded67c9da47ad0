import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { jcs } from '../../certs/index.ts';
import { CryptoError, type EnvelopeContext } from './errors.ts';
import type { EnvelopeMeta } from './format.ts';
import { JWE_ALG, JWE_ENC, openJwe, sealJwe } from './jwe.ts';

/** JWE algorithms used to wrap the content key to a recipient's X25519 key. */
export const KEY_WRAP = { alg: JWE_ALG, enc: JWE_ENC } as const;

const META_AAD = Buffer.from('hie-envelope/v1 meta');

/** Keys derived from one envelope's random content key. */
export interface ContentKeys {
  /** AES-256-GCM key of the chunks. */
  payload: Buffer;
  /** AES-256-GCM key of the encrypted header metadata. */
  meta: Buffer;
  /** Key commitment: a public PRF value of the content key, published in the header and signed in the trailer. */
  commitment: Buffer;
}

const derive = (cek: Buffer, label: string): Buffer => Buffer.from(hkdfSync('sha256', cek, Buffer.alloc(0), `hie-envelope/v1 ${label}`, 32));

/** HKDF-SHA256 subkeys and key commitment of a 32-byte content key. */
export function deriveContentKeys(cek: Buffer): ContentKeys {
  if (cek.length !== 32) throw new TypeError('content key must be 32 bytes');
  return { payload: derive(cek, 'payload'), meta: derive(cek, 'meta'), commitment: derive(cek, 'commitment') };
}

/** Wraps the content key to one recipient as a compact JWE; the party names enter the key agreement (apu/apv). */
export function wrapContentKey(cek: Buffer, from: string, to: string, recipientKid: string, recipientKey: KeyObject): string {
  return sealJwe(cek, recipientKey, { kid: recipientKid, apu: Buffer.from(from), apv: Buffer.from(to) });
}

/** Unwraps a content key; throws ERR_ENVELOPE_TAMPERED when the JWE does not open with our key for these parties. */
export function unwrapContentKey(jwe: string, from: string, to: string, kid: string, privateKey: KeyObject, context: EnvelopeContext): Buffer {
  let result: ReturnType<typeof openJwe>;
  try {
    result = openJwe(jwe, privateKey);
  } catch (err) {
    throw new CryptoError('ERR_ENVELOPE_TAMPERED', "the wrapped content key does not open with this agent's key", { cause: err, context });
  }
  if (result.kid !== kid || !result.apu.equals(Buffer.from(from)) || !result.apv.equals(Buffer.from(to)) || result.plaintext.length !== 32) {
    throw new CryptoError('ERR_ENVELOPE_TAMPERED', 'the wrapped content key names other parties or keys than the header', { context });
  }
  return result.plaintext;
}

/** Encrypts the header metadata with the meta subkey. */
export function sealMeta(meta: EnvelopeMeta, key: Buffer): { iv: string; ct: string; tag: string } {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(META_AAD);
  const ct = Buffer.concat([c.update(jcs(meta)), c.final()]);
  return { iv: iv.toString('base64url'), ct: ct.toString('base64url'), tag: c.getAuthTag().toString('base64url') };
}

/** Decrypts the header metadata; throws ERR_ENVELOPE_TAMPERED. */
export function openMeta(sealed: { iv: string; ct: string; tag: string }, key: Buffer, context: EnvelopeContext): unknown {
  try {
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64url'));
    d.setAAD(META_AAD);
    d.setAuthTag(Buffer.from(sealed.tag, 'base64url'));
    const plain = Buffer.concat([d.update(Buffer.from(sealed.ct, 'base64url')), d.final()]);
    return JSON.parse(plain.toString('utf8'));
  } catch (err) {
    throw new CryptoError('ERR_ENVELOPE_TAMPERED', 'the encrypted header metadata does not authenticate', { cause: err, context });
  }
}
