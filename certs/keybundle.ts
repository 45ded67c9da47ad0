import { createPublicKey, generateKeyPairSync, sign as nodeSign, verify as nodeVerify, X509Certificate, type KeyObject } from 'node:crypto';
import canonicalize from 'canonicalize';
import { calculateJwkThumbprint } from 'jose';
import { z } from 'zod';
import type { ParsedCrl } from './crl.ts';
import { PkiError } from './errors.ts';
import type { Identity } from './identity.ts';
import { hospitalIdFromCertificate } from './identity.ts';
import { HOSPITAL_ID_PATTERN } from './names.ts';
import { lastMsOfSecond, revokedForUseAt, signedAfterRevocation, withinCertificateValidity } from './validity.ts';
import { normalizeSerial } from './x509.ts';

/** Default lifetime of a key bundle, in days (rotate before it runs out). */
export const DEFAULT_BUNDLE_DAYS = 365;
/** Version of the key bundle format. */
export const KEY_BUNDLE_VERSION = 1;

const DAY_MS = 86_400_000;
const B64URL = /^[A-Za-z0-9_-]+$/;

const okpJwk = (crv: 'Ed25519' | 'X25519') => z.strictObject({ kty: z.literal('OKP'), crv: z.literal(crv), x: z.string().regex(B64URL).length(43) });

const bundleSchema = z.strictObject({
  v: z.literal(KEY_BUNDLE_VERSION),
  agent: z.string().regex(HOSPITAL_ID_PATTERN),
  created: z.iso.datetime(),
  expires: z.iso.datetime(),
  signing: z.strictObject({ kid: z.string().regex(B64URL).length(43), jwk: okpJwk('Ed25519') }),
  encryption: z.strictObject({ kid: z.string().regex(B64URL).length(43), jwk: okpJwk('X25519') }),
  cert: z.string().min(1).max(16_384),
  // Canonical only: base64url keeps spare bits in the last character, and a second spelling of one signature must not verify.
  sig: z
    .string()
    .regex(B64URL)
    .max(2048)
    .refine((s) => Buffer.from(s, 'base64url').toString('base64url') === s, 'must be canonical base64url'),
});

/**
 * An agent's end-to-end public keys (Ed25519 for signatures, X25519 for
 * encryption), bound to its certificate: `sig` is the certificate key's
 * RSA-SHA256 signature over the JCS (RFC 8785) form of every other field.
 */
export type KeyBundle = z.infer<typeof bundleSchema>;

/** An OKP public JWK as carried in a bundle. */
export type OkpPublicJwk = KeyBundle['signing']['jwk'];

/** The private halves an agent keeps for a bundle. */
export interface AgentKeys {
  signing: { privateKey: KeyObject; publicKey: KeyObject };
  encryption: { privateKey: KeyObject; publicKey: KeyObject };
}

/** A bundle that passed {@link verifyKeyBundle}, with its keys imported. */
export interface VerifiedKeyBundle {
  bundle: KeyBundle;
  agent: string;
  created: Date;
  expires: Date;
  signingKey: KeyObject;
  encryptionKey: KeyObject;
  signingKid: string;
  encryptionKid: string;
  /** Serial of the certificate that signed the bundle, lowercase hex. */
  certSerial: string;
  /** The certificate's notBefore and notAfter (whole seconds; see `validity.ts` for how they compare). */
  certNotBefore: Date;
  certNotAfter: Date;
}

/** Generates a fresh Ed25519 signing pair and X25519 encryption pair. */
export function generateAgentKeys(): AgentKeys {
  return { signing: generateKeyPairSync('ed25519'), encryption: generateKeyPairSync('x25519') };
}

/** JCS (RFC 8785) canonical bytes of a JSON value. */
export function jcs(value: unknown): Buffer {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value cannot be canonicalized as JSON');
  return Buffer.from(text, 'utf8');
}

