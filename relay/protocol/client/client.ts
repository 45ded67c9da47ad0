import { EventEmitter } from 'node:events';
import type { ConnectionOptions } from 'node:tls';
import { clientTlsOptions, isHospitalId, type Identity } from '../../../certs/index.ts';
import { decodeFrame, encodeMessage } from '../codec.ts';
import {
  DEFAULT_LIMITS,
  DEFAULT_WINDOW,
  DELIVERED_ID_BIT,
  FRAME_PREFIX,
  MAX_CREDIT,
  parseRevision,
  PROTOCOL_REVISION,
  REVISION_HEADER,
  type DocumentType,
  type FrameLimits,
  type NoticeType,
} from '../constants.ts';
import { ProtocolError, RelayError, TransferAbortedError } from '../errors.ts';
import { verifyUsageStatement, type SignedUsageStatement } from '../usage.ts';
import { backoffDelay, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, type BackoffOptions } from './backoff.ts';
import { DEFAULT_INBOUND_IDLE_MS, InboundTransfer } from './inbound.ts';
import type { Link, VerifiedUsage } from './link.ts';
import { OutboundTransfer } from './outbound.ts';
import type { Transport, TransportFactory } from './transport.ts';
import { wsTransport } from './transport-ws.ts';

/** Bytes queued in the transport above which outbound transfers wait, even with credit left. */
export const DEFAULT_SEND_HIGH_WATER_MARK = 4 * 1024 * 1024;

/** DATA payload size: big enough to amortise per-frame work, small enough to stay in a core's L2 cache while copied and encrypted. */
export const DEFAULT_CHUNK_SIZE = 256 * 1024;

/** Longest a renewed certificate waits for the transfers in flight before the connection is replaced anyway. */
export const DEFAULT_RENEW_MAX_WAIT_MS = 10 * 60_000;

/** `reason` of the `disconnected` event when the client replaced its connection to present a renewed certificate. */
export const RENEWAL_CLOSE_REASON = 'certificate renewed';

/** The WebSocket path agents connect to. */
export const RELAY_AGENT_PATH = '/v1/agent';

/** Options of {@link RelayClient}. */
export interface RelayClientOptions {
  /** `wss://host:port` (the agent path is added when missing); or give `urls`. */
  url?: string;
  /**
   * Several relay nodes: the client connects to the first and, whenever its
   * connection goes away or an attempt fails, tries the next one (round robin,
   * exponential backoff with full jitter once every node has failed in a row).
   */
  urls?: string[];
  /** This agent's identity (from `loadIdentity`); its CA also verifies the relay and usage statements. */
  identity: Identity;
  /** TLS server name to check, when the URL host differs from the relay certificate's. */
  servername?: string;
  /** Credit granted per inbound transfer (bytes); default {@link DEFAULT_WINDOW}. */
  window?: number;
  /**
   * Idle deadline of inbound transfers: one on which the sender, holding credit, sends no data for
   * this long is aborted with `idle-timeout` (default {@link DEFAULT_INBOUND_IDLE_MS}; 0 disables).
   */
  inboundIdleMs?: number;
  /** Largest DATA payload this client sends (default {@link DEFAULT_CHUNK_SIZE}; capped by the relay's maxFrame). */
  chunkSize?: number;
  /** Reconnect after a lost connection (default true), with exponential backoff and full jitter. */
  reconnect?: boolean | Partial<BackoffOptions>;
  /** Heartbeat: ping the relay this often and reconnect when a ping goes unanswered (default 20 s; 0 disables). */
  pingIntervalMs?: number;
  /** Alternative transport (tests, other runtimes); default WebSocket. */
  transport?: TransportFactory;
  /**
   * The CRL (PEM) to check the relay's certificate against, asked at every
   * dial (so a CRL adopted since start-up applies); undefined dials without
   * one. Absent: the identity's CRL, fixed at construction.
   */
  crl?: () => string | undefined;
}

/** A small routed message from another agent. */
export interface RelayMessage {
  from: string;
  id: number;
  body: Buffer;
}

