import { createPublicKey, X509Certificate, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type forge from 'node-forge';
import { buildCrl, type CrlReason } from './crl.ts';
import { PkiError } from './errors.ts';
import { assertOrganization, parseAgentCsr } from './csr.ts';
import { backupFile, writeFileAtomic } from './fsutil.ts';
import { DEFAULT_CA_KEY_BITS, DEFAULT_LEAF_KEY_BITS, exportPrivateKey, generateRsaKeyPair, parsePrivateKey } from './keys.ts';
import { assertHospitalId, classifyHost } from './names.ts';
import { lastMsOfSecond } from './validity.ts';
import { buildCertificate, fingerprint256, normalizeSerial, parseForgeCertificate, type CertKind } from './x509.ts';

/** Default lifetime of the federation CA, in days. */
export const DEFAULT_CA_DAYS = 3650;
/** Default lifetime of relay and agent certificates, in days. */
export const DEFAULT_LEAF_DAYS = 397;
/** Default CRL lifetime (nextUpdate - thisUpdate), in days. Publish a fresh CRL before it runs out. */
export const DEFAULT_CRL_DAYS = 30;
/** Default CA subject common name. */
export const DEFAULT_CA_NAME = 'HIE Federation Root CA';
/** Default subject common name of the member-directory signing certificate. */
export const DEFAULT_DIRECTORY_NAME = 'HIE Federation Directory';
/** Backdating applied to notBefore so that small clock skew between hosts does not reject a new certificate. */
export const NOT_BEFORE_SKEW_MS = 5 * 60 * 1000;

const INDEX_VERSION = 1;
const DAY_MS = 24 * 60 * 60 * 1000;
const MAX_DAYS = 36500;

/** File names inside a PKI directory. */
export const PKI_FILES = {
  caCert: 'ca.crt.pem',
  caKey: 'ca.key.pem',
  index: 'index.json',
  crl: 'crl.pem',
  issued: 'issued',
  lock: '.lock',
} as const;

/** One certificate recorded in the PKI index. */
export interface IndexEntry {
  serial: string;
  kind: CertKind;
  subject: string;
  id?: string;
  hosts?: string[];
  notBefore: string;
  notAfter: string;
  fingerprint256: string;
  issuedAt: string;
  revokedAt?: string;
  reason?: CrlReason;
}

interface IndexFile {
  version: number;
  crlNumber: number;
  certificates: IndexEntry[];
}

/** Status of an issued certificate at a given time. */
export type CertStatus = 'valid' | 'revoked' | 'expired';

/** A row of `list`. */
export interface ListedCertificate extends IndexEntry {
  status: CertStatus;
}

/** Files written for an issued certificate. */
export interface IssuedFiles {
  serial: string;
  certPath: string;
  keyPath: string;
  caPath: string;
  notAfter: string;
  /** Backups of the previous certificate and key that a renewal replaced. */
  backups?: string[];
}

/** What `signCsr` wrote: the certificate and the CA certificate, never a key. */
export interface SignedFiles {
  serial: string;
  id: string;
  subject: string;
  certPath: string;
  caPath: string;
  notAfter: string;
}

/** Options shared by the operations that sign with the CA key. */
export interface SigningOptions {
  /** Passphrase of the CA key, when it is encrypted. */
  passphrase?: string;
  /** Clock, for tests. */
  now?: Date;
}

function checkDays(days: number, what: string): number {
  if (!Number.isInteger(days) || days < 1 || days > MAX_DAYS) {
    throw new PkiError('ERR_PKI_INVALID_ARGUMENT', `${what} must be a whole number of days between 1 and ${MAX_DAYS}, got ${days}`);
  }
  return days;
}

function statusOf(entry: IndexEntry, now: Date): CertStatus {
  if (entry.revokedAt) return 'revoked';
  return now.getTime() > lastMsOfSecond(new Date(entry.notAfter)) ? 'expired' : 'valid';
}

/**
 * The federation CA on disk: `ca.crt.pem`, `ca.key.pem` (0600, optionally
 * passphrase-encrypted PKCS#8), `index.json` (what was issued and revoked),
 * `crl.pem` and a copy of every issued certificate under `issued/`.
 * Mutating operations take a lock file and commit by rewriting the index last.
 */
export class CertificateAuthority {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Creates a new CA in `dir`; refuses when a CA is already there. */
  static init(dir: string, options: { name?: string; days?: number; passphrase?: string; now?: Date; keyBits?: number } = {}): CertificateAuthority {
    const root = resolve(dir);
    const days = checkDays(options.days ?? DEFAULT_CA_DAYS, '--days');
    const name = options.name ?? DEFAULT_CA_NAME;
    if (name.trim().length === 0 || name.length > 64) {
      throw new PkiError('ERR_PKI_INVALID_ARGUMENT', '--name must be 1-64 characters');
    }
    if (options.passphrase !== undefined && options.passphrase.length < 8) {
      throw new PkiError('ERR_PKI_INVALID_ARGUMENT', 'CA passphrase must be at least 8 characters');
    }
    if (existsSync(join(root, PKI_FILES.caCert)) || existsSync(join(root, PKI_FILES.caKey))) {
      throw new PkiError('ERR_PKI_CA_EXISTS', `a CA already exists in ${root}; refusing to overwrite it`);
    }
    mkdirSync(root, { recursive: true, mode: 0o700 });
    chmodSync(root, 0o700);
    const ca = new CertificateAuthority(root);
    return ca.withLock(() => {
      const now = options.now ?? new Date();
      const keys = generateRsaKeyPair(options.keyBits ?? DEFAULT_CA_KEY_BITS);
      const { pem } = buildCertificate({
        kind: 'ca',
        subject: { commonName: name },
        publicKey: keys.publicKey,
        signingKey: keys.privateKey,
        notBefore: new Date(now.getTime() - NOT_BEFORE_SKEW_MS),
        notAfter: new Date(now.getTime() + days * DAY_MS),
      });
      mkdirSync(join(root, PKI_FILES.issued), { recursive: true, mode: 0o700 });
      writeFileAtomic(join(root, PKI_FILES.caKey), exportPrivateKey(keys.privateKey, options.passphrase), 0o600);
      writeFileAtomic(join(root, PKI_FILES.caCert), pem, 0o600);
      const index: IndexFile = { version: INDEX_VERSION, crlNumber: 0, certificates: [] };
      ca.publishCrl(index, keys.privateKey, now, DEFAULT_CRL_DAYS);
      ca.writeIndex(index);
      return ca;
    });
  }

  /** Opens an existing CA directory; throws ERR_PKI_NO_CA when there is none. */
  static open(dir: string): CertificateAuthority {
    const root = resolve(dir);
    for (const f of [PKI_FILES.caCert, PKI_FILES.caKey, PKI_FILES.index]) {
      if (!existsSync(join(root, f))) {
        throw new PkiError('ERR_PKI_NO_CA', `no CA in ${root} (missing ${f}); run 'hie-certs init --dir ${dir}' first`);
      }
    }
    return new CertificateAuthority(root);
  }

  /** Path of the CA certificate. */
  get caCertPath(): string {
    return join(this.dir, PKI_FILES.caCert);
  }

  /** Path of the current CRL. */
  get crlPath(): string {
    return join(this.dir, PKI_FILES.crl);
  }

  /** The CA certificate, PEM. */
  caCertPem(): string {
    try {
      return readFileSync(this.caCertPath, 'utf8');
    } catch (err) {
      throw new PkiError('ERR_PKI_NO_CA', `cannot read the CA certificate ${this.caCertPath}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, {
        cause: err,
      });
    }
  }

  /** The CA certificate parsed both ways; throws ERR_PKI_CERT_INVALID when the file is not a certificate. */
  private caCertificate(): { pem: string; x509: X509Certificate; forge: forge.pki.Certificate } {
    const pem = this.caCertPem();
    const what = `the CA certificate ${this.caCertPath}`;
    const parsed = parseForgeCertificate(pem, what);
    try {
      return { pem, x509: new X509Certificate(pem), forge: parsed };
    } catch (err) {
      throw new PkiError('ERR_PKI_CERT_INVALID', `${what} is not a PEM certificate`, { cause: err });
    }
  }

  /** Issues a relay certificate (server auth, a SAN per host) into `outDir`. */
  issueRelay(options: SigningOptions & { hosts: string[]; outDir: string; days?: number; name?: string; force?: boolean }): IssuedFiles {
    if (options.hosts.length === 0) throw new PkiError('ERR_PKI_INVALID_HOST', 'at least one --host is required');
    const hosts = options.hosts.map((h) => classifyHost(h).value);
    const days = checkDays(options.days ?? DEFAULT_LEAF_DAYS, '--days');
    return this.withLock(() => {
      const index = this.readIndex();
      const caKey = this.loadCaKey(options.passphrase);
      const out = resolve(options.outDir);
      const files = { cert: join(out, 'relay.crt.pem'), key: join(out, 'relay.key.pem'), ca: join(out, 'ca.crt.pem') };
      if (!options.force) this.refuseExisting([files.cert, files.key]);
      return this.issue(index, caKey, {
        kind: 'relay',
        subject: { commonName: options.name ?? hosts[0] ?? 'relay' },
        hosts,
        days,
        now: options.now ?? new Date(),
        files,
      });
    });
  }

  /**
   * Issues an agent certificate (client and server auth, CN = id, SAN URI
   * urn:hie:agent:<id>). A second live certificate for an id needs `renew`.
   */
  issueAgent(options: SigningOptions & { id: string; outDir: string; org?: string; days?: number; renew?: boolean; notBefore?: Date }): IssuedFiles {
    const id = assertHospitalId(options.id);
    const days = checkDays(options.days ?? DEFAULT_LEAF_DAYS, '--days');
    if (options.org !== undefined) assertOrganization(options.org);
    return this.withLock(() => {
      const index = this.readIndex();
      const now = options.now ?? new Date();
      const live = index.certificates.filter((c) => c.kind === 'agent' && c.id === id && statusOf(c, now) === 'valid');
      if (live.length > 0 && !options.renew) {
        throw new PkiError(
          'ERR_PKI_DUPLICATE_ID',
          `hospital '${id}' already has a live certificate (serial ${live[0]?.serial}); use --renew to issue another, or revoke it first`,
        );
      }
      const caKey = this.loadCaKey(options.passphrase);
      const out = resolve(options.outDir);
      const files = { cert: join(out, `${id}.crt.pem`), key: join(out, `${id}.key.pem`), ca: join(out, 'ca.crt.pem') };
      if (!options.renew) this.refuseExisting([files.cert, files.key]);
      // A renewal keeps the organisation of the live certificate unless --org names a new one.
      const org = options.org ?? (options.renew ? this.liveOrganization(live) : undefined);
      const subject = org === undefined ? { commonName: id } : { commonName: id, organization: org };
      const backups = options.renew ? [files.cert, files.key].map((f) => backupFile(f, now)).filter((b): b is string => b !== undefined) : [];
      const issued = this.issue(index, caKey, { kind: 'agent', subject, id, days, now, files, ...(options.notBefore ? { notBefore: options.notBefore } : {}) });
      return backups.length > 0 ? { ...issued, backups } : issued;
    });
  }

  /**
   * Signs an agent's PKCS#10 request (enrolment without the CA ever holding
   * the hospital's key): checks the request's self-signature and identity
   * rules (see `parseAgentCsr`), then issues a certificate with the same
   * profile as `issueAgent` for the key in the request. Writes the
   * certificate to `out` (default: next to the CSR, `<id>.crt.pem`) and the CA
   * certificate beside it. A second live certificate for an id needs `renew`;
   * a renewal keeps the live certificate's organisation and refuses a CSR that
   * names another one.
   */
  signCsr(options: SigningOptions & { csrPem: string; csrPath?: string; out?: string; days?: number; renew?: boolean; force?: boolean }): SignedFiles {
    const csr = parseAgentCsr(options.csrPem);
    const days = checkDays(options.days ?? DEFAULT_LEAF_DAYS, '--days');
    return this.withLock(() => {
      const index = this.readIndex();
      const now = options.now ?? new Date();
      const live = index.certificates.filter((c) => c.kind === 'agent' && c.id === csr.id && statusOf(c, now) === 'valid');
      if (live.length > 0 && !options.renew) {
        throw new PkiError(
          'ERR_PKI_DUPLICATE_ID',
          `hospital '${csr.id}' already has a live certificate (serial ${live[0]?.serial}); sign with --renew to issue another, or revoke it first`,
        );
      }
      let org = csr.organization;
      if (options.renew && live.length > 0) {
        const previous = this.liveOrganization(live);
        if (org !== undefined && previous !== undefined && org !== previous) {
          throw new PkiError(
            'ERR_PKI_CSR_INVALID',
            `the renewal request names O=${org} but the live certificate of '${csr.id}' names O=${previous}; a renewal keeps the subject`,
          );
        }
        org ??= previous;
      }
      const certPath = resolve(
        options.out ??
          (options.csrPath
            ? join(dirname(resolve(options.csrPath)), `${basename(options.csrPath).replace(/\.csr(\.pem)?$/, '')}.crt.pem`)
            : `${csr.id}.crt.pem`),
      );
      const caPath = join(dirname(certPath), PKI_FILES.caCert);
      if (!options.renew && !options.force) this.refuseExisting([certPath]);
      const caKey = this.loadCaKey(options.passphrase);
      const subject = org === undefined ? { commonName: csr.id } : { commonName: csr.id, organization: org };
      const issued = this.issue(index, caKey, {
        kind: 'agent',
        subject,
        id: csr.id,
        days,
        now,
        publicKey: csr.publicKey,
        files: { cert: certPath, ca: caPath },
      });
      return { serial: issued.serial, id: csr.id, subject: subjectString(subject), certPath, caPath, notAfter: issued.notAfter };
    });
  }

  /** The organisation of the newest of `live` (from the CA's copy of it), if it names one. */
  private liveOrganization(live: IndexEntry[]): string | undefined {
    const newest = [...live].sort((a, b) => a.issuedAt.localeCompare(b.issuedAt)).at(-1);
    if (!newest) return undefined;
    try {
      const cert = new X509Certificate(readFileSync(join(this.dir, PKI_FILES.issued, `${newest.serial}.crt.pem`)));
      return /(?:^|\n)O=([^\n]*)/.exec(cert.subject)?.[1];
    } catch {
      return /(?:^|, )O=(.*?)(?:, CN=|$)/.exec(newest.subject)?.[1];
    }
  }

  /**
   * Issues the member-directory signing certificate (the directory EKU of x509.ts only, CN
   * `name`) into `outDir` as `directory.crt.pem` / `directory.key.pem`. A second one needs `force`
   * (e.g. after the first was revoked); agents accept a directory signed by any live one.
   */
  issueDirectory(options: SigningOptions & { outDir: string; days?: number; name?: string; force?: boolean }): IssuedFiles {
    const days = checkDays(options.days ?? DEFAULT_LEAF_DAYS, '--days');
    const name = options.name ?? DEFAULT_DIRECTORY_NAME;
    if (name.trim().length === 0 || name.length > 64) throw new PkiError('ERR_PKI_INVALID_ARGUMENT', '--name must be 1-64 characters');
    return this.withLock(() => {
      const index = this.readIndex();
      const caKey = this.loadCaKey(options.passphrase);
      const out = resolve(options.outDir);
      const files = { cert: join(out, 'directory.crt.pem'), key: join(out, 'directory.key.pem'), ca: join(out, 'ca.crt.pem') };
      if (!options.force) this.refuseExisting([files.cert, files.key]);
      return this.issue(index, caKey, { kind: 'directory', subject: { commonName: name }, days, now: options.now ?? new Date(), files });
    });
  }

  /** Revokes certificates by hospital id (all live ones) or by serial, and republishes the CRL. */
  revoke(options: SigningOptions & ({ id: string } | { serial: string }) & { reason?: CrlReason; crlDays?: number }): IndexEntry[] {
    return this.withLock(() => {
      const index = this.readIndex();
      const now = options.now ?? new Date();
      let targets: IndexEntry[];
      if ('id' in options) {
        const id = assertHospitalId(options.id);
        targets = index.certificates.filter((c) => c.kind === 'agent' && c.id === id && !c.revokedAt);
        if (targets.length === 0) throw new PkiError('ERR_PKI_NOT_FOUND', `no unrevoked certificate for hospital '${id}'`);
      } else {
        if (!/^[0-9a-fA-F:]{1,80}$/.test(options.serial)) {
          throw new PkiError('ERR_PKI_INVALID_ARGUMENT', `--serial must be hexadecimal, got ${JSON.stringify(options.serial.slice(0, 80))}`);
        }
        const serial = normalizeSerial(options.serial);
        const found = index.certificates.find((c) => c.serial === serial);
        if (!found) throw new PkiError('ERR_PKI_NOT_FOUND', `no certificate with serial ${serial} was issued by this CA`);
        if (found.revokedAt) throw new PkiError('ERR_PKI_ALREADY_REVOKED', `certificate ${serial} was already revoked at ${found.revokedAt}`);
        targets = [found];
      }
      const caKey = this.loadCaKey(options.passphrase);
      for (const t of targets) {
        t.revokedAt = now.toISOString();
        t.reason = options.reason ?? 'unspecified';
      }
      index.crlNumber += 1;
      this.publishCrl(index, caKey, now, checkDays(options.crlDays ?? DEFAULT_CRL_DAYS, '--crl-days'));
      this.writeIndex(index);
      return targets;
    });
  }

  /** Signs a fresh CRL; writes it to `crl.pem` and to `out` when given. Returns the PEM. */
  crl(options: SigningOptions & { days?: number; out?: string } = {}): string {
    const days = checkDays(options.days ?? DEFAULT_CRL_DAYS, '--days');
    return this.withLock(() => {
      const index = this.readIndex();
      const caKey = this.loadCaKey(options.passphrase);
      index.crlNumber += 1;
      const pem = this.publishCrl(index, caKey, options.now ?? new Date(), days);
      this.writeIndex(index);
      if (options.out) writeFileAtomic(resolve(options.out), pem, 0o644);
      return pem;
    });
  }

  /** Every certificate the CA issued, with its status at `now`. */
  list(now: Date = new Date()): ListedCertificate[] {
    return this.readIndex().certificates.map((c) => ({ ...c, status: statusOf(c, now) }));
  }

  /**
   * The instant of each revocation as this CA recorded it, in milliseconds
   * (serial to time). The CRL lists whole seconds only; a verifier that has
   * this CA's index at hand passes these to decide the revocation's second
   * exactly (`revocationTimes` of a key bundle check or a ledger's trust).
   */
  revocationTimes(): Map<string, Date> {
    const times = new Map<string, Date>();
    for (const c of this.readIndex().certificates) if (c.revokedAt) times.set(c.serial, new Date(c.revokedAt));
    return times;
  }

  private issue(
    index: IndexFile,
    caKey: KeyObject,
    spec: {
      kind: 'relay' | 'agent' | 'directory';
      subject: { commonName: string; organization?: string };
      id?: string;
      hosts?: string[];
      days: number;
      now: Date;
      notBefore?: Date;
      /** The subject's public key (from a CSR); when absent a key pair is generated and the key written to `files.key`. */
      publicKey?: KeyObject;
      files: { cert: string; key?: string; ca: string };
    },
  ): IssuedFiles {
    const ca = this.caCertificate();
    const issuer: forge.pki.Certificate = ca.forge;
    const keys = spec.publicKey ? { publicKey: spec.publicKey, privateKey: undefined } : generateRsaKeyPair(DEFAULT_LEAF_KEY_BITS);
    if (!keys.privateKey !== !spec.files.key) throw new TypeError('issue() writes a key file exactly when it generates the key');
    const notBefore = spec.notBefore ?? new Date(spec.now.getTime() - NOT_BEFORE_SKEW_MS);
    const notAfter = new Date((spec.notBefore ?? spec.now).getTime() + spec.days * DAY_MS);
    const caNotAfter = ca.x509.validTo;
    if (notAfter.getTime() > new Date(caNotAfter).getTime()) {
      throw new PkiError(
        'ERR_PKI_INVALID_ARGUMENT',
        `certificate would outlive the CA (CA expires ${new Date(caNotAfter).toISOString()}); use a smaller --days`,
      );
    }
    const { pem, serial } = buildCertificate({
      kind: spec.kind,
      subject: spec.subject,
      publicKey: keys.publicKey,
      signingKey: caKey,
      issuer,
      notBefore,
      notAfter,
      ...(spec.hosts ? { hosts: spec.hosts } : {}),
      ...(spec.id ? { hospitalId: spec.id } : {}),
    });
    mkdirSync(resolve(spec.files.cert, '..'), { recursive: true, mode: 0o755 });
    if (keys.privateKey && spec.files.key) writeFileAtomic(spec.files.key, exportPrivateKey(keys.privateKey), 0o600);
    writeFileAtomic(spec.files.cert, pem, 0o644);
    writeFileAtomic(spec.files.ca, ca.pem, 0o644);
    writeFileAtomic(join(this.dir, PKI_FILES.issued, `${serial}.crt.pem`), pem, 0o600);
    const subject = subjectString(spec.subject);
    const entry: IndexEntry = {
      serial,
      kind: spec.kind,
      subject,
      ...(spec.id ? { id: spec.id } : {}),
      ...(spec.hosts ? { hosts: spec.hosts } : {}),
      notBefore: notBefore.toISOString(),
      notAfter: notAfter.toISOString(),
      fingerprint256: fingerprint256(pem),
      issuedAt: spec.now.toISOString(),
    };
    index.certificates.push(entry);
    this.writeIndex(index);
    return { serial, certPath: spec.files.cert, keyPath: spec.files.key ?? '', caPath: spec.files.ca, notAfter: entry.notAfter };
  }

  private publishCrl(index: IndexFile, caKey: KeyObject, now: Date, days: number): string {
    const issuer = this.caCertificate().forge;
    const revoked = index.certificates
      .filter((c) => c.revokedAt)
      .map((c) => ({ serial: c.serial, revokedAt: new Date(c.revokedAt as string), ...(c.reason ? { reason: c.reason } : {}) }));
    const pem = buildCrl({
      issuer,
      signingKey: caKey,
      crlNumber: index.crlNumber,
      thisUpdate: new Date(now.getTime() - NOT_BEFORE_SKEW_MS),
      nextUpdate: new Date(now.getTime() + days * DAY_MS),
      revoked,
    });
    writeFileAtomic(this.crlPath, pem, 0o600);
    return pem;
  }

  private loadCaKey(passphrase: string | undefined): KeyObject {
    let pem: string;
    try {
      pem = readFileSync(join(this.dir, PKI_FILES.caKey), 'utf8');
    } catch (err) {
      throw new PkiError('ERR_PKI_KEY_UNREADABLE', `cannot read the CA key in ${this.dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
    }
    const key = parsePrivateKey(pem, passphrase, 'the CA key');
    const fromKey = createPublicKey(key).export({ type: 'spki', format: 'der' });
    const fromCert = this.caCertificate().x509.publicKey.export({ type: 'spki', format: 'der' });
    if (!fromKey.equals(fromCert)) {
      throw new PkiError('ERR_PKI_KEY_UNREADABLE', 'the CA key does not match the CA certificate');
    }
    return key;
  }

  private refuseExisting(paths: string[]): void {
    for (const p of paths) {
      if (existsSync(p)) throw new PkiError('ERR_PKI_OUT_EXISTS', `${p} already exists; refusing to overwrite it`);
    }
  }

  private readIndex(): IndexFile {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(join(this.dir, PKI_FILES.index), 'utf8'));
    } catch (err) {
      throw new PkiError('ERR_PKI_INDEX_CORRUPT', `cannot read ${join(this.dir, PKI_FILES.index)}: ${(err as Error).message}`, { cause: err });
    }
    const idx = parsed as Partial<IndexFile>;
    if (!idx || idx.version !== INDEX_VERSION || !Array.isArray(idx.certificates) || typeof idx.crlNumber !== 'number') {
      throw new PkiError('ERR_PKI_INDEX_CORRUPT', `${join(this.dir, PKI_FILES.index)} is not a version ${INDEX_VERSION} PKI index`);
    }
    return idx as IndexFile;
  }

  private writeIndex(index: IndexFile): void {
    writeFileAtomic(join(this.dir, PKI_FILES.index), `${JSON.stringify(index, null, 2)}\n`, 0o600);
  }

  private withLock<T>(fn: () => T): T {
    const lock = join(this.dir, PKI_FILES.lock);
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx', mode: 0o600 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number.parseInt(readFileSync(lock, 'utf8'), 10);
      if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) {
        throw new PkiError('ERR_PKI_LOCKED', `another hie-certs process (pid ${holder}) is using ${this.dir}`);
      }
      // The holder died: take over its stale lock.
      writeFileSync(lock, String(process.pid), { mode: 0o600 });
    }
    try {
      return fn();
    } finally {
      try {
        unlinkSync(lock);
      } catch {
        // already gone
      }
    }
  }
}

function subjectString(subject: { commonName: string; organization?: string }): string {
  return [subject.organization ? `O=${subject.organization}` : '', `CN=${subject.commonName}`].filter(Boolean).join(', ');
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
