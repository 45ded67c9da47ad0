import type { Readable, Writable } from 'node:stream';
import type { FrameLimits } from '../constants.ts';
import type { SignedUsageStatement, UsageStatement } from '../usage.ts';

/** What a transfer stream needs from its client. */
export interface Link {
  send(frame: Buffer, cb?: (err?: Error) => void): void;
  readonly limits: FrameLimits;
  /** Largest DATA payload the client sends. */
  readonly chunkSize: number;
  /** True while more than the client's high-water mark is queued in the transport. */
  congested(): boolean;
  /** Runs `fn` once the transport queue has drained below its low-water mark. */
  whenDrained(fn: () => void): void;
  /** The relay's protocol revision (from its `ready` notice; 1 until then or when it names none). */
  readonly peerRevision: number;
  /** The stream is finished with its id (completed, aborted or destroyed). */
  release(id: number): void;
}

/** A verified usage statement as surfaced to the agent. */
export interface VerifiedUsage {
  statement: UsageStatement;
  signed: SignedUsageStatement;
}

/**
 * Destroys a transfer stream with `err`. When nobody listens for errors any more (a transfer whose bytes
 * all went through and waits only for its usage statement, or one refused as a duplicate), the error must
 * not surface as an unhandled 'error' that takes the whole agent down; its promises still report it.
 */
export function destroyWith(stream: Readable | Writable, err: Error): void {
  if (stream.listenerCount('error') === 0) stream.once('error', () => undefined);
  stream.destroy(err);
}

/** A promise with its settle functions, pre-caught so an unobserved rejection never crashes the agent. */
export function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}
