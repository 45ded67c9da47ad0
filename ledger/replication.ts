import { EventEmitter } from 'node:events';
import {
  decodeMessage,
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeMessage,
  MAX_HEADS_PER_MESSAGE,
  MAX_RANGE_ENTRIES,
  MAX_WITNESS_NOTES,
  type ReplicationMessage,
} from './codec.ts';
import { LedgerError } from './errors.ts';
import type { SignedCheckpoint, SignedHead } from './heads.ts';
import type { Ledger } from './ledger.ts';
import type { ReplicationTransport } from './transport.ts';
import { DEFAULT_REPLICATION_MODE, type ReplicationMode } from './sealed.ts';
import type { Witness } from './witness.ts';

/** How often heads are gossiped to every peer, in ms. */
export const DEFAULT_GOSSIP_INTERVAL_MS = 2_000;
/** How often the agent signs a checkpoint, in ms. */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 60_000;
/** Entries asked for per range request. */
export const DEFAULT_RANGE_ENTRIES = 512;
/** A range request unanswered this long is forgotten (and asked again on the next gossip). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** A peer that sent garbage is ignored this long. */
export const DEFAULT_DROP_MS = 300_000;
/** Messages waiting to be processed at most; more are discarded (and the sender dropped). */
export const DEFAULT_MAX_INBOX = 1024;

/** Options of {@link Replicator}. */
export interface ReplicatorOptions {
  /** Peers (agent ids) to gossip with. */
  peers: string[];
  gossipIntervalMs?: number;
  /** 0 disables periodic checkpoints. */
  checkpointIntervalMs?: number;
  rangeEntries?: number;
  maxMessageBytes?: number;
  requestTimeoutMs?: number;
  dropMs?: number;
  maxInbox?: number;
  now?: () => number;
  /** This agent's witness: cosigns peers' checkpoints and gossips cosignatures and evidence (witness.ts). */
  witness?: Witness;
  /**
   * `full`: every feed travels in the clear to every peer, and any peer
   * serves any feed it holds. `private` (docs/replication.md): our own feed
   * goes to each peer with the entries that do not concern it sealed
   * (sealed.ts), a peer's feed is taken only from its author, and another
   * feed is served only to its author (recovery). Default `full` for this
   * class; the agent's `replication.mode` defaults to `private`.
   */
  mode?: ReplicationMode;
}

/** Why a peer was dropped. */
export interface DroppedPeer {
  peer: string;
  reason: string;
  code: string;
  until: number;
}

/** Events: `dropped` (DroppedPeer), `equivocation` ({feed, peer}), `checkpoint-conflict` ({agent, peer}), `stored` ({feed, peer, seq, count}). */
export interface ReplicatorStatus {
  peers: string[];
  dropped: DroppedPeer[];
  pending: Array<{ feed: string; peer: string; from: number }>;
  stopped: string[];
}

/**
 * Keeps a ledger in sync with peers over any message transport: gossips
 * signed heads (and checkpoints), asks for missing ranges in bounded batches,
 * and hands every range to Ledger#ingest, which verifies it before storing.
 * Garbage from a peer drops that peer (reported via the `dropped` event and
 * status) and changes nothing.
 */
export class Replicator extends EventEmitter {
  private readonly peers: Set<string>;
  private readonly dropped = new Map<string, DroppedPeer>();
  private readonly pending = new Map<string, { peer: string; from: number; at: number }>();
  private readonly peerHeads = new Map<string, Map<string, number>>();
  private inbox: Promise<void> = Promise.resolve();
  private inboxSize = 0;
  private unsubscribe: (() => void) | undefined;
  private timers: NodeJS.Timeout[] = [];
  private lastCheckpoint: SignedCheckpoint | undefined;
  private readonly o: Required<Omit<ReplicatorOptions, 'peers' | 'witness' | 'mode'>>;
  /** The replication mode (see {@link ReplicatorOptions.mode}). */
  readonly mode: ReplicationMode;
  private readonly witness: Witness | undefined;

