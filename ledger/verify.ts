import { decodeEntry, sha256Hex } from './entry.ts';
import { isSealed, readSealed, type SealedRecord } from './sealed.ts';
import { LedgerError } from './errors.ts';
import { evidenceSchema } from './evidence.ts';
import { checkpointSchema, signedHeadSchema, verifyCheckpointSignature, verifyHeadSignature, type SignedHead } from './heads.ts';
import { KeyHistory, keyEraFromEntry, type Trust } from './keys.ts';
import { GENESIS_PREV, type BodyOf, type Entry } from './schema.ts';
import { hashesEqual, leafHash, pushLeaf, rootFromCompactRange } from './merkle.ts';
import { checkpointOrigin, noteKeyId, openCheckpoint, parseCheckpoint, type Checkpoint } from './note.ts';
import type { LedgerSource } from './source.ts';
import { checkWitnessed, checkWitnessEvidence, readWitnessed } from './witnesscheck.ts';

/** Grace period for a sent exchange to get its receipt or failure, in seconds. */
export const DEFAULT_GRACE_SECONDS = 3600;
/** Findings reported at most (the rest are counted). */
export const DEFAULT_MAX_FINDINGS = 10_000;

/** Every rule verification applies; see docs/verification.md. */
export const VERIFY_RULES = {
  'entry.schema': 'the stored bytes are a well-formed entry of a known type (no free text)',
  'entry.feed': 'the entry names the feed it is stored in',
  'entry.seq': 'the entry carries the seq it is stored at (no reordering)',
  'entry.time': 'timestamps never go backwards within a feed',
  'seq.gap': 'no entry is missing between genesis and the head',
  'chain.genesis': 'seq 0 is a genesis entry with the fixed prev, and only there',
  'chain.link': "each entry's prev is the SHA-256 of the stored bytes before it",
  'key.bundle': 'each signing key comes from a key bundle signed by a CA-issued, unrevoked certificate of that hospital',
  'key.endorsement': 'each key rotation is signed by the key it replaces',
  'head.schema': 'stored signed heads are well formed',
  'head.missing': 'the feed has a signed head',
  'head.signature': "the newest signed head verifies under the feed's key in force at its seq",
  'head.key-validity':
    'the head was signed while its key was valid (bundle and certificate not expired, certificate not revoked; X.509 times compared at their one-second resolution)',
  'head.mismatch': 'every stored signed head names the hash of the entry stored at its seq',
  'head.beyond': 'no signed head names an entry that is not stored',
  'head.unsigned': 'every entry is covered by a signed head',
  equivocation: 'the feed author never signed two different histories (evidence kept from replication)',
  'evidence.invalid': 'stored evidence is well formed and its signatures verify',
  'checkpoint.signature': "checkpoints verify under their signer's key",
  'tree.checkpoint':
    "every stored tlog checkpoint of a feed is well formed for this federation and names the RFC 9162 root of the stored entries at its size, and the newest verifies under the feed's key in force",
  'checkpoint.conflict': 'signed checkpoints agree with each other and with the stored entries',
  'exchange.unanswered': 'every exchange.sent older than the grace period has a receipt, exchange.failed or exchange.cancelled in the sender feed',
  'exchange.hash': "receipts and the recipient's exchange.received carry the hash the sender logged",
  'consent.missing': 'every release (exchange.sent) references a consent granted earlier in the same feed',
  'consent.revoked': 'the consent was not revoked before the release',
  'consent.scope': 'the consent covers the patient, recipient, purpose and time of the release',
  'charge.exchange': 'every charge references an exchange in the ledger and a payer that took part in it',
  'charge.claim':
    "a claim's benefit (a charge of kind claim) is paid by the claim's insurer to its hospital and equals the benefit of a complete or partial claim.responded in the insurer's feed",
  'charge.conflict': 'a charge id means one charge (same payer, payee, amount and currency everywhere)',
  'settlement.balance': 'each settlement equals the sum of the charges it settles',
  'witness.equivocation': "the feed's author never signed two checkpoints that are not consistent (split-view evidence kept by this agent's witness)",
  'witness.rollback':
    'the stored feed is not shorter than, nor different from, a checkpoint its witnesses cosigned, and its author never showed a head below one (rollback evidence)',
  'exchange.cancelled': 'a cancelled exchange was never delivered (no delivered receipt in the sender feed, no exchange.received at its recipient)',
} as const;

