/**
 * Compact JWS signed with EdDSA (Ed25519; RFC 7515, RFC 8037), made with
 * node:crypto's one-shot `sign`: the bytes jose makes (Ed25519 is
 * deterministic), without WebCrypto's per-call key import and job dispatch,
 * which cost more than the signature at a few hundred messages a second.
 * Verifying stays with jose, which checks every header it is given.
 */
import { sign, type KeyObject } from 'node:crypto';

const b64u = (b: Uint8Array | string): string => Buffer.from(b).toString('base64url');

/** Protected header of a compact EdDSA JWS besides `alg`, its members in the order they are serialized. */
export interface EdDsaHeader {
  kid: string;
  typ?: string;
  cty?: string;
}

/** Signs `payload` with an Ed25519 private key: `b64u(header).b64u(payload).b64u(signature)`, header `{alg: 'EdDSA', ...header}`. */
export function signCompactEdDsa(payload: Uint8Array, header: EdDsaHeader, key: KeyObject): string {
  if (key?.type !== 'private' || key.asymmetricKeyType !== 'ed25519') throw new TypeError('an EdDSA JWS needs an Ed25519 private key');
  const input = `${b64u(JSON.stringify({ alg: 'EdDSA', ...header }))}.${b64u(payload)}`;
  return `${input}.${b64u(sign(null, Buffer.from(input, 'ascii'), key))}`;
}
