import { verify as edVerify, type KeyObject } from 'node:crypto';
import { lastMsBeforeRevocation, lastMsOfSecond, verifyKeyBundle, type ParsedCrl } from '../certs/index.ts';
import { LedgerError } from './errors.ts';
import { endorsementMessage } from './heads.ts';
import { GENESIS_PREV, type Entry } from './schema.ts';

/** What verification trusts: the federation CA and, optionally, its CRL. */
export interface Trust {
  caPem: string;
  crl?: ParsedCrl | undefined;
  /**
   * Exact revocation instants known locally (serial to time), e.g. the CA's
   * `revocationTimes()`: they decide signatures made within a revocation's
   * listed CRL second, which the CRL alone cannot order (certs `validity.ts`).
   */
  revocationTimes?: ReadonlyMap<string, Date> | undefined;
}

/** One signing key of a feed, in force from `fromSeq` until the next rotation. */
export interface KeyEra {
  fromSeq: number;
  kid: string;
  key: KeyObject;
  /** Serial of the certificate that bound the key. */
  certSerial: string;
  /**
   * Last epoch ms at which the key may sign: the earliest of the bundle's
   * expiry (milliseconds, exact), the last ms of the certificate's notAfter
   * second, and the last ms before its revocation at the CRL's one-second
   * resolution (certs `validity.ts` says why a signature in the revocation's
   * own second counts).
   */
  notAfter: number;
}

/**
 * Checks a genesis or key.rotated entry and returns the key it brings into
 * force: the bundle must verify against the CA (and CRL) at the entry's time
 * and name the feed; a rotation must be endorsed by the key it replaces.
 */
export async function keyEraFromEntry(entry: Entry, current: KeyEra | undefined, trust: Trust): Promise<KeyEra> {
  if (entry.type === 'genesis') {
    if (entry.seq !== 0 || entry.prev !== GENESIS_PREV)
      throw new LedgerError('ERR_LEDGER_CHAIN_BROKEN', `genesis of ${entry.feed} is not at seq 0 with the fixed prev`);
  } else if (entry.type !== 'key.rotated') {
    throw new TypeError(`entry type ${entry.type} carries no key`);
  }
  const body = entry.body as { bundle: unknown; endorsement?: string };
  let verified;
  try {
    verified = await verifyKeyBundle(body.bundle, {
      caPem: trust.caPem,
      crl: trust.crl,
      signedAt: new Date(entry.ts),
      revocationTimes: trust.revocationTimes,
    });
  } catch (err) {
    throw new LedgerError('ERR_LEDGER_KEY_BUNDLE', `key bundle at ${entry.feed}:${entry.seq} refused: ${(err as Error).message}`, { cause: err });
  }
  if (verified.agent !== entry.feed) {
    throw new LedgerError('ERR_LEDGER_KEY_BUNDLE', `key bundle at ${entry.feed}:${entry.seq} belongs to '${verified.agent}'`);
  }
  if (entry.type === 'key.rotated') {
    if (!current) throw new LedgerError('ERR_LEDGER_UNKNOWN_KEY', `key.rotated at ${entry.feed}:${entry.seq} has no key before it`);
    const ok = edVerify(null, endorsementMessage(entry.feed, verified.bundle.sig), current.key, Buffer.from(body.endorsement ?? '', 'base64url'));
    if (!ok) throw new LedgerError('ERR_LEDGER_BAD_SIGNATURE', `key.rotated at ${entry.feed}:${entry.seq} is not endorsed by the key it replaces`);
  }
  const revocation = trust.crl?.revoked.get(verified.certSerial);
  const lastBeforeRevocation = revocation
    ? lastMsBeforeRevocation(revocation.revokedAt, trust.revocationTimes?.get(verified.certSerial))
    : Number.POSITIVE_INFINITY;
  return {
    fromSeq: entry.seq,
    kid: verified.signingKid,
    key: verified.signingKey,
    certSerial: verified.certSerial,
    notAfter: Math.min(verified.expires.getTime(), lastMsOfSecond(verified.certNotAfter), lastBeforeRevocation),
  };
}

/** The keys of one feed over its history. */
export class KeyHistory {
  readonly eras: KeyEra[] = [];

  /** Adds the era a genesis/key.rotated entry brought into force (in seq order). */
  push(era: KeyEra): void {
    const last = this.eras.at(-1);
    if (last && era.fromSeq <= last.fromSeq) throw new TypeError('key eras must be added in seq order');
    this.eras.push(era);
  }

  /** The key in force at `seq`, if any. */
  at(seq: number): KeyEra | undefined {
    for (let i = this.eras.length - 1; i >= 0; i--) {
      const era = this.eras[i] as KeyEra;
      if (era.fromSeq <= seq) return era;
    }
    return undefined;
  }

  /** The most recent key. */
  current(): KeyEra | undefined {
    return this.eras.at(-1);
  }

  /** The era whose key id is `kid`. */
  byKid(kid: string): KeyEra | undefined {
    return this.eras.find((e) => e.kid === kid);
  }
}