/** Name of a verification rule. */
export type VerifyRule = keyof typeof VERIFY_RULES;

/** One problem found: where and which rule. `detail` names ids and hashes only, never payload. */
export interface Finding {
  feed: string | null;
  seq: number | null;
  rule: VerifyRule;
  detail: string;
}

/** Result of {@link verifyLedger}. */
export interface VerifyResult {
  ok: boolean;
  findings: Finding[];
  /** Findings beyond `maxFindings` that were counted but not listed. */
  omitted: number;
  /** `sealed`: entries held only as sealed records (private replication: another author's entries that do not concern this hospital). */
  stats: { feeds: number; entries: number; sealed: number; signedHeads: number; signaturesChecked: number; ms: number };
}

/** Options of {@link verifyLedger}. */
export interface VerifyOptions {
  trust: Trust;
  /** Time the cross-feed rules are judged at (default now). */
  now?: Date;
  graceSeconds?: number;
  maxFindings?: number;
}

interface Loc {
  feed: string;
  seq: number;
  ts: string;
}
type Sent = Loc & BodyOf<'exchange.sent'>;

class Facts {
  sent = new Map<string, Sent[]>();
  received = new Map<string, Array<Loc & BodyOf<'exchange.received'>>>();
  receipts = new Map<string, Array<Loc & BodyOf<'receipt'>>>();
  failed = new Map<string, Array<Loc & BodyOf<'exchange.failed'>>>();
  cancelled = new Map<string, Array<Loc & BodyOf<'exchange.cancelled'>>>();
  consents = new Map<string, Loc & BodyOf<'consent.granted'>>();
  revocations = new Map<string, Loc[]>();
  charges = new Map<string, Array<Loc & BodyOf<'payment.charged'>>>();
  settlements: Array<Loc & BodyOf<'payment.settled'>> = [];
  /** Claim id -> its parties as claim.submitted (hospital feed) and claim.received (insurer feed) name them. */
  claims = new Map<string, Array<{ hospital: string; insurer: string }>>();
  /** Claim id -> benefits paid, as the insurer logged its complete or partial responses. */
  benefits = new Map<string, Array<Loc & BodyOf<'claim.responded'>>>();

  add(e: Entry): void {
    const loc = { feed: e.feed, seq: e.seq, ts: e.ts };
    const push = <V>(m: Map<string, V[]>, k: string, v: V): void => {
      const list = m.get(k);
      if (list) list.push(v);
      else m.set(k, [v]);
    };
    switch (e.type) {
      case 'exchange.sent':
        push(this.sent, (e.body as Sent).exchange, { ...loc, ...(e.body as BodyOf<'exchange.sent'>) });
        break;
      case 'exchange.received':
        push(this.received, (e.body as BodyOf<'exchange.received'>).exchange, { ...loc, ...(e.body as BodyOf<'exchange.received'>) });
        break;
      case 'receipt':
        push(this.receipts, (e.body as BodyOf<'receipt'>).exchange, { ...loc, ...(e.body as BodyOf<'receipt'>) });
        break;
      case 'exchange.failed':
        push(this.failed, (e.body as BodyOf<'exchange.failed'>).exchange, { ...loc, ...(e.body as BodyOf<'exchange.failed'>) });
        break;
      case 'exchange.cancelled':
        push(this.cancelled, (e.body as BodyOf<'exchange.cancelled'>).exchange, { ...loc, ...(e.body as BodyOf<'exchange.cancelled'>) });
        break;
      case 'consent.granted': {
        const b = e.body as BodyOf<'consent.granted'>;
        const key = `${e.feed}!${b.consent}`;
        if (!this.consents.has(key)) this.consents.set(key, { ...loc, ...b });
        break;
      }
      case 'consent.revoked':
        push(this.revocations, `${e.feed}!${(e.body as BodyOf<'consent.revoked'>).consent}`, loc);
        break;
      case 'payment.charged':
        push(this.charges, (e.body as BodyOf<'payment.charged'>).charge, { ...loc, ...(e.body as BodyOf<'payment.charged'>) });
        break;
      case 'claim.submitted':
        push(this.claims, (e.body as BodyOf<'claim.submitted'>).claim, { hospital: e.feed, insurer: (e.body as BodyOf<'claim.submitted'>).insurer });
        break;
      case 'claim.received':
        push(this.claims, (e.body as BodyOf<'claim.received'>).claim, { hospital: (e.body as BodyOf<'claim.received'>).hospital, insurer: e.feed });
        break;
      case 'claim.responded': {
        const b = e.body as BodyOf<'claim.responded'>;
        if (e.feed === b.insurer && (b.outcome === 'complete' || b.outcome === 'partial')) push(this.benefits, b.claim, { ...loc, ...b });
        break;
      }
      case 'payment.settled':
        this.settlements.push({ ...loc, ...(e.body as BodyOf<'payment.settled'>) });
        break;
      default:
        break;
    }
  }
}

