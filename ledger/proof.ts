import { createPublicKey, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN, verifyKeyBundle, type KeyBundle } from '../certs/index.ts';
import { decodeEntry, type StoredEntry } from './entry.ts';
import { isSealed } from './sealed.ts';
import { LedgerError } from './errors.ts';
import type { Trust } from './keys.ts';
import { formatAmount } from './money.ts';
import { HASH_BYTES, inclusionPath, leafHash, MAX_INCLUSION_PROOF, verifyInclusion } from './merkle.ts';
import { cosignerKey, cosignerKeyId, parseCosignerKey, splitNote, witnessName } from './cosign.ts';
import { checkpointOrigin, MAX_NOTE_BYTES, noteKeyId, openCheckpoint, parseCheckpoint } from './note.ts';
import { countWitnesses, DEFAULT_WITNESS_POLICY, type KnownWitness, type WitnessPolicy } from './policy.ts';
import { hexDigest, ID_PATTERN, type Entry } from './schema.ts';
import { feedKey, prefixRange, type Store } from './store.ts';
import { nodeReader, storedTreeSize } from './tree.ts';

/**
 * Self-contained proofs for auditors: entries of a ledger, each with an RFC
 * 9162 inclusion proof against its feed author's signed tlog checkpoint, and
 * the CA-signed key bundles that check those signatures. Verifies with the
 * CA certificate alone (docs/verification.md documents the format).
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
  'consent.revoked',
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
    z.strictObject({ consent: z.string().regex(ID_PATTERN) }),
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
export type ProofSubject = { exchange: string } | { consent: string } | { entries: Array<{ feed: string; seq: number }> };

/** Entry types a consent proof carries: its grant, its revocation, and the releases made under it. */
export const CONSENT_STORY_TYPES = ['consent.granted', 'consent.revoked', 'exchange.sent'] as const;

/** A proof file and the requested entries it could not prove (no checkpoint of their feed covers them). */
export interface BuiltProof {
  file: ProofFile;
  unproved: string[];
}

/** A cosigner name of a federation witness: `hie.federation/<fp>/witness/<id>` (cosign.ts `witnessName`). */
const WITNESS_NAME = /^hie\.federation\/[0-9a-f]{16}\/witness\/([a-z0-9-]{2,63})$/;

/** The smallest checkpoint of `f` held with at least one federation witness's cosignature (witness.ts) that contains entry `s`. */
async function witnessedCovering(store: Store, f: string, s: number): Promise<{ size: number; note: string } | undefined> {
  const have = await storedTreeSize(store, f);
  for await (const [k, v] of store.witness.iterator({ gte: `c!${feedKey(f, s + 1)}`, lt: `c!${f}"` })) {
    const size = Number(k.slice(-16));
    if (size > have) return undefined;
    try {
      if (splitNote(v).sigs.some((sig) => WITNESS_NAME.exec(sig.name)?.[1] !== undefined && WITNESS_NAME.exec(sig.name)?.[1] !== f)) return { size, note: v };
    } catch {
      continue;
    }
  }
  return undefined;
}

