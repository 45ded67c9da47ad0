import { z } from 'zod';
import { HOSPITAL_ID_PATTERN, type KeyBundle } from '../certs/index.ts';

/** Version of the entry format. */
export const ENTRY_VERSION = 1;
/** `prev` of a feed's first entry (seq 0). */
export const GENESIS_PREV = '0'.repeat(64);
/** Largest encoded entry accepted, in bytes (a genesis with its key bundle is about 3 KiB). */
export const MAX_ENTRY_BYTES = 16_384;

/** Ids of exchanges, consents, charges and settlements: opaque tokens (UUID, ULID), never names. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/;
/** A SHA-256 value as lowercase hex. */
export const HEX64_PATTERN = /^[0-9a-f]{64}$/;
/** A content digest: SHA-256 as lowercase hex or unpadded base64url. */
export const DIGEST_PATTERN = /^(?:[0-9a-f]{64}|[A-Za-z0-9_-]{43})$/;

/**
 * A SHA-256 content digest as people read it: lowercase hex, as `sha256sum`
 * prints it. Entries and receipts carry base64url (a signed format, kept);
 * this is what the API and the CLIs show. Anything not a digest is returned as is.
 */
export function hexDigest(digest: string): string {
  if (/^[0-9a-f]{64}$/.test(digest)) return digest;
  if (/^[A-Za-z0-9_-]{43}$/.test(digest)) return Buffer.from(digest, 'base64url').toString('hex');
  return digest;
}
/** Timestamps: UTC, millisecond precision, as produced by `Date#toISOString()`. */
export const TS_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** ISO 4217 alphabetic currency code. */
export const CURRENCY_PATTERN = /^[A-Z]{3}$/;
/** MIME type without parameters (e.g. `application/fhir+json`). */
export const CONTENT_TYPE_PATTERN = /^[a-z]{1,32}\/[a-z0-9.+-]{1,96}$/;
/** A FHIR resource type name, or `*` for everything. */
export const SCOPE_PATTERN = /^(?:\*|[A-Z][A-Za-z]{1,63})$/;
/** A coded concept as `system|code`: a category or security label a consent names (the system a URI, the code without whitespace). */
export const CODING_PATTERN = /^[A-Za-z][A-Za-z0-9+.-]{0,15}:[\x21-\x7b\x7d\x7e]{1,200}\|[\x21-\x7e]{1,64}$/;
const B64URL = /^[A-Za-z0-9_-]+$/;

/** HL7 v3 PurposeOfUse codes a consent may grant and a release may claim. */
export const PURPOSES = ['TREAT', 'ETREAT', 'COC', 'HPAYMT', 'HOPERAT', 'PUBHLTH', 'HRESCH', 'PATRQT', 'HLEGAL'] as const;
/** Why an exchange failed (enumerated so no free text can carry PHI). */
export const FAILURE_REASONS = [
  'timeout',
  'rejected',
  'undeliverable',
  'integrity',
  'consent',
  'cancelled',
  'expired',
  'too-large',
  'unknown-recipient',
  'internal',
] as const;
/** Why a consent was revoked. */
export const REVOCATION_REASONS = ['patient-request', 'expired', 'superseded', 'entered-in-error', 'legal'] as const;
/** What a charge pays for. */
export const CHARGE_KINDS = ['transport', 'release', 'claim'] as const;
/** FHIR R4 `ClaimResponse.outcome` (RemittanceOutcome). */
export const CLAIM_OUTCOMES = ['queued', 'complete', 'error', 'partial'] as const;

const id = z.string().regex(ID_PATTERN);
const hospital = z.string().regex(HOSPITAL_ID_PATTERN);
const hex64 = z.string().regex(HEX64_PATTERN);
const digest = z.string().regex(DIGEST_PATTERN);
const ts = z.string().regex(TS_PATTERN);
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const amount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const currency = z.string().regex(CURRENCY_PATTERN);
const purpose = z.enum(PURPOSES);
// Checked in full by verifyKeyBundle (certs) before any entry carrying it is accepted.
const keyBundle = z.custom<KeyBundle>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), { message: 'expected a key bundle object' });

/** A detached compact JWS (header..signature), as the patient's device signs consents. */
export const PATIENT_JWS_PATTERN = /^[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]+$/;
const devicePublicKey = z.strictObject({
  crv: z.literal('P-256'),
  kty: z.literal('EC'),
  x: z.string().regex(B64URL).length(43),
  y: z.string().regex(B64URL).length(43),
});

