import { X509Certificate, type KeyObject } from 'node:crypto';
import { CompactSign, compactVerify, decodeProtectedHeader } from 'jose';
import { z } from 'zod';
import type { ParsedCrl } from './crl.ts';
import { PkiError } from './errors.ts';
import { jcs } from './keybundle.ts';
import { HOSPITAL_ID_PATTERN } from './names.ts';
import { revokedForUseAt, withinCertificateValidity } from './validity.ts';
import { DIRECTORY_SIGNING_EKU, normalizeSerial } from './x509.ts';

/**
 * The federation's member directory: who is a member (id, display name,
 * organisation, role, status), signed by the CA-issued directory key as a
 * JWS (RFC 7515 compact serialization, RS256) whose protected header carries
 * the signing certificate in `x5c` (RFC 7515 section 4.1.6). A verifier needs
 * only the federation CA certificate (and, to see a revoked directory key,
 * the CRL).
 */

/** Version of the directory document. */
export const DIRECTORY_VERSION = 1;
/** `typ` of a directory JWS (RFC 7515 section 4.1.9; the `application/` prefix left out as RFC 7515 recommends). */
export const DIRECTORY_JWS_TYPE = 'hie-directory+json';
/** Largest signed directory accepted (bytes of the compact JWS): about 3,000 members. */
export const MAX_DIRECTORY_BYTES = 512 * 1024;
/** Most members one directory lists. */
export const MAX_DIRECTORY_MEMBERS = 5000;

/** What a member is in the federation. */
export const MEMBER_ROLES = ['hospital', 'insurer', 'pharmacy', 'issuer'] as const;
/** A member's standing: only `active` members may be sent to or named by a consent. */
export const MEMBER_STATUSES = ['active', 'suspended', 'revoked'] as const;

/** A member's role. */
export type MemberRole = (typeof MEMBER_ROLES)[number];
/** A member's status. */
export type MemberStatus = (typeof MEMBER_STATUSES)[number];

const label = z
  .string()
  .min(1)
  .max(128)
  .refine(
    (s) => s.trim() === s && ![...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f),
    'must have no leading or trailing spaces and no control characters',
  );

/** One member as the directory lists it. */
export const memberSchema = z.strictObject({
  id: z.string().regex(HOSPITAL_ID_PATTERN),
  name: label,
  organisation: label,
  role: z.enum(MEMBER_ROLES),
  status: z.enum(MEMBER_STATUSES),
});

/** A directory member. */
export type Member = z.infer<typeof memberSchema>;

/** The signed payload. */
export const directorySchema = z
  .strictObject({
    v: z.literal(DIRECTORY_VERSION),
    sequence: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    issuedAt: z.iso.datetime(),
    members: z.array(memberSchema).max(MAX_DIRECTORY_MEMBERS),
  })
  .refine((d) => new Set(d.members.map((m) => m.id)).size === d.members.length, { message: 'member ids must be unique', path: ['members'] });

/** A directory document (what is signed). */
export type Directory = z.infer<typeof directorySchema>;

/** A directory whose signature, signing certificate and content passed {@link verifyDirectory}. */
export interface VerifiedDirectory {
  directory: Directory;
  /** The compact JWS as received (what an agent persists and the relay forwards). */
  jws: string;
  /** Serial of the directory certificate that signed it, lowercase hex. */
  signerSerial: string;
  /** Members by id. */
  members: ReadonlyMap<string, Member>;
}

/** Options of {@link verifyDirectory}. */
export interface VerifyDirectoryOptions {
  /** The federation CA certificate (PEM). */
  caPem: string;
  /** The CRL in force: a directory signed by a revoked directory certificate is refused. */
  crl?: ParsedCrl | undefined;
  now?: Date;
}

const invalid = (message: string, cause?: unknown): PkiError => new PkiError('ERR_PKI_DIRECTORY_INVALID', message, cause === undefined ? undefined : { cause });

/**
 * Signs `directory` with the directory key: a compact JWS over its JCS
 * (RFC 8785) bytes, `x5c` = the directory certificate. Checks the document
 * first, so nothing malformed is ever signed.
 */
