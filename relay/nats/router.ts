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

/** Header naming the node that sends an OPEN request. */
const NODE_HEADER = 'Hie-Node';
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

/** A Buffer view over a NATS message payload (no copy). */
function view(data: Uint8Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * The multi-node router: each node subscribes `<prefix>.agent.<id>` for the
 * agents connected to it (presence and open/message by request/reply, so no
 * responders means `no-route` at once) and `<prefix>.node.<node>` for the
 * frames of transfers crossing nodes. NATS core only: nothing is persisted.
 */
export class NatsRouter implements Router {
  readonly remote: RemoteDelivery;
  private readonly local = new LocalRouter();
  private readonly agentSubs = new Map<string, Subscription>();
  private handlers: RemoteHandlers | undefined;
  private readonly prefix: string;
  private readonly limits: FrameLimits;

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
  }

  attach(port: AgentPort): AgentPort | undefined {
    const previous = this.local.attach(port);
    if (!this.agentSubs.has(port.id)) {
      const id = port.id;
      this.agentSubs.set(id, this.nc.subscribe(`${this.prefix}.agent.${id}`, { callback: (err, msg) => this.onAgentRequest(id, err, msg) }));
    }
    return previous;
  }

  detach(port: AgentPort): void {
    this.local.detach(port);
    if (this.local.resolve(port.id)) return;
    this.agentSubs.get(port.id)?.unsubscribe();
    this.agentSubs.delete(port.id);
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
    try {
      const reply = await this.nc.request(`${this.prefix}.agent.${to}`, frame, { timeout: this.config.requestTimeoutMs });
      this.count('out', 'message', 0);
      if (reply.data.length === 0) {
        this.metrics.presenceLookups.inc({ outcome: 'found' });
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
    const step = max - FRAME_PREFIX;
    for (let at = FRAME_PREFIX; at < frame.length; at += step) {
      const part = Buffer.allocUnsafe(FRAME_PREFIX + Math.min(step, frame.length - at));
      frame.copy(part, 0, 0, FRAME_PREFIX);
      frame.copy(part, FRAME_PREFIX, at, at + part.length - FRAME_PREFIX);
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
    const kind = buf[1] as number;
    this.count('in', KIND_NAMES[kind] ?? 'other', 1);
    if (kind === FrameKind.DATA) this.metrics.natsForwardedBytes.inc({ direction: 'in' }, Math.max(0, buf.length - FRAME_PREFIX));
    this.handlers?.frame(buf);
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
      msg.respond(code ? enc.encode(code) : new Uint8Array(0));
      return;
    }
    if (frame.kind !== 'open') return;
    const node = msg.headers?.get(NODE_HEADER);
    if (!node || !/^[A-Za-z0-9_-]{1,64}$/.test(node)) {
      msg.respond(enc.encode(JSON.stringify({ refused: 'internal', reason: 'open without a node id' })));
      return;
    }
    this.count('in', 'open', 1);
    const r = this.handlers.open(node, frame.id, frame.peer, to, frame.meta);
    msg.respond(enc.encode(JSON.stringify(r)));
  }

  /** Flushes what is queued for other nodes and closes the NATS connection. */
  async close(): Promise<void> {
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
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        metrics.natsConnected.set(0);
        log.warn({ node: nodeId }, 'NATS connection lost; reconnecting');
      } else if (s.type === 'reconnect') {
        metrics.natsConnected.set(1);
        log.info({ node: nodeId }, 'NATS reconnected');
      }
    }
  })();
  void nc.closed().then(() => metrics.natsConnected.set(0));
  log.info({ node: nodeId, servers: config.servers.length }, 'connected to NATS');
  return new NatsRouter(nc, nodeId, config, options.limits, metrics, log);
}
