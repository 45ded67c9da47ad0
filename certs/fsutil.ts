import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeAllSync } from '../common/write-all.ts';

/**
 * Writes `data` to `path` atomically: a temporary file in the same directory,
 * fsync, then rename, so readers see either the old or the new content.
 */
export function writeFileAtomic(path: string, data: string | Buffer, mode: number): void {
  const tmp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeAllSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
}

/** A timestamp for backup names: ISO 8601 in UTC to the second without colons, e.g. `2026-12-02T030000Z`. */
export function backupStamp(now: Date): string {
  return now
    .toISOString()
    .replace(/\.\d{3}Z$/, 'Z')
    .replace(/:/g, '');
}

/**
 * Copies `path` (when it exists) to `<path>.<stamp>.bak` with the same mode,
 * adding `-1`, `-2`... when a backup of that second exists; returns the
 * backup's path, or undefined when there was nothing to keep.
 */
export function backupFile(path: string, now: Date): string | undefined {
  let data: Buffer;
  let mode: number;
  try {
    data = readFileSync(path);
    mode = statSync(path).mode & 0o777;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const base = `${path}.${backupStamp(now)}`;
  let target = `${base}.bak`;
  for (let n = 1; existsSync(target); n++) target = `${base}-${n}.bak`;
  writeFileAtomic(target, data, mode);
  return target;
}
