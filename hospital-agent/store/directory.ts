import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { hexDigest } from '../../ledger/index.ts';
import { fsyncPath, type Inbox, type InboxMeta } from './inbox.ts';

/** File name ending of an item's content in the directory, by content type. */
function extensionOf(contentType: string): string {
  const type = contentType.split(';')[0]?.trim().toLowerCase();
  if (type === 'application/fhir+json') return '.fhir.json';
  if (type === 'application/dicom') return '.dcm';
  return '.bin';
}

/**
 * Delivers inbox items into a directory the EHR watches (`inbox.directory`),
 * for EHRs and integration engines that take files rather than a webhook:
 * each item's content as `<exchange id><.fhir.json|.dcm|.bin>`, then its
 * metadata (sender, content type, size, SHA-256, how it verified) as
 * `<exchange id>.meta.json`. Both are written to a `.part` file, fsynced and
 * renamed into place, the metadata last: a `.meta.json` file means its item
 * is complete. An item is marked `copiedAt` in the inbox once both are
 * there; at start-up every unacknowledged item not marked yet is copied
 * (again), so a crash in between costs at most a second copy under the same
 * names, never a lost one. The items stay in the inbox (and its API) until the EHR acks
 * or deletes them there; deleting an item (`DELETE /v1/inbox/ID`) also removes its two
 * files here (the metadata first, so a half-removed item never looks complete).
 */
export class InboxDirectory {
  /** Copies in progress, by exchange id: a second request for one waits for it. */
  private readonly running = new Map<string, Promise<void>>();

  constructor(
    readonly dir: string,
    private readonly inbox: Inbox,
    private readonly log: Pick<Logger, 'info' | 'warn'>,
  ) {}

  /** Creates the directory (0750: the EHR's group may read it) and removes `.part` files a crash left. */
  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o750 });
    const leftovers = (await readdir(this.dir)).filter((n) => n.endsWith('.part'));
    await Promise.all(leftovers.map((n) => rm(join(this.dir, n), { force: true })));
  }

  /** Copies every item the EHR has not acknowledged and that is not marked copied; returns how many. */
  async catchUp(): Promise<number> {
    const todo = (await this.inbox.list()).filter((m) => !m.ackedAt && !m.copiedAt);
    for (const meta of todo) await this.copy(meta);
    return todo.length;
  }

  /** Copies one item (once at a time per item); failures are logged, the item stays in the inbox for the next start. */
  copy(meta: InboxMeta): Promise<void> {
    const id = meta.exchangeId;
    const running = this.running.get(id);
    if (running) return running;
    const run = this.write(meta)
      .then(
        () => this.log.info({ exchange: id, dir: this.dir }, 'inbox item written to the EHR directory'),
        (err: Error) =>
          this.log.warn(
            { exchange: id, dir: this.dir, err: { message: err.message } },
            'cannot write an inbox item to the EHR directory; it stays in the inbox and is tried again at the next start',
          ),
      )
      .finally(() => this.running.delete(id));
    this.running.set(id, run);
    return run;
  }

  private async write(meta: InboxMeta): Promise<void> {
    const id = meta.exchangeId;
    await this.place(`${id}${extensionOf(meta.contentType)}`, async (path) => {
      await pipeline(await this.inbox.openContent(id), createWriteStream(path, { mode: 0o640 }));
    });
    // The hash as people compare it with `sha256sum` of the content file.
    const shown = { ...meta, contentSha256: hexDigest(meta.contentSha256) };
    await this.place(`${id}.meta.json`, (path) => writeFile(path, `${JSON.stringify(shown, null, 2)}\n`, { mode: 0o640 }));
    await fsyncPath(this.dir);
    // Last: a crash before this copies the item again at the next start, never loses it.
    await this.inbox.markCopied(id);
  }

  /** Removes an item's copy (metadata first, then content); a copy in progress is awaited first. Missing files are fine. */
  async remove(meta: Pick<InboxMeta, 'exchangeId' | 'contentType'>): Promise<void> {
    const id = meta.exchangeId;
    await this.running.get(id);
    await rm(join(this.dir, `${id}.meta.json`), { force: true });
    await rm(join(this.dir, `${id}${extensionOf(meta.contentType)}`), { force: true });
    await fsyncPath(this.dir);
  }

  /** Writes `name` through a `.part` file: written, fsynced, then renamed into place. */
  private async place(name: string, fill: (path: string) => Promise<void>): Promise<void> {
    const part = join(this.dir, `${name}.part`);
    try {
      await fill(part);
      await fsyncPath(part);
      await rename(part, join(this.dir, name));
    } catch (err) {
      await rm(part, { force: true });
      throw err;
    }
  }
}
