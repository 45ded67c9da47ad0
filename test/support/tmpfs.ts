import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Mounts a tmpfs of `mib` MiB on `dir` (root only): a small disk of its own that a test can fill. */
export function mountTmpfs(dir: string, mib: number): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0700`, 'tmpfs', dir]);
}

/** Unmounts what {@link mountTmpfs} mounted (lazily: a file still open does not keep it). */
export function unmountTmpfs(dir: string): void {
  execFileSync('umount', ['-l', dir]);
}

/** Free bytes on the file system holding `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Fills the file system of `dir` with a filler file until at most `leave` bytes are free; returns the filler's path. */
export function fill(dir: string, leave: number): string {
  const path = join(dir, 'filler.bin');
  const fd = openSync(path, 'a');
  const chunk = Buffer.alloc(256 * 1024, 7);
  try {
    while (freeBytes(dir) > leave) {
      const want = Math.min(chunk.length, freeBytes(dir) - leave);
      try {
        writeSync(fd, chunk, 0, Math.max(4096, want));
      } catch {
        break;
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

/** Why a test that needs a tmpfs of its own cannot run here, or undefined when it can (root and a working mount). */
export function tmpfsUnavailable(probeDir: string): string | undefined {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root; CI runs as root';
  try {
    mountTmpfs(probeDir, 1);
    unmountTmpfs(probeDir);
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs: ${(err as Error).message.split('\n')[0]}`;
  }
}