/**
 * Verifies every feed of a ledger source offline: per-feed integrity (schema,
 * seq, links, CA-bound keys, signed heads), stored evidence and checkpoints,
 * then the cross-feed rules. Signatures are checked on the newest head of each
 * feed (and on any head that disagrees with the chain); every other entry is
 * bound to it by the hash chain, so the cost is one hash per entry.
 */
export async function verifyLedger(source: LedgerSource, options: VerifyOptions): Promise<VerifyResult> {
  if (typeof options?.trust?.caPem !== 'string') throw new TypeError('options.trust.caPem must be the CA certificate PEM');
  const started = performance.now();
  const now = options.now ?? new Date();
  const grace = (options.graceSeconds ?? DEFAULT_GRACE_SECONDS) * 1000;
  const maxFindings = options.maxFindings ?? DEFAULT_MAX_FINDINGS;
  const findings: Finding[] = [];
  let omitted = 0;
  const report = (feed: string | null, seq: number | null, rule: VerifyRule, detail: string): void => {
    if (findings.length < maxFindings) findings.push({ feed, seq, rule, detail });
    else omitted += 1;
  };
  const facts = new Facts();
  const hashes = new Map<string, Map<number, string>>();
  const histories = new Map<string, KeyHistory>();
  const stats = { feeds: 0, entries: 0, sealed: 0, signedHeads: 0, signaturesChecked: 0, ms: 0 };
  // Feeds of which this ledger holds sealed entries: cross-feed rules do not report what such a partial view cannot see.
  const sealedFeeds = new Set<string>();

  for (const feed of await source.feeds()) {
    stats.feeds += 1;
    const history = new KeyHistory();
    histories.set(feed, history);
    const seqHash = new Map<number, string>();
    hashes.set(feed, seqHash);
    let expect = 0;
    let prevHash = GENESIS_PREV;
    let prevTs = '';
    let lastSeq = -1;
    // The feed's Merkle tree, rebuilt from the stored bytes to hold its checkpoints against.
    const notes = await readNotes(source, feed);
    const witnessed = await readWitnessed(source, feed);
    const tree = { size: 0, range: [] as Buffer[] };
    const roots = new Map<number, Buffer>();
    for await (const { seq, bytes } of source.entries(feed)) {
      stats.entries += 1;
      let sealed: SealedRecord | undefined;
      if (isSealed(bytes)) {
        try {
          sealed = readSealed(bytes);
        } catch (err) {
          report(feed, seq, 'entry.schema', (err as Error).message);
        }
      }
      if ((notes.size > 0 || witnessed.size > 0) && seq === tree.size) {
        pushLeaf(tree.range, tree.size, sealed ? Buffer.from(sealed.leaf, 'hex') : leafHash(bytes));
        tree.size += 1;
        if (notes.has(tree.size) || witnessed.has(tree.size)) roots.set(tree.size, rootFromCompactRange(tree.range));
      }
      const hash = sealed ? sealed.hash : sha256Hex(bytes);
      seqHash.set(seq, hash);
      const gap = seq !== expect;
      if (gap) report(feed, expect, 'seq.gap', seq > expect ? `entries ${expect}..${seq - 1} are missing` : `position ${seq} is out of order`);
      expect = seq + 1;
      lastSeq = seq;
      if (sealed) {
        // Another author's entry that does not concern us (private replication): its hash and leaf are checked
        // through the chain (the next readable entry's prev, the signed head) and the author's checkpoints; its body is not ours to read.
        if (sealed.feed !== feed || sealed.seq !== seq) report(feed, seq, 'entry.seq', `sealed record names ${sealed.feed}:${sealed.seq}`);
        stats.sealed += 1;
        sealedFeeds.add(feed);
        prevHash = hash;
        continue;
      }
      let entry: Entry;
      try {
        entry = decodeEntry(bytes).entry;
      } catch (err) {
        report(feed, seq, 'entry.schema', (err as Error).message);
        prevHash = hash;
        continue;
      }
      if (entry.feed !== feed) report(feed, seq, 'entry.feed', `entry names feed '${entry.feed}'`);
      if (entry.seq !== seq) report(feed, seq, 'entry.seq', `entry stored at ${seq} carries seq ${entry.seq}`);
      if (!gap && entry.prev !== prevHash)
        report(feed, seq, 'chain.link', `prev ${entry.prev.slice(0, 16)}... is not the hash of entry ${seq - 1} (${prevHash.slice(0, 16)}...)`);
      if (entry.ts < prevTs) report(feed, seq, 'entry.time', `ts ${entry.ts} is before ${prevTs}`);
      if ((seq === 0) !== (entry.type === 'genesis'))
        report(feed, seq, 'chain.genesis', seq === 0 ? `seq 0 is a ${entry.type} entry` : 'genesis entry after seq 0');
      else if (entry.type === 'genesis' || entry.type === 'key.rotated') {
        try {
          history.push(await keyEraFromEntry(entry, history.current(), options.trust));
        } catch (err) {
          const code = err instanceof LedgerError ? err.code : '';
          report(
            feed,
            seq,
            code === 'ERR_LEDGER_BAD_SIGNATURE' || code === 'ERR_LEDGER_UNKNOWN_KEY' ? 'key.endorsement' : 'key.bundle',
            (err as Error).message,
          );
        }
      }
      facts.add(entry);
      prevHash = hash;
      prevTs = entry.ts;
    }

    // Signed heads: hash-compare all, verify the signature of the newest and of any that disagree.
    let top: SignedHead | undefined;
    for await (const raw of source.signedHeads(feed)) {
      stats.signedHeads += 1;
      const parsed = signedHeadSchema.safeParse(raw);
      if (!parsed.success || parsed.data.feed !== feed) {
        report(feed, null, 'head.schema', 'a stored signed head is malformed');
        continue;
      }
      const h = parsed.data;
      const ours = seqHash.get(h.seq);
      if (ours === undefined) {
        report(feed, h.seq, 'head.beyond', `signed head names entry ${h.seq}, which is not stored`);
        continue;
      }
      if (ours !== h.hash) {
        const era = history.at(h.seq);
        stats.signaturesChecked += 1;
        const valid = era !== undefined && era.kid === h.kid && verifyHeadSignature(h, era.key);
        report(
          feed,
          h.seq,
          valid ? 'head.mismatch' : 'head.signature',
          valid
            ? `validly signed head names hash ${h.hash.slice(0, 16)}... but the stored entry hashes to ${ours.slice(0, 16)}... (entry altered or feed forked)`
            : 'signed head does not match the entry and its signature does not verify',
        );
        continue;
      }
      if (!top || h.seq > top.seq) top = h;
    }
    if (!top) {
      if (lastSeq >= 0) report(feed, null, 'head.missing', 'no valid signed head covers this feed');
    } else {
      const era = history.at(top.seq);
      stats.signaturesChecked += 1;
      if (!era) report(feed, top.seq, 'head.signature', 'no CA-bound key is in force at the head');
      else if (era.kid !== top.kid || !verifyHeadSignature(top, era.key))
        report(
          feed,
          top.seq,
          'head.signature',
          `head signed with key ${top.kid.slice(0, 12)}..., which is not the feed's key in force (${era.kid.slice(0, 12)}...) or the signature is bad`,
        );
      else if (Date.parse(top.ts) > era.notAfter)
        report(
          feed,
          top.seq,
          'head.key-validity',
          `head signed at ${top.ts}, after its key expired or its certificate was revoked (${new Date(era.notAfter).toISOString()})`,
        );
      if (lastSeq > top.seq) report(feed, top.seq + 1, 'head.unsigned', `entries ${top.seq + 1}..${lastSeq} are not covered by a signed head`);
    }
    checkTreeCheckpoints(feed, notes, roots, history, options.trust.caPem, report, stats);
    checkWitnessed(feed, witnessed, roots, tree.size, history, options.trust.caPem, report);
  }
  await checkWitnessEvidence(source, histories, options.trust.caPem, report);

  await checkEvidence(source, histories, report);
  await checkCheckpoints(source, histories, hashes, report, stats);
  crossFeedRules(facts, now, grace, report, sealedFeeds);
  stats.ms = Math.round(performance.now() - started);
  return { ok: findings.length === 0 && omitted === 0, findings, omitted, stats };
}

