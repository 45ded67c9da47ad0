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
/** Header of a message sent straight to a node's subject: `message` (a MESSAGE frame) or `ack` (the answers to them). */
const KIND_HEADER = 'Hie-Kind';
/** Header naming the recipient agent of a direct MESSAGE (its frame names only the sender). */
const TO_HEADER = 'Hie-To';
/** Header numbering a direct MESSAGE (per sending node), echoed in the ack. */
const SEQ_HEADER = 'Hie-Seq';
/**
 * Most agents whose node this node remembers (the presence cache). Past it the oldest entry goes: a forgotten
 * agent costs one presence lookup, nothing else.
 */
export const PRESENCE_CACHE_MAX = 100_000;
const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** NATS payload limit assumed until the server says otherwise (nats-server's default). */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

const ABORT_NAMES = new Set(Object.keys(ABORT_CODES));
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
 * no timer per message); that node answers in batches, one `ack` message per
 * sending node per event-loop turn, listing each message as delivered or not.
 * A node that no longer holds the agent answers `no-route`, and one that does
 * not answer within `requestTimeoutMs` (gone) is treated the same: the entry
 * is forgotten and the message looked up as if uncached, so a stale entry
 * costs a round trip, never a message. (A node alive but slower than the
 * timeout may so deliver a message twice; uncached, the same delay reports it
 * undeliverable.) A NATS reconnect empties the cache (announcements may have
 * been missed meanwhile).
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
  private readonly direct = new Map<number, { to: string; node: string; frame: Buffer; at: number; settle: (code: AbortCode | undefined) => void }>();
  private nextSeq = 1;
  /** Acks to send, by the node that sent the messages: [seq, abort code or null]. */
  private readonly acks = new Map<string, Array<[number, string | null]>>();
  private ackScheduled = false;
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
      message: (to, frame) => this.message(to, frame),
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
      if (p.at > cutoff) break;
      this.direct.delete(seq);
      this.forget(p.to, p.node);
      this.lookupMessage(p.to, p.frame).then(p.settle, () => p.settle('internal'));
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

  private async message(to: string, frame: Buffer): Promise<AbortCode | undefined> {
    const node = this.presence.get(to);
    if (node === undefined || !this.canPublish()) return this.lookupMessage(to, frame);
    // Known location: straight to the node; its batched ack settles the message.
    const seq = this.nextSeq;
    this.nextSeq = this.nextSeq >= Number.MAX_SAFE_INTEGER ? 1 : this.nextSeq + 1;
    const h = headers();
    h.set(KIND_HEADER, 'message');
    h.set(NODE_HEADER, this.nodeId);
    h.set(TO_HEADER, to);
    h.set(SEQ_HEADER, String(seq));
    try {
      this.nc.publish(`${this.prefix}.node.${node}`, frame, { headers: h });
    } catch {
      return this.lookupMessage(to, frame);
    }
    this.count('out', 'message', 0);
    this.metrics.presenceCache.inc({ event: 'hit' });
    return new Promise((settle) => this.direct.set(seq, { to, node, frame, at: Date.now(), settle }));
  }

  /** MESSAGE by request/reply on the agent's subject: whoever holds the agent answers (and says which node it is). */
  private async lookupMessage(to: string, frame: Buffer): Promise<AbortCode | undefined> {
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

  /** A MESSAGE another node sent straight here from its presence cache, or the acks for ours. */
  private onDirect(kind: string, msg: Msg, buf: Buffer): void {
    const from = msg.headers?.get(NODE_HEADER) ?? '';
    if (!NODE_ID.test(from) || !this.handlers) return;
    if (kind === 'ack') return this.onAcks(from, buf);
    const to = msg.headers?.get(TO_HEADER) ?? '';
    const seq = Number(msg.headers?.get(SEQ_HEADER));
    if (kind !== 'message' || to === '' || !Number.isSafeInteger(seq) || buf[1] !== FrameKind.MESSAGE) return;
    this.count('in', 'message', 0);
    const code = this.handlers.message(to, buf);
    const list = this.acks.get(from) ?? [];
    list.push([seq, code ?? null]);
    this.acks.set(from, list);
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => this.flushAcks());
  }

  /** One ack message per sending node for everything it sent straight here since the last turn. */
  private flushAcks(): void {
    this.ackScheduled = false;
    // Unacked messages (a connection that closes meanwhile) are looked up again by their senders' nodes after the timeout.
    if (!this.canPublish()) return this.acks.clear();
    for (const [node, list] of this.acks) {
      const h = headers();
      h.set(KIND_HEADER, 'ack');
      h.set(NODE_HEADER, this.nodeId);
      try {
        this.nc.publish(`${this.prefix}.node.${node}`, enc.encode(JSON.stringify(list)), { headers: h });
      } catch (err) {
        this.log.debug({ code: (err as NatsError).code }, 'message acks not sent');
      }
    }
    this.acks.clear();
  }

  private onAcks(from: string, buf: Buffer): void {
    let list: unknown;
    try {
      list = JSON.parse(dec.decode(buf));
    } catch {
      return;
    }
    if (!Array.isArray(list)) return;
    for (const item of list) {
      if (!Array.isArray(item)) continue;
      const [seq, code] = item as [unknown, unknown];
      const p = typeof seq === 'number' ? this.direct.get(seq) : undefined;
      if (!p || p.node !== from) continue;
      this.direct.delete(seq as number);
      if (code === null) {
        this.metrics.presenceLookups.inc({ outcome: 'found' });
        p.settle(undefined);
      } else if (code === 'no-route') {
        // The agent left that node: forget it and look it up as if uncached.
        this.forget(p.to, from);
        this.lookupMessage(p.to, p.frame).then(p.settle, () => p.settle('internal'));
      } else {
        this.metrics.presenceLookups.inc({ outcome: 'refused' });
        p.settle(typeof code === 'string' && ABORT_NAMES.has(code) ? (code as AbortCode) : 'internal');
      }
    }
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
