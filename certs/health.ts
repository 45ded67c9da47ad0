// One job: how close an identity's certificates and CRL are to lapsing, as numbers for metrics and a verdict for /healthz.
import { X509Certificate } from 'node:crypto';
import type { ParsedCrl } from './crl.ts';
import { splitPemCertificates, type Identity } from './identity.ts';

/** /healthz turns `degraded` when the own or the CA certificate expires within this many days. */
export const DEFAULT_CERT_WARN_DAYS = 14;
/** /healthz turns `degraded` when less than this fraction of the CRL's validity (nextUpdate - thisUpdate) is left. */
export const DEFAULT_CRL_WARN_FRACTION = 0.25;

const DAY_MS = 86_400_000;

/** Thresholds of {@link certificateHealth}. */
export interface HealthThresholds {
  certWarnDays?: number;
  crlWarnFraction?: number;
}

/** What {@link certificateHealth} found. */
export interface CertificateHealth {
  status: 'ok' | 'degraded';
  /** Why it is degraded, one short sentence each (no patient data: certificate serials and dates only). */
  reasons: string[];
  /** Seconds until the own certificate's notAfter (negative once expired). */
  certExpiresInSeconds: number;
  /** Seconds until the notAfter of the CA that issued the own certificate. */
  caExpiresInSeconds: number;
  /** Seconds since the CRL's thisUpdate, when a CRL is in force. */
  crlAgeSeconds?: number;
  /** Seconds until the CRL's nextUpdate, when it names one. */
  crlNextUpdateInSeconds?: number;
}

/** The CA of the bundle that issued the identity's certificate (the first one when none matches). */
/** The issuing CA found for an own certificate and the CA bundle it was found in (health is read often: `/healthz`, metrics). */
const issuers = new WeakMap<X509Certificate, { caPem: string; ca: X509Certificate | undefined }>();

function issuingCa(identity: Identity): X509Certificate | undefined {
  const known = issuers.get(identity.certificate);
  if (known && known.caPem === identity.caPem) return known.ca;
  const cas = splitPemCertificates(identity.caPem).map((p) => new X509Certificate(p));
  const ca = cas.find((c) => identity.certificate.checkIssued(c)) ?? cas[0];
  issuers.set(identity.certificate, { caPem: identity.caPem, ca });
  return ca;
}

/**
 * Expiry of the own certificate, its CA and the CRL at `now`, and `degraded`
 * with reasons when any of them lapses within the thresholds
 * ({@link DEFAULT_CERT_WARN_DAYS}, {@link DEFAULT_CRL_WARN_FRACTION}).
 */
export function certificateHealth(identity: Identity, crl: ParsedCrl | undefined, now: Date = new Date(), t: HealthThresholds = {}): CertificateHealth {
  const warnMs = (t.certWarnDays ?? DEFAULT_CERT_WARN_DAYS) * DAY_MS;
  const fraction = t.crlWarnFraction ?? DEFAULT_CRL_WARN_FRACTION;
  const reasons: string[] = [];
  const certEnd = Date.parse(identity.certificate.validTo);
  const ca = issuingCa(identity);
  const caEnd = ca ? Date.parse(ca.validTo) : Number.NaN;
  const days = (ms: number): string => `${Math.floor(ms / DAY_MS)} days`;
  if (certEnd - now.getTime() <= warnMs) {
    reasons.push(`certificate ${identity.serial} expires ${new Date(certEnd).toISOString()} (in ${days(certEnd - now.getTime())}); renew it`);
  }
  if (caEnd - now.getTime() <= warnMs) reasons.push(`CA certificate expires ${new Date(caEnd).toISOString()}; roll the CA over`);
  const health: CertificateHealth = {
    status: 'ok',
    reasons,
    certExpiresInSeconds: Math.round((certEnd - now.getTime()) / 1000),
    caExpiresInSeconds: Math.round((caEnd - now.getTime()) / 1000),
  };
  if (crl) {
    health.crlAgeSeconds = Math.round((now.getTime() - crl.thisUpdate.getTime()) / 1000);
    if (crl.nextUpdate) {
      const left = crl.nextUpdate.getTime() - now.getTime();
      health.crlNextUpdateInSeconds = Math.round(left / 1000);
      const span = crl.nextUpdate.getTime() - crl.thisUpdate.getTime();
      if (left <= span * fraction) {
        reasons.push(`CRL ${crl.crlNumber ?? ''} is due for renewal at ${crl.nextUpdate.toISOString()}; publish a fresh CRL`.replace('CRL  is', 'CRL is'));
      }
    }
  }
  health.status = reasons.length > 0 ? 'degraded' : 'ok';
  return health;
}