/** The public JWK of an OKP key (Ed25519 or X25519). */
export function publicJwk(key: KeyObject): OkpPublicJwk {
  const jwk = (key.type === 'private' ? createPublicKey(key) : key).export({ format: 'jwk' }) as { kty: string; crv: string; x: string };
  if (jwk.kty !== 'OKP' || (jwk.crv !== 'Ed25519' && jwk.crv !== 'X25519')) throw new TypeError('expected an Ed25519 or X25519 key');
  return { kty: 'OKP', crv: jwk.crv, x: jwk.x } as OkpPublicJwk;
}

/** RFC 7638 SHA-256 thumbprint of a public JWK (base64url). */
export async function jwkThumbprint(jwk: OkpPublicJwk | KeyBundle['encryption']['jwk']): Promise<string> {
  return calculateJwkThumbprint(jwk, 'sha256');
}

function unsigned(bundle: KeyBundle): Omit<KeyBundle, 'sig'> {
  const { sig: _sig, ...rest } = bundle;
  return rest;
}

/**
 * Builds a key bundle for `identity` (an agent identity) and signs it with the
 * identity's certificate key. The bundle expires at the earlier of `days` and
 * the certificate's own expiry.
 */
export async function createKeyBundle(
  identity: Identity,
  keys: Pick<AgentKeys, 'signing' | 'encryption'> | { signing: { publicKey: KeyObject }; encryption: { publicKey: KeyObject } },
  options: { now?: Date; days?: number } = {},
): Promise<KeyBundle> {
  if (!identity.hospitalId) throw new TypeError('a key bundle needs an agent identity (certificate with urn:hie:agent:<id>)');
  const now = options.now ?? new Date();
  const certEnd = lastMsOfSecond(new Date(identity.certificate.validTo));
  const expires = new Date(Math.min(certEnd, now.getTime() + (options.days ?? DEFAULT_BUNDLE_DAYS) * DAY_MS));
  const signingJwk = publicJwk(keys.signing.publicKey);
  const encryptionJwk = publicJwk(keys.encryption.publicKey);
  if (signingJwk.crv !== 'Ed25519' || encryptionJwk.crv !== 'X25519') throw new TypeError('signing key must be Ed25519 and encryption key X25519');
  const body: Omit<KeyBundle, 'sig'> = {
    v: KEY_BUNDLE_VERSION,
    agent: identity.hospitalId,
    created: now.toISOString(),
    expires: expires.toISOString(),
    signing: { kid: await jwkThumbprint(signingJwk), jwk: signingJwk },
    encryption: { kid: await jwkThumbprint(encryptionJwk), jwk: encryptionJwk as KeyBundle['encryption']['jwk'] },
    cert: identity.certPem,
  };
  const sig = nodeSign('sha256', jcs(body), identity.privateKey).toString('base64url');
  return { ...body, sig };
}

/** Options of {@link verifyKeyBundle}. */
export interface VerifyBundleOptions {
  /** The federation CA certificate, PEM. */
  caPem: string;
  /** The CRL in force; when given, a bundle whose certificate it lists as revoked by `now` (or before `signedAt`) is refused. */
  crl?: ParsedCrl | undefined;
  /** The time at which the bundle must be valid for a present use (default: the current time). */
  now?: Date;
  /**
   * Instead of `now`: the time a past signature with the bundle's key claims.
   * Revocation is then judged at the CRL's one-second resolution: a signature
   * in the revocation's listed second counts as made before it (`validity.ts`).
   */
  signedAt?: Date;
  /** Exact revocation instants known locally (serial, lowercase hex, to time), e.g. from the CA's index; used with `signedAt`. */
  revocationTimes?: ReadonlyMap<string, Date> | undefined;
}

/**
 * Checks a key bundle: its shape, that its certificate chains to the CA, names
 * the same agent and was valid (and not revoked) at `now`, that the bundle was
 * valid at `now`, that the key ids are the keys' RFC 7638 thumbprints, and the
 * certificate key's signature. Throws PkiError `ERR_PKI_BUNDLE_*`.
 */
