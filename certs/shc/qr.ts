import { ShcError } from './errors.ts';
import { MAX_CARD_JWS_BYTES, MAX_SINGLE_QR_JWS } from './card.ts';

/**
 * The `shc:/` numeric QR content (spec "Encoding Chunks as QR codes"): each
 * JWS character as two digits, its code minus 45; chunks `shc:/i/n/...` only
 * when the JWS exceeds {@link MAX_SINGLE_QR_JWS} characters.
 */

/** The spec's smallest base64url character code (`-`). */
const SMALLEST_B64_CHAR_CODE = 45;
/** Largest chunk of a chunked card (spec: 1191 characters). */
export const MAX_CHUNK_JWS = 1191;
const JWS_CHARS = /^[A-Za-z0-9_.-]+$/;

/** The JWS split for QR codes: one part when it fits, else balanced chunks of at most {@link MAX_CHUNK_JWS}. */
export function chunkJws(jws: string): string[] {
  if (jws.length <= MAX_SINGLE_QR_JWS) return [jws];
  const count = Math.ceil(jws.length / MAX_CHUNK_JWS);
  const size = Math.ceil(jws.length / count);
  const out: string[] = [];
  for (let i = 0; i < jws.length; i += size) out.push(jws.slice(i, i + size));
  return out;
}

/** The numeric digits of a JWS (or chunk). */
export function toNumeric(jws: string): string {
  if (!JWS_CHARS.test(jws)) throw new TypeError('only base64url characters and dots can be QR-encoded');
  let s = '';
  for (const c of jws) s += String(c.charCodeAt(0) - SMALLEST_B64_CHAR_CODE).padStart(2, '0');
  return s;
}

/** The `shc:/` QR texts of a card, one per chunk. */
export function qrTexts(jws: string): string[] {
  const chunks = chunkJws(jws);
  return chunks.map((c, i) => `shc:/${chunks.length > 1 ? `${i + 1}/${chunks.length}/` : ''}${toNumeric(c)}`);
}

function fromDigits(digits: string): string {
  if (digits.length % 2 !== 0 || !/^\d+$/.test(digits)) throw new ShcError('ERR_SHC_QR_INVALID', 'a shc:/ QR text must carry an even number of digits');
  let out = '';
  for (let i = 0; i < digits.length; i += 2) {
    const code = Number(digits.slice(i, i + 2)) + SMALLEST_B64_CHAR_CODE;
    const c = String.fromCharCode(code);
    if (!JWS_CHARS.test(c)) throw new ShcError('ERR_SHC_QR_INVALID', `digit pair ${digits.slice(i, i + 2)} is no base64url character`);
    out += c;
  }
  return out;
}

/** The JWS of one or more `shc:/` QR texts (chunks in any order). */
export function jwsFromQr(texts: readonly string[]): string {
  if (texts.length === 0 || texts.length > 16) throw new ShcError('ERR_SHC_QR_INVALID', 'a card is 1-16 QR codes');
  const parts = texts.map((raw) => {
    const t = raw.trim();
    const m = /^shc:\/(?:(\d{1,2})\/(\d{1,2})\/)?(\d+)$/.exec(t);
    if (!m) throw new ShcError('ERR_SHC_QR_INVALID', 'a SMART Health Card QR code reads shc:/ then digits');
    return { i: m[1] === undefined ? 1 : Number(m[1]), n: m[2] === undefined ? 1 : Number(m[2]), digits: m[3] as string };
  });
  const n = parts[0]?.n ?? 1;
  if (parts.some((p) => p.n !== n) || parts.length !== n) throw new ShcError('ERR_SHC_QR_INVALID', `the card has ${n} chunks; ${parts.length} were given`);
  const seen = new Set(parts.map((p) => p.i));
  if (seen.size !== n || [...seen].some((i) => i < 1 || i > n)) throw new ShcError('ERR_SHC_QR_INVALID', 'chunk numbers must be 1..n, each once');
  const jws = parts
    .sort((a, b) => a.i - b.i)
    .map((p) => fromDigits(p.digits))
    .join('');
  if (jws.length > MAX_CARD_JWS_BYTES) throw new ShcError('ERR_SHC_QR_INVALID', `the card exceeds ${MAX_CARD_JWS_BYTES} characters`);
  return jws;
}
