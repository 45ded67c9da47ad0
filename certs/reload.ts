// One job: notice a renewed certificate, key or CA bundle on disk and hand over the new identity once it checks out.
import { EventEmitter } from 'node:events';
import { unwatchFile, watch, watchFile, type FSWatcher, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { PkiError } from './errors.ts';
import { loadIdentity, type Identity, type IdentityPaths } from './identity.ts';

/** How often the identity files are stat-polled (the fallback where fs.watch misses a change, e.g. on network file systems). */
export const DEFAULT_IDENTITY_POLL_MS = 5000;
/** Quiet time after the last file event before the files are read: a renewal writes key and certificate one after the other. */
export const DEFAULT_IDENTITY_DEBOUNCE_MS = 500;

/** Events of {@link IdentityWatcher}. */
export interface IdentityWatcherEvents {
  /** A new, consistent identity was adopted (`previous` is the one it replaces). */
  change: [identity: Identity, previous: Identity];
  /** The files changed but do not form a usable identity; the previous one stays in force. */
  rejected: [error: PkiError];
}

/** Options of {@link IdentityWatcher}. */
export interface IdentityWatcherOptions {
  pollMs?: number;
  debounceMs?: number;
  /** The hospital id the certificate must keep naming (agents). */
  expectId?: string | undefined;
}

/**
 * Watches an identity's certificate, key and CA files (fs.watch on their
 * directories, with a stat poll as fallback, debounced) and adopts a new
 * identity only when `loadIdentity` accepts the files together: a
 * half-written or mismatched pair, an unknown issuer or an expired
 * certificate emits `rejected` and the previous identity stays in force.
 */
export class IdentityWatcher extends EventEmitter<IdentityWatcherEvents> {
  private currentIdentity: Identity;
  private readonly paths: IdentityPaths;
  private readonly pollMs: number;
  private readonly debounceMs: number;
  private readonly expectId: string | undefined;
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  /** The last failing file content, so one bad state is reported once rather than at every poll. */
  private lastRejected = '';
  private readonly onStat = (curr: Stats, prev: Stats): void => {
    if (curr.mtimeMs !== prev.mtimeMs || curr.size !== prev.size || curr.ino !== prev.ino) this.schedule();
  };

  constructor(paths: IdentityPaths, initial: Identity, options: IdentityWatcherOptions = {}) {
    super();
    this.paths = { cert: paths.cert, key: paths.key, ca: paths.ca, passphrase: paths.passphrase };
    this.currentIdentity = initial;
    this.pollMs = options.pollMs ?? DEFAULT_IDENTITY_POLL_MS;
    this.debounceMs = options.debounceMs ?? DEFAULT_IDENTITY_DEBOUNCE_MS;
    this.expectId = options.expectId;
  }

  /** The identity in force. */
  get current(): Identity {
    return this.currentIdentity;
  }

  /** Starts watching; safe to call twice. */
  start(): this {
    if (this.polling) return this;
    this.polling = true;
    const files = [this.paths.cert, this.paths.key, this.paths.ca];
    for (const dir of new Set(files.map((f) => dirname(f)))) {
      try {
        const w = watch(dir, { persistent: false }, () => this.schedule());
        w.on('error', () => w.close());
        this.watchers.push(w);
      } catch {
        // No inotify (or the directory is gone): the poll below still notices changes.
      }
    }
    for (const f of files) watchFile(f, { interval: this.pollMs, persistent: false }, this.onStat);
    return this;
  }

  /** Stops watching. */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.watchers.splice(0)) w.close();
    if (this.polling) for (const f of [this.paths.cert, this.paths.key, this.paths.ca]) unwatchFile(f, this.onStat);
    this.polling = false;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reload();
    }, this.debounceMs);
    this.timer.unref();
  }

  /** Reads the files now; true when a different, valid identity was adopted. */
  reload(now: Date = new Date()): boolean {
    let next: Identity;
    try {
      next = loadIdentity(this.paths, now);
      if (this.expectId !== undefined && next.hospitalId !== this.expectId) {
        throw new PkiError('ERR_PKI_CERT_INVALID', `${this.paths.cert} names '${next.hospitalId ?? 'no hospital'}', not '${this.expectId}'`);
      }
    } catch (err) {
      const e =
        err instanceof PkiError ? err : new PkiError('ERR_PKI_CERT_INVALID', `cannot load ${this.paths.cert}: ${(err as Error).message}`, { cause: err });
      if (e.message !== this.lastRejected) this.emit('rejected', e);
      this.lastRejected = e.message;
      return false;
    }
    this.lastRejected = '';
    const prev = this.currentIdentity;
    if (next.certPem === prev.certPem && next.keyPem === prev.keyPem && next.caPem === prev.caPem) return false;
    this.currentIdentity = next;
    this.emit('change', next, prev);
    return true;
  }
}
