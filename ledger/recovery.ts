import { EventEmitter } from 'node:events';
import { decodeMessage, DEFAULT_MAX_MESSAGE_BYTES, encodeMessage, MAX_RANGE_ENTRIES, type ReplicationMessage } from './codec.ts';
import { LedgerError } from './errors.ts';
import type { Ledger } from './ledger.ts';
import type { ReplicationTransport } from './transport.ts';

/**
 * Getting an author's own feed back from its peers at start-up, before it
 * appends anything (docs/recovery.md). An agent whose disk lost the tail of
 * its feed (or the whole database, keys kept) would otherwise write a new
 * entry at a position its peers already hold: equivocation. The ledger is
 * opened with `recover: true` (appends wait); this asks every peer, over the
 * replication transport, for our feed beyond our local head (`want` messages,
 * answered by their Replicator as for any feed), and hands every range to
 * Ledger#ingest, which verifies it as it verifies any feed (our key's
 * signatures, the hash chain from our head, the CA-bound key bundles, the
 * author-signed checkpoint that comes with the range, and the root of our
 * newest surviving own checkpoint) and stores the exact bytes. Once every
 * peer says it holds nothing more (or the timeout passed with `minPeers`
 * answers), Ledger#endRecovery lets appends go on.
 */

/** How long a round waits for the peers' answers before asking again (or, with minPeers 0, carrying on), in ms. */
export const DEFAULT_RECOVERY_TIMEOUT_MS = 30_000;
/** Peers that must have answered before appends resume when some stay silent (0: carry on after the timeout regardless). */
export const DEFAULT_RECOVERY_MIN_PEERS = 1;

/** Options of {@link FeedRecovery}. */
export interface RecoveryOptions {
  /** Peers (agent ids) to ask. */
  peers: string[];
  timeoutMs?: number;
  minPeers?: number;
  maxMessageBytes?: number;
  /** Entries asked for per request (the peer's message budget may cut a range shorter). */
  rangeEntries?: number;
  /**
   * A checkpoint policy (the witness policy, where one is configured): when
   * set, a restored feed counts only once its tree ends at a stored
   * author-signed checkpoint this accepts; otherwise appends stay held.
   */
  accept?: (note: string, size: number) => boolean;
}

/** A peer whose answer did not verify: it is not asked again during this recovery. */
export interface RefusedPeer {
  peer: string;
  code: string;
  reason: string;
}

/** `complete`: every peer (or enough of them) answered; `carried-on`: minPeers 0 and the timeout passed; `failed`: our own feed has evidence or a key that is not ours; `stopped`: closed first. */
export type RecoveryState = 'recovering' | 'complete' | 'carried-on' | 'failed' | 'stopped';

/** What a recovery did. */
export interface RecoveryOutcome {
  state: RecoveryState;
  /** Seq of our own head when it started (-1: no feed at all). */
  from: number;
  /** Seq of our own head now. */
  head: number;
  /** Entries taken from peers. */
  restored: number;
  rounds: number;
  /** Peers that answered. */
  answered: string[];
  /** Peers that answered nothing in the last round. */
  silent: string[];
  refused: RefusedPeer[];
  /** Why it failed (state `failed`). */
  reason?: string;
}

/**
 * Events: `restored` ({peer, from, count}), `refused` (RefusedPeer), `no-head` ({peer, from}), `timeout` ({round, answered,
 * silent, head, target, carryingOn}: a round ended without enough answers, or short of `target`), `done` (RecoveryOutcome).
 */
export class FeedRecovery extends EventEmitter {
  private readonly peers: Set<string>;
  private readonly asks = new Map<string, number>();
  /** Peers that said they hold nothing of our feed beyond what we hold. */
  private readonly done = new Set<string>();
  /** Peers that hold more, waiting while another peer's chain of ranges is read. */
  private readonly waiting = new Set<string>();
  /** The peer whose ranges we are reading one after the other. */
  private chainPeer: string | undefined;
  private readonly answered = new Set<string>();
  private readonly refused = new Map<string, RefusedPeer>();
  private readonly o: { timeoutMs: number; minPeers: number; maxMessageBytes: number; rangeEntries: number };
  private readonly feed: string;
  private readonly from: number;
  private state: RecoveryState = 'recovering';
  private restored = 0;
  private rounds = 0;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private chain: Promise<void> = Promise.resolve();
  private finished: Promise<RecoveryOutcome> | undefined;
  private resolve: ((o: RecoveryOutcome) => void) | undefined;
  private reason: string | undefined;

