/**
 * Comparing a millisecond instant with X.509 times, which carry whole seconds.
 *
 * RFC 5280 encodes notBefore, notAfter and a CRL entry's revocationDate as
 * UTCTime/GeneralizedTime without fractional seconds (5.1.2.6: "MUST NOT
 * include fractional seconds"), so the CA's clock is truncated: a certificate
 * revoked at 21:56:20.380 is listed as revoked at 21:56:20. Our own
 * timestamps (ledger entries and heads, key bundles) keep milliseconds.
 * Comparing the two directly refused a head signed at 21:56:20.127, before
 * the revocation, on every peer and for good. The rules, in one place:
 *
 * - **Revocation, for a signature made at `t`**: the CRL says only that the
 *   revocation happened at some instant of the listed second `R`. A signature
 *   of a later second (`t >= R + 1 s`) is refused; one of an earlier second,
 *   or of `R` itself, counts as made before the revocation. Within `R` the
 *   CRL cannot order the two events, and we choose to accept rather than
 *   refuse: refusing breaks an honest feed permanently on every peer, while
 *   accepting admits at most the rest of one second after the revocation, and
 *   a signer holding a compromised key chooses its own `t` anyway (what bounds
 *   backdating is witnessed checkpoints, not this comparison). When the exact
 *   revocation instant is known locally (the CA records it, in milliseconds,
 *   in its index) and lies in the listed second, it decides exactly:
 *   `t < exact` counts, `t >= exact` does not. An exact time outside the
 *   listed second contradicts the signed CRL and is ignored.
 * - **Revocation, now**: a certificate listed by the CRL in force is revoked
 *   for any present use once its listed second has begun; the CRL exists, so
 *   the revocation has happened (see {@link revokedForUseAt}).
 * - **Validity**: notBefore and notAfter are inclusive (RFC 5280 4.1.2.5) and
 *   name whole seconds, so `t` is within validity from the first millisecond
 *   of the notBefore second through the last millisecond of the notAfter
 *   second.
 */

/** Resolution of every X.509 time (certificate validity, CRL dates), in ms. */
export const X509_TIME_RESOLUTION_MS = 1000;

/** Start of the second `ms` falls in (epoch ms). */
export function x509Second(ms: number): number {
  return Math.floor(ms / X509_TIME_RESOLUTION_MS) * X509_TIME_RESOLUTION_MS;
}

/** The last epoch ms of the second an X.509 time names. */
export function lastMsOfSecond(time: Date | number): number {
  return x509Second(typeof time === 'number' ? time : time.getTime()) + X509_TIME_RESOLUTION_MS - 1;
}

/**
 * The last epoch ms at which a signature still counts as made before a
 * revocation listed at `revokedAt` (a CRL time); `exact`, the instant the CA
 * recorded, decides within the listed second when it falls in it.
 */
export function lastMsBeforeRevocation(revokedAt: Date, exact?: Date): number {
  const listed = x509Second(revokedAt.getTime());
  if (exact !== undefined && x509Second(exact.getTime()) === listed) return exact.getTime() - 1;
  return listed + X509_TIME_RESOLUTION_MS - 1;
}

/** True when a signature made at `t` (epoch ms) falls after the revocation listed at `revokedAt`. */
export function signedAfterRevocation(t: number, revokedAt: Date, exact?: Date): boolean {
  return t > lastMsBeforeRevocation(revokedAt, exact);
}

/** True when a listed revocation applies to a present use at `t` (its listed second has begun). */
export function revokedForUseAt(t: number, revokedAt: Date): boolean {
  return t >= x509Second(revokedAt.getTime());
}

/** True when `t` (epoch ms) lies within a certificate's validity, both ends inclusive at second resolution. */
export function withinCertificateValidity(t: number, notBefore: Date, notAfter: Date): boolean {
  return t >= x509Second(notBefore.getTime()) && t <= lastMsOfSecond(notAfter);
}
