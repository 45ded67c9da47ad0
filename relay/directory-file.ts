// One job: the signed member directory file the relay distributes, watched, verified, and never replaced by an older one.
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { PkiError, verifyDirectory, type ParsedCrl, type VerifiedDirectory } from '../certs/index.ts';

/** Events of {@link DirectoryFile}. */
export interface DirectoryFileEvents {
  change: [directory: VerifiedDirectory];
  rejected: [error: PkiError];
}

/**
 * The operator's signed directory (`directory.file`): loaded and checked
 * against the federation CA and the CRL in force; polled for changes. A file
 * that does not verify, or whose sequence is not higher than the one in
 * force, is refused (`rejected`) and the previous directory stays.
 */
export class DirectoryFile extends EventEmitter<DirectoryFileEvents> {
  private currentDirectory: VerifiedDirectory | undefined;
  private watching = false;
  private loading: Promise<boolean> = Promise.resolve(false);
  private readonly onStat = (curr: Stats, prev: Stats): void => {
    if (curr.mtimeMs !== prev.mtimeMs || curr.size !== prev.size || curr.ino !== prev.ino) void this.reload();
  };

  constructor(
    readonly path: string,
    private readonly caPem: string,
    private readonly crl: () => ParsedCrl | undefined,
    private readonly intervalMs: number,
  ) {
    super();
  }

  /** The directory in force, if any. */
  get current(): VerifiedDirectory | undefined {
    return this.currentDirectory;
  }

  /** Starts polling the file. */
  start(): this {
    if (!this.watching) watchFile(this.path, { interval: this.intervalMs, persistent: false }, this.onStat);
    this.watching = true;
    return this;
  }

  /** Stops polling. */
  stop(): void {
    if (this.watching) unwatchFile(this.path, this.onStat);
    this.watching = false;
  }

  /** Re-reads the file (one read at a time); true when a newer valid directory took effect. A missing file is no directory yet, not an error. */
  reload(): Promise<boolean> {
    this.loading = this.loading.then(() => this.read());
    return this.loading;
  }

  private async read(): Promise<boolean> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      this.emit('rejected', new PkiError('ERR_PKI_DIRECTORY_INVALID', `cannot read ${this.path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`));
      return false;
    }
    let next: VerifiedDirectory;
    try {
      next = await verifyDirectory(text, { caPem: this.caPem, crl: this.crl() });
    } catch (err) {
      this.emit('rejected', err instanceof PkiError ? err : new PkiError('ERR_PKI_DIRECTORY_INVALID', (err as Error).message));
      return false;
    }
    const held = this.currentDirectory;
    if (held && next.jws === held.jws) return false;
    if (held && next.directory.sequence <= held.directory.sequence) {
      this.emit(
        'rejected',
        new PkiError(
          'ERR_PKI_DIRECTORY_INVALID',
          `directory sequence ${next.directory.sequence} is not newer than the one in force (${held.directory.sequence})`,
        ),
      );
      return false;
    }
    this.currentDirectory = next;
    this.emit('change', next);
    return true;
  }
}