type Report = (feed: string | null, seq: number | null, rule: VerifyRule, detail: string) => void;

async function readNotes(source: LedgerSource, feed: string): Promise<Map<number, unknown>> {
  const notes = new Map<number, unknown>();
  if (source.treeCheckpoints) for await (const { size, note } of source.treeCheckpoints(feed)) notes.set(size, note);
  return notes;
}

/**
 * The feed's tlog checkpoints: each must parse, name this federation's
 * origin for the feed and the root of the stored entries at its size; like
 * signed heads, the signature of the newest is checked, and that of any
 * whose root disagrees (validly signed: the entries were altered or the feed forked).
 */
function checkTreeCheckpoints(
  feed: string,
  notes: Map<number, unknown>,
  roots: Map<number, Buffer>,
  history: KeyHistory,
  caPem: string,
  report: Report,
  stats: { signaturesChecked: number },
): void {
  if (notes.size === 0) return;
  const origin = checkpointOrigin(caPem, feed);
  const signedBy = (size: number, note: unknown): boolean => {
    const era = history.at(size - 1);
    stats.signaturesChecked += 1;
    try {
      return era !== undefined && openCheckpoint(note, origin, [era.key]).size === size;
    } catch {
      return false;
    }
  };
  let newest: number | undefined;
  for (const [size, note] of [...notes].sort((a, b) => a[0] - b[0])) {
    let cp: Checkpoint;
    try {
      if (typeof note !== 'string') throw new TypeError('not text');
      cp = parseCheckpoint(note.slice(0, note.lastIndexOf('\n\n') + 1));
    } catch {
      report(feed, size - 1, 'tree.checkpoint', `the checkpoint stored for tree size ${size} is malformed`);
      continue;
    }
    if (cp.size !== size || cp.origin !== origin) {
      report(feed, size - 1, 'tree.checkpoint', `the checkpoint stored for tree size ${size} is of ${cp.origin} at size ${cp.size}`);
      continue;
    }
    const ours = roots.get(size);
    if (!ours) {
      report(feed, size - 1, 'tree.checkpoint', `checkpoint of tree size ${size} names entries that are not stored`);
      continue;
    }
    if (!hashesEqual(ours, cp.root)) {
      const valid = signedBy(size, note);
      report(
        feed,
        size - 1,
        'tree.checkpoint',
        valid
          ? `validly signed checkpoint of size ${size} names root ${cp.root.toString('hex').slice(0, 16)}..., the stored entries make ${ours.toString('hex').slice(0, 16)}... (entries altered or feed forked)`
          : `checkpoint of size ${size} does not name the root of the stored entries and its signature does not verify`,
      );
      continue;
    }
    newest = size;
  }
  if (newest !== undefined && !signedBy(newest, notes.get(newest))) {
    const era = history.at(newest - 1);
    report(
      feed,
      newest - 1,
      'tree.checkpoint',
      `the newest checkpoint (size ${newest}) is not signed by the feed's key in force${era ? ` (key id ${noteKeyId(origin, era.key).toString('hex')})` : ''}`,
    );
  }
}