  constructor(
    private readonly ledger: Ledger,
    private readonly transport: ReplicationTransport,
    private readonly options: RecoveryOptions,
  ) {
    super();
    if (!ledger.feed) throw new TypeError('recovery needs a ledger opened with an author');
    if (!Array.isArray(options?.peers)) throw new TypeError('options.peers must be an array of agent ids');
    this.feed = ledger.feed;
    this.peers = new Set(options.peers.filter((p) => p !== ledger.feed));
    this.o = {
      timeoutMs: options.timeoutMs ?? DEFAULT_RECOVERY_TIMEOUT_MS,
      minPeers: options.minPeers ?? DEFAULT_RECOVERY_MIN_PEERS,
      maxMessageBytes: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      rangeEntries: Math.min(options.rangeEntries ?? MAX_RANGE_ENTRIES, MAX_RANGE_ENTRIES),
    };
    for (const [k, v] of Object.entries(this.o)) if (!Number.isInteger(v) || v < 0) throw new TypeError(`options.${k} must be a non-negative integer`);
    if (this.o.timeoutMs < 1 || this.o.rangeEntries < 1) throw new TypeError('options.timeoutMs and options.rangeEntries must be at least 1');
    this.from = this.head();
  }

  /** Runs the recovery (once); resolves when appends may go on (or it failed or was stopped). */
  run(): Promise<RecoveryOutcome> {
    this.finished ??= new Promise<RecoveryOutcome>((resolve) => {
      this.resolve = resolve;
      if (!this.ledger.isRecovering) {
        this.state = 'complete';
        resolve(this.outcome());
        return;
      }
      this.unsubscribe = this.transport.onMessage((peer, message) => this.receive(peer, message));
      this.round();
    });
    return this.finished;
  }

  /** Asks again every peer that has not answered yet (the agent calls it when the relay link comes up). */
  kick(): void {
    if (this.state !== 'recovering' || !this.unsubscribe) return;
    for (const peer of this.peers) if (!this.done.has(peer) && !this.refused.has(peer) && !this.waiting.has(peer)) this.ask(peer);
    this.arm();
  }

  /** Gives up waiting (the agent is closing); appends stay held. */
  stop(): void {
    if (this.state === 'recovering') this.finish('stopped');
  }

  /** Where the recovery stands. */
  status(): RecoveryOutcome {
    return this.outcome();
  }

  private head(): number {
    return this.ledger.head(this.feed)?.seq ?? -1;
  }

  private outcome(): RecoveryOutcome {
    return {
      state: this.state,
      from: this.from,
      head: this.head(),
      restored: this.restored,
      rounds: this.rounds,
      answered: [...this.answered].sort(),
      silent: [...this.peers].filter((p) => !this.done.has(p) && !this.refused.has(p)).sort(),
      refused: [...this.refused.values()],
      ...(this.reason === undefined ? {} : { reason: this.reason }),
    };
  }

  private round(): void {
    this.rounds += 1;
    this.done.clear();
    this.waiting.clear();
    this.chainPeer = undefined;
    for (const peer of this.peers) if (!this.refused.has(peer)) this.ask(peer);
    this.arm();
    this.enqueue(() => this.settle());
  }

