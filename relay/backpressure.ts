// One job: backpressure between local sockets (pause reading a source while its destination is behind).
import type { AgentConnection } from './connection.ts';
import type { RelayMetrics } from './metrics.ts';

/** Pauses reading a source connection while a destination it writes to has more than `highWaterMark` queued. */
export class Backpressure {
  constructor(
    private readonly highWaterMark: number,
    private readonly metrics: RelayMetrics,
  ) {}

  /** `src` queued a frame towards `dst`: pause reading `src` while `dst` is above the high-water mark. */
  throttle(src: AgentConnection, dst: AgentConnection): void {
    if (dst.pendingBytes() <= this.highWaterMark || src === dst || src.blockedOn.has(dst)) return;
    if (src.blockedOn.size === 0) src.ws.pause();
    src.blockedOn.add(dst);
    dst.waiters.add(src);
    this.metrics.backpressurePauses.inc();
  }

  /** `dst` wrote some of its queue: resume its waiters once it is below half the high-water mark. */
  drained(dst: AgentConnection): void {
    if (dst.waiters.size === 0 || dst.pendingBytes() > this.highWaterMark / 2) return;
    for (const src of dst.waiters) this.unblock(src, dst);
    dst.waiters.clear();
  }

  /** `conn` goes away: whoever waited on it reads again, and it waits on nobody. */
  release(conn: AgentConnection): void {
    for (const src of conn.waiters) this.unblock(src, conn);
    conn.waiters.clear();
    for (const dst of conn.blockedOn) dst.waiters.delete(conn);
    conn.blockedOn.clear();
  }

  /** Resumes `src` if nothing else holds it. */
  resumeIfFree(src: AgentConnection): void {
    if (src.blockedOn.size === 0 && !src.remoteBlocked && !src.closing) src.ws.resume();
  }

  private unblock(src: AgentConnection, dst: AgentConnection): void {
    src.blockedOn.delete(dst);
    this.resumeIfFree(src);
  }
}
