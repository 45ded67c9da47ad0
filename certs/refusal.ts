// One job: say why a TLS peer's certificate is refused, in words an operator can act on.
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { hospitalIdFromCertificate } from './identity.ts';
import { normalizeSerial } from './x509.ts';

/** Why a client certificate was refused (the `reason` label of the refusal metrics). */
export type CertificateRefusal =
  'no-certificate' | 'revoked' | 'expired' | 'not-yet-valid' | 'unknown-ca' | 'wrong-usage' | 'not-agent' | 'crl-expired' | 'crl-missing' | 'invalid';

/** Every refusal reason, for tests and metric initialisation. */
export const CERTIFICATE_REFUSALS: readonly CertificateRefusal[] = [
  'no-certificate',
  'revoked',
  'expired',
  'not-yet-valid',
  'unknown-ca',
  'wrong-usage',
  'not-agent',
  'crl-expired',
  'crl-missing',
  'invalid',
];

/** OpenSSL verification codes (as Node reports them in `authorizationError`) by refusal reason. */
const OPENSSL_CODES: Record<string, CertificateRefusal> = {
  CERT_REVOKED: 'revoked',
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not-yet-valid',
  UNABLE_TO_GET_ISSUER_CERT: 'unknown-ca',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unknown-ca',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unknown-ca',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'unknown-ca',
  SELF_SIGNED_CERT_IN_CHAIN: 'unknown-ca',
  CERT_SIGNATURE_FAILURE: 'unknown-ca',
  CERT_UNTRUSTED: 'unknown-ca',
  INVALID_PURPOSE: 'wrong-usage',
  CERT_REJECTED: 'wrong-usage',
  CRL_HAS_EXPIRED: 'crl-expired',
  CRL_NOT_YET_VALID: 'crl-expired',
  // No CRL of the certificate's issuer is loaded (e.g. a certificate of a new CA during a rollover).
  UNABLE_TO_GET_CRL: 'crl-missing',
};

/** HTTP status answered for each refusal: 401 when the client did not authenticate, 403 when it did but may not connect. */
export function refusalStatus(reason: CertificateRefusal): 401 | 403 {
  return reason === 'no-certificate' || reason === 'unknown-ca' || reason === 'invalid' ? 401 : 403;
}

/** What a peer presented: the claimed hospital id (unverified unless the handshake verified it) and serial. */
export interface PresentedCertificate {
  id?: string;
  subject?: string;
  serial?: string;
  notAfter?: string;
}

/** The certificate a TLS peer presented, described for a log line (nothing when it sent none). */
export function presentedCertificate(socket: TLSSocket): PresentedCertificate {
  const peer = socket.getPeerCertificate();
  if (!peer || !peer.raw) return {};
  try {
    const x509 = new X509Certificate(peer.raw);
    let id: string | undefined;
    try {
      id = hospitalIdFromCertificate(x509);
    } catch {
      id = undefined;
    }
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(x509.subject)?.[1];
    return {
      ...(id !== undefined ? { id } : {}),
      ...(cn !== undefined ? { subject: `CN=${cn.slice(0, 64)}` } : {}),
      serial: normalizeSerial(x509.serialNumber),
      notAfter: new Date(x509.validTo).toISOString(),
    };
  } catch {
    return {};
  }
}

/** The refusal reason for a TLS peer Node did not authorize (from `authorizationError`). */
export function tlsRefusal(socket: TLSSocket): CertificateRefusal {
  const peer = socket.getPeerCertificate();
  if (!peer || !peer.raw) return 'no-certificate';
  // Node reports the OpenSSL code as a string (typed as an Error); accept both.
  const e = socket.authorizationError as unknown;
  const code = typeof e === 'string' ? e : String((e as { code?: unknown } | null)?.code ?? '');
  return OPENSSL_CODES[code] ?? OPENSSL_CODES[code.replace(/^ERR_/, '')] ?? 'invalid';
}