async function checkEvidence(source: LedgerSource, histories: Map<string, KeyHistory>, report: Report): Promise<void> {
  for (const raw of await source.evidence()) {
    const parsed = evidenceSchema.safeParse(raw);
    if (!parsed.success) {
      report(null, null, 'evidence.invalid', 'stored evidence is malformed');
      continue;
    }
    const ev = parsed.data;
    if (ev.kind === 'checkpoint') {
      report(
        ev.feed,
        ev.seq,
        'checkpoint.conflict',
        `checkpoint of '${ev.theirs.checkpoint?.agent ?? '?'}' names a different hash for this entry (recorded ${ev.detectedAt})`,
      );
      continue;
    }
    const head = ev.theirs.head;
    const era = head ? histories.get(ev.feed)?.byKid(head.kid) : undefined;
    if (!head || !era || !verifyHeadSignature(head, era.key)) {
      report(ev.feed, ev.seq, 'evidence.invalid', 'equivocation evidence carries no head that verifies under the feed key');
      continue;
    }
    report(
      ev.feed,
      ev.seq,
      'equivocation',
      `the author signed a head (seq ${head.seq}, ${head.hash.slice(0, 16)}...) that contradicts the stored chain at seq ${ev.seq} (${ev.ours.hash.slice(0, 16)}...); seen from ${ev.peer ?? 'a peer'} at ${ev.detectedAt}`,
    );
  }
}