export async function signDirectory(directory: Directory, key: KeyObject, certPem: string): Promise<string> {
  const doc = directorySchema.parse(directory);
  const cert = new X509Certificate(certPem);
  if (!(cert.keyUsage ?? []).includes(DIRECTORY_SIGNING_EKU)) throw new TypeError('the certificate is not a directory signing certificate');
  if (!cert.checkPrivateKey(key)) throw new TypeError('the directory key does not match its certificate');
  return new CompactSign(jcs(doc)).setProtectedHeader({ alg: 'RS256', typ: DIRECTORY_JWS_TYPE, x5c: [cert.raw.toString('base64')] }).sign(key);
}

/**
 * Verifies a signed directory: `x5c[0]` was issued by the CA, carries the
 * directory EKU, is within its validity at `now` and not revoked by `crl`;
 * the JWS signature verifies with its key; the payload is a well-formed
 * directory. Throws ERR_PKI_DIRECTORY_INVALID (malformed),
 * ERR_PKI_DIRECTORY_UNTRUSTED (certificate) or ERR_PKI_DIRECTORY_SIGNATURE.
 */
export async function verifyDirectory(jws: string, options: VerifyDirectoryOptions): Promise<VerifiedDirectory> {
  if (typeof jws !== 'string' || jws.length === 0 || jws.length > MAX_DIRECTORY_BYTES) {
    throw invalid(`a signed directory must be 1-${MAX_DIRECTORY_BYTES} bytes`);
  }
  const text = jws.trim();
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(text);
  } catch (err) {
    throw invalid('the signed directory is not a compact JWS', err);
  }
  if (header.alg !== 'RS256' || header.typ !== DIRECTORY_JWS_TYPE) throw invalid(`the signed directory must be an RS256 JWS of typ ${DIRECTORY_JWS_TYPE}`);
  if (header.crit !== undefined) throw invalid('the signed directory names critical header parameters this verifier does not know');
  const x5c = header.x5c;
  if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== 'string')
    throw invalid('the signed directory must carry exactly its signing certificate in x5c');
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(Buffer.from(x5c[0], 'base64'));
  } catch (err) {
    throw invalid('x5c[0] of the signed directory is not a certificate', err);
  }
  try {
    ca = new X509Certificate(options.caPem);
  } catch (err) {
    throw new PkiError('ERR_PKI_CERT_INVALID', 'the CA certificate a directory is checked against is not a PEM certificate', { cause: err });
  }
  const serial = normalizeSerial(cert.serialNumber);
  const now = options.now ?? new Date();
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw untrusted(`directory certificate ${serial} was not issued by the federation CA`);
  if (!(cert.keyUsage ?? []).includes(DIRECTORY_SIGNING_EKU)) throw untrusted(`certificate ${serial} is not a directory signing certificate`);
  if (!withinCertificateValidity(now.getTime(), new Date(cert.validFrom), new Date(cert.validTo)))
    throw untrusted(`directory certificate ${serial} is not valid at ${now.toISOString()} (valid ${cert.validFrom} to ${cert.validTo})`);
  const revoked = options.crl?.revoked.get(serial);
  if (revoked && revokedForUseAt(now.getTime(), revoked.revokedAt))
    throw untrusted(`directory certificate ${serial} was revoked at ${revoked.revokedAt.toISOString()}`);
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(text, cert.publicKey, { algorithms: ['RS256'] }));
  } catch (err) {
    throw new PkiError('ERR_PKI_DIRECTORY_SIGNATURE', 'the signature of the directory does not verify with its certificate', { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch (err) {
    throw invalid('the directory payload is not JSON', err);
  }
  const result = directorySchema.safeParse(parsed);
  if (!result.success)
    throw invalid(`the directory payload is malformed: ${result.error.issues[0]?.path.join('.') ?? ''} ${result.error.issues[0]?.message ?? ''}`);
  const directory = result.data;
  return { directory, jws: text, signerSerial: serial, members: new Map(directory.members.map((m) => [m.id, m])) };
}

function untrusted(message: string): PkiError {
  return new PkiError('ERR_PKI_DIRECTORY_UNTRUSTED', message);
}

/** Why a member may not be sent to or named by a consent, or undefined when it may. */
export type MemberRefusal = 'unknown' | 'suspended' | 'revoked';

/** The refusal for `id` under `directory`: unknown when not listed, else its status unless active. */
export function memberRefusal(directory: Pick<VerifiedDirectory, 'members'>, id: string): MemberRefusal | undefined {
  const m = directory.members.get(id);
  if (!m) return 'unknown';
  return m.status === 'active' ? undefined : m.status;
}
