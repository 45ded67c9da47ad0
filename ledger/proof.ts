import { createPublicKey, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN, verifyKeyBundle, type KeyBundle } from '../certs/index.ts';
import { decodeEntry, type StoredEntry } from './entry.ts';
import { LedgerError } from './errors.ts';
import type { Trust } from './keys.ts';
import { formatAmount } from './money.ts';
import { HASH_BYTES, inclusionPath, leafHash, MAX_INCLUSION_PROOF, verifyInclusion } from './merkle.ts';
import { checkpointOrigin, MAX_NOTE_BYTES, noteKeyId, openCheckpoint, parseCheckpoint } from './note.ts';
import { hexDigest, ID_PATTERN, type Entry } from './schema.ts';
import { feedKey, prefixRange, type Store } from './store.ts';
import { nodeReader, storedTreeSize } from './tree.ts';

/**
 * Self-contained proofs for auditors: entries of a ledger, each with an RFC
 * 9162 inclusion proof against its feed author's signed tlog checkpoint, and
 * the CA-signed key bundles that check those signatures. Verifies with the
 * CA certificate alone (README "Verifying the ledger" documents the format).
 */

/** `format` of a proof file. */
export const PROOF_FORMAT = 'hie-ledger-proof';
/** `version` of the proof file format. */
export const PROOF_VERSION = 1;
/** Most entries (and checkpoints, and bundles) one proof file may carry. */
export const MAX_PROOF_ENTRIES = 256;
/** Largest proof file read, in bytes. */
export const MAX_PROOF_FILE_BYTES = 8 * 1024 * 1024;

/** Entry types an exchange proof carries. */
export const EXCHANGE_STORY_TYPES = [
  'consent.granted',
  'exchange.sent',
  'exchange.received',
  'receipt',
  'payment.charged',
  'exchange.failed',
  'exchange.cancelled',
] as const;

const feed = z.string().regex(HOSPITAL_ID_PATTERN);
const seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const b64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/);
const proofFileSchema = z.strictObject({
  format: z.literal(PROOF_FORMAT),
  version: z.literal(PROOF_VERSION),
  subject: z.union([
    z.strictObject({ exchange: z.string().regex(ID_PATTERN) }),
    z.strictObject({ entries: z.array(z.string().max(96)).min(1).max(MAX_PROOF_ENTRIES) }),
  ]),
  checkpoints: z.array(z.strictObject({ feed, note: z.string().max(MAX_NOTE_BYTES) })).max(MAX_PROOF_ENTRIES),
  bundles: z.array(z.unknown()).max(MAX_PROOF_ENTRIES),
  entries: z
    .array(
      z.strictObject({
        feed,
        seq,
        entry: b64.max(Math.ceil((64 * 1024 * 4) / 3) + 4),
        checkpoint: z.number().int().min(0).max(MAX_PROOF_ENTRIES),
        proof: z.array(b64.length(44)).max(MAX_INCLUSION_PROOF),
      }),
    )
    .max(MAX_PROOF_ENTRIES),
});
/** A proof file as written by `hie-ledger prove`. */
export type ProofFile = z.infer<typeof proofFileSchema>;

/** What to prove: every story entry of an exchange, or named entries. */
export type ProofSubject = { exchange: string } | { entries: Array<{ feed: string; seq: number }> };

/** A proof file and the requested entries it could not prove (no checkpoint of their feed covers them). */
export interface BuiltProof {
  file: ProofFile;
  unproved: string[];
}

async function storedEntry(store: Store, f: string, s: number): Promise<StoredEntry | undefined> {
  const bytes = await store.entries.get(feedKey(f, s));
  return bytes === undefined ? undefined : decodeEntry(bytes);
}

async function indexed(store: Store, index: 'byExchange' | 'byConsent', id: string): Promise<StoredEntry[]> {
  const out: StoredEntry[] = [];
  for await (const key of store[index].keys(prefixRange(id))) {
    const parts = key.split('!');
    const e = await storedEntry(store, parts[parts.length - 2] as string, Number(parts[parts.length - 1]));
    if (e) out.push(e);
  }
  return out;
}