  /** (Re)starts the round's deadline: progress (a stored range, a reconnect) earns a full timeout. */
  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.enqueue(() => this.onDeadline()), this.o.timeoutMs);
    this.timer.unref();
  }

  private ask(peer: string): void {
    const from = this.head() + 1;
    this.asks.set(peer, from);
    const msg: ReplicationMessage = { t: 'want', feed: this.feed, from, max: this.o.rangeEntries };
    try {
      void Promise.resolve(this.transport.send(peer, encodeMessage(msg, this.o.maxMessageBytes))).catch(() => undefined);
    } catch {
      // Not connected: kick() asks again once the link is up, the deadline otherwise.
    }
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((err: unknown) => {
      this.emit('error', err);
    });
  }

  private receive(peer: string, raw: string | Uint8Array): void {
    if (this.state !== 'recovering' || !this.peers.has(peer) || this.refused.has(peer)) return;
    let msg: ReplicationMessage;
    try {
      msg = decodeMessage(raw, this.o.maxMessageBytes);
    } catch {
      return; // Garbage is the Replicator's to judge; it hears the same message.
    }
    if (msg.t === 'heads') {
      // A peer that gossips is up: one that has not answered yet (it was offline) is asked now, not at the next round.
      if (!this.done.has(peer) && !this.waiting.has(peer) && this.chainPeer !== peer) this.ask(peer);
      return;
    }
    if (msg.t !== 'range' && msg.t !== 'none') return; // wants and witness gossip are the Replicator's and the Witness's
    if (msg.feed !== this.feed) return;
    // Only an answer to our last question counts; a late one is ignored.
    if (this.asks.get(peer) !== msg.from) return;
    this.asks.delete(peer);
    this.answered.add(peer);
    const answer = msg;
    this.enqueue(() => (answer.t === 'range' ? this.onRange(peer, answer) : this.onNone(peer, answer)));
  }

  private async onNone(peer: string, msg: Extract<ReplicationMessage, { t: 'none' }>): Promise<void> {
    if (this.state !== 'recovering') return;
    // It holds nothing beyond msg.from - 1, and we hold at least that much by now (so it need not be asked again).
    if (msg.reason === 'no-head') this.emit('no-head', { peer, from: msg.from });
    if (this.chainPeer === peer) this.chainPeer = undefined;
    this.done.add(peer);
    await this.settle();
  }

  private async onRange(peer: string, msg: Extract<ReplicationMessage, { t: 'range' }>): Promise<void> {
    if (this.state !== 'recovering') return;
    if (msg.from !== this.head() + 1 || (this.chainPeer !== undefined && this.chainPeer !== peer)) {
      // Another peer's range came first: this one is asked again once that peer's chain ends.
      this.waiting.add(peer);
      return;
    }
    try {
      const r = await this.ledger.ingest(
        this.feed,
        msg.entries.map((e) => Buffer.from(e, 'base64')),
        msg.head,
        peer,
        msg.checkpoint,
      );
      this.restored += r.stored;
      this.emit('restored', { peer, from: msg.from, count: r.stored });
    } catch (err) {
      const code = err instanceof LedgerError ? err.code : 'ERR_LEDGER_MESSAGE_INVALID';
      if (code === 'ERR_LEDGER_EQUIVOCATION' || code === 'ERR_LEDGER_FEED_STOPPED') {
        // Validly signed by our own key yet not extending our copy: our feed forked (e.g. an old backup appended to). Evidence is stored.
        this.reason = (err as Error).message;
        this.finish('failed');
        return;
      }
      const refused: RefusedPeer = { peer, code, reason: (err as Error).message };
      this.refused.set(peer, refused);
      if (this.chainPeer === peer) this.chainPeer = undefined;
      this.emit('refused', refused);
      await this.settle();
      return;
    }
    this.chainPeer = peer;
    this.arm();
    this.ask(peer);
  }

  private live(): string[] {
    return [...this.peers].filter((p) => !this.refused.has(p));
  }

  /** Ends the recovery once every live peer said it holds nothing beyond our head (and the targets are met). */
  private async settle(): Promise<void> {
    if (this.state !== 'recovering') return;
    if (this.chainPeer === undefined) {
      for (const p of this.waiting) this.ask(p);
      this.waiting.clear();
    }
    const live = this.live();
    if (!live.every((p) => this.done.has(p))) return;
    if (this.done.size < Math.min(this.o.minPeers, this.peers.size) || !(await this.targetMet())) return;
    await this.end('complete');
  }

  private async onDeadline(): Promise<void> {
    if (this.state !== 'recovering') return;
    const enough = this.done.size >= Math.min(this.o.minPeers, this.peers.size);
    // A peer that sent a range (and went quiet mid-way, or waits its turn) holds more than we do: never end without it.
    const target = (await this.targetMet()) && this.chainPeer === undefined && this.waiting.size === 0;
    // Enough peers said they hold nothing more: the silent ones are named in the outcome.
    if (target && enough && this.done.size > 0) return this.end('complete');
    const carryingOn = target && this.o.minPeers === 0;
    this.emit('timeout', {
      round: this.rounds,
      answered: [...this.done].sort(),
      silent: this.outcome().silent,
      head: this.head(),
      target: this.target(),
      carryingOn,
    });
    if (carryingOn) return this.end('carried-on');
    this.round();
  }

  private target(): number {
    return this.ledger.recoveryTarget;
  }

  private async targetMet(): Promise<boolean> {
    const size = this.head() + 1;
    if (size < this.target()) return false;
    if (!this.options.accept || size === 0) return true;
    const note = await this.ledger.checkpointNote(this.feed, size);
    return note !== undefined && this.options.accept(note, size);
  }

  private async end(state: 'complete' | 'carried-on'): Promise<void> {
    if (this.state !== 'recovering') return;
    try {
      await this.ledger.endRecovery();
      this.finish(state);
    } catch (err) {
      this.reason = (err as Error).message;
      this.finish('failed');
    }
  }

  private finish(state: RecoveryState): void {
    if (this.state !== 'recovering') return;
    this.state = state;
    if (this.timer) clearTimeout(this.timer);
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const outcome = this.outcome();
    this.emit('done', outcome);
    this.resolve?.(outcome);
  }
}
