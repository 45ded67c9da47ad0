// One job: the relay's heartbeat (ping every agent; cut off one that did not answer the previous ping).
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import type { AgentConnection } from './connection.ts';
import type { RelayMetrics } from './metrics.ts';

/**
 * An agent that did not answer the last ping (dead link, or a peer that stopped reading its
 * socket) is cut off, which aborts its transfers with a reason both ends see.
 */
export class Heartbeat {
  private readonly answered = new WeakMap<WebSocket, boolean>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly connections: Iterable<AgentConnection>,
    private readonly metrics: RelayMetrics,
    private readonly log: Logger,
  ) {}

  /** Starts pinging every `intervalMs` (0: never). */
  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.timer = setInterval(() => this.beat(), intervalMs);
    this.timer.unref();
  }

  /** Watches a newly accepted socket's pongs. */
  track(ws: WebSocket): void {
    this.answered.set(ws, true);
    ws.on('pong', () => this.answered.set(ws, true));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private beat(): void {
    for (const conn of this.connections) {
      if (this.answered.get(conn.ws) === false) {
        this.log.warn({ agent: conn.id }, 'agent missed a heartbeat; closing its connection');
        this.metrics.heartbeatTimeouts.inc();
        conn.ws.terminate();
        continue;
      }
      this.answered.set(conn.ws, false);
      conn.ws.ping();
    }
  }
}