/** Events of {@link RelayClient}. */
export interface RelayClientEvents {
  /** Connected and greeted by the relay (`url`: the node this connection went to). */
  ready: [info: { agent: string; limits: FrameLimits & { maxOpenTransfers?: number }; url: string }];
  /** The connection ended (a reconnect follows when enabled). */
  disconnected: [info: { code: number; reason: string }];
  /** A connection attempt failed (refused upgrade, TLS error...). */
  connectError: [error: RelayError];
  transfer: [transfer: InboundTransfer];
  message: [message: RelayMessage];
  /** A message could not be delivered (e.g. `no-route`). */
  undeliverable: [error: RelayError & { messageId: number; to: string }];
  /** Any relay notice, e.g. `shutting-down`. */
  notice: [type: NoticeType, body: Record<string, unknown>];
  /** A federation document from the relay (revision 3): the CRL or the signed member directory, unverified (the receiver checks it). */
  document: [type: DocumentType, body: Buffer];
}

type Stream = OutboundTransfer | InboundTransfer;

/**
 * The agent's connection to the relay: opens outbound transfers as Writables,
 * delivers inbound transfers as Readables, routes small messages, and keeps
 * reconnecting until closed.
 */
export class RelayClient extends EventEmitter<RelayClientEvents> {
  private readonly urls: string[];
  private urlIndex = 0;
  private tls: ConnectionOptions;
  private identity: Identity;
  /** Set by `renewIdentity` while the connection in use still carries the previous certificate. */
  private renewal: { deadline: NodeJS.Timeout } | undefined;
  /** The connection is being replaced for a renewed certificate: redial at once, without backoff. */
  private renewing = false;
  private readonly window: number;
  private readonly inboundIdleMs: number;
  private readonly backoff: BackoffOptions | undefined;
  private readonly makeTransport: TransportFactory;
  private transport: Transport | undefined;
  private readonly streams = new Map<number, Stream>();
  private nextTransferId = 1;
  /** Bytes handed to the transport and not yet written. */
  private queued = 0;
  private drainWaiters: Array<() => void> = [];
  private nextMessageId = 1;
  private attempt = 0;
  private dialed = '';
  /** Reconnects wait at least this long (see {@link RelayClient.holdOff}). */
  private floorMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private link: Link & { limits: FrameLimits; chunkSize: number; peerRevision: number };
  /** This agent's id as the relay named it from the certificate; set once ready. */
  agentId: string | undefined;
  /** True between `ready` and `disconnected`. */
  connected = false;

