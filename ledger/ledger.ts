import { createPublicKey, sign as edSign, type KeyObject } from 'node:crypto';
import { jwkThumbprint, publicJwk, type KeyBundle } from '../certs/index.ts';
import { decodeEntry, encodeEntry, type StoredEntry } from './entry.ts';
import { LedgerError } from './errors.ts';
import { evidenceSchema, MAX_EVIDENCE_CHAIN, type Evidence } from './evidence.ts';
import {
  checkpointSchema,
  endorsementMessage,
  signCheckpoint,
  signedHeadSchema,
  signHead,
  verifyCheckpointSignature,
  verifyHeadSignature,
  type SignedCheckpoint,
  type SignedHead,
} from './heads.ts';
import { KeyHistory, keyEraFromEntry, type KeyEra, type Trust } from './keys.ts';
import { appendToRange, consistencyPath, hashesEqual, inclusionPath, leafHash, rootAt, rootFromCompactRange } from './merkle.ts';
import { checkpointOrigin, openCheckpoint, signCheckpointNote, type Checkpoint } from './note.ts';
import { concerns, isSealed, readSealed, sealEntry, sealingKey, unsealEntry, type SealedRecord } from './sealed.ts';
import { buildTree, growTree, nodeReader, type FeedTree } from './tree.ts';
import { checkBody, ENTRY_VERSION, GENESIS_PREV, HEX64_PATTERN, type AppendInput, type Entry, type EntryType } from './schema.ts';
import { feedKey, prefixRange, readStoredJson, seqKey, Store, type BatchOp } from './store.ts';

/** Most entries written in one atomic batch (one signed head each). */
export const DEFAULT_MAX_APPEND_BATCH = 1024;
/** Checkpoints kept per agent (older ones are pruned). */
export const DEFAULT_CHECKPOINTS_KEPT = 64;

/** The key an author signs its feed with, and the bundle binding it to its certificate. */
export interface AuthorOptions {
  /** The feed id: the agent's hospital id. */
  feed: string;
  /** Ed25519 private key. */
  signingKey: KeyObject;
  /** Key bundle for `signingKey` (from certs' createKeyBundle); written in the genesis entry of a new feed. */
  bundle: KeyBundle;
}

/** Options of {@link Ledger.open}. */
export interface LedgerOptions {
  /** Directory of the LevelDB database. */
  path: string;
  /** The federation CA (and CRL) every feed's keys must chain to. */
  trust: Trust;
  /** Present for an agent that appends to its own feed; absent for a reader or a pure replica. */
  author?: AuthorOptions;
  /** Create the database when missing (default true). */
  createIfMissing?: boolean;
  /** Clock (tests freeze it). */
  now?: () => Date;
  /** Most entries per atomic append batch. */
  maxAppendBatch?: number;
  /**
   * Hold the author's appends (and a new feed's genesis entry) until
   * {@link Ledger.endRecovery}: meanwhile the author's own feed may be taken
   * from peers through {@link Ledger.ingest} (recovery.ts). Appends made
   * meanwhile wait in the queue; nothing is refused.
   */
  recover?: boolean;
}

const isSignedHead = (v: unknown): v is SignedHead => signedHeadSchema.safeParse(v).success;
const isCheckpoint = (v: unknown): v is SignedCheckpoint => checkpointSchema.safeParse(v).success;
const isStoredHead = (v: unknown): v is { seq: number; hash: string; ts: string } => {
  const h = v as { seq?: unknown; hash?: unknown; ts?: unknown } | null;
  return typeof h === 'object' && h !== null && Number.isSafeInteger(h.seq) && typeof h.hash === 'string' && typeof h.ts === 'string';
};

/** Position of the newest stored entry of a feed. */
export interface Head {
  feed: string;
  seq: number;
  hash: string;
  ts: string;
}

/** What an append returns. */
export interface AppendResult {
  feed: string;
  seq: number;
  hash: string;
  ts: string;
}

/** Outcome of comparing a peer's signed head with what we hold. */
export type HeadCheck = 'same' | 'behind' | 'equivocation' | 'invalid' | 'stopped';

/** Outcome of {@link Ledger.addCheckpoint}. */
export type CheckpointOutcome = 'stored' | 'conflict' | 'unknown-key' | 'invalid';

/** Per-feed line of {@link Ledger.status}. */
export interface FeedStatus {
  feed: string;
  seq: number;
  hash: string;
  ts: string;
  stopped: boolean;
}

/** A snapshot of the ledger for an agent's status API. */
export interface LedgerStatus {
  feed: string | undefined;
  feeds: FeedStatus[];
  evidence: Evidence[];
}

/** A per-entry proof: the entry, the entries after it up to a signed head, and that head. */
export interface EntryProof {
  entries: Buffer[];
  head: SignedHead;
}

/** An entry of another feed held only as a sealed record (sealed.ts): its bytes, entry hash and leaf hash, no readable body. */
interface SealedItem {
  sealed: SealedRecord;
  bytes: Buffer;
  hash: string;
}
type Item = StoredEntry | SealedItem;
const itemSeq = (i: Item): number => ('sealed' in i ? i.sealed.seq : i.entry.seq);
const itemLeaf = (i: Item): Buffer => ('sealed' in i ? Buffer.from(i.sealed.leaf, 'hex') : leafHash(i.bytes));

interface Pending {
  input: AppendInput;
  resolve: (r: AppendResult) => void;
  reject: (err: unknown) => void;
}

/**
 * A hash-chained, signed ledger in LevelDB: the agent's own feed (appends)
 * and every other feed it replicates. All writes go through one queue, so
 * appends from concurrent callers land in call order; appends waiting
 * together are committed in one atomic batch with one signed head.
 */
export class Ledger {
  private readonly heads = new Map<string, Head>();
  private readonly trees = new Map<string, FeedTree>();
  private readonly origins = new Map<string, string>();
  private readonly keys = new Map<string, KeyHistory>();
  private readonly stopped = new Set<string>();
  private readonly pending: Pending[] = [];
  private writeChain: Promise<void> = Promise.resolve();
  private draining = false;
  private closed = false;
  private signing: { key: KeyObject; kid: string } | undefined;
  private recovering = false;
  /** The sealing key of our feed (sealed.ts), derived once per signing key. */
  private sealKey: { kid: string; key: Buffer } | undefined;
  /** The newest checkpoint of our own feed we signed, while recovering: the restored tree must agree with it. */
  private anchor: { size: number; root: Buffer } | undefined;

