import { sign as nodeSign, verify as nodeVerify, X509Certificate, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { PkiError } from './errors.ts';
import { normalizeSerial } from './x509.ts';

const { asn1, pki } = forge;
const { Class, Type } = asn1;

/** RFC 5280 CRLReason values accepted by `revoke --reason`. */
export const CRL_REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  privilegeWithdrawn: 9,
} as const;

/** Name of a CRL reason. */
export type CrlReason = keyof typeof CRL_REASONS;

/** True when `value` names a CRL reason. */
export function isCrlReason(value: string): value is CrlReason {
  return Object.hasOwn(CRL_REASONS, value);
}

/** One revoked certificate in a CRL. */
export interface RevokedEntry {
  serial: string;
  revokedAt: Date;
  reason?: CrlReason;
}

/** Input for building a CRL. */
export interface CrlSpec {
  issuer: forge.pki.Certificate;
  signingKey: KeyObject;
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
  revoked: RevokedEntry[];
}

const OID_SHA256_RSA = '1.2.840.113549.1.1.11';
const OID_CRL_NUMBER = '2.5.29.20';
const OID_AKI = '2.5.29.35';
const OID_REASON = '2.5.29.21';

function time(date: Date): forge.asn1.Asn1 {
  // RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
  if (date.getUTCFullYear() >= 2050) {
    return asn1.create(Class.UNIVERSAL, Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
  }
  return asn1.create(Class.UNIVERSAL, Type.UTCTIME, false, asn1.dateToUtcTime(date));
}

function integerFromHex(hex: string): forge.asn1.Asn1 {
  let bytes = forge.util.hexToBytes(hex.length % 2 === 1 ? `0${hex}` : hex);
  if (bytes.charCodeAt(0) & 0x80) bytes = `\x00${bytes}`;
  return asn1.create(Class.UNIVERSAL, Type.INTEGER, false, bytes);
}

function extension(oid: string, value: forge.asn1.Asn1): forge.asn1.Asn1 {
  return asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [
    asn1.create(Class.UNIVERSAL, Type.OID, false, asn1.oidToDer(oid).getBytes()),
    asn1.create(Class.UNIVERSAL, Type.OCTETSTRING, false, asn1.toDer(value).getBytes()),
  ]);
}

function algorithm(): forge.asn1.Asn1 {
  return asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [
    asn1.create(Class.UNIVERSAL, Type.OID, false, asn1.oidToDer(OID_SHA256_RSA).getBytes()),
    asn1.create(Class.UNIVERSAL, Type.NULL, false, ''),
  ]);
}

/**
 * Builds a PEM X.509 v2 CRL signed by the CA (node-forge has no CRL writer,
 * so the DER is assembled with its ASN.1 module and signed natively).
 */
export function buildCrl(spec: CrlSpec): string {
  const entries = spec.revoked.map((r) => {
    const fields = [integerFromHex(normalizeSerial(r.serial)), time(r.revokedAt)];
    if (r.reason !== undefined && r.reason !== 'unspecified') {
      const reasonValue = asn1.create(Class.UNIVERSAL, Type.ENUMERATED, false, String.fromCharCode(CRL_REASONS[r.reason]));
      fields.push(asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [extension(OID_REASON, reasonValue)]));
    }
    return asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, fields);
  });

  const aki = asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [
    asn1.create(Class.CONTEXT_SPECIFIC, 0, false, spec.issuer.generateSubjectKeyIdentifier().getBytes()),
  ]);
  const crlNumber = asn1.create(Class.UNIVERSAL, Type.INTEGER, false, asn1.integerToDer(spec.crlNumber).getBytes());

  const tbsFields: forge.asn1.Asn1[] = [
    asn1.create(Class.UNIVERSAL, Type.INTEGER, false, asn1.integerToDer(1).getBytes()),
    algorithm(),
    pki.distinguishedNameToAsn1(spec.issuer.subject),
    time(spec.thisUpdate),
    time(spec.nextUpdate),
  ];
  if (entries.length > 0) tbsFields.push(asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, entries));
  tbsFields.push(
    asn1.create(Class.CONTEXT_SPECIFIC, 0, true, [
      asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [extension(OID_AKI, aki), extension(OID_CRL_NUMBER, crlNumber)]),
    ]),
  );
  const tbs = asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, tbsFields);
  const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary');
  const signature = nodeSign('sha256', tbsDer, spec.signingKey);

  const crl = asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [
    tbs,
    algorithm(),
    asn1.create(Class.UNIVERSAL, Type.BITSTRING, false, `\x00${signature.toString('binary')}`),
  ]);
  const der = asn1.toDer(crl).getBytes();
  return forge.pem.encode({ type: 'X509 CRL', body: der });
}

/** A parsed and signature-checked CRL. */
export interface ParsedCrl {
  pem: string;
  crlNumber: number | undefined;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** Revoked serials, normalized lowercase hex. */
  revoked: Map<string, RevokedEntry>;
}

function readTime(node: forge.asn1.Asn1 | undefined): Date | undefined {
  if (!node) return undefined;
  if (node.type === Type.UTCTIME) return asn1.utcTimeToDate(node.value as string);
  if (node.type === Type.GENERALIZEDTIME) return asn1.generalizedTimeToDate(node.value as string);
  return undefined;
}