/** The bundles of `f` (from its genesis and key.rotated entries), oldest first. */
async function bundlesOf(store: Store, f: string): Promise<KeyBundle[]> {
  const out: Array<{ seq: number; bundle: KeyBundle }> = [];
  for (const type of ['genesis', 'key.rotated']) {
    for await (const key of store.byType.keys(prefixRange(`${type}!${f}`))) {
      const e = await storedEntry(store, f, Number(key.slice(key.lastIndexOf('!') + 1)));
      if (e) out.push({ seq: e.entry.seq, bundle: (e.entry.body as { bundle: KeyBundle }).bundle });
    }
  }
  return out.sort((a, b) => a.seq - b.seq).map((b) => b.bundle);
}

/** The Ed25519 signing key of a bundle (unverified: the verifier checks the bundle against the CA). */
function bundleKey(b: KeyBundle): KeyObject | undefined {
  try {
    return createPublicKey({ key: b.signing.jwk as never, format: 'jwk' });
  } catch {
    return undefined;
  }
}

/** The key id on the (single, author) signature line of a checkpoint note. */
function noteSigKeyId(note: string): string | undefined {
  const line = note.slice(note.lastIndexOf('\n\n') + 2).split('\n')[0] ?? '';
  const blob = Buffer.from(line.slice(line.lastIndexOf(' ') + 1), 'base64');
  return blob.length >= 4 ? blob.subarray(0, 4).toString('hex') : undefined;
}

/**
 * Builds a proof file from a ledger database: the story entries of an
 * exchange (or the named entries), each with an inclusion proof against the
 * smallest stored author checkpoint of its feed that contains it, those
 * checkpoints, and the bundles whose keys signed them; nothing else.
 */
export async function buildProof(store: Store, subject: ProofSubject): Promise<BuiltProof> {
  let wanted: StoredEntry[];
  if ('exchange' in subject) {
    const story = (await indexed(store, 'byExchange', subject.exchange)).filter((e) => (EXCHANGE_STORY_TYPES as readonly string[]).includes(e.entry.type));
    const consents = new Set(story.filter((e) => e.entry.type === 'exchange.sent').map((e) => (e.entry.body as { consent: string }).consent));
    const grants: StoredEntry[] = [];
    for (const c of consents) grants.push(...(await indexed(store, 'byConsent', c)).filter((e) => e.entry.type === 'consent.granted'));
    wanted = [...grants, ...story];
  } else {
    wanted = [];
    for (const { feed: f, seq: s } of subject.entries) {
      const e = await storedEntry(store, f, s);
      if (!e) throw new LedgerError('ERR_LEDGER_SEQ', `no entry ${f}:${s} in this ledger`);
      wanted.push(e);
    }
  }
  if (wanted.length === 0) throw new LedgerError('ERR_LEDGER_SEQ', `this ledger holds no entry of exchange ${(subject as { exchange: string }).exchange}`);
  if (wanted.length > MAX_PROOF_ENTRIES) throw new LedgerError('ERR_LEDGER_INVALID_ARGUMENT', `more than ${MAX_PROOF_ENTRIES} entries to prove`);
  const checkpoints: ProofFile['checkpoints'] = [];
  const cpIndex = new Map<string, number>();
  const entries: ProofFile['entries'] = [];
  const unproved: string[] = [];
  const seen = new Set<string>();
  for (const e of wanted) {
    const { feed: f, seq: s } = e.entry;
    if (seen.has(`${f}:${s}`)) continue;
    seen.add(`${f}:${s}`);
    let cover: { size: number; note: string } | undefined;
    for await (const [k, v] of store.notes.iterator({ gte: feedKey(f, s + 1), lt: `${f}"`, limit: 1 }))
      cover = { size: Number(k.slice(f.length + 1)), note: v };
    if (!cover || (await storedTreeSize(store, f)) < cover.size) {
      unproved.push(`${f}:${s}`);
      continue;
    }
    const tag = `${f}@${cover.size}`;
    let ci = cpIndex.get(tag);
    if (ci === undefined) {
      ci = checkpoints.length;
      cpIndex.set(tag, ci);
      checkpoints.push({ feed: f, note: cover.note });
    }
    const proof = await inclusionPath(nodeReader(store, f), s, cover.size);
    entries.push({ feed: f, seq: s, entry: e.bytes.toString('base64'), checkpoint: ci, proof: proof.map((p) => p.toString('base64')) });
  }
  const bundles: KeyBundle[] = [];
  for (const f of new Set(checkpoints.map((c) => c.feed))) {
    const ids = new Set(checkpoints.filter((c) => c.feed === f).map((c) => noteSigKeyId(c.note)));
    for (const b of await bundlesOf(store, f)) {
      const key = bundleKey(b);
      const origin = parseCheckpoint((checkpoints.find((c) => c.feed === f) as { note: string }).note.split('\n\n')[0] + '\n').origin;
      if (key && ids.has(noteKeyId(origin, key).toString('hex'))) bundles.push(b);
    }
  }
  const file: ProofFile = {
    format: PROOF_FORMAT,
    version: PROOF_VERSION,
    subject: 'exchange' in subject ? { exchange: subject.exchange } : { entries: subject.entries.map((x) => `${x.feed}:${x.seq}`) },
    checkpoints,
    bundles,
    entries,
  };
  return { file, unproved };
}