  private constructor(
    private readonly store: Store,
    private readonly trust: Trust,
    private readonly author: AuthorOptions | undefined,
    private readonly now: () => Date,
    private readonly maxBatch: number,
  ) {}

  /** Opens the ledger at `options.path`; an author's feed gets its genesis entry on first open. */
  static async open(options: LedgerOptions): Promise<Ledger> {
    if (typeof options?.path !== 'string' || options.path.length === 0) throw new TypeError('options.path must be a directory path');
    if (typeof options.trust?.caPem !== 'string') throw new TypeError('options.trust.caPem must be the CA certificate PEM');
    const maxBatch = options.maxAppendBatch ?? DEFAULT_MAX_APPEND_BATCH;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new TypeError('options.maxAppendBatch must be a positive integer');
    if (options.author && options.author.signingKey?.asymmetricKeyType !== 'ed25519')
      throw new TypeError('options.author.signingKey must be an Ed25519 private key');
    const store = await Store.open(options.path, { createIfMissing: options.createIfMissing ?? true });
    const ledger = new Ledger(store, options.trust, options.author, options.now ?? (() => new Date()), maxBatch);
    try {
      await ledger.load(options.recover === true);
    } catch (err) {
      await store.close();
      throw err;
    }
    return ledger;
  }

  /** The author's feed id, or undefined for a reader/replica. */
  get feed(): string | undefined {
    return this.author?.feed;
  }

  private async load(recover: boolean): Promise<void> {
    for await (const [feed, value] of this.store.heads.iterator()) {
      const h = readStoredJson(value, `head of ${feed}`, isStoredHead);
      this.heads.set(feed, { feed, ...h });
    }
    // Feeds written before trees existed get theirs now, from their stored bytes (entries are not rewritten).
    for (const [feed, head] of this.heads) this.trees.set(feed, await buildTree(this.store, feed, head.seq + 1));
    for (const feed of this.heads.keys()) {
      const history = new KeyHistory();
      const keyed: Array<{ seq: number; type: EntryType }> = [];
      for (const type of ['genesis', 'key.rotated'] as const) {
        for await (const key of this.store.byType.keys(prefixRange(`${type}!${feed}`))) keyed.push({ seq: Number(key.slice(key.lastIndexOf('!') + 1)), type });
      }
      keyed.sort((a, b) => a.seq - b.seq);
      for (const { seq, type } of keyed) {
        const stored = await this.get(feed, seq);
        if (!stored) throw new LedgerError('ERR_LEDGER_DB_UNREADABLE', `index names ${feed}:${seq} but the entry is missing`);
        // A damaged index must not reach keyEraFromEntry/KeyHistory.push, whose TypeErrors are for callers' misuse.
        if (stored.entry.type !== type || (history.current()?.fromSeq ?? -1) >= seq)
          throw new LedgerError('ERR_LEDGER_DB_UNREADABLE', `the ${type} index names ${feed}:${seq}, which is not a ${type} entry in order`);
        history.push(await keyEraFromEntry(stored.entry, history.current(), this.trust));
      }
      this.keys.set(feed, history);
    }
    for await (const value of this.store.evidence.values()) {
      const ev = evidenceSchema.safeParse(readStoredJson(value, 'evidence'));
      if (ev.success && ev.data.kind === 'equivocation') this.stopped.add(ev.data.feed);
    }
    if (this.author) await this.initAuthor(this.author, recover);
  }

  private async initAuthor(author: AuthorOptions, recover: boolean): Promise<void> {
    const kid = await jwkThumbprint(publicJwk(createPublicKey(author.signingKey)));
    this.signing = { key: author.signingKey, kid };
    if (!recover) return this.finishAuthor(author);
    if (this.heads.has(author.feed)) this.checkCurrentKey(author.feed, kid);
    this.recovering = true;
    this.anchor = await this.newestOwnCheckpoint(author.feed, author.signingKey);
  }

  /** The newest stored checkpoint of our own feed that verifies under `key` (a damaged one is skipped). */
  private async newestOwnCheckpoint(feed: string, key: KeyObject): Promise<{ size: number; root: Buffer } | undefined> {
    const pub = createPublicKey(key);
    for await (const note of this.store.notes.values({ ...prefixRange(feed), reverse: true })) {
      try {
        const cp = openCheckpoint(note, this.origin(feed), [pub]);
        return { size: cp.size, root: cp.root };
      } catch {
        // A note we cannot read proves nothing; an older one may.
      }
    }
    return undefined;
  }

  private checkCurrentKey(feed: string, kid: string): void {
    if (this.keys.get(feed)?.current()?.kid !== kid) {
      throw new LedgerError('ERR_LEDGER_KEY_MISMATCH', `options.author.signingKey is not the current key of feed '${feed}' (rotate keys with rotateKey)`);
    }
  }

  /**
   * Ends the hold of {@link LedgerOptions.recover}: a feed still empty gets
   * its genesis entry, the head its signed head and checkpoint, and appends
   * that waited are written. Throws (and keeps holding) when the restored
   * feed's current key is not ours.
   */
  async endRecovery(): Promise<void> {
    this.assertOpen();
    const author = this.author;
    if (!author) return;
    await this.exclusive(async () => {
      if (!this.recovering) return;
      await this.finishAuthor(author);
      this.recovering = false;
      this.anchor = undefined;
      if (this.pending.length > 0 && !this.draining) {
        this.draining = true;
        void this.exclusive(() => this.drain());
      }
    });
  }

  /** True while appends are held for recovery ({@link LedgerOptions.recover}). */
  get isRecovering(): boolean {
    return this.recovering;
  }

  /** While recovering: the tree size of our newest surviving own checkpoint (the feed must get back at least that far), else 0. */
  get recoveryTarget(): number {
    return this.recovering ? (this.anchor?.size ?? 0) : 0;
  }