  constructor(
    private readonly ledger: Ledger,
    private readonly transport: ReplicationTransport,
    options: ReplicatorOptions,
  ) {
    super();
    if (!Array.isArray(options?.peers)) throw new TypeError('options.peers must be an array of agent ids');
    this.peers = new Set(options.peers.filter((p) => p !== ledger.feed));
    this.witness = options.witness;
    this.mode = options.mode ?? 'full';
    if (this.mode !== 'full' && this.mode !== DEFAULT_REPLICATION_MODE) throw new TypeError("options.mode must be 'private' or 'full'");
    this.o = {
      gossipIntervalMs: options.gossipIntervalMs ?? DEFAULT_GOSSIP_INTERVAL_MS,
      checkpointIntervalMs: options.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS,
      rangeEntries: Math.min(options.rangeEntries ?? DEFAULT_RANGE_ENTRIES, MAX_RANGE_ENTRIES),
      maxMessageBytes: options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      dropMs: options.dropMs ?? DEFAULT_DROP_MS,
      maxInbox: options.maxInbox ?? DEFAULT_MAX_INBOX,
      now: options.now ?? Date.now,
    };
    for (const [k, v] of Object.entries(this.o)) {
      if (typeof v === 'number' && (!Number.isFinite(v) || v < 0)) throw new TypeError(`options.${k} must be a non-negative number`);
    }
    if (this.o.rangeEntries < 1) throw new TypeError('options.rangeEntries must be at least 1');
  }

  /** Starts listening and the gossip/checkpoint timers, and gossips once. */
  start(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.transport.onMessage((peer, message) => this.receive(peer, message));
    if (this.o.gossipIntervalMs > 0) this.timers.push(setInterval(() => void this.announce().catch((err) => this.emit('error', err)), this.o.gossipIntervalMs));
    if (this.o.checkpointIntervalMs > 0 && this.ledger.feed) {
      this.timers.push(setInterval(() => void this.checkpoint().catch((err) => this.emit('error', err)), this.o.checkpointIntervalMs));
    }
    for (const t of this.timers) t.unref();
    void this.announce().catch((err) => this.emit('error', err));
  }

  /** Stops timers and listening (in-flight work finishes). */
  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** Adds a peer to gossip with. */
  addPeer(peer: string): void {
    if (peer !== this.ledger.feed) this.peers.add(peer);
  }

  /** Signs a checkpoint now; it travels with the next gossip. */
  async checkpoint(): Promise<SignedCheckpoint> {
    this.lastCheckpoint = await this.ledger.checkpoint();
    return this.lastCheckpoint;
  }

  /** Sends our signed heads (and latest checkpoint) to every live peer; expires stale requests. */
  async announce(): Promise<void> {
    const now = this.o.now();
    for (const [feed, p] of this.pending) if (now - p.at > this.o.requestTimeoutMs) this.pending.delete(feed);
    const heads: SignedHead[] = [];
    // Heads of stopped feeds still travel (and their ranges are still served), so every peer can see the fork.
    for (const feed of this.ledger.feeds()) {
      const h = await this.ledger.signedHead(feed);
      if (h) heads.push(h);
    }
    for (let i = 0; i < Math.max(1, heads.length); i += MAX_HEADS_PER_MESSAGE) {
      const msg: ReplicationMessage = {
        t: 'heads',
        heads: heads.slice(i, i + MAX_HEADS_PER_MESSAGE),
        ...(i === 0 && this.lastCheckpoint ? { checkpoint: this.lastCheckpoint } : {}),
      };
      for (const peer of this.peers) if (this.isLive(peer)) await this.send(peer, msg);
    }
    if (this.witness) await this.gossipWitness(await this.witness.gossip());
  }

  /** Sends checkpoints with their cosignatures (and evidence) to every live peer, in bounded messages. */
  private async gossipWitness(g: { notes: Array<{ feed: string; note: string }>; evidence: Array<{ feed: string; notes: string[] }> }): Promise<void> {
    for (let i = 0; i === 0 || i < g.notes.length; i += MAX_WITNESS_NOTES) {
      const msg: ReplicationMessage = {
        t: 'witness',
        notes: g.notes.slice(i, i + MAX_WITNESS_NOTES),
        ...(i === 0 && g.evidence.length ? { evidence: g.evidence } : {}),
      };
      if (msg.notes.length === 0 && !msg.evidence) return;
      for (const peer of this.peers) if (this.isLive(peer)) await this.send(peer, msg);
    }
  }

  /** Resolves once every message received so far has been processed. */
  async idle(): Promise<void> {
    let seen: Promise<void>;
    do {
      seen = this.inbox;
      await seen;
    } while (seen !== this.inbox);
  }

  /** Peers, dropped peers, outstanding requests and stopped feeds. */
  status(): ReplicatorStatus {
    return {
      peers: [...this.peers],
      dropped: [...this.dropped.values()],
      pending: [...this.pending].map(([feed, p]) => ({ feed, peer: p.peer, from: p.from })),
      stopped: this.ledger.feeds().filter((f) => this.ledger.isStopped(f)),
    };
  }

