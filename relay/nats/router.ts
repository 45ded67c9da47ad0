import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { connect, ErrorCode, headers, type ConnectionOptions, type Msg, type NatsConnection, type NatsError, type Subscription } from 'nats';
import { decodeFrame, encodeOpen } from '../protocol/codec.ts';
import { ABORT_CODES, FRAME_PREFIX, FrameKind, type AbortCode, type FrameLimits } from '../protocol/constants.ts';
import { ProtocolError } from '../protocol/errors.ts';
import { ConfigError } from '../errors.ts';
import type { RelayMetrics } from '../metrics.ts';
import { LocalRouter, type AgentInfo, type AgentPort, type RemoteDelivery, type RemoteHandlers, type RemoteOpen, type Router } from '../router.ts';

/** NATS settings of a relay node (the `nats` config section after validation). */
export interface NatsRouterConfig {
  servers: string[];
  userEnv?: string | undefined;
  passwordEnv?: string | undefined;
  tokenEnv?: string | undefined;
  tls?: { ca: string; cert?: string | undefined; key?: string | undefined } | undefined;
  subjectPrefix: string;
  requestTimeoutMs: number;
  window: number;
  nodeCheckMs: number;
}

/** Header naming the node that sends an OPEN request, a direct MESSAGE or a refusal, or that answers a MESSAGE request. */
const NODE_HEADER = 'Hie-Node';
/** Header of a message sent straight to a node's subject: `messages` (a batch of MESSAGE frames) or `acks` (the answers to them). */
const KIND_HEADER = 'Hie-Kind';
/**
 * A direct MESSAGE as the previous version sends it (one per NATS message, recipient and number in headers) and
 * its answer (a JSON list of [number, abort code or null]). Accepted and answered during a rolling upgrade.
 */
const LEGACY_MESSAGE = 'message';
const LEGACY_ACK = 'ack';
const LEGACY_TO_HEADER = 'Hie-To';
const LEGACY_SEQ_HEADER = 'Hie-Seq';
/** Bytes before each MESSAGE frame of a batch besides the recipient's id: id length (1), sequence number (4), frame length (4). */
const RECORD_HEAD = 9;
/** Direct MESSAGEs are numbered per sending node up to this, then from 1 again (the number is 4 bytes in a batch). */
const MAX_SEQ = 0xffff_ffff;
/** Bytes per answer in an `acks` message: the sequence number (4), then 0 (delivered) or the abort code's wire number (1). */
const ACK_BYTES = 5;
/** Room left in a batch's NATS message for its headers (the server's payload limit counts them too). */
const BATCH_HEADROOM = 256;
/**
 * How long MESSAGEs for agents on a node go by lookup after direct ones to it went unanswered: a node of an
 * older version (which ignores batches) or one that is gone. Anything in batch form from that node ends it sooner.
 */
export const UNBATCHED_MS = 60_000;
/**
 * Most agents whose node this node remembers (the presence cache). Past it the oldest entry goes: a forgotten
 * agent costs one presence lookup, nothing else.
 */
