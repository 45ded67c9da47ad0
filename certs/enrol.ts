// One job: the hospital's side of enrolment and renewal (key and CSR made here, a signed certificate installed here).
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createAgentCsr } from './csr.ts';
import { PkiError } from './errors.ts';
import { backupFile, writeFileAtomic } from './fsutil.ts';
import { DEFAULT_LEAF_KEY_BITS, exportPrivateKey, generateRsaKeyPair, parsePrivateKey } from './keys.ts';
import { assertHospitalId } from './names.ts';
import { hospitalIdFromCertificate, splitPemCertificates } from './identity.ts';
import { normalizeSerial } from './x509.ts';

/** Suffix of a key generated for a renewal, kept aside until its certificate is installed. */
export const PENDING_KEY_SUFFIX = '.next';

/** File names of an agent's identity in its certificate directory. */
export function agentFiles(dir: string, id: string): { cert: string; key: string; csr: string; pendingKey: string; ca: string } {
  const root = resolve(dir);
  const key = join(root, `${assertHospitalId(id)}.key.pem`);
  return { cert: join(root, `${id}.crt.pem`), key, csr: join(root, `${id}.csr.pem`), pendingKey: `${key}${PENDING_KEY_SUFFIX}`, ca: join(root, 'ca.crt.pem') };
}

/**
 * First enrolment: generates the agent's RSA key (mode 0600) and a CSR for
 * CN = id (and O = org) in `outDir`. Refuses to replace an existing key.
 */
export function requestEnrolment(options: { id: string; org?: string; outDir: string }): { keyPath: string; csrPath: string } {
  const files = agentFiles(options.outDir, options.id);
  if (existsSync(files.key)) {
    throw new PkiError('ERR_PKI_OUT_EXISTS', `${files.key} already exists; refusing to replace a key (to renew, use 'hie-certs renew')`);
  }
  const keys = generateRsaKeyPair(DEFAULT_LEAF_KEY_BITS);
  const csr = createAgentCsr({ commonName: options.id, ...(options.org !== undefined ? { organization: options.org } : {}) }, keys.privateKey);
  mkdirSync(resolve(options.outDir), { recursive: true, mode: 0o700 });
  writeFileAtomic(files.key, exportPrivateKey(keys.privateKey), 0o600);
  writeFileAtomic(files.csr, csr, 0o644);
  return { keyPath: files.key, csrPath: files.csr };
}

function subjectOf(cert: X509Certificate): { commonName: string; organization?: string } {
  const field = (name: string): string | undefined => new RegExp(`(?:^|\\n)${name}=([^\\n]*)`).exec(cert.subject)?.[1];
  const commonName = field('CN');
  if (!commonName) throw new PkiError('ERR_PKI_CERT_INVALID', 'the current certificate has no CN');
  const organization = field('O');
  return organization === undefined ? { commonName } : { commonName, organization };
}

function readCert(path: string, what: string): X509Certificate {
  try {
    return new X509Certificate(readFileSync(path));
  } catch (err) {
    throw new PkiError('ERR_PKI_CERT_INVALID', `cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'not a PEM certificate'}`, {
      cause: err,
    });
  }
}

/**
 * Renewal request: a CSR with the subject of the current certificate (its
 * CN and O), for the same key or, with `newKey`, for a fresh key written
 * beside the current one as `<id>.key.pem.next` until `installCertificate`.
 */
export function requestRenewal(options: { id: string; dir: string; newKey?: boolean; passphrase?: string }): {
  csrPath: string;
  keyPath: string;
  subject: { commonName: string; organization?: string };
} {
  const files = agentFiles(options.dir, options.id);
  const current = readCert(files.cert, 'the current certificate');
  const subject = subjectOf(current);
  if (subject.commonName !== options.id) {
    throw new PkiError('ERR_PKI_CERT_INVALID', `${files.cert} names '${subject.commonName}', not '${options.id}'`);
  }
  let key;
  let keyPath = files.key;
  if (options.newKey) {
    const keys = generateRsaKeyPair(DEFAULT_LEAF_KEY_BITS);
    writeFileAtomic(files.pendingKey, exportPrivateKey(keys.privateKey), 0o600);
    key = keys.privateKey;
    keyPath = files.pendingKey;
  } else {
    key = parsePrivateKey(readFileSync(files.key, 'utf8'), options.passphrase, `key ${files.key}`);
    if (!current.checkPrivateKey(key)) throw new PkiError('ERR_PKI_CERT_MISMATCH', `key ${files.key} does not match ${files.cert}`);
  }
  writeFileAtomic(files.csr, createAgentCsr(subject, key), 0o644);
  return { csrPath: files.csr, keyPath, subject };
}

/**
 * Installs a certificate the CA signed: it must name this agent, be issued by
 * a CA in `<dir>/ca.crt.pem`, and match the pending key (from `renew
 * --new-key`) or the current key. The previous certificate and key are kept
 * as `<file>.<UTC stamp>.bak`; then the key (when new) and the certificate
 * are replaced atomically, which a running agent or relay picks up.
 */
export function installCertificate(options: { id: string; dir: string; certPem: string; passphrase?: string; now?: Date }): {
  certPath: string;
  keyPath: string;
  serial: string;
  notAfter: string;
  newKey: boolean;
  backups: string[];
} {
  const files = agentFiles(options.dir, options.id);
  const now = options.now ?? new Date();
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(options.certPem);
  } catch (err) {
    throw new PkiError('ERR_PKI_CERT_INVALID', 'the new certificate is not a PEM certificate', { cause: err });
  }
  const named = hospitalIdFromCertificate(cert);
  if (named !== options.id) throw new PkiError('ERR_PKI_CERT_INVALID', `the new certificate names '${named}', not '${options.id}'`);
  let caPem: string;
  try {
    caPem = readFileSync(files.ca, 'utf8');
  } catch (err) {
    throw new PkiError('ERR_PKI_CERT_INVALID', `cannot read ${files.ca}: copy the ca.crt.pem the operator sent into ${resolve(options.dir)}`, { cause: err });
  }
  const cas = splitPemCertificates(caPem).map((p) => new X509Certificate(p));
  if (!cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) {
    throw new PkiError('ERR_PKI_CERT_INVALID', `the new certificate was not issued by the CA in ${files.ca}`);
  }
  const pending = existsSync(files.pendingKey);
  const keyPem = readFileSync(pending ? files.pendingKey : files.key, 'utf8');
  const key = pending ? createPrivateKey(keyPem) : parsePrivateKey(keyPem, options.passphrase, `key ${files.key}`);
  if (!cert.checkPrivateKey(key)) {
    throw new PkiError(
      'ERR_PKI_CERT_MISMATCH',
      `the new certificate does not match ${pending ? `the pending key ${files.pendingKey}` : `the key ${files.key}`}; nothing was changed`,
    );
  }
  // A first install replaces nothing; a renewal keeps the certificate and key it replaces.
  const backups = existsSync(files.cert) ? [files.cert, files.key].map((f) => backupFile(f, now)).filter((b): b is string => b !== undefined) : [];
  if (pending) {
    writeFileAtomic(files.key, keyPem, 0o600);
    unlinkSync(files.pendingKey);
  }
  writeFileAtomic(files.cert, options.certPem, 0o644);
  return {
    certPath: files.cert,
    keyPath: files.key,
    serial: normalizeSerial(cert.serialNumber),
    notAfter: new Date(cert.validTo).toISOString(),
    newKey: pending,
    backups,
  };
}
