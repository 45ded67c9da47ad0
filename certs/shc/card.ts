import { createPublicKey, type KeyObject } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { calculateJwkThumbprint, CompactSign, compactVerify, importJWK, type JWK } from 'jose';
import { z } from 'zod';
import { ShcError } from './errors.ts';

/**
 * The SMART Health Card (framework 1.x, https://spec.smarthealth.cards) as a
 * compact JWS: header `{zip: "DEF", alg: "ES256", kid}`, payload the raw
 * DEFLATE (RFC 1951) of the JSON claims `{iss, nbf, vc}`, kid the RFC 7638
 * thumbprint of the issuer's P-256 key.
 */

/** The type every health card's `vc.type` lists first. */
export const HEALTH_CARD_TYPE = 'https://smarthealth.cards#health-card';
/** FHIR version a card's `credentialSubject` declares. */
export const FHIR_VERSION = '4.0.1';
/** Largest JWS that fits one version-22 QR code in the spec's numeric mode (spec "Chunking"). */
export const MAX_SINGLE_QR_JWS = 1195;
/** Largest JWS read at all (a chunked card's whole JWS; the spec allows chunking for legacy readers only). */
export const MAX_CARD_JWS_BYTES = 16 * 1024;
/** Largest inflated payload accepted: the inflater stops there (a zip bomb gets no further). */
export const MAX_INFLATED_BYTES = 256 * 1024;

/** A public ES256 issuer key as a JWKS lists it (spec "Determining keys"). */
export interface IssuerJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  use: 'sig';
  alg: 'ES256';
  /** Counter of the key's revocation list (`/.well-known/crl/<kid>.json`), when it has one. */
  crlVersion?: number;
  /** X.509 chain binding the key (optional in SMART Health Cards). */
  x5c?: string[];
}

const b64url = z.string().regex(/^[A-Za-z0-9_-]+$/);
/** Schema of a public issuer JWK. */
export const issuerJwkSchema = z.strictObject({
  kty: z.literal('EC'),
  crv: z.literal('P-256'),
  x: b64url.length(43),
  y: b64url.length(43),
  kid: b64url.length(43),
  use: z.literal('sig'),
  alg: z.literal('ES256'),
  crlVersion: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  x5c: z.array(z.string().max(8192)).min(1).max(4).optional(),
});

/** The claims of a card (spec "Health Cards are encoded as Compact Serialization JSON Web Signatures"). */
export const cardPayloadSchema = z.object({
  iss: z.url().max(256),
  nbf: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  exp: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  vc: z.object({
    type: z.array(z.string().max(256)).min(1).max(16),
    rid: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,24}$/)
      .optional(),
    credentialSubject: z.object({
      fhirVersion: z.string().max(16),
      fhirBundle: z.looseObject({ resourceType: z.literal('Bundle'), type: z.literal('collection'), entry: z.array(z.unknown()).max(256) }),
    }),
  }),
});

/** A card's claims. */
export type CardPayload = z.infer<typeof cardPayloadSchema>;

/** A card's JWS taken apart (nothing verified yet). */
export interface DecodedCard {
  jws: string;
  header: { zip: 'DEF'; alg: 'ES256'; kid: string };
  payload: CardPayload;
  /** Bytes of the inflated payload. */
  inflatedBytes: number;
}

const malformed = (message: string, cause?: unknown): ShcError => new ShcError('ERR_SHC_MALFORMED', message, cause === undefined ? undefined : { cause });

/** The public JWK of an ES256 key with its RFC 7638 thumbprint as `kid`. */
export async function issuerJwk(key: KeyObject, extra: { crlVersion?: number; x5c?: string[] } = {}): Promise<IssuerJwk> {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string')
    throw new TypeError('an issuer key must be a P-256 key');
  const kid = await calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, 'sha256');
  return { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid, use: 'sig', alg: 'ES256', ...extra };
}

/** RFC 7638 thumbprint (SHA-256) of a P-256 JWK: what its `kid` must be. */
export function jwkThumbprint(jwk: Pick<IssuerJwk, 'kty' | 'crv' | 'x' | 'y'>): Promise<string> {
  return calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, 'sha256');
}

/** Signs `payload` as a card with `privateKey` (P-256) under `kid`; checks the claims first. */
export async function signCard(payload: CardPayload, privateKey: KeyObject, kid: string): Promise<string> {
  const claims = cardPayloadSchema.parse(payload);
  const body = deflateRawSync(Buffer.from(JSON.stringify(claims), 'utf8'), { level: 9 });
  return new CompactSign(body).setProtectedHeader({ zip: 'DEF', alg: 'ES256', kid }).sign(privateKey);
}

function part(jws: string, i: number): string {
  return jws.split('.')[i] ?? '';
}

/** Takes a card apart: header, inflated payload (bounded), claims schema. Verifies nothing. */
export function decodeCard(input: string): DecodedCard {
  if (typeof input !== 'string' || input.length === 0 || input.length > MAX_CARD_JWS_BYTES)
    throw malformed(`a card must be a JWS of 1-${MAX_CARD_JWS_BYTES} characters`);
  const jws = input.trim();
  const parts = jws.split('.');
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p))) throw malformed('a card must be a compact JWS (three base64url parts)');
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(part(jws, 0), 'base64url').toString('utf8'));
  } catch (err) {
    throw malformed('the card header is not JSON', err);
  }
  const h = z.looseObject({ zip: z.literal('DEF'), alg: z.literal('ES256'), kid: b64url.length(43) }).safeParse(header);
  if (!h.success) throw malformed('the card header must be {"zip":"DEF","alg":"ES256","kid":<RFC 7638 thumbprint>}');
  if ((header as { crit?: unknown }).crit !== undefined) throw malformed('the card header names critical parameters');
  let inflated: Buffer;
  try {
    inflated = inflateRawSync(Buffer.from(part(jws, 1), 'base64url'), { maxOutputLength: MAX_INFLATED_BYTES });
  } catch (err) {
    throw malformed(`the card payload is not raw DEFLATE data of at most ${MAX_INFLATED_BYTES} bytes`, err);
  }
  let claims: unknown;
  try {
    claims = JSON.parse(inflated.toString('utf8'));
  } catch (err) {
    throw malformed('the card payload is not JSON', err);
  }
  const p = cardPayloadSchema.safeParse(claims);
  if (!p.success) throw malformed(`the card payload is malformed at ${p.error.issues[0]?.path.join('.') || '(root)'}: ${p.error.issues[0]?.message ?? ''}`);
  if (p.data.vc.type[0] !== HEALTH_CARD_TYPE && !p.data.vc.type.includes(HEALTH_CARD_TYPE)) throw malformed(`vc.type must list ${HEALTH_CARD_TYPE}`);
  return { jws, header: { zip: 'DEF', alg: 'ES256', kid: h.data.kid }, payload: p.data, inflatedBytes: inflated.length };
}

/** True when the card's ES256 signature verifies with `jwk`. */
export async function cardSignatureValid(jws: string, jwk: IssuerJwk): Promise<boolean> {
  try {
    const key = await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } as JWK, 'ES256');
    await compactVerify(jws.trim(), key, { algorithms: ['ES256'] });
    return true;
  } catch {
    return false;
  }
}