export const PRESENCE_CACHE_MAX = 100_000;
const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** NATS payload limit assumed until the server says otherwise (nats-server's default). */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

const ABORT_NAMES = new Set(Object.keys(ABORT_CODES));
const ABORT_BY_NUMBER = new Map(Object.entries(ABORT_CODES).map(([name, n]) => [n as number, name as AbortCode]));
const enc = new TextEncoder();
const dec = new TextDecoder();

const KIND_NAMES: Record<number, string> = {
  [FrameKind.DATA]: 'data',
  [FrameKind.END]: 'end',
  [FrameKind.CREDIT]: 'credit',
  [FrameKind.ABORT]: 'abort',
  [FrameKind.NOTICE]: 'usage',
};

function isNoResponders(err: unknown): boolean {
  return (err as NatsError | undefined)?.code === ErrorCode.NoResponders;
}

function isTimeout(err: unknown): boolean {
  return (err as NatsError | undefined)?.code === ErrorCode.Timeout;
}

/**
 * Splits a DATA frame longer than `max` into DATA frames of the same transfer, each at most `max` long. The
 * first is a view of `frame` (its prefix is already in place), so a default-sized chunk (1 MiB of payload
 * against nats-server's 1 MiB limit) costs a copy of its last few bytes, not of the whole chunk.
 */
export function splitData(frame: Buffer, max: number): Buffer[] {
  if (max <= FRAME_PREFIX) throw new RangeError(`NATS payload limit ${max} leaves no room for data`);
  const parts = [frame.subarray(0, max)];
  const step = max - FRAME_PREFIX;
  for (let at = max; at < frame.length; at += step) {
    const part = Buffer.allocUnsafe(FRAME_PREFIX + Math.min(step, frame.length - at));
    frame.copy(part, 0, 0, FRAME_PREFIX);
    frame.copy(part, FRAME_PREFIX, at, at + part.length - FRAME_PREFIX);
    parts.push(part);
  }
  return parts;
}

/** One direct MESSAGE: in its node's batch until sent, then until that node's answer or `requestTimeoutMs`. */
interface Outgoing {
  to: string;
  seq: number;
  frame: Buffer;
  node: string;
  at: number;
  settle: (code: AbortCode | undefined) => void;
}

/**
 * A batch of direct MESSAGEs for one node, as one NATS payload: for each, the recipient's id length (1 byte), the
 * id (ASCII), the sequence number and the frame length (4 bytes each, big-endian), then the frame.
 */
export function encodeBatch(items: ReadonlyArray<Pick<Outgoing, 'to' | 'seq' | 'frame'>>): Buffer {
  let total = 0;
  for (const m of items) total += RECORD_HEAD + m.to.length + m.frame.length;
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  for (const m of items) {
    out[at] = m.to.length;
    out.write(m.to, at + 1, 'latin1');
    at += 1 + m.to.length;
    out.writeUInt32BE(m.seq, at);
    out.writeUInt32BE(m.frame.length, at + 4);
    at += 8;
    at += m.frame.copy(out, at);
  }
  return out;
}

/** The records of a batch (frames are views of `buf`); stops at the first record that does not fit what is left. */
export function decodeBatch(buf: Buffer): Array<{ to: string; seq: number; frame: Buffer }> {
  const out: Array<{ to: string; seq: number; frame: Buffer }> = [];
  let at = 0;
  while (at < buf.length) {
    const idLength = buf[at] as number;
    if (idLength === 0 || at + RECORD_HEAD + idLength > buf.length) break;
    const to = buf.toString('latin1', at + 1, at + 1 + idLength);
    at += 1 + idLength;
    const seq = buf.readUInt32BE(at);
    const length = buf.readUInt32BE(at + 4);
    at += 8;
    if (at + length > buf.length) break;
    out.push({ to, seq, frame: buf.subarray(at, at + length) });
    at += length;
  }
  return out;
}

/** The answers to a batch: for each message its sequence number, then 0 (delivered) or its abort code's wire number. */
export function encodeAcks(list: ReadonlyArray<readonly [number, AbortCode | undefined]>): Buffer {
  const out = Buffer.allocUnsafe(list.length * ACK_BYTES);
  let at = 0;
  for (const [seq, code] of list) {
    out.writeUInt32BE(seq, at);
    out[at + 4] = code === undefined ? 0 : ABORT_CODES[code];
    at += ACK_BYTES;
  }
  return out;
}

/** A Buffer view over a NATS message payload (no copy). */
function view(data: Uint8Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * The multi-node router: each node subscribes `<prefix>.agent.<id>` for the
 * agents connected to it (presence and open/message by request/reply, so no
 * responders means `no-route` at once) and `<prefix>.node.<node>` for the
 * frames of transfers crossing nodes. NATS core only: nothing is persisted.
 *
 * Presence cache: every node announces on `<prefix>.presence` each agent that
 * attaches to it or leaves it, and remembers which node other nodes' agents
 * are on (also from the answers to its lookups). A MESSAGE to an agent it
 * knows goes straight to that node's subject, with no request/reply (no inbox,
 * no timer per message), in one batch per node per event-loop turn (one NATS
 * message for all of them, up to the NATS payload limit); that node answers
 * in batches too, one `acks` message per sending node per turn, listing each
 * message as delivered or not.
 * A node that no longer holds the agent answers `no-route`, and one that does
 * not answer within `requestTimeoutMs` (gone) is treated the same: the entry
 * is forgotten and the message looked up as if uncached, so a stale entry
 * costs a round trip, never a message. (A node alive but slower than the
 * timeout may so deliver a message twice; uncached, the same delay reports it
 * undeliverable.) A node that leaves direct messages unanswered (one of an
 * older version ignores batches) is sent lookups for {@link UNBATCHED_MS}, or
 * until it sends something in batch form, so a rolling upgrade costs one
 * timeout per node, not one per message; the previous version's direct
 * MESSAGEs are accepted and answered in its form. A NATS reconnect empties the cache
 * (announcements may have been missed meanwhile).
 */
export class NatsRouter implements Router {
  readonly remote: RemoteDelivery;
  private readonly local = new LocalRouter();
  private readonly agentSubs = new Map<string, Subscription>();
  private handlers: RemoteHandlers | undefined;
  private readonly prefix: string;
  private readonly limits: FrameLimits;
  /** Agent id -> the node it was last seen on (insertion order = age). */
  private readonly presence = new Map<string, string>();
  /** Direct MESSAGEs waiting for their ack, by sequence number (insertion order = age). */
  private readonly direct = new Map<number, Outgoing>();
  private nextSeq = 1;
  /** Answers to send, by the node that sent the messages: [seq, abort code or undefined when delivered]. */
  private readonly acks = new Map<string, Array<[number, AbortCode | undefined]>>();
  /** The same for MESSAGEs from nodes of the previous version, in its form: [seq, abort code or null]. */
  private readonly legacyAcks = new Map<string, Array<[number, string | null]>>();
  private ackScheduled = false;
  /** Direct MESSAGEs to send, by node, and the bytes of each batch so far. */
  private readonly outgoing = new Map<string, { items: Outgoing[]; bytes: number }>();
  private outgoingScheduled = false;
  /** Nodes that left direct messages unanswered, and until when messages to their agents go by lookup. */
  private readonly unbatched = new Map<string, number>();
  private readonly sweeper: NodeJS.Timeout;

  /** @internal Use {@link connectNatsRouter}. */
  constructor(
    private readonly nc: NatsConnection,
    readonly nodeId: string,
    private readonly config: NatsRouterConfig,
    limits: FrameLimits,
    private readonly metrics: RelayMetrics,
    private readonly log: Logger,
  ) {
    this.prefix = config.subjectPrefix;
    this.limits = limits;
    this.remote = {
      nodeId,
      window: config.window,
      nodeCheckMs: config.nodeCheckMs,
      bind: (h) => {
        this.handlers = h;
      },
      open: (to, from, leg, meta) => this.open(to, from, leg, meta),
      message: (to, frame, settle) => this.message(to, frame, settle),
      send: (node, frame) => this.send(node, frame),
      probe: (node) => this.probe(node),
    };
    nc.subscribe(`${this.prefix}.node.${nodeId}`, { callback: (err, msg) => this.onNodeMessage(err, msg) });
    nc.subscribe(`${this.prefix}.presence`, { callback: (err, msg) => this.onPresence(err, msg) });
    this.sweeper = setInterval(() => this.sweep(), Math.max(50, Math.floor(config.requestTimeoutMs / 4)));
    this.sweeper.unref();
  }

  /** Direct messages unanswered for `requestTimeoutMs`: their node is gone or lost them; look them up instead. */
  private sweep(): void {
    const cutoff = Date.now() - this.config.requestTimeoutMs;
    for (const [seq, p] of this.direct) {
      // Insertion order is age; an entry still in an unsent batch (at 0) and everything after it are newer.
      if (p.at > cutoff || p.at === 0) break;
      this.direct.delete(seq);
      if (!this.unbatched.has(p.node)) {
        this.log.info(
          { node: p.node, timeoutMs: this.config.requestTimeoutMs },
          'relay node left direct messages unanswered (an older version, or gone): messages to its agents go by lookup for a minute',
        );
      }
      this.unbatched.set(p.node, Date.now() + UNBATCHED_MS);
      this.forget(p.to, p.node);
      this.lookupMessage(p.to, p.frame, p.settle);
    }
  }

  /** Forgets every cached location (after a NATS reconnect: announcements may have been missed). */
  forgetPresence(): void {
    if (this.presence.size > 0) this.metrics.presenceCache.inc({ event: 'cleared' }, this.presence.size);
    this.presence.clear();
  }

  private remember(id: string, node: string): void {
    if (node === this.nodeId || !NODE_ID.test(node)) return;
    this.presence.delete(id);
    this.presence.set(id, node);
    if (this.presence.size > PRESENCE_CACHE_MAX) {
      const oldest = this.presence.keys().next().value;
      if (oldest !== undefined) this.presence.delete(oldest);
    }
  }

  private forget(id: string, node: string): void {
    if (this.presence.get(id) !== node) return;
    this.presence.delete(id);
    this.metrics.presenceCache.inc({ event: 'invalidated' });
  }

  /** False once the NATS connection closes or drains (publishing then throws). */
  private canPublish(): boolean {
    return !this.nc.isClosed() && !this.nc.isDraining();
  }

  private announce(id: string, up: boolean): void {
    // While the connection drains (shutdown) nothing is announced: the other nodes' lookups find no responder.
    if (!this.canPublish()) return;
    try {
      this.nc.publish(`${this.prefix}.presence`, enc.encode(JSON.stringify({ node: this.nodeId, id, up })));
    } catch (err) {
      this.log.debug({ code: (err as NatsError).code }, 'presence announcement not sent');
    }
  }

  private onPresence(err: NatsError | null, msg: Msg): void {
    if (err) return;
    let body: { node?: unknown; id?: unknown; up?: unknown };
    try {
      body = JSON.parse(dec.decode(msg.data)) as typeof body;
    } catch {
      return;
    }
    if (typeof body.node !== 'string' || typeof body.id !== 'string' || body.node === this.nodeId) return;
    if (body.up === true) this.remember(body.id, body.node);
    else this.forget(body.id, body.node);
  }

  attach(port: AgentPort): AgentPort | undefined {
    const previous = this.local.attach(port);
    if (!this.agentSubs.has(port.id)) {
      const id = port.id;
      this.agentSubs.set(id, this.nc.subscribe(`${this.prefix}.agent.${id}`, { callback: (err, msg) => this.onAgentRequest(id, err, msg) }));
      this.presence.delete(id);
      this.announce(id, true);
    }
    return previous;
  }

  detach(port: AgentPort): void {
    this.local.detach(port);
    if (this.local.resolve(port.id)) return;
    this.agentSubs.get(port.id)?.unsubscribe();
    this.agentSubs.delete(port.id);
    this.announce(port.id, false);
  }

  resolve(id: string): AgentPort | undefined {
    return this.local.resolve(id);
  }

  list(): AgentInfo[] {
    return this.local.list();
  }

  async whenAttached(): Promise<void> {
    // The server has registered our subscription once a flush round trip returns.
    await this.nc.flush();
  }

  /** Largest frame one NATS message may carry. */
  private maxPayload(): number {
    return this.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  }

  private async open(to: string, from: string, leg: number, meta: Buffer): Promise<RemoteOpen> {
    const h = headers();
    h.set(NODE_HEADER, this.nodeId);
    const frame = encodeOpen(leg, from, meta, this.limits);
    try {
      const reply = await this.nc.request(`${this.prefix}.agent.${to}`, frame, { timeout: this.config.requestTimeoutMs, headers: h });
      const body = JSON.parse(dec.decode(reply.data)) as { node?: unknown; leg?: unknown; refused?: unknown; reason?: unknown };
      if (typeof body.node === 'string' && typeof body.leg === 'number' && Number.isInteger(body.leg) && body.leg > 0) {
        this.metrics.presenceLookups.inc({ outcome: 'found' });
        this.remember(to, body.node);
        return { node: body.node, leg: body.leg };
      }
      const code = typeof body.refused === 'string' && ABORT_NAMES.has(body.refused) ? (body.refused as AbortCode) : 'internal';
      this.metrics.presenceLookups.inc({ outcome: code === 'no-route' ? 'no-route' : 'refused' });
      return { refused: code, reason: typeof body.reason === 'string' ? body.reason.slice(0, 100) : 'refused by the recipient node' };
    } catch (err) {
      return this.lookupFailed(err, to);
    }
  }

  private lookupFailed(err: unknown, to: string): { refused: AbortCode; reason: string } {
    if (isNoResponders(err)) {
      this.metrics.presenceLookups.inc({ outcome: 'no-route' });
      return { refused: 'no-route', reason: `${to} is not connected to any relay node` };
    }
    if (isTimeout(err)) {
      this.metrics.presenceLookups.inc({ outcome: 'timeout' });
      return { refused: 'no-route', reason: `no relay node answered for ${to} in time` };
    }
    this.metrics.presenceLookups.inc({ outcome: 'error' });
    this.log.warn({ code: (err as NatsError).code }, 'presence lookup failed');
    return { refused: 'internal', reason: 'presence lookup failed' };
  }

  private message(to: string, frame: Buffer, settle: (code: AbortCode | undefined) => void): void {
    const node = this.presence.get(to);
    const bytes = RECORD_HEAD + to.length + frame.length;
    const max = this.maxPayload() - BATCH_HEADROOM;
    if (node === undefined || !this.canPublish() || bytes > max || this.isUnbatched(node)) return this.lookupMessage(to, frame, settle);
    // Known location: straight to the node in this turn's batch for it; the node's answer settles the message.
    const seq = this.nextSeq;
    this.nextSeq = this.nextSeq >= MAX_SEQ ? 1 : this.nextSeq + 1;
    let batch = this.outgoing.get(node);
    if (batch && batch.bytes + bytes > max) {
      this.flushBatch(node, batch);
      batch = undefined;
    }
    if (!batch) {
      batch = { items: [], bytes: 0 };
      this.outgoing.set(node, batch);
    }
    const m: Outgoing = { to, seq, frame, node, at: 0, settle };
    batch.items.push(m);
    batch.bytes += bytes;
    this.direct.set(seq, m);
    if (!this.outgoingScheduled) {
      this.outgoingScheduled = true;
      setImmediate(() => this.flushOutgoing());
    }
  }

  private isUnbatched(node: string): boolean {
    const until = this.unbatched.get(node);
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    this.unbatched.delete(node);
    return false;
  }

  /** Every batch of direct MESSAGEs gathered this turn, one NATS message per node. */
  private flushOutgoing(): void {
    this.outgoingScheduled = false;
    for (const [node, batch] of this.outgoing) this.flushBatch(node, batch);
  }

  private flushBatch(node: string, batch: { items: Outgoing[] }): void {
    this.outgoing.delete(node);
    const n = batch.items.length;
    try {
      if (!this.canPublish()) throw new Error('NATS connection closing');
      this.publishDirect(node, 'messages', encodeBatch(batch.items));
    } catch {
      // Not sent: each message is looked up instead (whoever holds its agent answers, or nobody does).
      for (const m of batch.items) {
        if (this.direct.get(m.seq) !== m) continue;
        this.direct.delete(m.seq);
        this.lookupMessage(m.to, m.frame, m.settle);
      }
      return;
    }
    // The answer is due within requestTimeoutMs from now (the sweeper looks up what is still waiting then).
    const now = Date.now();
    for (const m of batch.items) m.at = now;
    this.metrics.natsForwardedMessages.inc({ direction: 'out', kind: 'message' }, n);
    this.metrics.presenceCache.inc({ event: 'hit' }, n);
  }

  /** MESSAGE by request/reply on the agent's subject: whoever holds the agent answers (and says which node it is). */
  private lookupMessage(to: string, frame: Buffer, settle: (code: AbortCode | undefined) => void): void {
    this.lookup(to, frame).then(settle, () => settle('internal'));
  }

  private async lookup(to: string, frame: Buffer): Promise<AbortCode | undefined> {
    try {
      const reply = await this.nc.request(`${this.prefix}.agent.${to}`, frame, { timeout: this.config.requestTimeoutMs });
      this.count('out', 'message', 0);
      if (reply.data.length === 0) {
        this.metrics.presenceLookups.inc({ outcome: 'found' });
        const node = reply.headers?.get(NODE_HEADER);
        if (node) this.remember(to, node);
        return undefined;
      }
      const code = dec.decode(reply.data);
      this.metrics.presenceLookups.inc({ outcome: code === 'no-route' ? 'no-route' : 'refused' });
      return ABORT_NAMES.has(code) ? (code as AbortCode) : 'internal';
    } catch (err) {
      return this.lookupFailed(err, to).refused;
    }
  }

  private send(node: string, frame: Buffer): void {
    const subject = `${this.prefix}.node.${node}`;
    const max = this.maxPayload();
    const kind = frame[1] as number;
    if (kind === FrameKind.DATA) this.metrics.natsForwardedBytes.inc({ direction: 'out' }, frame.length - FRAME_PREFIX);
    if (frame.length <= max) {
      this.nc.publish(subject, frame);
      this.count('out', KIND_NAMES[kind] ?? 'other', 1);
      return;
    }
    // Only DATA can outgrow the NATS payload limit: split it into smaller DATA frames of the same transfer.
    for (const part of splitData(frame, max)) {
      this.nc.publish(subject, part);
      this.count('out', 'data', 1);
    }
  }

  private count(direction: 'in' | 'out', kind: string, n: number): void {
    if (n > 0 || kind === 'message') this.metrics.natsForwardedMessages.inc({ direction, kind });
  }

  private async probe(node: string): Promise<boolean> {
    try {
      await this.nc.request(`${this.prefix}.node.${node}`, new Uint8Array(0), { timeout: this.config.requestTimeoutMs });
      return true;
    } catch (err) {
      // A node that is merely slow to answer keeps its transfers; one that nobody answers for is gone.
      return !isNoResponders(err) && !isTimeout(err);
    }
  }

  private onNodeMessage(err: NatsError | null, msg: Msg): void {
    if (err) return;
    if (msg.reply) {
      msg.respond(new Uint8Array(0));
      return;
    }
    const buf = view(msg.data);
    const direct = msg.headers?.get(KIND_HEADER);
    if (direct) return this.onDirect(direct, msg, buf);
    const kind = buf[1] as number;
    this.count('in', KIND_NAMES[kind] ?? 'other', 1);
    if (kind === FrameKind.DATA) this.metrics.natsForwardedBytes.inc({ direction: 'in' }, Math.max(0, buf.length - FRAME_PREFIX));
    this.handlers?.frame(buf);
  }

  /** MESSAGEs another node sent straight here from its presence cache, or the acks for ours. */
  private onDirect(kind: string, msg: Msg, buf: Buffer): void {
    const from = msg.headers?.get(NODE_HEADER) ?? '';
    if (!NODE_ID.test(from) || !this.handlers) return;
    if (kind === 'acks' || kind === 'messages') this.unbatched.delete(from);
    if (kind === 'acks') return this.onAcks(from, buf);
    if (kind === LEGACY_MESSAGE) return this.onLegacyMessage(from, msg, buf);
    // Anything else (a kind a newer node sends) goes unanswered: its sender looks those messages up.
    if (kind !== 'messages') return;
    const list = this.acks.get(from) ?? [];
    const before = list.length;
    const records = decodeBatch(buf);
    for (const m of records) {
      if (m.frame[1] !== FrameKind.MESSAGE) continue;
      // A frame of a bigger batch is copied: one queued behind a slow agent would otherwise hold the whole batch.
      list.push([m.seq, this.handlers.message(m.to, records.length > 1 ? Buffer.from(m.frame) : m.frame)]);
    }
    if (list.length === before) return;
    this.metrics.natsForwardedMessages.inc({ direction: 'in', kind: 'message' }, list.length - before);
    this.acks.set(from, list);
    this.scheduleAcks();
  }

  /**
   * One MESSAGE from a node of the previous version (kind `message`, recipient and number in headers): delivered,
   * and answered in that version's form, so that a rolling upgrade does not make it wait for a timeout per message.
   */
  private onLegacyMessage(from: string, msg: Msg, buf: Buffer): void {
    const to = msg.headers?.get(LEGACY_TO_HEADER) ?? '';
    const seq = Number(msg.headers?.get(LEGACY_SEQ_HEADER));
    if (to === '' || !Number.isSafeInteger(seq) || buf[1] !== FrameKind.MESSAGE || !this.handlers) return;
    this.count('in', 'message', 0);
    const list = this.legacyAcks.get(from) ?? [];
    list.push([seq, this.handlers.message(to, buf) ?? null]);
    this.legacyAcks.set(from, list);
    this.scheduleAcks();
  }

  private scheduleAcks(): void {
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => this.flushAcks());
  }

  /** One ack message per sending node for everything it sent straight here since the last turn. */
  private flushAcks(): void {
    this.ackScheduled = false;
    // Unacked messages (a connection that closes meanwhile) are looked up again by their senders' nodes after the timeout.
    if (!this.canPublish()) {
      this.legacyAcks.clear();
      return this.acks.clear();
    }
    const send = (node: string, kind: string, payload: Uint8Array): void => {
      try {
        this.publishDirect(node, kind, payload);
      } catch (err) {
        this.log.debug({ code: (err as NatsError).code }, 'message acks not sent');
      }
    };
    for (const [node, list] of this.legacyAcks) send(node, LEGACY_ACK, enc.encode(JSON.stringify(list)));
    this.legacyAcks.clear();
    for (const [node, list] of this.acks) send(node, 'acks', encodeAcks(list));
    this.acks.clear();
  }

  /** Publishes on `node`'s own subject, kind and this node named in the headers (throws what `publish` throws). */
  private publishDirect(node: string, kind: string, payload: Uint8Array): void {
    const h = headers();
    h.set(KIND_HEADER, kind);
    h.set(NODE_HEADER, this.nodeId);
    this.nc.publish(`${this.prefix}.node.${node}`, payload, { headers: h });
  }

  private onAcks(from: string, buf: Buffer): void {
    let found = 0;
    let refused = 0;
    for (let at = 0; at + ACK_BYTES <= buf.length; at += ACK_BYTES) {
      const seq = buf.readUInt32BE(at);
      const p = this.direct.get(seq);
      if (!p || p.node !== from) continue;
      this.direct.delete(seq);
      const n = buf[at + 4] as number;
      if (n === 0) {
        found += 1;
        p.settle(undefined);
        continue;
      }
      const code = ABORT_BY_NUMBER.get(n) ?? 'internal';
      if (code === 'no-route') {
        // The agent left that node: forget it and look it up as if uncached.
        this.forget(p.to, from);
        this.lookupMessage(p.to, p.frame, p.settle);
      } else {
        refused += 1;
        p.settle(code);
      }
    }
    if (found > 0) this.metrics.presenceLookups.inc({ outcome: 'found' }, found);
    if (refused > 0) this.metrics.presenceLookups.inc({ outcome: 'refused' }, refused);
  }

  private onAgentRequest(to: string, err: NatsError | null, msg: Msg): void {
    if (err || !msg.reply || !this.handlers) return;
    const buf = view(msg.data);
    let frame;
    try {
      frame = decodeFrame(buf, this.limits);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.metrics.framesRejected.inc({ code: e.code });
      return;
    }
    if (frame.kind === 'message') {
      this.count('in', 'message', 0);
      const code = this.handlers.message(to, buf);
      if (code) {
        msg.respond(enc.encode(code));
        return;
      }
      // Delivered: say which node holds the agent, so the sender's node can send the next ones straight here.
      const h = headers();
      h.set(NODE_HEADER, this.nodeId);
      msg.respond(new Uint8Array(0), { headers: h });
      return;
    }
    if (frame.kind !== 'open') return;
    const node = msg.headers?.get(NODE_HEADER);
    if (!node || !NODE_ID.test(node)) {
      msg.respond(enc.encode(JSON.stringify({ refused: 'internal', reason: 'open without a node id' })));
      return;
    }
    this.count('in', 'open', 1);
    const r = this.handlers.open(node, frame.id, frame.peer, to, frame.meta);
    msg.respond(enc.encode(JSON.stringify(r)));
  }

  /** Flushes what is queued for other nodes and closes the NATS connection. */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    if (this.nc.isClosed()) return;
    try {
      await this.nc.drain();
    } catch {
      await this.nc.close().catch(() => undefined);
    }
  }
}