  private async finishAuthor(author: AuthorOptions): Promise<void> {
    const kid = (this.signing as { kid: string }).kid;
    const head = this.heads.get(author.feed);
    if (!head) {
      if (author.bundle?.agent !== author.feed) throw new TypeError(`options.author.bundle must be the key bundle of '${author.feed}'`);
      if (author.bundle.signing.kid !== kid) throw new LedgerError('ERR_LEDGER_KEY_MISMATCH', 'options.author.bundle does not carry options.author.signingKey');
      const entry: Entry = {
        v: ENTRY_VERSION,
        feed: author.feed,
        seq: 0,
        prev: GENESIS_PREV,
        ts: this.now().toISOString(),
        type: 'genesis',
        body: { bundle: author.bundle },
        refs: [],
      };
      const era = await keyEraFromEntry(entry, undefined, this.trust);
      const stored = encodeEntry(entry);
      const signed = signHead({ feed: author.feed, seq: 0, hash: stored.hash, ts: entry.ts }, author.signingKey, kid);
      await this.commit(author.feed, [stored], signed, { author: author.signingKey });
      const history = new KeyHistory();
      history.push(era);
      this.keys.set(author.feed, history);
      return;
    }
    this.checkCurrentKey(author.feed, kid);
    // A database written by an older version (or restored from a copy) may end without a signed head.
    const top = await this.signedHead(author.feed);
    if (!top || top.seq !== head.seq) {
      const signed = signHead({ feed: author.feed, seq: head.seq, hash: head.hash, ts: this.now().toISOString() }, author.signingKey, kid);
      await this.store.batch([{ type: 'put', sublevel: this.store.signedHeads, key: feedKey(author.feed, head.seq), value: JSON.stringify(signed) }]);
    }
    // Likewise a database from before checkpoints: the current tree gets one.
    // (Not through checkpointAt: a feed stopped by equivocation evidence still opens.)
    await this._checkpointAt(author.feed, this.signing as { key: KeyObject; kid: string }, head.seq + 1);
  }

  private assertOpen(): void {
    if (this.closed) throw new LedgerError('ERR_LEDGER_CLOSED', 'ledger is closed');
  }

  private assertAuthor(): { feed: string; signing: { key: KeyObject; kid: string } } {
    this.assertOpen();
    if (!this.author || !this.signing) throw new LedgerError('ERR_LEDGER_READ_ONLY', 'this ledger was opened without an author key');
    if (this.stopped.has(this.author.feed))
      throw new LedgerError('ERR_LEDGER_FEED_STOPPED', `feed '${this.author.feed}' has equivocation evidence; appends are stopped`);
    return { feed: this.author.feed, signing: this.signing };
  }

