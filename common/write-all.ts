import { writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/**
 * A write that made no progress: the disk took nothing more. Coded like the
 * system's own error, so callers that tell a full disk apart (507, a failed
 * receipt the sender retries) see this one too.
 */
function noProgress(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, a write made no progress'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
}

/** `buffers` without their first `n` bytes (no copy: the first remaining buffer is a view). */
function skipBytes(buffers: readonly Buffer[], n: number): Buffer[] {
  let i = 0;
  let left = n;
  while (i < buffers.length && left >= buffers[i]!.length) {
    left -= buffers[i]!.length;
    i += 1;
  }
  const rest = buffers.slice(i);
  if (left > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(left);
  return rest;
}

/**
 * Writes every byte of `buffers` at the handle's position. One `writev` may
 * write less than it was given and report no error (a disk filling up takes
 * the bytes that fit); what is left is written next, so a full disk ends in
 * an ENOSPC error, never in a file with bytes missing from its middle once
 * space comes back. Returns the bytes written.
 */
export async function writevAll(fh: FileHandle, buffers: readonly Buffer[]): Promise<number> {
  let rest = buffers.filter((b) => b.length > 0);
  let total = 0;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest);
    if (bytesWritten <= 0) throw noProgress();
    total += bytesWritten;
    rest = skipBytes(rest, bytesWritten);
  }
  return total;
}

/** {@link writevAll} for one buffer on a file descriptor, synchronously. */
export function writeAllSync(fd: number, data: Buffer): void {
  let offset = 0;
  while (offset < data.length) {
    const n = writeSync(fd, data, offset, data.length - offset);
    if (n <= 0) throw noProgress();
    offset += n;
  }
}
