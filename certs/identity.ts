import { X509Certificate, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import type { PeerCertificate, SecureContextOptions, TLSSocket } from 'node:tls';
import { parseCrl, type ParsedCrl } from './crl.ts';
import { PkiError } from './errors.ts';
import { parsePrivateKey } from './keys.ts';
import { AGENT_URI_PREFIX, isHospitalId } from './names.ts';
import { normalizeSerial } from './x509.ts';

/**
 * TLS policy for every listener and client: TLS 1.2 minimum, forward-secret
 * AEAD suites only (TLS 1.3 suites, then ECDHE-RSA with AES-GCM or ChaCha20).
 */
export const TLS_MIN_VERSION = 'TLSv1.2' as const;
/** OpenSSL cipher list used with {@link TLS_MIN_VERSION}. */
export const TLS_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

/** Where an identity's files live. */
export interface IdentityPaths {
  cert: string;
  key: string;
  ca: string;
  crl?: string | undefined;
  /** Passphrase for an encrypted key. */
  passphrase?: string | undefined;
}

/** A loaded and checked identity: own certificate and key, the federation CA, the current CRL. */
export interface Identity {
  certPem: string;
  keyPem: string;
  caPem: string;
  crlPem?: string | undefined;
  certificate: X509Certificate;
  privateKey: KeyObject;
  /** Lowercase hex serial of the own certificate. */
  serial: string;
  /** Hospital id when this is an agent certificate. */
  hospitalId?: string | undefined;
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new PkiError('ERR_PKI_CERT_INVALID', `cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
}

function parseCert(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new PkiError('ERR_PKI_CERT_INVALID', `${what} is not a PEM certificate`, { cause: err });
  }
}

/**
 * Loads cert, key, CA and optional CRL, and checks that they belong
 * together: the certificate is signed by the CA, the key matches it, and it
 * is within its validity and not on the CRL.
 */
export function loadIdentity(paths: IdentityPaths, now: Date = new Date()): Identity {
  const certPem = readPem(paths.cert, 'certificate');
  const caPem = readPem(paths.ca, 'CA certificate');
  let keyPem: string;
  try {
    keyPem = readFileSync(paths.key, 'utf8');
  } catch (err) {
    throw new PkiError('ERR_PKI_KEY_UNREADABLE', `cannot read key ${paths.key}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
  }
  const certificate = parseCert(certPem, paths.cert);
  // A CA bundle (old and new root during a rollover) is accepted: the certificate must be issued by one of them.
  const cas = splitPemCertificates(caPem).map((pem) => parseCert(pem, paths.ca));
  if (cas.length === 0) throw new PkiError('ERR_PKI_CERT_INVALID', `${paths.ca} holds no PEM certificate`);
  const privateKey = parsePrivateKey(keyPem, paths.passphrase, `key ${paths.key}`);
  if (!cas.some((ca) => certificate.checkIssued(ca) && certificate.verify(ca.publicKey))) {
    throw new PkiError('ERR_PKI_CERT_INVALID', `${paths.cert} was not issued by the CA in ${paths.ca}`);
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new PkiError('ERR_PKI_CERT_MISMATCH', `key ${paths.key} does not match certificate ${paths.cert}`);
  }
  if (new Date(certificate.validTo).getTime() <= now.getTime()) {
    throw new PkiError('ERR_PKI_CERT_INVALID', `certificate ${paths.cert} expired on ${new Date(certificate.validTo).toISOString()}`);
  }
  const serial = normalizeSerial(certificate.serialNumber);
  let crlPem: string | undefined;
  if (paths.crl) {
    crlPem = readPem(paths.crl, 'CRL');
    const crl = parseCrl(crlPem, caPem);
    if (crl.revoked.has(serial)) {
      throw new PkiError('ERR_PKI_CERT_INVALID', `certificate ${paths.cert} (serial ${serial}) is revoked by ${paths.crl}`);
    }
  }
  const hospitalId = agentIdOf(certificate);
  return { certPem, keyPem, caPem, crlPem, certificate, privateKey, serial, hospitalId };
}

/** The PEM certificates of a bundle, in order. */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

/** Node TLS options for a server that requires and verifies client certificates (mTLS), CRL included. */
export function serverTlsOptions(identity: Identity): SecureContextOptions & { requestCert: true; rejectUnauthorized: true } {
  return {
    ...secureContextOptions(identity),
    requestCert: true,
    rejectUnauthorized: true,
  };
}

/** Node TLS options for a client presenting its certificate and verifying the server against the CA and CRL. */
export function clientTlsOptions(identity: Identity): SecureContextOptions & { rejectUnauthorized: true } {
  return { ...secureContextOptions(identity), rejectUnauthorized: true };
}

/** The secure-context part shared by servers and clients; pass to `setSecureContext` after a CRL reload. */
export function secureContextOptions(identity: Identity, crlPem: string | undefined = identity.crlPem): SecureContextOptions {
  return {
    cert: identity.certPem,
    key: identity.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    ca: identity.caPem,
    ...(crlPem ? { crl: crlPem } : {}),
    minVersion: TLS_MIN_VERSION,
    ciphers: TLS_CIPHERS,
    honorCipherOrder: true,
  };
}

function agentIdOf(cert: X509Certificate): string | undefined {
  const uris = (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  const agentUris = uris.filter((u) => u.startsWith(AGENT_URI_PREFIX));
  if (agentUris.length !== 1) return undefined;
  const id = (agentUris[0] as string).slice(AGENT_URI_PREFIX.length);
  if (!isHospitalId(id)) return undefined;
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
  return cn === id ? id : undefined;
}

/**
 * The hospital id named by an agent certificate: its SAN URI
 * `urn:hie:agent:<id>` must be the only agent URI and agree with the CN.
 * Throws ERR_PKI_PEER_NOT_AGENT otherwise.
 */
export function hospitalIdFromCertificate(cert: X509Certificate | PeerCertificate | string): string {
  const x509 = typeof cert === 'string' ? parseCert(cert, 'certificate') : cert instanceof X509Certificate ? cert : new X509Certificate(cert.raw);
  const id = agentIdOf(x509);
  if (!id) throw new PkiError('ERR_PKI_PEER_NOT_AGENT', 'certificate does not name a hospital agent (SAN urn:hie:agent:<id> matching CN)');
  return id;
}

/**
 * The hospital id of the peer of a TLS socket, from its verified certificate
 * only. Throws ERR_PKI_PEER_UNAUTHORIZED when the handshake did not verify it.
 */
export function peerHospitalId(socket: TLSSocket): { id: string; serial: string; notAfter: Date } {
  if (!socket.authorized) {
    throw new PkiError('ERR_PKI_PEER_UNAUTHORIZED', `peer certificate not verified: ${String(socket.authorizationError ?? 'no certificate')}`);
  }
  const peer = socket.getPeerCertificate();
  if (!peer || !peer.raw) throw new PkiError('ERR_PKI_PEER_UNAUTHORIZED', 'peer sent no certificate');
  const x509 = new X509Certificate(peer.raw);
  return { id: hospitalIdFromCertificate(x509), serial: normalizeSerial(x509.serialNumber), notAfter: new Date(x509.validTo) };
}

/** Events of {@link CrlWatcher}. */
export interface CrlWatcherEvents {
  change: [crl: ParsedCrl];
  rejected: [error: PkiError];
}

/**
 * Watches a CRL file and emits `change` with the parsed, signature-checked
 * CRL whenever its content changes (poll or explicit `reload()`, e.g. on
 * SIGHUP). A CRL that fails to parse or verify emits `rejected` and the
 * previous one stays in force.
 */
export class CrlWatcher extends EventEmitter<CrlWatcherEvents> {
  readonly path: string;
  private readonly caPem: string;
  private readonly intervalMs: number;
  private currentCrl: ParsedCrl;
  private watching = false;
  private readonly onStat = (curr: Stats, prev: Stats): void => {
    if (curr.mtimeMs !== prev.mtimeMs || curr.size !== prev.size || curr.ino !== prev.ino) this.reload();
  };

  /** Loads the CRL now; throws when the initial file is missing or invalid. */
  constructor(path: string, caPem: string, options: { intervalMs?: number } = {}) {
    super();
    this.path = path;
    this.caPem = caPem;
    this.intervalMs = options.intervalMs ?? 2000;
    this.currentCrl = parseCrl(readPem(path, 'CRL'), caPem);
  }

  /** The CRL in force. */
  get current(): ParsedCrl {
    return this.currentCrl;
  }

  /** True when `serial` (any hex form) is revoked by the CRL in force. */
  isRevoked(serial: string): boolean {
    return this.currentCrl.revoked.has(normalizeSerial(serial));
  }

  /** Starts polling the file. */
  start(): this {
    if (!this.watching) {
      watchFile(this.path, { interval: this.intervalMs, persistent: false }, this.onStat);
      this.watching = true;
    }
    return this;
  }

  /** Stops polling. */
  stop(): void {
    if (this.watching) unwatchFile(this.path, this.onStat);
    this.watching = false;
  }

  /** Re-reads the file; returns true when a different valid CRL was loaded. */
  reload(): boolean {
    let next: ParsedCrl;
    try {
      next = parseCrl(readFileSync(this.path, 'utf8'), this.caPem);
    } catch (err) {
      const e = err instanceof PkiError ? err : new PkiError('ERR_PKI_CRL_INVALID', `cannot read CRL ${this.path}: ${(err as Error).message}`, { cause: err });
      this.emit('rejected', e);
      return false;
    }
    if (next.pem === this.currentCrl.pem) return false;
    if (next.crlNumber !== undefined && this.currentCrl.crlNumber !== undefined && next.crlNumber < this.currentCrl.crlNumber) {
      this.emit(
        'rejected',
        new PkiError('ERR_PKI_CRL_INVALID', `CRL number ${next.crlNumber} is older than the one in force (${this.currentCrl.crlNumber}); ignored`),
      );
      return false;
    }
    this.currentCrl = next;
    this.emit('change', next);
    return true;
  }
}