/** Body schema per entry type; every one is strict (unknown fields are refused). */
export const BODY_SCHEMAS = {
  genesis: z.strictObject({ bundle: keyBundle }),
  'key.rotated': z.strictObject({ bundle: keyBundle, endorsement: z.string().regex(B64URL).length(86) }),
  'exchange.sent': z.strictObject({
    exchange: id,
    to: hospital,
    consent: id,
    patient: hex64,
    purpose,
    contentType: z.string().regex(CONTENT_TYPE_PATTERN),
    bytes: count,
    hash: digest,
  }),
  'exchange.received': z.strictObject({
    exchange: id,
    from: hospital,
    contentType: z.string().regex(CONTENT_TYPE_PATTERN),
    bytes: count,
    hash: digest,
  }),
  receipt: z.strictObject({
    exchange: id,
    from: hospital,
    disposition: z.enum(['delivered', 'failed']),
    reason: z.enum(FAILURE_REASONS).optional(),
    hash: digest,
    signature: z.string().regex(B64URL).max(1024).optional(),
  }),
  'exchange.failed': z.strictObject({ exchange: id, peer: hospital, reason: z.enum(FAILURE_REASONS) }),
  'consent.granted': z.strictObject({
    consent: id,
    patient: hex64,
    grantees: z.array(hospital).min(1).max(32),
    purposes: z.array(purpose).min(1).max(PURPOSES.length),
    scope: z.array(z.string().regex(SCOPE_PATTERN)).min(1).max(64),
    /** Data categories (`system|code`) the consent is limited to; absent: every category. */
    categories: z.array(z.string().regex(CODING_PATTERN)).min(1).max(64).optional(),
    /** Sensitive security labels (`system|code`) the consent names, the only sensitive data it releases; absent: none. */
    labels: z.array(z.string().regex(CODING_PATTERN)).min(1).max(64).optional(),
    validFrom: ts,
    validUntil: ts.optional(),
    /** Set when the patient signed the consent with an enrolled device key (docs/patients.md); absent: attested by the hospital. */
    attestation: z.literal('patient-signed').optional(),
    /** The patient's detached ES256 JWS over the JCS bytes of the FHIR Consent rebuilt from this body (`dateTime` = signedAt). */
    signature: z.string().regex(PATIENT_JWS_PATTERN).max(1024).optional(),
    signedAt: ts.optional(),
    /** The device's public signing key (P-256 JWK): a pseudonymous key, enrolled for the patient at this hospital. */
    device: devicePublicKey.optional(),
  }),
  'consent.revoked': z.strictObject({
    consent: id,
    reason: z.enum(REVOCATION_REASONS),
    /** A revocation the patient signed: the detached JWS over the FHIR Consent with status inactive (docs/patients.md). */
    signature: z.string().regex(PATIENT_JWS_PATTERN).max(1024).optional(),
    signedAt: ts.optional(),
  }),
  'payment.charged': z.strictObject({ charge: id, exchange: id, kind: z.enum(CHARGE_KINDS), payer: hospital, payee: hospital, amount, currency }),
  'payment.settled': z.strictObject({ settlement: id, payer: hospital, payee: hospital, amount, currency, periodStart: ts, periodEnd: ts }),
  /** The sender ended an exchange before it was released to its recipient (`DELETE /v1/exchanges/ID`): it is never sent. */
  'exchange.cancelled': z.strictObject({ exchange: id, peer: hospital }),
  // E-prescriptions (hospital-agent/prescriptions/): the prescriber's Task, one entry per transition; hashes and parties only.
  /** A signed MedicationRequest was issued (`ready`); `hash` is the SHA-256 of its JWS, `patient` the keyed patient hash. */
  'prescription.issued': z.strictObject({ prescription: id, patient: hex64, hash: digest }),
  /** A pharmacy accepted it with the access code (`in-progress`). */
  'prescription.accepted': z.strictObject({ prescription: id, pharmacy: hospital }),
  /** The pharmacy gave it back (`ready` again). */
  'prescription.rejected': z.strictObject({ prescription: id, pharmacy: hospital }),
  /** The pharmacy closed it with a MedicationDispense (`completed`); `hash` of the dispense, `receipt` of the signed receipt. */
  'prescription.completed': z.strictObject({ prescription: id, pharmacy: hospital, hash: digest, receipt: digest }),
  /** Cancelled by the prescriber or the patient. */
  'prescription.cancelled': z.strictObject({ prescription: id, by: z.enum(['prescriber', 'patient']) }),
  // Insurance claims (hospital-agent/claims/): hashes, parties and amounts in minor units, never the claim itself.
  /** A hospital sent a FHIR Claim to an insurer member under a payment (HPAYMT) consent; `hash` is SHA-256 of the Claim's JCS bytes, `amount` its total. */
  'claim.submitted': z.strictObject({ claim: id, insurer: hospital, consent: id, patient: hex64, hash: digest, amount, currency }),
  /** An insurer took a hospital's claim in and handed it to its claims system. */
  'claim.received': z.strictObject({ claim: id, hospital, hash: digest, amount, currency }),
  /**
   * A signed ClaimResponse, logged by the insurer that signed it and by the hospital that verified it; `hash` is SHA-256 of the compact JWS,
   * `amount` the benefit paid (0 unless complete or partial).
   */
  'claim.responded': z.strictObject({ claim: id, hospital, insurer: hospital, outcome: z.enum(CLAIM_OUTCOMES), hash: digest, amount, currency }),
  // Coverage eligibility before a claim (hospital-agent/claims/eligibility.ts): hashes and parties only.
  /** A hospital sent a CoverageEligibilityRequest to an insurer under a payment (HPAYMT) consent; `hash` is SHA-256 of its JCS bytes. */
  'eligibility.requested': z.strictObject({ request: id, insurer: hospital, consent: id, patient: hex64, hash: digest }),
  /** An insurer took a hospital's eligibility request in and handed it to its claims system. */
  'eligibility.received': z.strictObject({ request: id, hospital, hash: digest }),
  /** A signed CoverageEligibilityResponse, logged by the insurer that signed it and the hospital that verified it; `hash` is SHA-256 of the JWS. */
  'eligibility.responded': z.strictObject({ request: id, hospital, insurer: hospital, outcome: z.enum(CLAIM_OUTCOMES), hash: digest }),
  /** A SMART Health Card the feed's hospital signed (certs/shc): the SHA-256 of its JWS, the key, its revocation id and claimed issuance time; no PHI. */
  'certificate.issued': z.strictObject({ card: hex64, kid: z.string().regex(B64URL).length(43), rid: z.string().regex(B64URL).max(24), nbf: ts }),
  /** A patient's device key was enrolled at this hospital (one-time code): the patient as keyed hash, the key as its RFC 7638 thumbprint. */
  'patient.enrolled': z.strictObject({ patient: hex64, device: z.string().regex(B64URL).length(43) }),
  /** A copy of the patient's own records (a FHIR Bundle the EHR pushed) went, end to end encrypted, to their enrolled device; `hash` is SHA-256 of the Bundle's bytes. */
  'patient.records': z.strictObject({ patient: hex64, device: z.string().regex(B64URL).length(43), hash: digest }),
} as const;