async function checkCheckpoints(
  source: LedgerSource,
  histories: Map<string, KeyHistory>,
  hashes: Map<string, Map<number, string>>,
  report: Report,
  stats: { signaturesChecked: number },
): Promise<void> {
  const claims = new Map<string, { hash: string; agent: string }>();
  for (const raw of await source.checkpoints()) {
    const parsed = checkpointSchema.safeParse(raw);
    if (!parsed.success) {
      report(null, null, 'checkpoint.signature', 'a stored checkpoint is malformed');
      continue;
    }
    const cp = parsed.data;
    const era = histories.get(cp.agent)?.byKid(cp.kid);
    // Without the signer's feed its key is unknown: such a checkpoint proves nothing and is skipped.
    if (!era) continue;
    stats.signaturesChecked += 1;
    if (!verifyCheckpointSignature(cp, era.key)) {
      report(cp.agent, null, 'checkpoint.signature', `checkpoint of ${cp.ts} does not verify under the key of '${cp.agent}'`);
      continue;
    }
    for (const h of cp.heads) {
      const ours = hashes.get(h.feed)?.get(h.seq);
      if (ours !== undefined && ours !== h.hash)
        report(
          h.feed,
          h.seq,
          'checkpoint.conflict',
          `checkpoint of '${cp.agent}' at ${cp.ts} names ${h.hash.slice(0, 16)}..., the stored entry hashes to ${ours.slice(0, 16)}...`,
        );
      const key = `${h.feed}!${h.seq}`;
      const seen = claims.get(key);
      if (seen && seen.hash !== h.hash)
        report(h.feed, h.seq, 'checkpoint.conflict', `checkpoints of '${seen.agent}' and '${cp.agent}' name different hashes for this entry`);
      else if (!seen) claims.set(key, { hash: h.hash, agent: cp.agent });
    }
  }
}