  constructor(private readonly options: RelayClientOptions) {
    super();
    const given = options?.urls ?? (options?.url !== undefined ? [options.url] : []);
    if (!Array.isArray(given) || given.length === 0) throw new TypeError('url or urls (wss:// URLs of relay nodes) is required');
    for (const url of given)
      if (typeof url !== 'string' || !/^wss:\/\//.test(url)) throw new TypeError(`relay URL must be a wss:// URL, got ${JSON.stringify(url)}`);
    if (!options.identity?.certPem) throw new TypeError('identity is required (use loadIdentity)');
    this.urls = given.map((url) => {
      const u = new URL(url);
      if (u.pathname === '/' || u.pathname === '') u.pathname = RELAY_AGENT_PATH;
      return u.toString();
    });
    this.identity = options.identity;
    this.tls = { ...clientTlsOptions(options.identity), ...(options.servername ? { servername: options.servername } : {}) };
    this.window = options.window ?? DEFAULT_WINDOW;
    if (options.chunkSize !== undefined && (!Number.isInteger(options.chunkSize) || options.chunkSize < 1024))
      throw new TypeError('chunkSize must be an integer >= 1024');
    if (!Number.isInteger(this.window) || this.window < 1024 || this.window > MAX_CREDIT)
      throw new TypeError(`window must be an integer in 1024..${MAX_CREDIT}`);
    this.inboundIdleMs = options.inboundIdleMs ?? DEFAULT_INBOUND_IDLE_MS;
    if (!Number.isInteger(this.inboundIdleMs) || this.inboundIdleMs < 0) throw new TypeError('inboundIdleMs must be an integer >= 0');
    this.backoff =
      options.reconnect === false
        ? undefined
        : { baseMs: DEFAULT_BACKOFF_BASE_MS, maxMs: DEFAULT_BACKOFF_MAX_MS, ...(typeof options.reconnect === 'object' ? options.reconnect : {}) };
    this.makeTransport = options.transport ?? wsTransport;
    this.link = {
      limits: { ...DEFAULT_LIMITS },
      chunkSize: Math.min(DEFAULT_LIMITS.maxFrame - FRAME_PREFIX, options.chunkSize ?? DEFAULT_CHUNK_SIZE),
      peerRevision: 1,
      send: (frame, cb) => {
        if (!this.transport) return cb?.(new RelayError('ERR_RELAY_NOT_CONNECTED', 'not connected to the relay'));
        const len = frame.length;
        const transport = this.transport;
        this.queued += len;
        transport.send(frame, (err) => {
          // Callbacks of a transport already replaced must not skew the new one's count.
          if (this.transport === transport) this.queued -= len;
          if (this.queued <= DEFAULT_SEND_HIGH_WATER_MARK / 2 && this.drainWaiters.length > 0) {
            const waiters = this.drainWaiters;
            this.drainWaiters = [];
            for (const fn of waiters) fn();
          }
          cb?.(err);
        });
      },
      congested: () => {
        return this.queued > DEFAULT_SEND_HIGH_WATER_MARK;
      },
      whenDrained: (fn) => {
        if (this.queued <= DEFAULT_SEND_HIGH_WATER_MARK / 2) queueMicrotask(fn);
        else this.drainWaiters.push(fn);
      },
      release: (id) => {
        this.streams.delete(id);
        if (this.renewal && this.streams.size === 0) queueMicrotask(() => this.replaceForRenewal());
      },
    };
  }

  /**
   * Connects (and keeps reconnecting when enabled). Resolves once the relay
   * greets this agent; without reconnect, rejects with the first failure.
   */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new RelayError('ERR_RELAY_CLOSED', 'client is closed'));
    const p = new Promise<void>((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
    if (!this.transport && !this.timer) this.dial();
    else if (this.connected) this.settleReady();
    return p;
  }

  /**
   * Uses `identity` (a renewed certificate, or a new CA bundle) from the next
   * connection on. A live connection is replaced once no transfer is in flight
   * on it (at the latest after {@link DEFAULT_RENEW_MAX_WAIT_MS}), and the
   * client redials at once, so the relay sees the new certificate without
   * losing a transfer.
   */
  renewIdentity(identity: Identity, options: { maxWaitMs?: number } = {}): void {
    if (!identity?.certPem) throw new TypeError('identity is required (use loadIdentity)');
    this.identity = identity;
    this.tls = { ...clientTlsOptions(identity), ...(this.options.servername ? { servername: this.options.servername } : {}) };
    if (this.renewal) clearTimeout(this.renewal.deadline);
    this.renewal = undefined;
    if (!this.connected || !this.transport) return;
    const deadline = setTimeout(() => this.replaceForRenewal(true), options.maxWaitMs ?? DEFAULT_RENEW_MAX_WAIT_MS);
    deadline.unref();
    this.renewal = { deadline };
    if (this.streams.size === 0) this.replaceForRenewal();
  }

  private replaceForRenewal(force = false): void {
    if (!this.renewal || (!force && this.streams.size > 0)) return;
    clearTimeout(this.renewal.deadline);
    this.renewal = undefined;
    if (!this.transport || !this.connected || this.closed) return;
    this.renewing = true;
    this.transport.close(1000, RENEWAL_CLOSE_REASON);
  }

  /** The relay node URL in use (or tried next). */
  get url(): string {
    return this.urls[this.urlIndex % this.urls.length] as string;
  }

  private settleReady(err?: Error): void {
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  private dial(): void {
    this.timer = undefined;
    if (this.closed) return;
    let tls = this.tls;
    if (this.options.crl) {
      const { crl: _fixed, ...rest } = this.tls;
      const crl = this.options.crl();
      tls = crl ? { ...rest, crl } : rest;
    }
    const t = this.makeTransport(this.url, tls, this.link.limits.maxFrame, {
      headers: { [REVISION_HEADER]: String(PROTOCOL_REVISION) },
      ...(this.options.pingIntervalMs === undefined ? {} : { pingIntervalMs: this.options.pingIntervalMs }),
    });
    this.dialed = this.url;
    this.transport = t;
    let failure: RelayError | undefined;
    t.on('frame', (buf) => this.onFrame(buf));
    t.on('refused', (status, body) => {
      failure = new RelayError('ERR_RELAY_REFUSED', `relay refused the connection: HTTP ${status}${body ? ` ${body}` : ''}`);
      // The relay names why it refused a certificate (revoked, expired, unknown-ca, ...) at the start of the body.
      const refusal = /^client certificate refused: ([a-z-]+)/.exec(body)?.[1];
      Object.assign(failure, { status, ...(refusal ? { refusal } : {}) });
    });
    t.on('error', (err) => {
      failure ??= new RelayError('ERR_RELAY_REFUSED', `cannot connect to the relay: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err });
    });
    t.on('close', (code, reason) => this.onClose(t, code, reason, failure));
  }

  private onClose(t: Transport, code: number, reason: string, failure: RelayError | undefined): void {
    if (this.transport !== t) return;
    this.transport = undefined;
    const wasConnected = this.connected;
    this.connected = false;
    const lost = new RelayError('ERR_RELAY_CONNECTION_LOST', `connection to the relay closed (${code}${reason ? ` ${reason}` : ''})`);
    for (const s of [...this.streams.values()]) s.onAbort(lost);
    this.streams.clear();
    this.drainWaiters = [];
    this.queued = 0;
    if (wasConnected) this.emit('disconnected', { code, reason: this.renewing ? RENEWAL_CLOSE_REASON : reason });
    else
      this.emit(
        'connectError',
        failure ?? new RelayError('ERR_RELAY_REFUSED', `connection closed before the relay greeted us (${code}${reason ? ` ${reason}` : ''})`),
      );
    if (this.closed) return;
    if (this.renewing) {
      // Ended on purpose to present a renewed certificate: same node, no backoff.
      this.renewing = false;
      this.attempt = 0;
      this.timer = setTimeout(() => this.dial(), 0);
      return;
    }
    if (!this.backoff) {
      this.settleReady(wasConnected ? lost : (failure ?? lost));
      return;
    }
    // Whatever ended this connection, the next attempt goes to another node; back off only once all have failed in a row.
    if (this.urls.length > 1) this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    if (wasConnected) this.attempt = 0;
    const delay = Math.max(this.floorMs, backoffDelay(Math.floor(this.attempt++ / this.urls.length), this.backoff));
    this.timer = setTimeout(() => this.dial(), delay);
  }

  private onFrame(buf: Buffer): void {
    let frame;
    try {
      frame = decodeFrame(buf, this.link.limits);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.transport?.close(err.closeCode, err.code);
      return;
    }
    switch (frame.kind) {
      case 'data':
        return (this.streams.get(frame.id) as InboundTransfer | undefined)?.onData?.(frame.payload);
      case 'credit':
        return (this.streams.get(frame.id) as OutboundTransfer | undefined)?.onCredit?.(frame.bytes);
      case 'end':
        return (this.streams.get(frame.id) as InboundTransfer | undefined)?.onEnd?.();
      case 'abort':
        return this.streams.get(frame.id)?.onAbort(new TransferAbortedError(frame.code, frame.reason));
      case 'open': {
        if (frame.id < DELIVERED_ID_BIT || this.streams.has(frame.id)) return;
        const t = new InboundTransfer(this.link, frame.id, frame.peer, frame.meta, this.window, this.inboundIdleMs);
        this.streams.set(frame.id, t);
        if (this.listenerCount('transfer') === 0) t.abort('rejected', 'recipient accepts no transfers');
        else this.emit('transfer', t);
        return;
      }
      case 'message':
        this.emit('message', { from: frame.peer, id: frame.id, body: Buffer.from(frame.body) });
        return;
      case 'notice':
        return this.onNotice(frame.type, frame.body);
      case 'document':
        this.emit('document', frame.type, Buffer.from(frame.body));
        return;
    }
  }

  /**
   * Makes every reconnect wait at least `ms` (0 lifts it): for an agent that
   * knows the relay will refuse it (its certificate is revoked), so it stops
   * hammering the relay but still notices a new certificate in time. A
   * reconnect already scheduled sooner is pushed back.
   */
  holdOff(ms: number): void {
    if (!Number.isInteger(ms) || ms < 0) throw new TypeError('holdOff takes a whole number of milliseconds >= 0');
    this.floorMs = ms;
    if (ms > 0 && this.timer && !this.closed) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.dial(), ms);
    }
  }

  /** The reconnect floor set by {@link RelayClient.holdOff} (0: none). */
  get holdOffMs(): number {
    return this.floorMs;
  }

  private onNotice(type: NoticeType, body: Record<string, unknown>): void {
    if (type === 'ready') {
      const limits = body.limits as Partial<FrameLimits> | undefined;
      const num = (v: unknown, d: number): number => (typeof v === 'number' && Number.isInteger(v) && v > FRAME_PREFIX ? v : d);
      this.link.limits = {
        maxFrame: num(limits?.maxFrame, DEFAULT_LIMITS.maxFrame),
        maxHeader: num(limits?.maxHeader, DEFAULT_LIMITS.maxHeader),
        maxMessage: num(limits?.maxMessage, DEFAULT_LIMITS.maxMessage),
      };
      this.link.chunkSize = Math.min(this.link.limits.maxFrame - FRAME_PREFIX, this.options.chunkSize ?? DEFAULT_CHUNK_SIZE);
      this.link.peerRevision = parseRevision(body.revision);
      this.agentId = typeof body.agent === 'string' ? body.agent : undefined;
      this.connected = true;
      this.emit('ready', { agent: this.agentId ?? '', limits: { ...this.link.limits }, url: this.dialed });
      this.settleReady();
    } else if (type === 'usage') {
      const id = body.id;
      const stream = typeof id === 'number' ? this.streams.get(id) : undefined;
      if (stream instanceof InboundTransfer) stream.onUsage(() => this.verifyUsage(body));
      else if (stream) stream.onUsage(this.verifyUsage(body));
    } else if (type === 'undeliverable') {
      const err = Object.assign(
        new RelayError('ERR_RELAY_UNDELIVERABLE', `message ${String(body.id)} to ${String(body.to)} undeliverable: ${String(body.code)}`),
        {
          messageId: Number(body.id),
          to: String(body.to),
        },
      );
      this.emit('undeliverable', err);
    }
    this.emit('notice', type, body);
  }

  private verifyUsage(body: Record<string, unknown>): VerifiedUsage | Error {
    try {
      const statement = verifyUsageStatement(body, this.identity.caPem);
      const { statement: s, signature, certificate } = body as unknown as SignedUsageStatement;
      return { statement, signed: { statement: s, signature, certificate } };
    } catch (err) {
      return err as Error;
    }
  }

  /** Opens a transfer to agent `to`; write the payload and `end()` it. Fails with `no-route` if `to` is offline. */
  openTransfer(to: string, options: { meta?: Uint8Array } = {}): OutboundTransfer {
    if (!isHospitalId(to)) throw new TypeError(`'${to}' is not a hospital id`);
    if (!this.connected || !this.transport) throw new RelayError('ERR_RELAY_NOT_CONNECTED', 'not connected to the relay');
    let id = this.nextTransferId;
    while (this.streams.has(id)) id = id + 1 >= DELIVERED_ID_BIT ? 1 : id + 1;
    this.nextTransferId = id + 1 >= DELIVERED_ID_BIT ? 1 : id + 1;
    const t = new OutboundTransfer(this.link, id, to, options.meta ?? Buffer.alloc(0));
    this.streams.set(id, t);
    return t;
  }

  /** Sends a small message to agent `to`; returns its id. Undeliverable messages surface as `undeliverable` events. */
  sendMessage(to: string, body: Uint8Array): number {
    if (!isHospitalId(to)) throw new TypeError(`'${to}' is not a hospital id`);
    if (body.byteLength > this.link.limits.maxMessage) throw new TypeError(`message of ${body.byteLength} bytes exceeds ${this.link.limits.maxMessage}`);
    if (!this.connected || !this.transport) throw new RelayError('ERR_RELAY_NOT_CONNECTED', 'not connected to the relay');
    const id = this.nextMessageId;
    this.nextMessageId = id >= 0xffff_ffff ? 1 : id + 1;
    this.transport.send(encodeMessage(id, to, body, this.link.limits));
    return id;
  }

  /** Closes the connection and stops reconnecting; open transfers fail with ERR_RELAY_CONNECTION_LOST. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.renewal) clearTimeout(this.renewal.deadline);
    this.renewal = undefined;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.settleReady(new RelayError('ERR_RELAY_CLOSED', 'client closed'));
    const t = this.transport;
    if (!t) return;
    const done = new Promise<void>((r) => t.once('close', () => r()));
    t.close(1000, 'client closing');
    const timer = setTimeout(() => t.terminate(), 2000);
    await done;
    clearTimeout(timer);
  }
}