  private isLive(peer: string): boolean {
    const d = this.dropped.get(peer);
    if (!d) return true;
    if (this.o.now() >= d.until) {
      this.dropped.delete(peer);
      return true;
    }
    return false;
  }

  private drop(peer: string, code: string, reason: string): void {
    const d: DroppedPeer = { peer, code, reason, until: this.o.now() + this.o.dropMs };
    this.dropped.set(peer, d);
    for (const [feed, p] of this.pending) if (p.peer === peer) this.pending.delete(feed);
    this.emit('dropped', d);
  }

  private async send(peer: string, msg: ReplicationMessage): Promise<void> {
    await this.transport.send(peer, encodeMessage(msg, this.o.maxMessageBytes));
  }

  private receive(peer: string, message: string | Uint8Array): void {
    if (!this.peers.has(peer) || !this.isLive(peer)) return;
    if (this.inboxSize >= this.o.maxInbox) {
      this.drop(peer, 'ERR_LEDGER_MESSAGE_TOO_LARGE', 'inbox full');
      return;
    }
    this.inboxSize += 1;
    this.inbox = this.inbox
      .then(() => (this.isLive(peer) ? this.handle(peer, message) : undefined))
      .catch((err: unknown) => {
        const code = err instanceof LedgerError ? err.code : 'ERR_LEDGER_MESSAGE_INVALID';
        this.drop(peer, code, (err as Error).message);
      })
      .finally(() => {
        this.inboxSize -= 1;
      });
  }

  private async handle(peer: string, raw: string | Uint8Array): Promise<void> {
    const msg = decodeMessage(raw, this.o.maxMessageBytes);
    switch (msg.t) {
      case 'heads':
        return this.onHeads(peer, msg.heads, msg.checkpoint);
      case 'want':
        return this.onWant(peer, msg.feed, msg.from, msg.max);
      case 'range':
        return this.onRange(peer, msg);
      case 'witness':
        return this.onWitness(peer, msg);
      case 'none': {
        const p = this.pending.get(msg.feed);
        if (p?.peer === peer && p.from === msg.from) this.pending.delete(msg.feed);
        return undefined;
      }
    }
  }

  private async onHeads(peer: string, heads: SignedHead[], checkpoint: SignedCheckpoint | undefined): Promise<void> {
    for (const head of heads) {
      if (head.feed === peer && this.witness) await this.witness.checkHead(head, peer);
      if (head.feed === this.ledger.feed) {
        // Our own feed comes from nobody, but a validly signed contradiction of it is still evidence.
        if ((await this.ledger.checkHead(head, peer)) === 'equivocation') this.emit('equivocation', { feed: head.feed, peer });
        continue;
      }
      const r = await this.ledger.checkHead(head, peer);
      if (r === 'invalid') throw new LedgerError('ERR_LEDGER_BAD_SIGNATURE', `peer sent a signed head for ${head.feed}:${head.seq} that does not verify`);
      if (r === 'equivocation') this.emit('equivocation', { feed: head.feed, peer });
      // In private mode a feed is taken from its author only: a third party holds it sealed, or readable only where it concerns that party.
      if (r === 'behind' && (this.mode === 'full' || head.feed === peer)) {
        let known = this.peerHeads.get(peer);
        if (!known) this.peerHeads.set(peer, (known = new Map()));
        known.set(head.feed, Math.max(known.get(head.feed) ?? -1, head.seq));
        await this.requestNext(head.feed, peer);
      }
    }
    if (checkpoint) {
      const r = await this.ledger.addCheckpoint(checkpoint, peer);
      if (r === 'invalid') throw new LedgerError('ERR_LEDGER_BAD_SIGNATURE', `peer sent a checkpoint of '${checkpoint.agent}' that does not verify`);
      if (r === 'conflict') this.emit('checkpoint-conflict', { agent: checkpoint.agent, peer });
    }
  }

  private async onWitness(peer: string, msg: Extract<ReplicationMessage, { t: 'witness' }>): Promise<void> {
    if (!this.witness) return;
    const fresh: Array<{ feed: string; note: string }> = [];
    for (const { feed, note } of msg.notes) {
      if ((await this.witness.observe(feed, note, peer)) !== 'cosigned') continue;
      const size = Number(note.split('\n')[1]);
      const n = await this.witness.cosigned(feed, size);
      if (n) fresh.push({ feed, note: n });
    }
    for (const ev of msg.evidence ?? []) await this.witness.takeEvidence(ev, peer);
    if (fresh.length) await this.gossipWitness({ notes: fresh, evidence: [] });
  }