/** A CRL that is not well formed; the caller names which part failed. */
function malformed(problem: string): PkiError {
  return new PkiError('ERR_PKI_CRL_INVALID', `CRL is malformed: ${problem}`);
}

function children(node: forge.asn1.Asn1 | undefined): forge.asn1.Asn1[] {
  if (!node || !Array.isArray(node.value)) throw malformed('expected a constructed ASN.1 value');
  return node.value as forge.asn1.Asn1[];
}

/**
 * Parses a PEM CRL and verifies it was signed by `caPem`'s key and names
 * that CA as issuer. Throws ERR_PKI_CRL_INVALID on any mismatch.
 */
export function parseCrl(pem: string, caPem: string): ParsedCrl {
  let tbsNode: forge.asn1.Asn1;
  let signature: Buffer;
  let tbsDer: Buffer;
  try {
    const msgs = forge.pem.decode(pem).filter((m) => m.type === 'X509 CRL');
    const first = msgs[0];
    if (!first || msgs.length !== 1) throw new PkiError('ERR_PKI_CRL_INVALID', 'CRL is not a valid PEM X.509 CRL: expected exactly one X509 CRL PEM block');
    const der = first.body;
    const root = asn1.fromDer(der, true);
    const [tbs, , sigBits] = children(root);
    if (!tbs || !sigBits) throw malformed('truncated CRL');
    tbsNode = tbs;
    tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary');
    signature = Buffer.from((sigBits.value as string).slice(1), 'binary');
  } catch (err) {
    if (err instanceof PkiError) throw err;
    throw new PkiError('ERR_PKI_CRL_INVALID', `CRL is not a valid PEM X.509 CRL: ${(err as Error).message}`, { cause: err });
  }
  let ca: X509Certificate;
  let caName: string;
  try {
    ca = new X509Certificate(caPem);
    caName = asn1.toDer(pki.distinguishedNameToAsn1(pki.certificateFromPem(caPem).subject)).getBytes();
  } catch (err) {
    throw new PkiError('ERR_PKI_CERT_INVALID', 'the CA certificate a CRL is checked against is not a PEM certificate', { cause: err });
  }
  if (!nodeVerify('sha256', tbsDer, ca.publicKey, signature)) {
    throw new PkiError('ERR_PKI_CRL_INVALID', 'CRL signature does not verify against the CA certificate');
  }
  try {
    const fields = children(tbsNode);
    let i = 0;
    if (fields[0]?.type === Type.INTEGER) i += 1; // version
    i += 1; // signature algorithm
    const issuerNode = fields[i];
    if (!issuerNode) throw malformed('missing issuer');
    if (asn1.toDer(issuerNode).getBytes() !== caName) throw malformed('CRL issuer is not the CA');
    i += 1;
    const thisUpdate = readTime(fields[i]);
    if (!thisUpdate) throw malformed('missing thisUpdate');
    i += 1;
    const nextUpdate = readTime(fields[i]);
    if (nextUpdate) i += 1;
    const revoked = new Map<string, RevokedEntry>();
    let crlNumber: number | undefined;
    for (; i < fields.length; i += 1) {
      const node = fields[i];
      if (!node) continue;
      if (node.tagClass === Class.UNIVERSAL && node.type === Type.SEQUENCE) {
        for (const entry of children(node)) {
          const [serialNode, dateNode, extNode] = children(entry);
          const serial = normalizeSerial(forge.util.bytesToHex(serialNode?.value as string));
          const revokedAt = readTime(dateNode);
          if (!revokedAt) throw malformed('revoked entry without date');
          let reason: CrlReason | undefined;
          if (extNode) {
            for (const ext of children(extNode)) {
              const [oidNode, ...rest] = children(ext);
              if (asn1.derToOid(oidNode?.value as string) === OID_REASON) {
                const octets = rest[rest.length - 1]?.value as string;
                const code = asn1.fromDer(octets).value as string;
                const n = code.charCodeAt(0);
                reason = (Object.keys(CRL_REASONS) as CrlReason[]).find((k) => CRL_REASONS[k] === n);
              }
            }
          }
          revoked.set(serial, reason === undefined ? { serial, revokedAt } : { serial, revokedAt, reason });
        }
      } else if (node.tagClass === Class.CONTEXT_SPECIFIC && node.type === 0) {
        for (const ext of children(children(node)[0])) {
          const [oidNode, ...rest] = children(ext);
          if (asn1.derToOid(oidNode?.value as string) === OID_CRL_NUMBER) {
            const octets = rest[rest.length - 1]?.value as string;
            crlNumber = parseInt(forge.util.bytesToHex(asn1.fromDer(octets).value as string), 16);
          }
        }
      }
    }
    return { pem, crlNumber, thisUpdate, nextUpdate, revoked };
  } catch (err) {
    if (err instanceof PkiError) throw err;
    throw new PkiError('ERR_PKI_CRL_INVALID', `CRL is malformed: ${(err as Error).message}`, { cause: err });
  }
}