/** Every entry type. */
export type EntryType = keyof typeof BODY_SCHEMAS;
/** Entry types an application may append (genesis and key.rotated are written by the ledger itself). */
export type AppendableType = Exclude<EntryType, 'genesis' | 'key.rotated'>;
/** Every entry type, in a stable order. */
export const ENTRY_TYPES = Object.keys(BODY_SCHEMAS) as EntryType[];
/** The body of an entry of type T. */
export type BodyOf<T extends EntryType> = z.infer<(typeof BODY_SCHEMAS)[T]>;

/** A ledger entry as hashed: its hash is SHA-256 over the JCS bytes of this object. */
export interface Entry<T extends EntryType = EntryType> {
  v: typeof ENTRY_VERSION;
  feed: string;
  seq: number;
  prev: string;
  ts: string;
  type: T;
  body: BodyOf<T>;
  refs: string[];
}

/** Input of an application append. */
export type AppendInput = { [T in AppendableType]: { type: T; body: BodyOf<T>; refs?: string[] } }[AppendableType];

const envelopeSchema = z.strictObject({
  v: z.literal(ENTRY_VERSION),
  feed: hospital,
  seq: count,
  prev: hex64,
  ts,
  type: z.enum(ENTRY_TYPES as [EntryType, ...EntryType[]]),
  body: z.unknown(),
  refs: z.array(hex64).max(8),
});

/** Result of {@link checkEntry}: the typed entry or the first problem found. */
export type EntryCheck = { ok: true; entry: Entry } | { ok: false; problem: string };

/** Validates a decoded entry against the envelope schema and its type's body schema. */
export function checkEntry(value: unknown): EntryCheck {
  const env = envelopeSchema.safeParse(value);
  if (!env.success) return { ok: false, problem: describe(env.error) };
  const body = BODY_SCHEMAS[env.data.type].safeParse(env.data.body);
  if (!body.success) return { ok: false, problem: `${env.data.type} body: ${describe(body.error)}` };
  return { ok: true, entry: { ...env.data, body: body.data } as Entry };
}

/** Validates an application body for `type` (throws nothing; returns the problem). */
export function checkBody(type: string, body: unknown): string | undefined {
  if (!Object.hasOwn(BODY_SCHEMAS, type)) return `unknown entry type ${JSON.stringify(type.slice(0, 40))}`;
  const r = BODY_SCHEMAS[type as EntryType].safeParse(body);
  return r.success ? undefined : `${type} body: ${describe(r.error)}`;
}

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  // The path and zod's message name the field and the rule, never the offending value.
  return `${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`;
}