function crossFeedRules(facts: Facts, now: Date, graceMs: number, report: Report, sealedFeeds: ReadonlySet<string> = new Set()): void {
  for (const [exchange, cancels] of facts.cancelled) {
    for (const c of cancels) {
      const delivered = (facts.receipts.get(exchange) ?? []).find((r) => r.feed === c.feed && r.from === c.peer && r.disposition === 'delivered');
      if (delivered)
        report(c.feed, c.seq, 'exchange.cancelled', `exchange ${exchange} was cancelled, yet ${c.feed}:${delivered.seq} logs its delivered receipt`);
      const received = (facts.received.get(exchange) ?? []).find((rx) => rx.feed === c.peer && rx.from === c.feed);
      if (received) report(c.feed, c.seq, 'exchange.cancelled', `exchange ${exchange} was cancelled, yet '${c.peer}' logs it received (seq ${received.seq})`);
    }
  }
  for (const [exchange, sents] of facts.sent) {
    for (const s of sents) {
      const receipts = (facts.receipts.get(exchange) ?? []).filter((r) => r.feed === s.feed && r.from === s.to);
      const failures = (facts.failed.get(exchange) ?? []).filter((f) => f.feed === s.feed);
      const cancels = (facts.cancelled.get(exchange) ?? []).filter((c) => c.feed === s.feed);
      if (receipts.length === 0 && failures.length === 0 && cancels.length === 0 && now.getTime() - Date.parse(s.ts) > graceMs) {
        report(
          s.feed,
          s.seq,
          'exchange.unanswered',
          `exchange ${exchange} to '${s.to}' has no receipt, exchange.failed or exchange.cancelled after the grace period`,
        );
      }
      for (const r of receipts) {
        if (r.disposition === 'delivered' && r.hash !== s.hash)
          report(r.feed, r.seq, 'exchange.hash', `receipt for ${exchange} names a different hash than the sender logged`);
      }
      for (const rx of facts.received.get(exchange) ?? []) {
        if (rx.feed === s.to && rx.from === s.feed && rx.hash !== s.hash)
          report(rx.feed, rx.seq, 'exchange.hash', `exchange.received for ${exchange} names a different hash than '${s.feed}' sent`);
      }
      const consent = facts.consents.get(`${s.feed}!${s.consent}`);
      if (!consent && sealedFeeds.has(s.feed)) continue; // The consent may be sealed: it does not name us.
      if (!consent || consent.seq > s.seq) {
        report(s.feed, s.seq, 'consent.missing', `release ${exchange} references consent ${s.consent}, which is not granted before it in this feed`);
        continue;
      }
      const revoked = (facts.revocations.get(`${s.feed}!${s.consent}`) ?? []).find((r) => r.seq < s.seq);
      if (revoked) report(s.feed, s.seq, 'consent.revoked', `release ${exchange} follows the revocation of consent ${s.consent} (seq ${revoked.seq})`);
      const problems: string[] = [];
      if (consent.patient !== s.patient) problems.push('another patient');
      if (!consent.grantees.includes(s.to)) problems.push(`recipient '${s.to}' not granted`);
      if (!consent.purposes.includes(s.purpose)) problems.push(`purpose ${s.purpose} not granted`);
      if (s.ts < consent.validFrom || (consent.validUntil !== undefined && s.ts > consent.validUntil)) problems.push('outside the consent period');
      if (problems.length > 0) report(s.feed, s.seq, 'consent.scope', `release ${exchange} under consent ${s.consent}: ${problems.join(', ')}`);
    }
  }
  const distinctCharges: Array<Loc & BodyOf<'payment.charged'>> = [];
  for (const [charge, list] of facts.charges) {
    const first = list[0] as Loc & BodyOf<'payment.charged'>;
    distinctCharges.push(first);
    for (const c of list.slice(1)) {
      if (c.payer !== first.payer || c.payee !== first.payee || c.amount !== first.amount || c.currency !== first.currency || c.exchange !== first.exchange) {
        report(c.feed, c.seq, 'charge.conflict', `charge ${charge} differs from the one at ${first.feed}:${first.seq}`);
      }
    }
    for (const c of list) {
      if (c.kind === 'claim') {
        const parties = facts.claims.get(c.exchange) ?? [];
        if (parties.length === 0) report(c.feed, c.seq, 'charge.exchange', `charge ${charge} references claim ${c.exchange}, which is not in the ledger`);
        else if (!parties.every((p) => p.insurer === c.payer && p.hospital === c.payee))
          report(c.feed, c.seq, 'charge.claim', `charge ${charge} is not paid by the insurer of claim ${c.exchange} to its hospital`);
        else if (!(facts.benefits.get(c.exchange) ?? []).some((b) => b.amount === c.amount && b.currency === c.currency && b.hospital === c.payee))
          report(c.feed, c.seq, 'charge.claim', `charge ${charge} is not the benefit the insurer's response to claim ${c.exchange} pays`);
        continue;
      }
      const sent = facts.sent.get(c.exchange)?.[0];
      const rx = facts.received.get(c.exchange)?.[0];
      const parties = new Set<string>();
      if (sent) parties.add(sent.feed).add(sent.to);
      if (rx) parties.add(rx.feed).add(rx.from);
      if (parties.size === 0 && sealedFeeds.size > 0) continue; // The exchange's entries may be sealed in a feed we are not party to.
      if (parties.size === 0) report(c.feed, c.seq, 'charge.exchange', `charge ${charge} references exchange ${c.exchange}, which is not in the ledger`);
      else if (!parties.has(c.payer)) report(c.feed, c.seq, 'charge.exchange', `charge ${charge}: payer '${c.payer}' took no part in exchange ${c.exchange}`);
    }
  }
  for (const st of facts.settlements) {
    const due = distinctCharges
      .filter((c) => c.payer === st.payer && c.payee === st.payee && c.currency === st.currency && c.ts >= st.periodStart && c.ts < st.periodEnd)
      .reduce((sum, c) => sum + c.amount, 0);
    if (due !== st.amount)
      report(
        st.feed,
        st.seq,
        'settlement.balance',
        `settlement ${st.settlement} (${st.payer} -> ${st.payee}) is ${st.amount} ${st.currency} but the charges in its period sum to ${due}`,
      );
  }
}
