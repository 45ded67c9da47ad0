/**
 * The release gate: the one place where consent is checked on the way out.
 *
 * An outgoing exchange passes it twice, with the same rule
 * ({@link ConsentService.check}): when the EHR submits it ({@link ReleaseGate.admit},
 * first before a byte of the body is read, then with the scope a FHIR
 * Bundle turned out to need), so a refused request costs nothing and is
 * answered at once; and when the engine sends it ({@link ReleaseGate.release}),
 * the check that counts: a consent revoked or expired since refuses the
 * send, and the release is logged (`exchange.sent`, once) in the same tick
 * as the check, so no release is ever logged after the revocation that
 * should have stopped it.
 */
import type { Consent, Purpose, ReleaseRequest } from '../consent/model.ts';
import { scopeOf } from '../consent/model.ts';
import { AgentError } from '../errors.ts';
import type { ExchangeRecord } from '../store/exchanges.ts';
import { b64, type EngineContext } from './context.ts';
import { NotRetryableError, RevokedAfterReleaseError } from './failure.ts';

/** What the EHR's request needs its consent to cover. */
export interface Admission extends Omit<ReleaseRequest, 'recipient'> {
  consentId: string;
  to: string;
}

/** See the module comment. */
export class ReleaseGate {
  /** Exchanges resumed after a restart whose `exchange.sent` is not recorded in the store: the ledger is asked first. */
  private readonly recovered = new Set<string>();

  constructor(private readonly ctx: EngineContext) {}

  /**
   * Refuses a submission its consent does not cover (throws the ERR_CONSENT_* AgentError); `scope` undefined checks all but the scope.
   * Returns the consent that covers it.
   */
  async admit(x: Admission): Promise<Consent> {
    return this.ctx.ports.consents.check(x.consentId, { patientHash: x.patientHash, recipient: x.to, purpose: x.purpose, scope: x.scope, at: x.at });
  }

  /** Marks an exchange resumed after a restart whose `exchange.sent` may be in the ledger without the store knowing. */
  recover(id: string): void {
    this.recovered.add(id);
  }

  /**
   * Re-checks consent at send time and logs the release (exchange.sent) once;
   * returns the new entry's hash. The check and the append are issued in one
   * tick ({@link ConsentService.checkThen}): a revocation lands wholly before
   * (refused here) or after (its entry follows this release's).
   */
  async release(record: ExchangeRecord): Promise<string | undefined> {
    const { consents, ledger } = this.ctx.ports;
    // Looked up, not yet taken off the recovered list: a consent refused below still leaves the failure to find it.
    const logged = await this.loggedSent(record, { keep: true });
    let checked: { result: Promise<{ hash: string }> | undefined };
    try {
      checked = await consents.checkThen(
        record.consentId,
        {
          patientHash: record.patientHash,
          recipient: record.to,
          purpose: record.purpose as Purpose,
          scope: record.scope ?? scopeOf(record.contentType),
          at: this.ctx.now(),
          exchange: record.id,
        },
        () =>
          logged
            ? undefined
            : ledger.append({
                type: 'exchange.sent',
                body: {
                  exchange: record.id,
                  to: record.to,
                  consent: record.consentId,
                  patient: record.patientHash,
                  purpose: record.purpose as Purpose,
                  contentType: record.contentType.split(';')[0]?.trim().toLowerCase() ?? 'application/octet-stream',
                  bytes: record.bytes,
                  hash: b64(record.contentSha256),
                },
              }),
      );
    } catch (err) {
      if (err instanceof AgentError) {
        // Released before (a resend after a lost receipt or a restart): the recipient may have it already.
        if (logged) throw new RevokedAfterReleaseError(err.code, err.message);
        throw new NotRetryableError('consent', err.code, err.message);
      }
      throw err;
    }
    this.recovered.delete(record.id);
    if (checked.result) return (await checked.result).hash;
    // Logged before: by the store (nothing new to record) or only by the ledger (recovered after a restart).
    return record.ledger?.sent ? undefined : logged;
  }

  /** The hash of this exchange's `exchange.sent` when the ledger has one the store does not know of (a restart came between them). */
  async loggedSent(record: ExchangeRecord, options: { keep?: boolean } = {}): Promise<string | undefined> {
    if (record.ledger?.sent || !(options.keep ? this.recovered.has(record.id) : this.recovered.delete(record.id))) return record.ledger?.sent;
    return (await this.ctx.ports.ledger.byExchange(record.id)).find((e) => e.entry.feed === this.ctx.ports.self && e.entry.type === 'exchange.sent')?.hash;
  }
}