  /** Runs `fn` after every earlier write. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writeChain.then(fn);
    this.writeChain = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * Appends one entry to the author's feed. The body is validated against
   * its type's schema; the promise settles once the entry and a signed head
   * covering it are on disk.
   */
  append(input: AppendInput): Promise<AppendResult> {
    try {
      this.assertAuthor();
      if (typeof input !== 'object' || input === null) throw new TypeError('append expects { type, body, refs? }');
      if (input.type === ('genesis' as string) || input.type === ('key.rotated' as string))
        throw new TypeError(`${input.type} entries are written by the ledger (use rotateKey)`);
      const problem = checkBody(input.type, input.body);
      if (problem) throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', problem);
      const refs = input.refs ?? [];
      if (!Array.isArray(refs) || refs.length > 8 || !refs.every((r) => typeof r === 'string' && HEX64_PATTERN.test(r))) {
        throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', 'refs must be at most 8 SHA-256 hashes (lowercase hex)');
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<AppendResult>((resolve, reject) => {
      this.pending.push({ input, resolve, reject });
      // While recovering, appends wait: our own feed's next seq is not known yet.
      if (!this.draining && !this.recovering) {
        this.draining = true;
        void this.exclusive(() => this.drain());
      }
    });
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const items = this.pending.splice(0, this.maxBatch);
        try {
          const results = await this._append(items.map((p) => p.input));
          items.forEach((p, i) => {
            const r = results[i];
            if (r instanceof Error) p.reject(r);
            else p.resolve(r as AppendResult);
          });
        } catch (err) {
          for (const p of items) p.reject(err);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private async _append(inputs: AppendInput[]): Promise<Array<AppendResult | Error>> {
    const { feed, signing } = this.assertAuthor();
    const head = this.heads.get(feed) as Head;
    let seq = head.seq;
    let prev = head.hash;
    // Timestamps never go backwards within a feed, even if the wall clock does.
    const ts = maxTs(this.now().toISOString(), head.ts);
    const stored: StoredEntry[] = [];
    const results: Array<AppendResult | Error> = [];
    for (const input of inputs) {
      const entry: Entry = { v: ENTRY_VERSION, feed, seq: seq + 1, prev, ts, type: input.type, body: input.body, refs: input.refs ?? [] } as Entry;
      try {
        const s = encodeEntry(entry);
        stored.push(s);
        seq += 1;
        prev = s.hash;
        results.push({ feed, seq, hash: s.hash, ts });
      } catch (err) {
        results.push(err as Error);
      }
    }
    if (stored.length === 0) return results;
    const signed = signHead({ feed, seq, hash: prev, ts }, signing.key, signing.kid);
    await this.commit(feed, stored, signed, { author: signing.key });
    return results;
  }

  /**
   * Rotates the author's signing key: appends a key.rotated entry carrying
   * `bundle` (verified against the CA) and endorsed by the current key; every
   * later head is signed with `signingKey`.
   */
  async rotateKey(signingKey: KeyObject, bundle: KeyBundle): Promise<AppendResult> {
    const { feed } = this.assertAuthor();
    if (signingKey?.asymmetricKeyType !== 'ed25519' || signingKey.type !== 'private') throw new TypeError('signingKey must be an Ed25519 private key');
    const kid = await jwkThumbprint(publicJwk(createPublicKey(signingKey)));
    if (bundle?.signing?.kid !== kid) throw new LedgerError('ERR_LEDGER_KEY_MISMATCH', 'bundle does not carry signingKey');
    if (this.recovering) throw new LedgerError('ERR_LEDGER_RECOVERING', `feed '${feed}' is being recovered from peers; keys rotate after that`);
    return this.exclusive(async () => {
      const { signing } = this.assertAuthor();
      const head = this.heads.get(feed) as Head;
      const ts = maxTs(this.now().toISOString(), head.ts);
      const endorsement = edSign(null, endorsementMessage(feed, bundle.sig), signing.key).toString('base64url');
      const entry: Entry = { v: ENTRY_VERSION, feed, seq: head.seq + 1, prev: head.hash, ts, type: 'key.rotated', body: { bundle, endorsement }, refs: [] };
      const history = this.keys.get(feed) as KeyHistory;
      const era = await keyEraFromEntry(entry, history.current(), this.trust);
      const stored = encodeEntry(entry);
      const signed = signHead({ feed, seq: entry.seq, hash: stored.hash, ts }, signingKey, kid);
      await this.commit(feed, [stored], signed, { author: signingKey });
      history.push(era);
      this.signing = { key: signingKey, kid };
      return { feed, seq: entry.seq, hash: stored.hash, ts };
    });
  }

  /**
   * Writes entries (already checked), their indexes, the new head, a signed
   * head, the Merkle tree nodes they complete and a checkpoint of the new
   * tree (signed with `author`, or a peer's `note` that must verify under
   * `keys` and name exactly the new tree) in one atomic batch.
   */
  private async commit(
    feed: string,
    entries: Item[],
    signed: SignedHead,
    checkpoint: { author: KeyObject } | { note: string; keys: KeyObject[] } | undefined = undefined,
  ): Promise<void> {
    const s = this.store;
    const ops: BatchOp[] = [];
    const tree = this.trees.get(feed) ?? { size: 0, range: [] };
    if (tree.size !== itemSeq(entries[0] as Item))
      throw new LedgerError(
        'ERR_LEDGER_DB_UNREADABLE',
        `the Merkle tree of ${feed} has ${tree.size} leaves, the range starts at ${itemSeq(entries[0] as Item)}`,
      );
    const grown = growTree(s, feed, tree, [], entries.map(itemLeaf));
    ops.push(...grown.ops);
    if (checkpoint) {
      const cp: Checkpoint = { origin: this.origin(feed), size: grown.tree.size, root: rootFromCompactRange(grown.tree.range) };
      let note: string;
      if ('author' in checkpoint) note = signCheckpointNote(cp, checkpoint.author);
      else {
        const theirs = openCheckpoint(checkpoint.note, cp.origin, checkpoint.keys);
        if (theirs.size !== cp.size || !hashesEqual(theirs.root, cp.root))
          throw new LedgerError('ERR_LEDGER_NOT_COVERED', `checkpoint of ${feed} at size ${theirs.size} does not name the tree of the range`);
        note = checkpoint.note;
      }
      ops.push({ type: 'put', sublevel: s.notes, key: feedKey(feed, cp.size), value: note });
    }
    let lastTs = this.heads.get(feed)?.ts ?? signed.ts;
    for (const item of entries) {
      const k = feedKey(feed, itemSeq(item));
      ops.push({ type: 'put', sublevel: s.entries, key: k, value: item.bytes });
      // A sealed record is stored as it came: no index names it (its type and ids are not known here).
      if ('sealed' in item) continue;
      const { entry } = item;
      lastTs = entry.ts;
      ops.push({ type: 'put', sublevel: s.byType, key: `${entry.type}!${k}`, value: '' });
      const body = entry.body as { exchange?: string; consent?: string };
      if (body.exchange) ops.push({ type: 'put', sublevel: s.byExchange, key: `${body.exchange}!${k}`, value: '' });
      if (body.consent) ops.push({ type: 'put', sublevel: s.byConsent, key: `${body.consent}!${k}`, value: '' });
    }
    const last = entries.at(-1) as Item;
    // A sealed last entry's time is not known: the head keeps the newest readable one's (a lower bound).
    const head: Head = { feed, seq: itemSeq(last), hash: last.hash, ts: lastTs };
    ops.push({ type: 'put', sublevel: s.heads, key: feed, value: JSON.stringify({ seq: head.seq, hash: head.hash, ts: head.ts }) });
    ops.push({ type: 'put', sublevel: s.signedHeads, key: feedKey(feed, signed.seq), value: JSON.stringify(signed) });
    await s.batch(ops);
    this.heads.set(feed, head);
    this.trees.set(feed, grown.tree);
  }

  /**
   * Verifies a range of another feed received from a peer (or a bundle) and
   * stores it atomically: schema, feed, seq continuity from our head, links,
   * keys bound to the CA, and `head` (validly signed) covering the last entry.
   * A range that is validly signed but does not extend our copy is stored as
   * equivocation evidence and throws ERR_LEDGER_EQUIVOCATION; anything else
   * wrong throws and changes nothing.
   */
  async ingest(feed: string, range: Buffer[], head: SignedHead, peer?: string, checkpoint?: string): Promise<{ stored: number }> {
    this.assertOpen();
    if (!Array.isArray(range) || range.length === 0) throw new TypeError('range must be a non-empty array of entry bytes');
    const parsedHead = signedHeadSchema.safeParse(head);
    if (!parsedHead.success || parsedHead.data.feed !== feed) throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', `signed head for ${feed} is malformed`);
    if (checkpoint !== undefined && typeof checkpoint !== 'string') throw new TypeError('checkpoint must be a signed note (text)');
    return this.exclusive(() => this._ingest(feed, range, parsedHead.data, peer, checkpoint));
  }

  private async _ingest(
    feed: string,
    range: Buffer[],
    head: SignedHead,
    peer: string | undefined,
    checkpoint: string | undefined,
  ): Promise<{ stored: number }> {
    this.assertOpen();
    if (this.stopped.has(feed)) throw new LedgerError('ERR_LEDGER_FEED_STOPPED', `feed '${feed}' is stopped after equivocation`);
    // Our own feed comes from a peer only while recovering it (our key signed it; recovery.ts).
    if (feed === this.author?.feed && !this.recovering) throw new LedgerError('ERR_LEDGER_SEQ', `feed '${feed}' is our own; it is never taken from a peer`);
    const local = this.heads.get(feed);
    const history = cloneHistory(this.keys.get(feed));
    const own = feed === this.author?.feed;
    // Sealed records (private replication): our own feed's we open (and check) with our key; another feed's we keep as they are.
    const entries: Item[] = range.map((b) => {
      if (!isSealed(b)) return decodeEntry(b);
      const sealed = readSealed(b);
      if (!own) return { sealed, bytes: b, hash: sealed.hash };
      if (sealed.kid !== this.signing?.kid)
        throw new LedgerError(
          'ERR_LEDGER_UNKNOWN_KEY',
          `sealed record ${feed}:${sealed.seq} was sealed under key ${sealed.kid.slice(0, 12)}..., not our current key`,
        );
      return decodeEntry(unsealEntry(sealingKey((this.author as AuthorOptions).signingKey, feed), sealed));
    });
    const sealedCount = entries.filter((e) => 'sealed' in e).length;
    if (sealedCount > 0 && checkpoint === undefined)
      throw new LedgerError('ERR_LEDGER_NOT_COVERED', `range of ${feed} holds sealed entries but no author-signed checkpoint binds their leaves`);
    const firstSeq = itemSeq(entries[0] as Item);
    const expected = local ? local.seq + 1 : 0;
    if (firstSeq !== expected) throw new LedgerError('ERR_LEDGER_SEQ', `range of ${feed} starts at ${firstSeq}, expected ${expected}`);
    let prevHash: string | undefined;
    let prevTs = local?.ts ?? '';
    for (const [i, s] of entries.entries()) {
      if ('sealed' in s) {
        // Bound by the author's checkpoint over the leaves (commit) and by the next readable entry's prev or the signed head.
        if (s.sealed.feed !== feed) throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', `sealed record of feed '${s.sealed.feed}' in a range of '${feed}'`);
        if (s.sealed.seq !== expected + i) throw new LedgerError('ERR_LEDGER_SEQ', `range of ${feed} is not contiguous at ${s.sealed.seq}`);
        if (s.sealed.seq === 0) throw new LedgerError('ERR_LEDGER_CHAIN_BROKEN', `${feed}:0 is sealed; a genesis entry travels in the clear`);
        prevHash = s.hash;
        continue;
      }
      const e = s.entry;
      if (e.feed !== feed) throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', `entry of feed '${e.feed}' in a range of '${feed}'`);
      if (e.seq !== expected + i) throw new LedgerError('ERR_LEDGER_SEQ', `range of ${feed} is not contiguous at ${e.seq}`);
      if (prevHash !== undefined && e.prev !== prevHash)
        throw new LedgerError('ERR_LEDGER_CHAIN_BROKEN', `${feed}:${e.seq} does not link to the entry before it`);
      if (e.ts < prevTs) throw new LedgerError('ERR_LEDGER_INVALID_ENTRY', `${feed}:${e.seq} is older than the entry before it`);
      if (e.type === 'genesis' || e.type === 'key.rotated') history.push(await keyEraFromEntry(e, history.current(), this.trust));
      else if (e.seq === 0) throw new LedgerError('ERR_LEDGER_CHAIN_BROKEN', `${feed}:0 is not a genesis entry`);
      prevHash = s.hash;
      prevTs = e.ts;
    }
    const last = entries.at(-1) as Item;
    if (head.seq !== itemSeq(last) || head.hash !== last.hash)
      throw new LedgerError('ERR_LEDGER_NOT_COVERED', `signed head ${feed}:${head.seq} does not cover the range`);
    const era = this.checkHeadKey(history, head);
    const first = entries[0] as Item;
    // A sealed first entry's link is not readable: the checkpoint over our tree plus its leaf stands for it (commit).
    const firstPrev = 'sealed' in first ? local?.hash : first.entry.prev;
    const linkOk = local ? firstPrev === local.hash : firstPrev === GENESIS_PREV;
    if (!linkOk && local) {
      // Validly signed yet not extending our copy: the author forked the feed.
      const ours = await this.signedHeadCovering(feed, local.seq);
      await this.recordEvidence({
        kind: 'equivocation',
        feed,
        seq: local.seq,
        detectedAt: this.now().toISOString(),
        ...(peer ? { peer } : {}),
        ours: { hash: local.hash, ...(ours ? { head: ours } : {}) },
        theirs: { head, chain: range.slice(0, MAX_EVIDENCE_CHAIN).map((b) => b.toString('base64')) },
      });
      throw new LedgerError('ERR_LEDGER_EQUIVOCATION', `feed '${feed}' forked at seq ${local.seq}: evidence stored, replication stopped`);
    }
    if (!linkOk) throw new LedgerError('ERR_LEDGER_CHAIN_BROKEN', `${feed}:0 does not carry the genesis prev`);
    if (own) this.checkAnchor(feed, entries as StoredEntry[]);
    await this.commit(feed, entries, head, checkpoint === undefined ? undefined : { note: checkpoint, keys: [era.key] });
    this.keys.set(feed, history);
    return { stored: entries.length };
  }

  /** A restored range that reaches our own newest checkpoint's size must give its root. */
  private checkAnchor(feed: string, entries: StoredEntry[]): void {
    const anchor = this.anchor;
    const tree = this.trees.get(feed) ?? { size: 0, range: [] };
    if (!anchor || anchor.size <= tree.size || anchor.size > tree.size + entries.length) return;
    const leaves = entries.slice(0, anchor.size - tree.size).map((e) => leafHash(e.bytes));
    const root = rootFromCompactRange(appendToRange(tree.size, tree.range, leaves).range);
    if (!hashesEqual(root, anchor.root))
      throw new LedgerError('ERR_LEDGER_NOT_COVERED', `the range of ${feed} does not give the root of our own checkpoint at size ${anchor.size}`);
  }

  private checkHeadKey(history: KeyHistory, head: SignedHead): KeyEra {
    const era = history.at(head.seq);
    if (!era) throw new LedgerError('ERR_LEDGER_UNKNOWN_KEY', `no key known for ${head.feed}:${head.seq}`);
    if (era.kid !== head.kid || !verifyHeadSignature(head, era.key))
      throw new LedgerError('ERR_LEDGER_BAD_SIGNATURE', `signed head ${head.feed}:${head.seq} does not verify under the feed's key`);
    if (Date.parse(head.ts) > era.notAfter)
      throw new LedgerError('ERR_LEDGER_BAD_SIGNATURE', `signed head ${head.feed}:${head.seq} was made after its key expired or was revoked`);
    return era;
  }

  /**
   * Compares a peer's signed head with our copy: `behind` means we should
   * fetch; a validly signed head that contradicts an entry we hold is stored
   * as evidence (`equivocation`) and stops the feed; a bad signature is `invalid`.
   */
  async checkHead(head: SignedHead, peer?: string): Promise<HeadCheck> {
    this.assertOpen();
    if (this.stopped.has(head.feed)) return 'stopped';
    const local = this.heads.get(head.feed);
    if (!local || head.seq > local.seq) return 'behind';
    const oursHash = await this.hashAt(head.feed, head.seq);
    const ours = oursHash === undefined ? undefined : { hash: oursHash };
    if (ours?.hash === head.hash) return 'same';
    try {
      this.checkHeadKey(this.keys.get(head.feed) ?? new KeyHistory(), head);
    } catch {
      return 'invalid';
    }
    return this.exclusive(async () => {
      if (this.stopped.has(head.feed)) return 'stopped' as const;
      const covering = await this.signedHeadCovering(head.feed, head.seq);
      await this.recordEvidence({
        kind: 'equivocation',
        feed: head.feed,
        seq: head.seq,
        detectedAt: this.now().toISOString(),
        ...(peer ? { peer } : {}),
        ours: { hash: ours?.hash ?? '0'.repeat(64), ...(covering ? { head: covering } : {}) },
        theirs: { head },
      });
      return 'equivocation' as const;
    });
  }

  private async recordEvidence(ev: Evidence): Promise<void> {
    const key = `${ev.feed}!${seqKey(ev.seq)}!${ev.kind}!${ev.detectedAt}`;
    await this.store.batch([{ type: 'put', sublevel: this.store.evidence, key, value: JSON.stringify(ev) }]);
    if (ev.kind === 'equivocation') this.stopped.add(ev.feed);
  }

  /** Signs the vector of heads this agent holds, stores it and returns it. */
  async checkpoint(): Promise<SignedCheckpoint> {
    const { feed, signing } = this.assertAuthor();
    return this.exclusive(async () => {
      const heads = [...this.heads.values()].sort((a, b) => (a.feed < b.feed ? -1 : 1)).map((h) => ({ feed: h.feed, seq: h.seq, hash: h.hash }));
      const cp = signCheckpoint({ agent: feed, ts: this.now().toISOString(), heads }, signing.key, signing.kid);
      await this.storeCheckpoint(cp);
      return cp;
    });
  }

  /**
   * Keeps another agent's signed checkpoint. A checkpoint naming a different
   * hash for an entry we hold is stored as `checkpoint` evidence.
   */
  async addCheckpoint(input: SignedCheckpoint, peer?: string): Promise<CheckpointOutcome> {
    this.assertOpen();
    const parsed = checkpointSchema.safeParse(input);
    if (!parsed.success) return 'invalid';
    const cp = parsed.data;
    const era = this.keys.get(cp.agent)?.byKid(cp.kid);
    if (!era) return 'unknown-key';
    if (!verifyCheckpointSignature(cp, era.key) || Date.parse(cp.ts) > era.notAfter) return 'invalid';
    return this.exclusive(async () => {
      let outcome: CheckpointOutcome = 'stored';
      for (const h of cp.heads) {
        const oursHash = await this.hashAt(h.feed, h.seq);
        const ours = oursHash === undefined ? undefined : { hash: oursHash };
        if (ours && ours.hash !== h.hash) {
          outcome = 'conflict';
          await this.recordEvidence({
            kind: 'checkpoint',
            feed: h.feed,
            seq: h.seq,
            detectedAt: this.now().toISOString(),
            ...(peer ? { peer } : {}),
            ours: { hash: ours.hash },
            theirs: { checkpoint: cp },
          });
        }
      }
      await this.storeCheckpoint(cp);
      return outcome;
    });
  }

  private async storeCheckpoint(cp: SignedCheckpoint): Promise<void> {
    const s = this.store;
    const keys: string[] = [];
    for await (const k of s.checkpoints.keys(prefixRange(cp.agent))) keys.push(k);
    const ops: BatchOp[] = [{ type: 'put', sublevel: s.checkpoints, key: `${cp.agent}!${cp.ts}!${cp.sig.slice(0, 16)}`, value: JSON.stringify(cp) }];
    for (const k of keys.slice(0, Math.max(0, keys.length - DEFAULT_CHECKPOINTS_KEPT + 1))) ops.push({ type: 'del', sublevel: s.checkpoints, key: k });
    await s.batch(ops);
  }

  /** Every stored checkpoint (ours and peers'), oldest first per agent. */
  async checkpoints(agent?: string): Promise<SignedCheckpoint[]> {
    this.assertOpen();
    const out: SignedCheckpoint[] = [];
    const it = agent ? this.store.checkpoints.values(prefixRange(agent)) : this.store.checkpoints.values();
    for await (const v of it) out.push(readStoredJson(v, 'checkpoint', isCheckpoint));
    return out;
  }

  /** Every piece of stored evidence. */
  async evidence(): Promise<Evidence[]> {
    this.assertOpen();
    const out: Evidence[] = [];
    for await (const v of this.store.evidence.values()) out.push(readStoredJson<Evidence>(v, 'evidence'));
    return out;
  }

  /** True when the feed is stopped because of equivocation evidence. */
  isStopped(feed: string): boolean {
    return this.stopped.has(feed);
  }

  /** Every feed held, sorted. */
  feeds(): string[] {
    return [...this.heads.keys()].sort();
  }

  /** The newest entry position of `feed` (default: our own). */
  head(feed: string | undefined = this.author?.feed): Head | undefined {
    return feed === undefined ? undefined : this.heads.get(feed);
  }

  /** The latest stored signed head of `feed` (default: our own). */
  async signedHead(feed: string | undefined = this.author?.feed): Promise<SignedHead | undefined> {
    this.assertOpen();
    if (feed === undefined) return undefined;
    for await (const v of this.store.signedHeads.values({ ...prefixRange(feed), reverse: true, limit: 1 }))
      return readStoredJson(v, `signed head of ${feed}`, isSignedHead);
    return undefined;
  }

  /** The stored signed head with the smallest seq at or after `seq`. */
  async signedHeadCovering(feed: string, seq: number): Promise<SignedHead | undefined> {
    for await (const v of this.store.signedHeads.values({ gte: feedKey(feed, seq), lt: `${feed}"`, limit: 1 }))
      return readStoredJson(v, `signed head of ${feed}`, isSignedHead);
    return undefined;
  }

  /** The stored signed head with the largest seq in [from, to]. */
  async signedHeadWithin(feed: string, from: number, to: number): Promise<SignedHead | undefined> {
    for await (const v of this.store.signedHeads.values({ gte: feedKey(feed, from), lte: feedKey(feed, to), reverse: true, limit: 1 }))
      return readStoredJson(v, `signed head of ${feed}`, isSignedHead);
    return undefined;
  }

  /**
   * A signed head at exactly `seq` of our own feed, signing one if needed
   * (replication serves ranges that end at signed heads).
   */
  async signHeadAt(seq: number): Promise<SignedHead> {
    const { feed, signing } = this.assertAuthor();
    const existing = await this.signedHeadWithin(feed, seq, seq);
    if (existing) return existing;
    const stored = await this.get(feed, seq);
    if (!stored) throw new LedgerError('ERR_LEDGER_SEQ', `no entry ${feed}:${seq}`);
    const era = this.keys.get(feed)?.at(seq);
    if (era?.kid !== signing.kid)
      throw new LedgerError('ERR_LEDGER_UNKNOWN_KEY', `entry ${feed}:${seq} predates the current key; no fresh head can be signed for it`);
    const signed = signHead({ feed, seq, hash: stored.hash, ts: maxTs(this.now().toISOString(), stored.entry.ts) }, signing.key, signing.kid);
    await this.store.batch([{ type: 'put', sublevel: this.store.signedHeads, key: feedKey(feed, seq), value: JSON.stringify(signed) }]);
    await this.checkpointAt(seq + 1);
    return signed;
  }

  /** The origin line (and note key name) of `feed`'s checkpoints in this federation (note.ts `checkpointOrigin`). */
  origin(feed: string): string {
    let o = this.origins.get(feed);
    if (!o) this.origins.set(feed, (o = checkpointOrigin(this.trust.caPem, feed)));
    return o;
  }

  /**
   * The author's signed checkpoint of its own feed at tree size `size`,
   * signing (and storing) one when none is stored and the current key was in
   * force at entry `size - 1`.
   */
  async checkpointAt(size: number): Promise<string> {
    const { feed, signing } = this.assertAuthor();
    return this._checkpointAt(feed, signing, size);
  }

  private async _checkpointAt(feed: string, signing: { key: KeyObject; kid: string }, size: number): Promise<string> {
    const stored = await this.store.notes.get(feedKey(feed, size));
    if (stored !== undefined) return stored;
    const tree = this.trees.get(feed);
    if (!tree || !Number.isSafeInteger(size) || size < 1 || size > tree.size) throw new LedgerError('ERR_LEDGER_SEQ', `no tree of size ${size} for ${feed}`);
    if (this.keys.get(feed)?.at(size - 1)?.kid !== signing.kid)
      throw new LedgerError('ERR_LEDGER_UNKNOWN_KEY', `tree ${feed}@${size} predates the current key; no fresh checkpoint can be signed for it`);
    const root = await rootAt(nodeReader(this.store, feed), size);
    const note = signCheckpointNote({ origin: this.origin(feed), size, root }, signing.key);
    await this.store.batch([{ type: 'put', sublevel: this.store.notes, key: feedKey(feed, size), value: note }]);
    return note;
  }

  /** The stored author-signed checkpoint of `feed` at exactly `size`, if any. */
  async checkpointNote(feed: string, size: number): Promise<string | undefined> {
    this.assertOpen();
    return this.store.notes.get(feedKey(feed, size));
  }

  /** The stored author-signed checkpoint of `feed` with the smallest tree that contains entry `seq`. */
  async checkpointCovering(feed: string, seq: number): Promise<{ size: number; note: string } | undefined> {
    this.assertOpen();
    for await (const [k, v] of this.store.notes.iterator({ gte: feedKey(feed, seq + 1), lt: `${feed}"`, limit: 1 }))
      return { size: Number(k.slice(feed.length + 1)), note: v };
    return undefined;
  }

  /** Every Ed25519 key `feed` has signed with (its CA-bound key eras, oldest first). */
  feedKeys(feed: string): KeyObject[] {
    return (this.keys.get(feed)?.eras ?? []).map((e) => e.key);
  }

  /** Leaves in the Merkle tree of `feed` (its entry count). */
  treeSize(feed: string): number {
    return this.trees.get(feed)?.size ?? 0;
  }

  /** The Merkle root of `feed` at `size` (default: its current size). */
  async treeRoot(feed: string, size: number = this.treeSize(feed)): Promise<Buffer> {
    this.assertOpen();
    const tree = this.trees.get(feed);
    if (size === tree?.size) return rootFromCompactRange(tree.range);
    if (!Number.isSafeInteger(size) || size < 0 || size > this.treeSize(feed)) throw new LedgerError('ERR_LEDGER_SEQ', `no tree of size ${size} for ${feed}`);
    return rootAt(nodeReader(this.store, feed), size);
  }

  /** RFC 9162 inclusion proof of entry `seq` of `feed` in its tree of `size` leaves. */
  async inclusionProof(feed: string, seq: number, size: number = this.treeSize(feed)): Promise<Buffer[]> {
    this.assertOpen();
    if (!Number.isSafeInteger(size) || size > this.treeSize(feed) || !Number.isSafeInteger(seq) || seq < 0 || seq >= size)
      throw new LedgerError('ERR_LEDGER_SEQ', `no entry ${feed}:${seq} in a tree of size ${size}`);
    return inclusionPath(nodeReader(this.store, feed), seq, size);
  }

  /** RFC 9162 consistency proof of `feed` from tree size `size1` to `size2` (default: current). */
  async consistencyProof(feed: string, size1: number, size2: number = this.treeSize(feed)): Promise<Buffer[]> {
    this.assertOpen();
    if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 0 || size1 > size2 || size2 > this.treeSize(feed))
      throw new LedgerError('ERR_LEDGER_SEQ', `no consistency proof of ${feed} from ${size1} to ${size2}`);
    return consistencyPath(nodeReader(this.store, feed), size1, size2);
  }

  /** The entry at `feed:seq`, decoded from its stored bytes. */
  async get(feed: string, seq: number): Promise<StoredEntry | undefined> {
    this.assertOpen();
    const bytes = await this.store.entries.get(feedKey(feed, seq));
    return bytes === undefined || isSealed(bytes) ? undefined : decodeEntry(bytes);
  }

  /** The hash of entry `feed:seq`, readable or sealed (private replication), if held. */
  async hashAt(feed: string, seq: number): Promise<string | undefined> {
    this.assertOpen();
    const bytes = await this.store.entries.get(feedKey(feed, seq));
    if (bytes === undefined) return undefined;
    return isSealed(bytes) ? readSealed(bytes).hash : decodeEntry(bytes).hash;
  }

  /** True when entry `feed:seq` is held only as a sealed record (sealed.ts). */
  async isSealedAt(feed: string, seq: number): Promise<boolean> {
    this.assertOpen();
    const bytes = await this.store.entries.get(feedKey(feed, seq));
    return bytes !== undefined && isSealed(bytes);
  }

  /**
   * Private replication: our own feed's entry bytes as `peer` may hold them.
   * Entries that concern it (sealed.ts `concerns`) stay readable; every other
   * one becomes a sealed record only we can open.
   */
  async forPeer(peer: string, bytes: Buffer[]): Promise<Buffer[]> {
    const { feed, signing } = this.assertAuthor();
    if (this.sealKey?.kid !== signing.kid) this.sealKey = { kid: signing.kid, key: sealingKey(signing.key, feed) };
    const key = this.sealKey.key;
    const granted = new Map<string, readonly string[]>();
    const out: Buffer[] = [];
    for (const b of bytes) {
      // Our own stored entries, validated when written: parsed, not re-validated.
      const entry = JSON.parse(b.toString('utf8')) as Entry;
      if (entry.type === 'consent.revoked') {
        const id = (entry.body as { consent: string }).consent;
        if (!granted.has(id)) {
          const g = await this.consentGranted(id, feed);
          granted.set(id, g ? (g.entry.body as { grantees: string[] }).grantees : []);
        }
      }
      out.push(concerns(entry, peer, (c) => granted.get(c) ?? []) ? b : sealEntry(key, signing.kid, feed, entry.seq, b));
    }
    return out;
  }

  /** Raw stored bytes of `feed` entries in [from, to], bounded by `maxEntries` and `maxBytes`. */
  async rawRange(feed: string, from: number, to: number, maxEntries = 1024, maxBytes = Number.POSITIVE_INFINITY): Promise<Buffer[]> {
    this.assertOpen();
    const out: Buffer[] = [];
    let bytes = 0;
    for await (const v of this.store.entries.values({ gte: feedKey(feed, from), lte: feedKey(feed, to), limit: maxEntries })) {
      if (out.length > 0 && bytes + v.length > maxBytes) break;
      out.push(v);
      bytes += v.length;
    }
    return out;
  }

  /** Iterates the entries of `feed` from `from` (default 0) to `to` (default the head). */
  async *entries(feed: string, options: { from?: number; to?: number } = {}): AsyncGenerator<StoredEntry> {
    this.assertOpen();
    const gte = feedKey(feed, options.from ?? 0);
    const range = options.to === undefined ? { gte, lt: `${feed}"` } : { gte, lte: feedKey(feed, options.to) };
    // Sealed records (another feed's entries that do not concern us) are not readable: skipped.
    for await (const v of this.store.entries.values(range)) if (!isSealed(v)) yield decodeEntry(v);
  }

  private async lookup(index: 'byExchange' | 'byConsent' | 'byType', prefix: string): Promise<StoredEntry[]> {
    this.assertOpen();
    const out: StoredEntry[] = [];
    for await (const key of this.store[index].keys(prefixRange(prefix))) {
      // Index keys end with `<feed>!<seq>` whatever the prefix.
      const parts = key.split('!');
      const feed = parts[parts.length - 2] as string;
      const seq = parts[parts.length - 1] as string;
      const e = await this.get(feed, Number(seq));
      if (e) out.push(e);
    }
    return out;
  }

  /** Every entry (any feed) about exchange `id`. */
  byExchange(id: string): Promise<StoredEntry[]> {
    return this.lookup('byExchange', id);
  }

  /** Every entry (any feed) about consent `id`. */
  byConsent(id: string): Promise<StoredEntry[]> {
    return this.lookup('byConsent', id);
  }

  /**
   * The `consent.granted` entry of consent `id` in `feed`, or undefined: what {@link byConsent} then a find would
   * give, without reading every entry that names the consent (each exchange under it does), which made the
   * per-exchange consent checks grow with the consent's history.
   */
  async consentGranted(id: string, feed: string): Promise<StoredEntry | undefined> {
    this.assertOpen();
    for await (const key of this.store.byConsent.keys(prefixRange(`${id}!${feed}`))) {
      const seq = key.slice(key.lastIndexOf('!') + 1);
      const e = await this.get(feed, Number(seq));
      if (e && e.entry.type === 'consent.granted') return e;
    }
    return undefined;
  }

  /** Every entry of `type`, optionally of one feed. */
  byType(type: EntryType, feed?: string): Promise<StoredEntry[]> {
    return this.lookup('byType', feed ? `${type}!${feed}` : type);
  }

  /** Proof of one entry: its bytes and those after it up to a stored signed head. */
  async proof(feed: string, seq: number): Promise<EntryProof | undefined> {
    const head = await this.signedHeadCovering(feed, seq);
    if (!head) return undefined;
    return { entries: await this.rawRange(feed, seq, head.seq, head.seq - seq + 1), head };
  }

  /** Heads of every feed, stopped feeds and evidence: what the agent reports. */
  async status(): Promise<LedgerStatus> {
    return {
      feed: this.author?.feed,
      feeds: this.feeds().map((f) => ({ ...(this.heads.get(f) as Head), stopped: this.stopped.has(f) })),
      evidence: await this.evidence(),
    };
  }

  /** The trust anchors this ledger verifies with. */
  get trustAnchors(): Trust {
    return this.trust;
  }

  /** Waits for queued writes, then closes the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.exclusive(async () => undefined);
    this.closed = true;
    await this.store.close();
  }

  /** @internal The underlying store, for offline verification and export. */
  get _store(): Store {
    return this.store;
  }
}

function maxTs(a: string, b: string): string {
  return a >= b ? a : b;
}

function cloneHistory(h: KeyHistory | undefined): KeyHistory {
  const c = new KeyHistory();
  for (const era of h?.eras ?? []) c.push(era);
  return c;
}
