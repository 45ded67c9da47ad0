/**
 * Dispatches the small messages other agents send through the relay to the
 * part that handles each: receipts to the sender side of the engine,
 * receipt requests to the receiver, records requests and their answers to
 * the request service, key bundles to the peer directory, and ledger
 * replication to the replicator. A handler's failure is logged and dropped:
 * a peer's message must never stop the agent.
 */
import type { RelayMessage } from '../../relay/protocol/index.ts';
import type { PrescriptionService } from '../prescriptions/index.ts';
import type { RequestService } from '../services/requests.ts';
import type { ExchangeEngine } from './engine.ts';
import type { EngineLogger } from './options.ts';
import type { PeerDirectory } from './peers.ts';
import type { Receiver } from './receiver.ts';
import { decodeWire, MAX_WIRE_JSON_BYTES, WIRE_JSON, type WireMessage } from './wire.ts';

/**
 * A family of agent messages kept in its own module (claims, prescriptions):
 * the `t` values it owns and its handler, which validates what it is given
 * (a peer's JSON, parsed but unchecked) and must not throw synchronously.
 */
export interface WireModule {
  kinds: readonly string[];
  handle(from: string, message: unknown): Promise<unknown>;
}

/** Who handles what. */
export interface DispatchTargets {
  engine: Pick<ExchangeEngine, 'onReceipt' | 'onReceiptNone'>;
  receiver: Pick<Receiver, 'onReceiptGet'>;
  requests: Pick<RequestService, 'onRequest' | 'onStatus'>;
  peers: Pick<PeerDirectory, 'onMessage'>;
  /** E-prescription Task calls (this agent as prescriber) and their replies (as pharmacy). */
  prescriptions?: Pick<PrescriptionService, 'onCall' | 'onReply'>;
  /** Ledger replication messages. */
  ledger: (from: string, message: string) => void;
  logger: EngineLogger & { debug?(obj: object, msg?: string): void };
  /** Message families of their own modules, by `t`. */
  modules?: readonly WireModule[];
}

/** See the module comment. */
export class MessageDispatcher {
  private readonly modules = new Map<string, WireModule>();

  constructor(private readonly to: DispatchTargets) {
    for (const m of to.modules ?? []) for (const k of m.kinds) this.modules.set(k, m);
  }

  /** Handles one message from the relay; never throws. */
  dispatch(m: RelayMessage): void {
    if (this.modules.size > 0 && m.body[0] === WIRE_JSON && m.body.length - 1 <= MAX_WIRE_JSON_BYTES) {
      const owned = this.owned(m.body);
      if (owned) return this.handled(m.from, owned.t, owned.module.handle(m.from, owned.value));
    }
    const decoded = decodeWire(m.body);
    if (decoded.kind === 'ledger') this.to.ledger(m.from, decoded.message);
    else if (decoded.kind === 'json') this.json(m.from, decoded.message);
    else this.to.logger.warn({ from: m.from, problem: decoded.problem }, 'dropped a malformed agent message');
  }

  private json(from: string, msg: WireMessage): void {
    const { engine, receiver, requests, peers } = this.to;
    switch (msg.t) {
      case 'receipt':
        return this.handled(from, msg.t, engine.onReceipt(from, msg.receipt));
      case 'receipts':
        for (const receipt of msg.receipts) this.handled(from, msg.t, engine.onReceipt(from, receipt));
        return;
      case 'receipt.get':
        return this.handled(from, msg.t, receiver.onReceiptGet(from, msg.id));
      case 'receipt.none':
        return engine.onReceiptNone(from, msg.id);
      case 'records.request':
        return this.handled(from, msg.t, requests.onRequest(from, msg));
      case 'request.status':
        return this.handled(from, msg.t, requests.onStatus(from, msg));
      case 'rx.call':
        return this.handled(from, msg.t, this.to.prescriptions?.onCall(from, msg) ?? Promise.resolve());
      case 'rx.reply':
        return this.handled(from, msg.t, this.to.prescriptions?.onReply(from, msg) ?? Promise.resolve());
      default:
        return this.handled(from, msg.t, peers.onMessage(from, msg));
    }
  }

  /** The module that owns a JSON message's `t`, with the parsed message; undefined for the core kinds (and garbage, which decodeWire reports). */
  private owned(body: Uint8Array): { t: string; module: WireModule; value: unknown } | undefined {
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(body.buffer, body.byteOffset + 1, body.length - 1).toString('utf8'));
    } catch {
      return undefined;
    }
    const t = (value as { t?: unknown } | null)?.t;
    const module = typeof t === 'string' ? this.modules.get(t) : undefined;
    return module && typeof t === 'string' ? { t, module, value } : undefined;
  }

  /**
   * A peer's message that fails in its handler (a bug, a store error, an input
   * no check foresaw) is logged and dropped: it must not become an unhandled
   * rejection, which would stop the agent.
   */
  private handled(from: string, t: string, work: Promise<unknown>): void {
    work.catch((err: Error) =>
      this.to.logger.error({ from, message: t, err: { name: err?.name, message: err?.message } }, 'an agent message could not be handled'),
    );
  }
}
