import { randomBytes, sign as nodeSign, X509Certificate, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { PkiError } from './errors.ts';
import { agentUri, classifyHost } from './names.ts';

const { pki, asn1, md } = forge;

/** Subject attributes common to every certificate the federation issues. */
export interface SubjectFields {
  commonName: string;
  organization?: string;
}

/** The kinds of certificate the federation issues. */
export type CertKind = 'ca' | 'relay' | 'agent' | 'directory';

/**
 * Extended key usage of a member-directory signing certificate, and of nothing
 * else: a UUID-derived OID (ITU-T X.667, arc 2.25), so it needs no registry.
 * A directory certificate carries only this EKU (no serverAuth or clientAuth),
 * so it cannot open a TLS connection, and no agent or relay certificate carries it.
 */
export const DIRECTORY_SIGNING_EKU = '2.25.208488440335318688045342429960828652354';

/** Everything needed to build and sign one certificate. */
export interface CertificateSpec {
  kind: CertKind;
  subject: SubjectFields;
  publicKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  /** Relay hosts (DNS names or IPs); relay certificates only. */
  hosts?: string[];
  /** Hospital id; agent certificates only. */
  hospitalId?: string;
  /** Issuer certificate; absent for the self-signed root. */
  issuer?: forge.pki.Certificate;
  /** Key that signs the certificate (the CA key, or the subject's own key for the root). */
  signingKey: KeyObject;
  /** Serial as lowercase hex; generated when absent. */
  serial?: string;
}

/** DER of SEQUENCE { OBJECT IDENTIFIER oid } as a binary string, for OIDs with arcs of any size. */
function derSequenceOfOid(oid: string): string {
  const arcs = oid.split('.').map((a) => BigInt(a));
  const [first = 0n, second = 0n, ...rest] = arcs;
  const body: number[] = [];
  for (const arc of [first * 40n + second, ...rest]) {
    const digits: number[] = [];
    let v = arc;
    do {
      digits.unshift(Number(v & 0x7fn));
      v >>= 7n;
    } while (v > 0n);
    for (let i = 0; i < digits.length - 1; i += 1) digits[i] = (digits[i] as number) | 0x80;
    body.push(...digits);
  }
  const length = (n: number): number[] => (n < 0x80 ? [n] : [0x81, n]);
  const oidDer = [0x06, ...length(body.length), ...body];
  return Buffer.from([0x30, ...length(oidDer.length), ...oidDer]).toString('binary');
}

/** A random positive 128-bit serial as minimal-DER lowercase hex (top byte 0x40..0x7f). */
export function newSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x3f) | 0x40;
  return bytes.toString('hex');
}

function attributes(fields: SubjectFields): forge.pki.CertificateField[] {
  const attrs: forge.pki.CertificateField[] = [];
  if (fields.organization) attrs.push({ shortName: 'O', value: fields.organization });
  attrs.push({ shortName: 'CN', value: fields.commonName });
  return attrs;
}

function altNames(spec: CertificateSpec): unknown[] {
  if (spec.kind === 'agent') {
    if (!spec.hospitalId) throw new TypeError('agent certificate needs hospitalId');
    return [{ type: 6, value: agentUri(spec.hospitalId) }];
  }
  if (spec.kind === 'relay') {
    return (spec.hosts ?? []).map((h) => {
      const host = classifyHost(h);
      return host.type === 'ip' ? { type: 7, ip: host.value } : { type: 2, value: host.value };
    });
  }
  return [];
}

/** Builds and signs an X.509 v3 certificate; the signature is made with Node's crypto. */
export function buildCertificate(spec: CertificateSpec): { pem: string; serial: string; cert: forge.pki.Certificate } {
  const cert = pki.createCertificate();
  const publicPem = spec.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  cert.publicKey = pki.publicKeyFromPem(publicPem);
  const serial = spec.serial ?? newSerial();
  cert.serialNumber = serial;
  cert.validity.notBefore = spec.notBefore;
  cert.validity.notAfter = spec.notAfter;
  cert.setSubject(attributes(spec.subject));
  cert.setIssuer(spec.issuer ? spec.issuer.subject.attributes : attributes(spec.subject));

  const extensions: unknown[] = [];
  if (spec.kind === 'ca') {
    extensions.push({ name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true });
    extensions.push({ name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true });
  } else if (spec.kind === 'directory') {
    extensions.push({ name: 'basicConstraints', cA: false, critical: true });
    extensions.push({ name: 'keyUsage', digitalSignature: true, critical: true });
    // node-forge encodes OID arcs of up to 32 bits only; a 2.25 arc is 128 bits, so the value is built here.
    extensions.push({ id: '2.5.29.37', critical: true, value: derSequenceOfOid(DIRECTORY_SIGNING_EKU) });
  } else {
    extensions.push({ name: 'basicConstraints', cA: false, critical: true });
    extensions.push({ name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true });
    extensions.push({ name: 'extKeyUsage', serverAuth: true, clientAuth: spec.kind === 'agent' });
    extensions.push({ name: 'subjectAltName', altNames: altNames(spec) });
  }
  extensions.push({ name: 'subjectKeyIdentifier' });
  const authority = spec.issuer ?? cert;
  extensions.push({ name: 'authorityKeyIdentifier', keyIdentifier: authority.generateSubjectKeyIdentifier().getBytes() });
  cert.setExtensions(extensions as never[]);

  // Equivalent of cert.sign(), with the RSA signature computed natively.
  const internal = cert as unknown as {
    md: forge.md.MessageDigest;
    signatureOid: string;
    siginfo: { algorithmOid: string };
    tbsCertificate: forge.asn1.Asn1;
    signature: string;
  };
  internal.md = md.sha256.create();
  const oid = pki.oids['sha256WithRSAEncryption'] as string;
  internal.signatureOid = oid;
  internal.siginfo.algorithmOid = oid;
  internal.tbsCertificate = (pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate(cert);
  const tbs = Buffer.from(asn1.toDer(internal.tbsCertificate).getBytes(), 'binary');
  internal.signature = nodeSign('sha256', tbs, spec.signingKey).toString('binary');

  return { pem: pki.certificateToPem(cert), serial, cert };
}

/** Parses a PEM certificate with node-forge (for use as an issuer); throws ERR_PKI_CERT_INVALID when it is not one. */
export function parseForgeCertificate(pem: string, what = 'certificate'): forge.pki.Certificate {
  try {
    return pki.certificateFromPem(pem);
  } catch (err) {
    throw new PkiError('ERR_PKI_CERT_INVALID', `${what} is not a PEM certificate`, { cause: err });
  }
}

/** Normalizes a certificate serial (any case, optional colons or leading zeros) to lowercase hex. */
export function normalizeSerial(serial: string): string {
  const hex = serial
    .replace(/:/g, '')
    .toLowerCase()
    .replace(/^0+(?=.)/, '');
  return hex;
}

/** SHA-256 fingerprint of a PEM certificate, as colon-separated upper-case hex. */
export function fingerprint256(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}