/** Options of {@link connectNatsRouter}. */
export interface ConnectNatsRouterOptions {
  config: NatsRouterConfig;
  nodeId: string;
  limits: FrameLimits;
  metrics: RelayMetrics;
  log: Logger;
  env: NodeJS.ProcessEnv;
}

function secret(env: NodeJS.ProcessEnv, name: string, key: string): string {
  const v = env[name];
  if (v === undefined || v === '') throw new ConfigError(`config key ${key}: environment variable ${name} is not set`, [key], 'ERR_RELAY_CONFIG');
  return v;
}

/** Connects this relay node to NATS and returns its router; rejects if no server can be reached. */
export async function connectNatsRouter(options: ConnectNatsRouterOptions): Promise<NatsRouter> {
  const { config, nodeId, metrics, log, env } = options;
  const opts: ConnectionOptions = {
    servers: config.servers,
    name: `hie-relay-${nodeId}`,
    // Agents' presence lives in subscriptions; after a reconnect the client resubscribes them.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    pingInterval: 10_000,
    noEcho: false,
  };
  if (config.userEnv && config.passwordEnv) {
    opts.user = secret(env, config.userEnv, 'nats.userEnv');
    opts.pass = secret(env, config.passwordEnv, 'nats.passwordEnv');
  }
  if (config.tokenEnv) opts.token = secret(env, config.tokenEnv, 'nats.tokenEnv');
  if (config.tls) {
    const read = (path: string, key: string): string => {
      try {
        return readFileSync(path, 'utf8');
      } catch (err) {
        throw new ConfigError(`config key ${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, [key], 'ERR_RELAY_CONFIG');
      }
    };
    opts.tls = { ca: read(config.tls.ca, 'nats.tls.ca') };
    if (config.tls.cert && config.tls.key) {
      opts.tls.cert = read(config.tls.cert, 'nats.tls.cert');
      opts.tls.key = read(config.tls.key, 'nats.tls.key');
    }
  }
  const nc = await connect(opts);
  metrics.natsConnected.set(1);
  const router = new NatsRouter(nc, nodeId, config, options.limits, metrics, log);
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        metrics.natsConnected.set(0);
        log.warn({ node: nodeId }, 'NATS connection lost; reconnecting');
      } else if (s.type === 'reconnect') {
        metrics.natsConnected.set(1);
        router.forgetPresence();
        log.info({ node: nodeId }, 'NATS reconnected');
      }
    }
  })();
  void nc.closed().then(() => metrics.natsConnected.set(0));
  log.info({ node: nodeId, servers: config.servers.length }, 'connected to NATS');
  return router;
}