export async function verifyKeyBundle(input: unknown, options: VerifyBundleOptions): Promise<VerifiedKeyBundle> {
  const parsed = bundleSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new PkiError('ERR_PKI_BUNDLE_INVALID', `key bundle is malformed at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  if (options.now !== undefined && options.signedAt !== undefined) throw new TypeError('give either now or signedAt, not both');
  const bundle = parsed.data;
  const now = options.signedAt ?? options.now ?? new Date();
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(bundle.cert);
    ca = new X509Certificate(options.caPem);
  } catch (err) {
    throw new PkiError('ERR_PKI_BUNDLE_INVALID', 'key bundle certificate is not a PEM certificate', { cause: err });
  }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw new PkiError('ERR_PKI_BUNDLE_UNTRUSTED', `key bundle for '${bundle.agent}' carries a certificate not issued by the federation CA`);
  }
  let certAgent: string;
  try {
    certAgent = hospitalIdFromCertificate(cert);
  } catch (err) {
    throw new PkiError('ERR_PKI_BUNDLE_ID_MISMATCH', 'key bundle certificate is not an agent certificate', { cause: err });
  }
  if (certAgent !== bundle.agent) {
    throw new PkiError('ERR_PKI_BUNDLE_ID_MISMATCH', `key bundle claims agent '${bundle.agent}' but its certificate names '${certAgent}'`);
  }
  const t = now.getTime();
  const certNotBefore = new Date(cert.validFrom);
  const certNotAfter = new Date(cert.validTo);
  if (!withinCertificateValidity(t, certNotBefore, certNotAfter)) {
    throw new PkiError('ERR_PKI_BUNDLE_EXPIRED', `certificate of '${bundle.agent}' is not valid at ${now.toISOString()}`);
  }
  const created = new Date(bundle.created);
  const expires = new Date(bundle.expires);
  if (t < created.getTime() || t > expires.getTime()) {
    throw new PkiError(
      'ERR_PKI_BUNDLE_EXPIRED',
      `key bundle of '${bundle.agent}' is not valid at ${now.toISOString()} (valid ${bundle.created} to ${bundle.expires})`,
    );
  }
  const certSerial = normalizeSerial(cert.serialNumber);
  const revoked = options.crl?.revoked.get(certSerial);
  const revokedBefore =
    revoked !== undefined &&
    (options.signedAt !== undefined
      ? signedAfterRevocation(t, revoked.revokedAt, options.revocationTimes?.get(certSerial))
      : revokedForUseAt(t, revoked.revokedAt));
  if (revokedBefore) {
    throw new PkiError('ERR_PKI_BUNDLE_REVOKED', `certificate ${certSerial} of '${bundle.agent}' was revoked at ${revoked.revokedAt.toISOString()}`);
  }
  if (!nodeVerify('sha256', jcs(unsigned(bundle)), cert.publicKey, Buffer.from(bundle.sig, 'base64url'))) {
    throw new PkiError('ERR_PKI_BUNDLE_SIGNATURE', `key bundle of '${bundle.agent}' is not signed by its certificate key`);
  }
  if ((await jwkThumbprint(bundle.signing.jwk)) !== bundle.signing.kid || (await jwkThumbprint(bundle.encryption.jwk)) !== bundle.encryption.kid) {
    throw new PkiError('ERR_PKI_BUNDLE_INVALID', `key bundle of '${bundle.agent}' has key ids that are not the keys' thumbprints`);
  }
  let signingKey: KeyObject;
  let encryptionKey: KeyObject;
  try {
    signingKey = createPublicKey({ key: bundle.signing.jwk, format: 'jwk' });
    encryptionKey = createPublicKey({ key: bundle.encryption.jwk, format: 'jwk' });
  } catch (err) {
    throw new PkiError('ERR_PKI_BUNDLE_INVALID', `key bundle of '${bundle.agent}' holds an unusable key`, { cause: err });
  }
  return {
    bundle,
    agent: bundle.agent,
    created,
    expires,
    signingKey,
    encryptionKey,
    signingKid: bundle.signing.kid,
    encryptionKid: bundle.encryption.kid,
    certSerial,
    certNotBefore,
    certNotAfter,
  };
}
