import { verify as cryptoVerify, X509Certificate } from 'node:crypto';
import canonicalize from 'canonicalize';
import { normalizeSerial, withinCertificateValidity } from '../../certs/index.ts';
import { RelayError } from './errors.ts';

/** Version of the usage statement format. */
export const USAGE_STATEMENT_VERSION = 1;

/** What the relay charges for one completed transfer. */
export interface Fee {
  /** Integer minor units (e.g. cents). */
  amount: number;
  /** ISO 4217 code. */
  currency: string;
}

/** The relay's record of one completed transfer. */
export interface UsageStatement {
  v: typeof USAGE_STATEMENT_VERSION;
  /** Relay-unique transfer id (hex). */
  transferId: string;
  from: string;
  to: string;
  bytes: number;
  /** ISO 8601 UTC time the END was forwarded. */
  completedAt: string;
  fee: Fee;
  /** The tariff's release fee in force (requester to provider, charged by the provider when it answers a records request); absent when none. */
  releaseFee?: Fee;
}

/** A statement as sent in a `usage` notice: signature and signer certificate travel with it. */
export interface SignedUsageStatement {
  statement: UsageStatement;
  /** Base64 RSA-SHA256 (PKCS#1 v1.5) signature over {@link usageStatementBytes}. */
  signature: string;
  /** PEM certificate of the relay that signed. */
  certificate: string;
}

/** The exact bytes a usage statement is signed over: its RFC 8785 (JCS) canonical JSON. */
export function usageStatementBytes(statement: UsageStatement): Buffer {
  const text = canonicalize(statement);
  if (text === undefined) throw new TypeError('usage statement cannot be canonicalized');
  return Buffer.from(text, 'utf8');
}

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const ISO_4217 = /^[A-Z]{3}$/;

function bad(message: string): never {
  throw new RelayError('ERR_RELAY_USAGE_INVALID', `usage statement rejected: ${message}`);
}

function isMinor(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function checkShape(s: unknown): UsageStatement {
  if (typeof s !== 'object' || s === null) bad('statement is not an object');
  const o = s as Record<string, unknown>;
  const keys = Object.keys(o).sort().join(',');
  if (keys !== 'bytes,completedAt,fee,from,to,transferId,v' && keys !== 'bytes,completedAt,fee,from,releaseFee,to,transferId,v')
    bad(`unexpected fields ${keys}`);
  if (o.v !== USAGE_STATEMENT_VERSION) bad(`unsupported version ${String(o.v)}`);
  if (typeof o.transferId !== 'string' || !/^[0-9a-f]{8,64}$/.test(o.transferId)) bad('transferId');
  if (typeof o.from !== 'string' || typeof o.to !== 'string') bad('from/to');
  if (!isMinor(o.bytes)) bad('bytes is not a non-negative integer');
  if (typeof o.completedAt !== 'string' || Number.isNaN(Date.parse(o.completedAt))) bad('completedAt');
  const fee = o.fee as Record<string, unknown> | null;
  if (typeof fee !== 'object' || fee === null || Object.keys(fee).sort().join(',') !== 'amount,currency') bad('fee shape');
  if (!isMinor(fee.amount)) bad('fee.amount is not integer minor units');
  if (typeof fee.currency !== 'string' || !ISO_4217.test(fee.currency)) bad('fee.currency is not an ISO 4217 code');
  if (o.releaseFee !== undefined) {
    const rf = o.releaseFee as Record<string, unknown> | null;
    if (typeof rf !== 'object' || rf === null || Object.keys(rf).sort().join(',') !== 'amount,currency') bad('releaseFee shape');
    if (!isMinor(rf.amount) || rf.amount === 0) bad('releaseFee.amount is not positive integer minor units');
    if (rf.currency !== fee.currency) bad('releaseFee.currency differs from fee.currency');
  }
  return o as unknown as UsageStatement;
}

/** Signer certificates already checked against a CA: parsing and chain checks cost more than the signature. */
const CHAIN_CACHE_MAX = 64;
const chainCache = new Map<string, X509Certificate | undefined>();

function checkedSigner(certPem: string, caPem: string): X509Certificate | undefined {
  const key = `${caPem}\u0000${certPem}`;
  if (chainCache.has(key)) return chainCache.get(key);
  let cert: X509Certificate | undefined;
  try {
    const c = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    cert = c.checkIssued(ca) && c.verify(ca.publicKey) ? c : undefined;
  } catch {
    cert = undefined;
  }
  if (chainCache.size >= CHAIN_CACHE_MAX) chainCache.clear();
  chainCache.set(key, cert);
  return cert;
}

/**
 * Verifies a signed usage statement against the federation CA: the signer
 * certificate chains to `caPem`, is a server (relay) certificate valid at
 * `completedAt`, and its key signed the JCS bytes of the statement. Returns
 * the statement; throws ERR_RELAY_USAGE_INVALID otherwise.
 */
export function verifyUsageStatement(signed: unknown, caPem: string, options: { revokedSerials?: ReadonlySet<string> } = {}): UsageStatement {
  if (typeof signed !== 'object' || signed === null) bad('not an object');
  const s = signed as Record<string, unknown>;
  if (typeof s.signature !== 'string' || typeof s.certificate !== 'string') bad('signature or certificate missing');
  const statement = checkShape(s.statement);
  const cert = checkedSigner(s.certificate, caPem);
  if (!cert) return bad('signer certificate is not a PEM certificate issued by the federation CA');
  if (!(cert.keyUsage ?? []).includes(SERVER_AUTH) || /URI:urn:hie:agent:/.test(cert.subjectAltName ?? '')) bad('signer is not a relay certificate');
  // X.509 validity names whole seconds, inclusive; completedAt has milliseconds (certs/validity.ts).
  if (!withinCertificateValidity(Date.parse(statement.completedAt), new Date(cert.validFrom), new Date(cert.validTo)))
    bad('signer certificate was not valid at completedAt');
  const serial = normalizeSerial(cert.serialNumber);
  if (options.revokedSerials?.has(serial)) bad('signer certificate is revoked');
  const ok = cryptoVerify('sha256', usageStatementBytes(statement), cert.publicKey, Buffer.from(s.signature, 'base64'));
  if (!ok) bad('signature does not verify');
  return statement;
}
