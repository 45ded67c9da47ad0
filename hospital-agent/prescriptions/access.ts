// One job: the patient's access code: drawn, hashed, compared, and handed over as E-Rezept's token (text and QR code).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import QRCode from 'qrcode';

/** Bytes of an access code (256 bits, as E-Rezept's AccessCode). */
export const ACCESS_CODE_BYTES = 32;

/** A fresh access code, 64 lowercase hex characters. */
export function newAccessCode(): string {
  return randomBytes(ACCESS_CODE_BYTES).toString('hex');
}

/** SHA-256 of a code or secret, hex: what the owner stores. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/** Whether `presented` hashes to `storedHash` (constant time). */
export function matchesHash(presented: string | undefined, storedHash: string | undefined): boolean {
  if (presented === undefined || storedHash === undefined) return false;
  const a = Buffer.from(sha256Hex(presented), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The token the patient takes to a pharmacy, as E-Rezept's data matrix
 * (`{"urls":["Task/ID/$accept?ac=CODE"]}`) with the prescriber's member id in
 * front of the path, since here each prescriber's agent owns its Tasks.
 */
export function prescriptionToken(prescriber: string, task: string, accessCode: string): string {
  return JSON.stringify({ urls: [`${prescriber}/Task/${task}/$accept?ac=${accessCode}`] });
}

const TOKEN_URL = /^([a-z0-9-]{2,63})\/Task\/([A-Za-z0-9][A-Za-z0-9_-]{7,63})\/\$accept\?ac=([0-9a-f]{64})$/;

/** Reads a token back (the first URL); undefined when it is not one. */
export function parsePrescriptionToken(token: string): { prescriber: string; task: string; accessCode: string } | undefined {
  let urls: unknown;
  try {
    urls = (JSON.parse(token) as { urls?: unknown }).urls;
  } catch {
    return undefined;
  }
  if (!Array.isArray(urls) || typeof urls[0] !== 'string') return undefined;
  const m = TOKEN_URL.exec(urls[0]);
  return m ? { prescriber: m[1]!, task: m[2]!, accessCode: m[3]! } : undefined;
}

/** The token as a QR code PNG (what the patient's app or printout shows). */
export function tokenPng(token: string): Promise<Buffer> {
  return QRCode.toBuffer(token, { type: 'png', errorCorrectionLevel: 'M', margin: 2, scale: 4 });
}
