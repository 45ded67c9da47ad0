import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../certs/index.ts';
import { LedgerError } from './errors.ts';
import { MAX_ENTRY_BYTES } from './schema.ts';
import type { AbstractSnapshot } from 'abstract-level';
import { prefixRange, type Store } from './store.ts';

/** Raw, untrusted ledger content as verification, reports and exports read it. */
export interface LedgerSource {
  /** Every feed that has entries or signed heads. */
  feeds(): Promise<string[]>;
  /** Entries of a feed in key order; `seq` is the position the store files it under. */
  entries(feed: string): AsyncIterable<{ seq: number; bytes: Buffer }>;
  /** Stored signed heads of a feed, unparsed. */
  signedHeads(feed: string): AsyncIterable<unknown>;
  evidence(): Promise<unknown[]>;
  checkpoints(): Promise<unknown[]>;
  /** The feed author's stored tlog checkpoint notes by tree size, when the source keeps them (a database does; a bundle does not). */
  treeCheckpoints?(feed: string): AsyncIterable<{ size: number; note: unknown }>;
  /** Checkpoints of a feed with the cosignatures its witnesses gave, by tree size, when the source keeps them (witness.ts). */
  witnessedCheckpoints?(feed: string): AsyncIterable<{ size: number; note: unknown }>;
  /** Split-view and rollback evidence kept by this agent's witness, unparsed. */
  witnessEvidence?(): Promise<unknown[]>;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Reads a ledger database: a copy (see the CLI's verify), or a live one
 * through `snapshot` (see {@link withSnapshotSource}), so that what a reader
 * sees does not change as the ledger is written.
 */
export function levelSource(store: Store, options: { snapshot?: AbstractSnapshot } = {}): LedgerSource {
  const at = options.snapshot ? { snapshot: options.snapshot } : {};
  return {
    async feeds() {
      const found = new Set<string>();
      const nextKey: Array<(after: string) => AsyncIterable<string>> = [
        (after) => store.entries.keys({ gt: after, limit: 1, ...at }),
        (after) => store.signedHeads.keys({ gt: after, limit: 1, ...at }),
      ];
      for (const keysAfter of nextKey) {
        let after = '';
        for (;;) {
          let next: string | undefined;
          for await (const k of keysAfter(after)) next = k;
          if (next === undefined) break;
          const feed = next.slice(0, Math.max(0, next.indexOf('!')));
          found.add(feed);
          after = `${feed}"`;
        }
      }
      return [...found].sort();
    },
    async *entries(feed) {
      for await (const [k, v] of store.entries.iterator({ ...prefixRange(feed), ...at })) yield { seq: Number(k.slice(feed.length + 1)), bytes: v };
    },
    async *signedHeads(feed) {
      for await (const v of store.signedHeads.values({ ...prefixRange(feed), ...at })) yield parseJson(v);
    },
    async evidence() {
      const out: unknown[] = [];
      for await (const v of store.evidence.values(at)) out.push(parseJson(v));
      return out;
    },
    async checkpoints() {
      const out: unknown[] = [];
      for await (const v of store.checkpoints.values(at)) out.push(parseJson(v));
      return out;
    },
    async *treeCheckpoints(feed) {
      for await (const [k, v] of store.notes.iterator({ ...prefixRange(feed), ...at })) yield { size: Number(k.slice(feed.length + 1)), note: v };
    },
    async *witnessedCheckpoints(feed) {
      for await (const [k, v] of store.witness.iterator({ ...prefixRange(`c!${feed}`), ...at })) yield { size: Number(k.slice(-16)), note: v };
    },
    async witnessEvidence() {
      const out: unknown[] = [];
      for await (const v of store.witness.values({ gte: 'e!', lt: 'e"', ...at })) out.push(parseJson(v));
      return out;
    },
  };
}

/**
 * Runs `fn` on a source reading one snapshot of a live ledger's database:
 * entries and signed heads appended meanwhile are not half seen (a head read
 * after its entries were would name an entry the reader never saw).
 */
export async function withSnapshotSource<T>(store: Store, fn: (source: LedgerSource) => Promise<T>): Promise<T> {
  const snapshot = store.db.snapshot();
  try {
    return await fn(levelSource(store, { snapshot }));
  } finally {
    await snapshot.close();
  }
}

/** Format tag of an exported bundle. */
export const BUNDLE_FORMAT = 'hie-ledger-bundle';
/** Version of the bundle format. */
export const BUNDLE_VERSION = 1;

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Schema of an exported bundle: entries as the exact stored bytes (base64), heads and checkpoints as stored. */
export const bundleFileSchema = z.strictObject({
  format: z.literal(BUNDLE_FORMAT),
  v: z.literal(BUNDLE_VERSION),
  created: z.string().max(64),
  feeds: z.array(
    z.strictObject({
      feed: z.string().regex(HOSPITAL_ID_PATTERN),
      from: z.number().int().min(0),
      entries: z.array(
        z
          .string()
          .regex(B64)
          .max(Math.ceil((MAX_ENTRY_BYTES * 4) / 3) + 4),
      ),
      signedHeads: z.array(z.unknown()),
    }),
  ),
  checkpoints: z.array(z.unknown()),
  evidence: z.array(z.unknown()),
});

/** A parsed bundle file. */
export type BundleFile = z.infer<typeof bundleFileSchema>;

/** Parses bundle text; throws ERR_LEDGER_BUNDLE_INVALID naming the first problem. */
export function parseBundle(text: string): BundleFile {
  const value = parseJson(text);
  if (value === undefined) throw new LedgerError('ERR_LEDGER_BUNDLE_INVALID', 'bundle is not JSON');
  const r = bundleFileSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new LedgerError('ERR_LEDGER_BUNDLE_INVALID', `bundle is malformed at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  return r.data;
}

/** Reads an exported bundle as a source. */
export function bundleSource(bundle: BundleFile): LedgerSource {
  const byFeed = new Map(bundle.feeds.map((f) => [f.feed, f]));
  return {
    async feeds() {
      return [...byFeed.keys()].sort();
    },
    async *entries(feed) {
      const f = byFeed.get(feed);
      if (!f) return;
      for (const [i, b64] of f.entries.entries()) yield { seq: f.from + i, bytes: Buffer.from(b64, 'base64') };
    },
    async *signedHeads(feed) {
      yield* byFeed.get(feed)?.signedHeads ?? [];
    },
    async evidence() {
      return bundle.evidence;
    },
    async checkpoints() {
      return bundle.checkpoints;
    },
  };
}

/** Builds a bundle of every feed (or the named ones) of a source. */
export async function exportBundle(source: LedgerSource, options: { feeds?: string[]; now?: Date } = {}): Promise<BundleFile> {
  const feeds: BundleFile['feeds'] = [];
  for (const feed of options.feeds ?? (await source.feeds())) {
    const entries: string[] = [];
    let from: number | undefined;
    for await (const { seq, bytes } of source.entries(feed)) {
      from ??= seq;
      entries.push(bytes.toString('base64'));
    }
    const signedHeads: unknown[] = [];
    for await (const h of source.signedHeads(feed)) signedHeads.push(h);
    feeds.push({ feed, from: from ?? 0, entries, signedHeads });
  }
  return {
    format: BUNDLE_FORMAT,
    v: BUNDLE_VERSION,
    created: (options.now ?? new Date()).toISOString(),
    feeds,
    checkpoints: await source.checkpoints(),
    evidence: await source.evidence(),
  };
}