/** Outcome of {@link verifyProof}. */
export interface ProofResult {
  /** True when every check passed and at least one entry was proved. */
  ok: boolean;
  /** Nothing could be checked (no entry at all). */
  empty: boolean;
  /** Each failed check, in plain words. */
  failures: string[];
  /** What was proved, in plain words. */
  statements: string[];
  /** The entries proved. */
  proved: Entry[];
}

/** Parses a proof file's text; anything malformed throws ERR_LEDGER_PROOF_INVALID. */
export function parseProofFile(text: string): ProofFile {
  if (Buffer.byteLength(text) > MAX_PROOF_FILE_BYTES) throw new LedgerError('ERR_LEDGER_PROOF_INVALID', `proof file exceeds ${MAX_PROOF_FILE_BYTES} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new LedgerError('ERR_LEDGER_PROOF_INVALID', 'proof file is not JSON');
  }
  const r = proofFileSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new LedgerError('ERR_LEDGER_PROOF_INVALID', `proof file is malformed at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  return r.data;
}

/**
 * Verifies a proof file with the CA (and CRL) only: every bundle against the
 * CA at the time of the entries it vouches for, every checkpoint's note
 * signature by its feed's bundled key under the federation's origin, every
 * entry's bytes, feed and seq and its inclusion proof against its
 * checkpoint's root; then says in plain words what the entries show.
 */
export async function verifyProof(file: ProofFile, trust: Trust): Promise<ProofResult> {
  const failures: string[] = [];
  const decoded: Array<StoredEntry | undefined> = file.entries.map((e, i) => {
    try {
      const s = decodeEntry(Buffer.from(e.entry, 'base64'));
      if (s.entry.feed !== e.feed || s.entry.seq !== e.seq) {
        failures.push(`entry ${i} (${e.feed}:${e.seq}): its bytes are entry ${s.entry.feed}:${s.entry.seq}`);
        return undefined;
      }
      return s;
    } catch (err) {
      failures.push(`entry ${i} (${e.feed}:${e.seq}): bytes are not a valid entry (${(err as Error).message})`);
      return undefined;
    }
  });
  // Checkpoints: keys from CA-verified bundles of the feed, valid when the latest entry they vouch for was written.
  const roots: Array<{ size: number; root: Buffer } | undefined> = [];
  for (const [ci, cp] of file.checkpoints.entries()) {
    const times = file.entries.flatMap((e, i) => (e.checkpoint === ci && decoded[i] ? [(decoded[i] as StoredEntry).entry.ts] : []));
    const at = times.sort().at(-1);
    const keys: KeyObject[] = [];
    const refused: string[] = [];
    for (const b of file.bundles) {
      if ((b as { agent?: unknown })?.agent !== cp.feed) continue;
      try {
        const v = await verifyKeyBundle(b, {
          caPem: trust.caPem,
          crl: trust.crl,
          ...(at ? { signedAt: new Date(at) } : {}),
          revocationTimes: trust.revocationTimes,
        });
        keys.push(v.signingKey);
      } catch (err) {
        refused.push((err as Error).message);
      }
    }
    try {
      const opened = openCheckpoint(cp.note, checkpointOrigin(trust.caPem, cp.feed), keys);
      roots.push(opened);
    } catch (err) {
      const why = (err as { code?: string }).code === 'ERR_LEDGER_UNKNOWN_KEY' ? `it is not signed by a CA-bound key of ${cp.feed}` : (err as Error).message;
      failures.push(`checkpoint ${ci} of ${cp.feed}: ${why}${refused.length ? ` (bundles refused: ${refused.join('; ')})` : ''}`);
      roots.push(undefined);
    }
  }
  const proved: Entry[] = [];
  for (const [i, e] of file.entries.entries()) {
    const s = decoded[i];
    if (!s) continue;
    const cp = file.checkpoints[e.checkpoint];
    const root = roots[e.checkpoint];
    if (!cp || cp.feed !== e.feed) {
      failures.push(`entry ${e.feed}:${e.seq}: names checkpoint ${e.checkpoint}, which is not one of its feed`);
      continue;
    }
    if (!root) {
      failures.push(`entry ${e.feed}:${e.seq}: its checkpoint did not verify`);
      continue;
    }
    const proof = e.proof.map((p) => Buffer.from(p, 'base64'));
    if (proof.some((p) => p.length !== HASH_BYTES) || !verifyInclusion(e.seq, root.size, leafHash(s.bytes), proof, root.root)) {
      failures.push(
        `entry ${e.feed}:${e.seq}: the inclusion proof does not lead from this entry at index ${e.seq} to the root of checkpoint ${e.checkpoint} (${e.feed}, tree size ${root.size})`,
      );
      continue;
    }
    proved.push(s.entry);
  }
  const statements = describe(file, proved, failures);
  return { ok: failures.length === 0 && proved.length > 0, empty: file.entries.length === 0, failures, statements, proved };
}

function describe(file: ProofFile, proved: Entry[], failures: string[]): string[] {
  const body = <T>(e: Entry): T => e.body as T;
  if (!('exchange' in file.subject)) return proved.map((e) => `entry ${e.feed}:${e.seq} (${e.type}, ${e.ts}) is in the signed log of ${e.feed}`);
  const x = file.subject.exchange;
  const of = (t: string) => proved.filter((e) => e.type === t);
  for (const e of proved) {
    const id = (e.body as { exchange?: string; consent?: string }).exchange;
    if (e.type !== 'consent.granted' && id !== x) failures.push(`entry ${e.feed}:${e.seq} is about exchange ${id}, not ${x}`);
  }
  const parts: string[] = [];
  const hashes = new Set<string>();
  for (const s of of('exchange.sent')) {
    const b = body<{ to: string; consent: string; hash: string; purpose: string; bytes: number }>(s);
    hashes.add(hexDigest(b.hash));
    const grant = of('consent.granted').find((g) => body<{ consent: string }>(g).consent === b.consent);
    const g = grant ? body<{ grantees: string[]; purposes: string[]; validFrom: string; validUntil?: string }>(grant) : undefined;
    if (grant && g && !(g.grantees.includes(b.to) && g.purposes.includes(b.purpose)))
      failures.push(`consent ${b.consent} does not grant ${b.purpose} to ${b.to}`);
    parts.push(
      `sent by ${s.feed} to ${b.to} at ${s.ts} for ${b.purpose} under consent ${b.consent}` +
        (grant && g
          ? ` (granted by ${grant.feed} at ${grant.ts} to ${g.grantees.join(', ')}, valid from ${g.validFrom}${g.validUntil ? ` until ${g.validUntil}` : ''})`
          : ' (its grant is not in this file)'),
    );
  }
  for (const r of of('exchange.received')) {
    const b = body<{ from: string; hash: string; bytes: number }>(r);
    hashes.add(hexDigest(b.hash));
    parts.push(`received by ${r.feed} from ${b.from} at ${r.ts} (${b.bytes} bytes)`);
  }
  if (hashes.size === 1) parts.push(`content SHA-256 ${[...hashes][0]}`);
  else if (hashes.size > 1) failures.push(`the sent and received content hashes differ: ${[...hashes].join(', ')}`);
  for (const r of of('receipt')) {
    const b = body<{ from: string; disposition: string; reason?: string; signature?: string }>(r);
    parts.push(
      `receipt ${b.disposition}${b.reason ? ` (${b.reason})` : ''} from ${b.from}${b.signature ? ` (carrying ${b.from}'s receipt signature, not checked by this verifier)` : ''}, logged by ${r.feed} at ${r.ts}`,
    );
  }
  for (const f of of('exchange.failed')) parts.push(`failed (${body<{ reason: string }>(f).reason}) as logged by ${f.feed} at ${f.ts}`);
  for (const c of of('exchange.cancelled')) parts.push(`cancelled by ${c.feed} at ${c.ts}`);
  for (const c of of('payment.charged')) {
    const b = body<{ kind: string; payer: string; payee: string; amount: number; currency: string }>(c);
    parts.push(`${b.kind} charge of ${formatAmount(b.amount, b.currency)} from ${b.payer} to ${b.payee}, logged by ${c.feed} at ${c.ts}`);
  }
  return parts.length > 0 ? [`exchange ${x}: ${parts.join('; ')}`] : [];
}
