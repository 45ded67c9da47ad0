import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { open as openFile, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { writevAll } from '../../common/write-all.ts';
import { CryptoError } from './errors.ts';

/** Where `openEnvelope` writes plaintext before it is verified. */
export type QuarantineTarget =
  /** A file created at this exact path (it must not exist), mode 0600; deleted on failure. */
  | { path: string }
  /** A new file with a random name in this directory, mode 0600; deleted on failure. */
  | { dir: string }
  /** A caller's stream: ended on success, destroyed with the error on failure. Its bytes are untrusted until `openEnvelope` resolves. */
  | { writable: Writable }
  /** Memory, up to `maxBytes` of plaintext (more fails with ERR_ENVELOPE_TOO_LARGE); the opened envelope carries it as `content`. */
  | { memory: { maxBytes: number } };

/** The quarantine as the opener drives it. */
export interface Quarantine {
  readonly path: string | undefined;
  /** The plaintext, once committed, for a memory quarantine. */
  readonly content?: Buffer | undefined;
  write(buf: Buffer): Promise<void>;
  commit(): Promise<void>;
  discard(reason: Error): Promise<void>;
}

function sinkError(err: unknown): CryptoError {
  return err instanceof CryptoError ? err : new CryptoError('ERR_ENVELOPE_SINK', `the quarantine sink failed: ${(err as Error).message}`, { cause: err });
}

class WritableQuarantine implements Quarantine {
  readonly path = undefined;

  constructor(private readonly ws: Writable) {}

  async write(buf: Buffer): Promise<void> {
    try {
      if (!this.ws.write(buf)) await once(this.ws, 'drain');
    } catch (err) {
      throw sinkError(err);
    }
  }

  async commit(): Promise<void> {
    try {
      await new Promise<void>((resolve, reject) => {
        this.ws.once('error', reject);
        this.ws.end(() => resolve());
      });
    } catch (err) {
      throw sinkError(err);
    }
  }

  async discard(reason: Error): Promise<void> {
    this.ws.on('error', () => undefined);
    this.ws.destroy(reason);
  }
}

class MemoryQuarantine implements Quarantine {
  readonly path = undefined;
  content: Buffer | undefined;
  private parts: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  async write(buf: Buffer): Promise<void> {
    this.bytes += buf.length;
    if (this.bytes > this.maxBytes)
      throw new CryptoError('ERR_ENVELOPE_TOO_LARGE', `the envelope holds more than the ${this.maxBytes} bytes its memory quarantine takes`);
    // Decipher output is a fresh buffer per call, so keeping a reference is safe.
    this.parts.push(buf);
  }

  async commit(): Promise<void> {
    this.content = this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts, this.bytes);
    this.parts = [];
  }

  async discard(): Promise<void> {
    this.parts = [];
  }
}

/** Flush the file quarantine's batch when it reaches this many bytes. */
const FILE_BATCH_BYTES = 1024 * 1024;

/**
 * Plaintext to a file, in batches of about 1 MiB (one writev each). One batch
 * is written while the next one fills, so the opener keeps decrypting while
 * the disk works; it waits only when a second batch is ready before the first
 * one is on disk.
 */
class FileQuarantine implements Quarantine {
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private writing: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly fh: FileHandle,
    readonly path: string,
  ) {}

  /** Waits for the batch being written, then starts writing the current one (returns without waiting for it). */
  private async flush(): Promise<void> {
    if (this.writing) await this.writing;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    if (batch.length === 0) return;
    const writing = writevAll(this.fh, batch).then(() => undefined);
    this.writing = writing;
    // A failure surfaces at the next flush or at commit; keep it from being reported as unhandled meanwhile.
    writing.catch(() => undefined);
  }

  async write(buf: Buffer): Promise<void> {
    if (buf.length === 0) return;
    // Decipher output is a fresh buffer per call, so keeping a reference is safe.
    this.batch.push(buf);
    this.batchBytes += buf.length;
    if (this.batchBytes >= FILE_BATCH_BYTES) {
      try {
        await this.flush();
      } catch (err) {
        throw sinkError(err);
      }
    }
  }

  async commit(): Promise<void> {
    try {
      await this.flush();
      await this.writing;
      // Durable before the caller releases it and sends a 'delivered' receipt.
      await this.fh.sync();
      this.closed = true;
      await this.fh.close();
    } catch (err) {
      throw sinkError(err);
    }
  }

  async discard(): Promise<void> {
    this.batch = [];
    await this.writing?.catch(() => undefined);
    if (!this.closed) await this.fh.close().catch(() => undefined);
    this.closed = true;
    await unlink(this.path).catch(() => undefined);
  }
}

/** Opens the quarantine sink named by `target`. */
export async function openQuarantine(target: QuarantineTarget): Promise<Quarantine> {
  if ('writable' in target) return new WritableQuarantine(target.writable);
  if ('memory' in target) {
    if (!Number.isSafeInteger(target.memory?.maxBytes) || target.memory.maxBytes < 0)
      throw new TypeError('quarantine.memory.maxBytes must be a non-negative integer');
    return new MemoryQuarantine(target.memory.maxBytes);
  }
  const path = 'path' in target ? target.path : join(target.dir, `.quarantine-${randomBytes(12).toString('hex')}.part`);
  let fh: FileHandle;
  try {
    fh = await openFile(path, 'wx', 0o600);
  } catch (err) {
    throw sinkError(err);
  }
  return new FileQuarantine(fh, path);
}