async function storedEntry(store: Store, f: string, s: number): Promise<StoredEntry | undefined> {
  const bytes = await store.entries.get(feedKey(f, s));
  // A sealed record (private replication) proves nothing to an auditor: it is not readable.
  return bytes === undefined || isSealed(bytes) ? undefined : decodeEntry(bytes);
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
    // The grant, and the revocation when the ledger holds one: the verifier says whether it came before the release.
    for (const c of consents)
      grants.push(...(await indexed(store, 'byConsent', c)).filter((e) => e.entry.type === 'consent.granted' || e.entry.type === 'consent.revoked'));
    wanted = [...grants, ...story];
  } else if ('consent' in subject) {
    wanted = (await indexed(store, 'byConsent', subject.consent)).filter((e) => (CONSENT_STORY_TYPES as readonly string[]).includes(e.entry.type));
  } else {
    wanted = [];
    for (const { feed: f, seq: s } of subject.entries) {
      const e = await storedEntry(store, f, s);
      if (!e) throw new LedgerError('ERR_LEDGER_SEQ', `no entry ${f}:${s} in this ledger`);
      wanted.push(e);
    }
  }
  if (wanted.length === 0)
    throw new LedgerError(
      'ERR_LEDGER_SEQ',
      'exchange' in subject
        ? `this ledger holds no entry of exchange ${subject.exchange}`
        : `this ledger holds no entry of consent ${(subject as { consent: string }).consent}`,
    );
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
    // The smallest checkpoint with a cosignature that contains the entry, else the smallest author checkpoint.
    let cover: { size: number; note: string } | undefined = await witnessedCovering(store, f, s);
    if (!cover)
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
  // The bundles of the witnesses whose cosignatures the checkpoints carry.
  const cosigs = new Map<string, Set<string>>();
  for (const c of checkpoints) {
    for (const sig of splitNote(c.note).sigs) {
      const id = WITNESS_NAME.exec(sig.name)?.[1];
      if (!id || id === c.feed) continue;
      if (!cosigs.has(id)) cosigs.set(id, new Set());
      cosigs.get(id)?.add(`${sig.name}+${sig.keyId.toString('hex')}`);
    }
  }
  for (const [id, tags] of cosigs) {
    for (const b of await bundlesOf(store, id)) {
      const key = bundleKey(b);
      const name = [...tags][0]?.split('+')[0] as string;
      if (key && tags.has(`${name}+${cosignerKeyId(name, key).toString('hex')}`) && !bundles.includes(b) && !bundles.some((x) => x.sig === b.sig))
        bundles.push(b);
    }
  }
  const file: ProofFile = {
    format: PROOF_FORMAT,
    version: PROOF_VERSION,
    subject:
      'exchange' in subject
        ? { exchange: subject.exchange }
        : 'consent' in subject
          ? { consent: subject.consent }
          : { entries: subject.entries.map((x) => `${x.feed}:${x.seq}`) },
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
  /** Per checkpoint: its feed and size and the witnesses counted for it under the policy. */
  checkpoints: Array<{ feed: string; size: number; witnessed: boolean; witnesses: Array<{ id: string; time: number }> }>;
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
export async function verifyProof(file: ProofFile, trust: Trust, policy: WitnessPolicy = DEFAULT_WITNESS_POLICY): Promise<ProofResult> {
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
  const cpResults: ProofResult['checkpoints'] = [];
  const outside: KnownWitness[] = policy.witnesses.filter((w) => w.includes('+')).map((vkey) => ({ id: vkey, ...parseCosignerKey(vkey) }));
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
      // Witnesses: agents of the federation other than the author, their keys from CA-bound bundles valid at the same time, and outside witnesses by vkey.
      const known: KnownWitness[] = [...outside];
      for (const b of file.bundles) {
        const agent = (b as { agent?: unknown })?.agent;
        if (typeof agent !== 'string' || agent === cp.feed || !HOSPITAL_ID_PATTERN.test(agent)) continue;
        try {
          const v = await verifyKeyBundle(b, {
            caPem: trust.caPem,
            crl: trust.crl,
            ...(at ? { signedAt: new Date(at) } : {}),
            revocationTimes: trust.revocationTimes,
          });
          known.push({ id: agent, ...cosignerKey(witnessName(trust.caPem, agent), v.signingKey) });
        } catch {
          // A witness whose bundle the CA does not vouch for is an unknown key: its cosignature is ignored.
        }
      }
      const w = countWitnesses(cp.note, cp.feed, known, policy);
      cpResults.push({ feed: cp.feed, size: opened.size, witnessed: w.witnessed, witnesses: w.witnesses });
      if (!w.witnessed) {
        const need =
          policy.witnesses.length > 0
            ? `${policy.quorum} of ${policy.witnesses.join(', ')}`
            : `${policy.quorum} witness${policy.quorum === 1 ? '' : 'es'} other than ${cp.feed}`;
        failures.push(
          `checkpoint ${ci} of ${cp.feed} (tree size ${opened.size}) is not witnessed as the policy requires (${need}): ${w.witnesses.length} counted` +
            `${w.witnesses.length ? ` (${w.witnesses.map((x) => x.id).join(', ')})` : ''}, ${w.ignored} signature${w.ignored === 1 ? '' : 's'} ignored${w.problems.length ? `; ${w.problems.join('; ')}` : ''}`,
        );
      }
    } catch (err) {
      const why = (err as { code?: string }).code === 'ERR_LEDGER_UNKNOWN_KEY' ? `it is not signed by a CA-bound key of ${cp.feed}` : (err as Error).message;
      failures.push(`checkpoint ${ci} of ${cp.feed}: ${why}${refused.length ? ` (bundles refused: ${refused.join('; ')})` : ''}`);
      roots.push(undefined);
      cpResults.push({ feed: cp.feed, size: 0, witnessed: false, witnesses: [] });
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
  for (const c of cpResults)
    if (c.witnessed && c.witnesses.length > 0)
      statements.push(
        `the log of ${c.feed} at tree size ${c.size} was witnessed by ${c.witnesses.map((x) => `${x.id.includes('+') ? x.id.split('+')[0] : x.id} (at ${new Date(x.time * 1000).toISOString()})`).join(', ')}`,
      );
  return { ok: failures.length === 0 && proved.length > 0, empty: file.entries.length === 0, failures, statements, proved, checkpoints: cpResults };
}

function describe(file: ProofFile, proved: Entry[], failures: string[]): string[] {
  const body = <T>(e: Entry): T => e.body as T;
  if ('consent' in file.subject) return describeConsent(file.subject.consent, proved, failures);
  if (!('exchange' in file.subject)) return proved.map((e) => `entry ${e.feed}:${e.seq} (${e.type}, ${e.ts}) is in the signed log of ${e.feed}`);
  const x = file.subject.exchange;
  const of = (t: string) => proved.filter((e) => e.type === t);
  for (const e of proved) {
    const id = (e.body as { exchange?: string; consent?: string }).exchange;
    if (e.type !== 'consent.granted' && e.type !== 'consent.revoked' && id !== x) failures.push(`entry ${e.feed}:${e.seq} is about exchange ${id}, not ${x}`);
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
    const revoked = of('consent.revoked').find((r) => r.feed === s.feed && body<{ consent: string }>(r).consent === b.consent);
    // Both are in the sender's feed: their order there (seq) says which came first, even within one millisecond.
    if (revoked && revoked.seq < s.seq) failures.push(`consent ${b.consent} was revoked at ${revoked.ts}, before the release at ${s.ts}`);
    const revocation = revoked ? `, revoked at ${revoked.ts}, ${revoked.seq < s.seq ? 'before' : 'after'} this release` : ', no revocation of it in this file';
    parts.push(
      `sent by ${s.feed} to ${b.to} at ${s.ts} for ${b.purpose} under consent ${b.consent}` +
        (grant && g
          ? ` (granted by ${grant.feed} at ${grant.ts} to ${g.grantees.join(', ')}, valid from ${g.validFrom}${g.validUntil ? ` until ${g.validUntil}` : ''}${revocation})`
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

function describeConsent(id: string, proved: Entry[], failures: string[]): string[] {
  const parts: string[] = [];
  for (const e of proved) {
    const b = e.body as { consent?: string };
    if (b.consent !== id) failures.push(`entry ${e.feed}:${e.seq} is about consent ${b.consent}, not ${id}`);
  }
  for (const g of proved.filter((e) => e.type === 'consent.granted')) {
    const b = g.body as { grantees: string[]; purposes: string[]; validFrom: string; validUntil?: string };
    parts.push(
      `granted by ${g.feed} at ${g.ts} to ${b.grantees.join(', ')} for ${b.purposes.join(', ')}, valid from ${b.validFrom}${b.validUntil ? ` until ${b.validUntil}` : ''}`,
    );
  }
  for (const r of proved.filter((e) => e.type === 'consent.revoked')) parts.push(`revoked by ${r.feed} at ${r.ts} (${(r.body as { reason: string }).reason})`);
  const sent = proved.filter((e) => e.type === 'exchange.sent');
  if (sent.length > 0)
    parts.push(
      `releases under it: ${sent.map((x) => `exchange ${(x.body as { exchange: string }).exchange} to ${(x.body as { to: string }).to} at ${x.ts}`).join(', ')}`,
    );
  return parts.length > 0 ? [`consent ${id}: ${parts.join('; ')}`] : [];
}
