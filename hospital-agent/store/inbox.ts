import { once } from 'node:events';
import { createReadStream, createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { AgentError } from '../errors.ts';
import { Mutex } from './mutex.ts';

/** Exchange ids that may name a file-system entry: no separators, no dots. */
export const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{7,127}$/;

/** Returns `id` when it is safe to use as a path component, else throws ERR_BAD_REQUEST. */
export function safeId(id: string): string {
  if (!SAFE_ID.test(id)) throw new AgentError('ERR_BAD_REQUEST', 'invalid exchange id');
  return id;
}

/** Metadata of a released inbox item. */
export interface InboxMeta {
  exchangeId: string;
  from: string;
  contentType: string;
  bytes: number;
  contentSha256: string;
  receivedAt: string;
  ackedAt?: string;
  /** When the item was written to the EHR's directory (`inbox.directory`). */
  copiedAt?: string;
  /** How the envelope verified (sender key id, header hash, receipt state); never PHI. */
  verification?: Record<string, unknown>;
}

/** fsyncs a file or a directory (after a rename in it, so the rename survives a power cut). */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A file being received: bytes go to quarantine and appear in the inbox only on {@link release}. */
export class Quarantine {
  readonly contentPath: string;
  private done = false;

  constructor(
    private readonly inbox: Inbox,
    readonly exchangeId: string,
    private readonly dir: string,
  ) {
    this.contentPath = join(dir, 'content');
  }

  /** A write stream to the quarantined content file. */
  writeStream(): WriteStream {
    return createWriteStream(this.contentPath, { flags: 'w', mode: 0o600 });
  }

  /**
   * Moves the verified content into the inbox atomically (one directory
   * rename after fsync), so a crash leaves either nothing or a complete item.
   */
  async release(meta: Omit<InboxMeta, 'exchangeId' | 'receivedAt'> & { receivedAt?: string }, options: { contentSynced?: boolean } = {}): Promise<InboxMeta> {
    if (this.done) throw new TypeError('quarantine already released or discarded');
    const full: InboxMeta = { ...meta, exchangeId: this.exchangeId, receivedAt: meta.receivedAt ?? new Date().toISOString() };
    // The envelope opener fsyncs the content it wrote before it reports success; other writers' content is synced here.
    if (!options.contentSynced) await fsyncPath(this.contentPath);
    const fh = await open(join(this.dir, 'meta.json'), 'wx', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(full, null, 2)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(this.dir, this.inbox.itemDir(this.exchangeId));
    await this.inbox.syncItemsDir();
    this.done = true;
    return full;
  }

  /** Deletes the quarantined bytes. */
  async discard(): Promise<void> {
    this.done = true;
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A small received item to keep in the state database: its inbox metadata and its content. */
export interface InlineDelivery {
  meta: InboxMeta;
  content: Buffer;
  /** The delivered receipt issued for it (saved in the same atomic batch). */
  receipt: unknown;
}

/** Where small items delivered in batch envelopes live (the agent's state database; see InlineInbox). */
export interface InlineItems {
  /** Keeps the items with their receipts, atomically and durably. */
  release(deliveries: readonly InlineDelivery[]): Promise<void>;
  inlineItem(id: string): Promise<InboxMeta | undefined>;
  /** Several at once (undefined where none). */
  inlineItemsOf(ids: readonly string[]): Promise<Array<InboxMeta | undefined>>;
  inlineContent(id: string): Promise<Buffer | undefined>;
  inlineItems(): Promise<InboxMeta[]>;
  putInlineItem(meta: InboxMeta): Promise<void>;
  deleteInlineItem(id: string): Promise<void>;
}

/**
 * The agent's inbox. Large items on disk: `quarantine/<id>/` while an
 * envelope is being opened, `items/<id>/{content,meta.json}` once it
 * verified. Nothing in quarantine is ever listed; {@link recover} empties it
 * after a crash. Small items that came in batch envelopes are kept in the
 * state database (`inline`), released there atomically with their receipts;
 * the API shows both kinds alike.
 */
export class Inbox {
  readonly quarantineDir: string;
  readonly itemsDir: string;

  constructor(
    readonly root: string,
    private readonly inline?: InlineItems,
  ) {
    this.quarantineDir = join(root, 'quarantine');
    this.itemsDir = join(root, 'items');
  }

  /** Creates the directories (0700) and discards anything left in quarantine; returns how many were discarded. */
  async recover(): Promise<number> {
    await mkdir(this.quarantineDir, { recursive: true, mode: 0o700 });
    await mkdir(this.itemsDir, { recursive: true, mode: 0o700 });
    const leftovers = await readdir(this.quarantineDir);
    await Promise.all(leftovers.map((name) => rm(join(this.quarantineDir, name), { recursive: true, force: true })));
    return leftovers.length;
  }

  /** The items directory fsync in progress, and the one queued behind it (shared by every release that waits for it). */
  private dirSync: Promise<void> | undefined;
  private nextDirSync: Promise<void> | undefined;

  /**
   * Makes every rename into the items directory done so far durable. Group
   * commit: while one fsync runs, callers share a single next one, which
   * starts after it (so it covers their renames); a burst of releases costs
   * two directory fsyncs, not one each.
   */
  syncItemsDir(): Promise<void> {
    if (!this.dirSync) {
      const run = fsyncPath(this.itemsDir).finally(() => {
        if (this.dirSync === run) this.dirSync = undefined;
      });
      this.dirSync = run;
      return run;
    }
    if (!this.nextDirSync) {
      const next = this.dirSync
        .catch(() => undefined)
        .then(() => {
          this.nextDirSync = undefined;
          return this.syncItemsDir();
        });
      this.nextDirSync = next;
    }
    return this.nextDirSync;
  }

  /** Directory of a released item. */
  itemDir(exchangeId: string): string {
    return join(this.itemsDir, safeId(exchangeId));
  }

  /** Starts receiving `exchangeId`; throws ERR_CONFLICT when it is already in the inbox or being received. */
  async quarantine(exchangeId: string): Promise<Quarantine> {
    const id = safeId(exchangeId);
    if ((await this.exists(this.itemDir(id))) || (await this.inline?.inlineItem(id)))
      throw new AgentError('ERR_CONFLICT', `exchange ${id} is already in the inbox`);
    const dir = join(this.quarantineDir, id);
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new AgentError('ERR_CONFLICT', `exchange ${id} is already being received`);
      throw err;
    }
    return new Quarantine(this, id, dir);
  }

  /** Released items, oldest first. */
  async list(): Promise<InboxMeta[]> {
    const names = await readdir(this.itemsDir);
    const metas = await Promise.all(names.filter((n) => SAFE_ID.test(n)).map((n) => this.fileItem(n)));
    const inline = (await this.inline?.inlineItems()) ?? [];
    return [...metas.filter((m): m is InboxMeta => m !== undefined), ...inline].sort((a, b) => a.receivedAt.localeCompare(b.receivedAt));
  }

  /**
   * Releases small received items (from a batch envelope) to the inbox with
   * the receipts issued for them, in one atomic, synced write.
   */
  async releaseInline(deliveries: readonly InlineDelivery[]): Promise<void> {
    if (!this.inline) throw new TypeError('this inbox has no store for small items');
    await this.inline.release(deliveries);
  }

  /** Metadata of one item, or undefined. */
  async get(exchangeId: string): Promise<InboxMeta | undefined> {
    return (await this.inline?.inlineItem(safeId(exchangeId))) ?? this.fileItem(exchangeId);
  }

  /**
   * Who sent the item each id names, where the inbox holds one (undefined
   * where it holds none): an exchange id is the sender's choice, and an item
   * of one sender must not be answered for, or replaced, by another's
   * exchange of the same id.
   */
  async sendersOf(exchangeIds: readonly string[]): Promise<Array<string | undefined>> {
    const inline = (await this.inline?.inlineItemsOf(exchangeIds)) ?? [];
    // A stat per id, not a failed open: almost every id of a batch names no file item, and each failed open
    // costs an exception and a round trip through the thread pool.
    return Promise.all(
      exchangeIds.map(
        async (id, i) => inline[i]?.from ?? (SAFE_ID.test(id) && existsSync(join(this.itemDir(id), 'meta.json')) ? (await this.fileItem(id))?.from : undefined),
      ),
    );
  }

  private async fileItem(exchangeId: string): Promise<InboxMeta | undefined> {
    try {
      return JSON.parse(await readFile(join(this.itemDir(exchangeId), 'meta.json'), 'utf8')) as InboxMeta;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** A read stream of an item's content; throws ERR_NOT_FOUND. */
  async openContent(exchangeId: string): Promise<Readable> {
    const inline = await this.inline?.inlineContent(safeId(exchangeId));
    if (inline) return Readable.from([inline], { objectMode: false });
    if (!(await this.fileItem(exchangeId))) throw new AgentError('ERR_NOT_FOUND', `no inbox item ${exchangeId}`);
    const stream = createReadStream(join(this.itemDir(exchangeId), 'content'));
    await once(stream, 'open');
    return stream;
  }

  /** Marks an item acknowledged by the EHR; returns the updated metadata. */
  async ack(exchangeId: string): Promise<InboxMeta> {
    return this.stamp(exchangeId, 'ackedAt');
  }

  /** Records that the item was written to the EHR's directory (once); throws ERR_NOT_FOUND. */
  async markCopied(exchangeId: string): Promise<InboxMeta> {
    return this.stamp(exchangeId, 'copiedAt');
  }

  /** Updates of an item's metadata, one at a time (an ack and a copy at once would each rewrite it). */
  private readonly metaUpdates = new Mutex();

  /** Sets `field` of an item's metadata to now, unless it is set already. */
  private stamp(exchangeId: string, field: 'ackedAt' | 'copiedAt'): Promise<InboxMeta> {
    return this.metaUpdates.run(async () => {
      const inline = await this.inline?.inlineItem(safeId(exchangeId));
      if (inline) {
        if (!inline[field]) {
          inline[field] = new Date().toISOString();
          await this.inline?.putInlineItem(inline);
        }
        return inline;
      }
      const meta = await this.fileItem(exchangeId);
      if (!meta) throw new AgentError('ERR_NOT_FOUND', `no inbox item ${exchangeId}`);
      if (!meta[field]) {
        meta[field] = new Date().toISOString();
        const path = join(this.itemDir(exchangeId), 'meta.json');
        await writeFile(`${path}.tmp`, `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o600 });
        await rename(`${path}.tmp`, path);
      }
      return meta;
    });
  }

  /** Deletes an item and its content; throws ERR_NOT_FOUND. */
  async remove(exchangeId: string): Promise<void> {
    if (await this.inline?.inlineItem(safeId(exchangeId))) {
      await this.inline?.deleteInlineItem(exchangeId);
      return;
    }
    if (!(await this.fileItem(exchangeId))) throw new AgentError('ERR_NOT_FOUND', `no inbox item ${exchangeId}`);
    await rm(this.itemDir(exchangeId), { recursive: true, force: true });
  }

  private async exists(path: string): Promise<boolean> {
    try {
      await stat(path);
      return true;
    } catch {
      return false;
    }
  }
}
