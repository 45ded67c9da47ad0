// One job: whether this agent's own certificate is revoked, said once in the log and in health, and the relay left alone meanwhile.
import type { Logger } from 'pino';
import type { ParsedCrl } from '../../certs/index.ts';

/**
 * A revoked agent reconnects to the relay at most this often (instead of the
 * usual backoff of up to 30 s): the relay refuses it anyway, and once an hour
 * is soon enough to notice a new certificate or a CRL that lifted a hold.
 */
export const REVOKED_RETRY_MS = 3_600_000;

/** The health `reason` of a revoked agent. */
export const REVOKED_REASON = 'certificate revoked';

/** What the standing needs of the relay link. */
export interface HoldOff {
  holdOff(ms: number): void;
}

/**
 * This agent's own standing in the federation: revoked once the CRL in force
 * lists its certificate's serial, or the relay closed or refused it for a
 * revoked certificate. While revoked: one error log line (on the change, not
 * per attempt), `/healthz` answers 503 with reason {@link REVOKED_REASON},
 * and the relay link waits {@link REVOKED_RETRY_MS} between attempts.
 */
export class SelfStanding {
  private byCrl = false;
  private byRelay = false;
  private said = false;

  constructor(
    private readonly serial: () => string,
    private readonly relay: HoldOff,
    private readonly log: Logger,
    private readonly gauge: { set(v: number): void },
    private readonly retryMs: number = REVOKED_RETRY_MS,
  ) {}

  /** True while this agent's certificate is known to be revoked. */
  get revoked(): boolean {
    return this.byCrl || this.byRelay;
  }

  /** A CRL took effect. */
  onCrl(crl: ParsedCrl | undefined): void {
    this.byCrl = crl?.revoked.has(this.serial()) ?? false;
    this.update('crl');
  }

  /** The relay closed the connection or refused the upgrade: revoked when it said the certificate is. */
  onRelayRefusal(revoked: boolean): void {
    if (!revoked) return;
    this.byRelay = true;
    this.update('relay');
  }

  /** The relay greeted this agent: it is not refusing it (a new certificate, or a lifted hold). */
  onRelayReady(): void {
    this.byRelay = false;
    this.update('relay');
  }

  private update(source: 'crl' | 'relay'): void {
    const revoked = this.revoked;
    this.gauge.set(revoked ? 1 : 0);
    if (revoked && !this.said) {
      this.said = true;
      this.log.error(
        { serial: this.serial(), source, retryMs: this.retryMs },
        `this agent's certificate is revoked: the relay refuses it and peers refuse its exchanges; ask the federation operator for a new certificate (retrying the relay once every ${Math.round(this.retryMs / 60_000)} min)`,
      );
      this.relay.holdOff(this.retryMs);
    } else if (!revoked && this.said) {
      this.said = false;
      this.log.info({ serial: this.serial() }, "this agent's certificate is no longer revoked; normal reconnects resume");
      this.relay.holdOff(0);
    }
  }
}