  private async requestNext(feed: string, peer: string): Promise<void> {
    if (this.pending.has(feed) || this.ledger.isStopped(feed)) return;
    const from = (this.ledger.head(feed)?.seq ?? -1) + 1;
    const theirs = this.peerHeads.get(peer)?.get(feed) ?? -1;
    if (theirs < from) return;
    this.pending.set(feed, { peer, from, at: this.o.now() });
    await this.send(peer, { t: 'want', feed, from, max: this.o.rangeEntries });
  }

  private async onWant(peer: string, feed: string, from: number, max: number): Promise<void> {
    const head = this.ledger.head(feed);
    if (!head || from > head.seq) return this.send(peer, { t: 'none', feed, from, reason: 'unknown-feed' });
    const to = Math.min(head.seq, from + max - 1);
    // Leave room for the envelope and the head around the entries.
    const budget = Math.floor(((this.o.maxMessageBytes - 2048) * 3) / 4);
    let signed: SignedHead | undefined;
    let entries: Buffer[];
    let checkpoint: string | undefined;
    if (feed === this.ledger.feed) {
      entries = await this.ledger.rawRange(feed, from, to, max, budget);
      if (this.mode === 'private') entries = fit(await this.ledger.forPeer(peer, entries), this.o.maxMessageBytes - 4096);
      signed = await this.ledger.signHeadAt(from + entries.length - 1);
      // A head of a retired key's era has no fresh checkpoint: the range goes without one.
      checkpoint = await this.ledger.checkpointAt(signed.seq + 1).catch(() => undefined);
    } else {
      // Private mode: another author's feed goes back only to that author (recovery), never to a third party.
      if (this.mode === 'private' && peer !== feed) return this.send(peer, { t: 'none', feed, from, reason: 'no-head' });
      signed = await this.ledger.signedHeadWithin(feed, from, to);
      if (!signed) return this.send(peer, { t: 'none', feed, from, reason: 'no-head' });
      entries = await this.ledger.rawRange(feed, from, signed.seq, max, budget);
      if (entries.length !== signed.seq - from + 1) {
        // The byte budget cut the range: it ends at the last signed head that fits (a recovering author asks wide windows).
        signed = await this.ledger.signedHeadWithin(feed, from, from + entries.length - 1);
        if (!signed) return this.send(peer, { t: 'none', feed, from, reason: 'no-head' });
        entries = entries.slice(0, signed.seq - from + 1);
      }
      checkpoint = await this.ledger.checkpointNote(feed, signed.seq + 1);
    }
    return this.send(peer, {
      t: 'range',
      feed,
      from,
      entries: entries.map((b) => b.toString('base64')),
      head: signed,
      ...(checkpoint === undefined ? {} : { checkpoint }),
    });
  }

  private async onRange(peer: string, msg: Extract<ReplicationMessage, { t: 'range' }>): Promise<void> {
    const p = this.pending.get(msg.feed);
    // A late answer to a request that timed out (or one never made) is ignored, not trusted.
    if (!p || p.peer !== peer || p.from !== msg.from) return;
    this.pending.delete(msg.feed);
    try {
      const r = await this.ledger.ingest(
        msg.feed,
        msg.entries.map((e) => Buffer.from(e, 'base64')),
        msg.head,
        peer,
        msg.checkpoint,
      );
      this.emit('stored', { feed: msg.feed, peer, seq: msg.head.seq, count: r.stored });
      if (this.witness && msg.checkpoint && (await this.witness.observe(msg.feed, msg.checkpoint, peer)) === 'cosigned') {
        const n = await this.witness.cosigned(msg.feed, msg.head.seq + 1);
        if (n) await this.gossipWitness({ notes: [{ feed: msg.feed, note: n }], evidence: [] });
      }
    } catch (err) {
      if (err instanceof LedgerError && err.code === 'ERR_LEDGER_EQUIVOCATION') {
        this.emit('equivocation', { feed: msg.feed, peer });
        return;
      }
      if (err instanceof LedgerError && err.code === 'ERR_LEDGER_FEED_STOPPED') return;
      throw err;
    }
    await this.requestNext(msg.feed, peer);
  }
}

/**
 * The longest prefix of `entries` (at least one) whose base64 strings, quoted
 * and comma-separated as a range message carries them, fit `budget` bytes
 * (sealed records are larger than the entries they hold).
 */
function fit(entries: Buffer[], budget: number): Buffer[] {
  let bytes = 0;
  let n = 0;
  for (const e of entries) {
    const encoded = Math.ceil(e.length / 3) * 4 + 3;
    if (n > 0 && bytes + encoded > budget) break;
    bytes += encoded;
    n += 1;
  }
  return entries.slice(0, n);
}
