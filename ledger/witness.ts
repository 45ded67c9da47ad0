import { createHash, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../certs/index.ts';
import { MAX_WITNESS_EVIDENCE } from './codec.ts';
import { addSignatures, cosign, cosignerKey, splitNote, verifyCosignature, witnessIdOf, witnessName } from './cosign.ts';
import { signedHeadSchema, verifyHeadSignature, type SignedHead } from './heads.ts';
import type { Ledger } from './ledger.ts';
import { hashesEqual, verifyConsistency } from './merkle.ts';
import { formatCheckpoint, MAX_NOTE_BYTES, openCheckpoint, type Checkpoint } from './note.ts';
import { MAX_COSIGNATURES_READ } from './policy.ts';
import { readStoredJson, seqKey } from './store.ts';
import { TS_PATTERN } from './schema.ts';

/**
 * Peers as witnesses (C2SP tlog-witness semantics, https://c2sp.org/tlog-witness):
 * an agent cosigns a peer's checkpoint (cosignature/v1) only when it is
 * consistent with the last checkpoint it cosigned for that feed (an RFC 9162
 * consistency proof from that size, checked against both roots) and names
 * the root of the entries the agent holds; it persists that last checkpoint
 * per feed, keeps every checkpoint with the cosignatures it has seen, and
 * keeps as evidence (never hides) two author-signed checkpoints that cannot
 * both be true (a split view) and an author that shows a feed shorter than
 * one it witnessed (a rollback).
 */

const note = z.string().max(MAX_NOTE_BYTES);
const feed = z.string().regex(HOSPITAL_ID_PATTERN);

/** Schema of stored (and gossiped) witness evidence. */
export const witnessEvidenceSchema = z.strictObject({
  /** `split`: two author-signed checkpoints of the feed that are not consistent (or one that contradicts the entries held); `rollback`: the author showed a head below a checkpoint this agent witnessed. */
  kind: z.enum(['split', 'rollback']),
  feed,
  detectedAt: z.string().regex(TS_PATTERN),
  peer: z.string().max(128).optional(),
  /** The author-signed checkpoint notes (the second one, when present, is what this agent held). */
  notes: z.array(note).min(1).max(2),
  head: signedHeadSchema.optional(),
  detail: z.string().max(512),
});

/** Evidence a witness keeps and gossips. */
export type WitnessEvidence = z.infer<typeof witnessEvidenceSchema>;

/** What {@link Witness.observe} did with a checkpoint. */
export type WitnessOutcome = 'cosigned' | 'stored' | 'stale' | 'pending' | 'equivocation' | 'invalid';

/** Options of {@link Witness}. */
export interface WitnessOptions {
  /** This agent's id (its witness name is derived from it). */
  id: string;
  /** The agent's Ed25519 signing key (the one its CA-bound key bundle carries). */
  signingKey: KeyObject;
  now?: () => Date;
}

interface LastCosigned {
  size: number;
  root: string;
  note: string;
}
const isLast = (v: unknown): v is LastCosigned =>
  typeof v === 'object' && v !== null && Number.isSafeInteger((v as LastCosigned).size) && typeof (v as LastCosigned).note === 'string';

const lastKey = (f: string) => `l!${f}`;
const cosignedKey = (f: string, size: number) => `c!${f}!${seqKey(size)}`;

/** An agent's witness: cosigns peers' checkpoints, gathers cosignatures, keeps split-view and rollback evidence. */
export class Witness extends EventEmitter {
  readonly id: string;
  readonly name: string;
  private key: KeyObject;
  private readonly now: () => Date;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ledger: Ledger,
    options: WitnessOptions,
  ) {
    super();
    if (typeof options?.id !== 'string' || !HOSPITAL_ID_PATTERN.test(options.id)) throw new TypeError('options.id must be an agent id');
    if (options.signingKey?.type !== 'private' || options.signingKey.asymmetricKeyType !== 'ed25519')
      throw new TypeError('options.signingKey must be an Ed25519 private key');
    this.id = options.id;
    this.name = witnessName(ledger.trustAnchors.caPem, options.id);
    this.key = options.signingKey;
    this.now = options.now ?? (() => new Date());
  }

  /** Cosigns with `key` from now on (after a key rotation). */
  setKey(key: KeyObject): void {
    if (key?.type !== 'private' || key.asymmetricKeyType !== 'ed25519') throw new TypeError('key must be an Ed25519 private key');
    this.key = key;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private get store() {
    return this.ledger._store.witness;
  }

  /** The checkpoint this agent last cosigned for `feed`. */
  async lastCosigned(f: string): Promise<{ size: number; root: Buffer; note: string } | undefined> {
    const v = await this.store.get(lastKey(f));
    if (v === undefined) return undefined;
    const l = readStoredJson(v, `last cosigned checkpoint of ${f}`, isLast);
    return { size: l.size, root: Buffer.from(l.root, 'base64'), note: l.note };
  }

  /** The stored checkpoint of `feed` at `size` with every cosignature gathered for it. */
  async cosigned(f: string, size: number): Promise<string | undefined> {
    return this.store.get(cosignedKey(f, size));
  }

  /** The cosigned checkpoint of `feed` with the smallest tree containing entry `seq`. */
  async cosignedCovering(f: string, seq: number): Promise<{ size: number; note: string } | undefined> {
    for await (const [k, v] of this.store.iterator({ gte: cosignedKey(f, seq + 1), lt: `c!${f}"`, limit: 1 })) return { size: Number(k.slice(-16)), note: v };
    return undefined;
  }

  /** Every piece of evidence kept. */
  async evidence(): Promise<WitnessEvidence[]> {
    const out: WitnessEvidence[] = [];
    for await (const v of this.store.values({ gte: 'e!', lt: 'e"' })) {
      const r = witnessEvidenceSchema.safeParse(readStoredJson(v, 'witness evidence'));
      if (r.success) out.push(r.data);
    }
    return out;
  }

  private async record(ev: WitnessEvidence): Promise<boolean> {
    const digest = createHash('sha256')
      .update([ev.kind, ...ev.notes, ev.head ? JSON.stringify(ev.head) : ''].join('\0'))
      .digest('hex')
      .slice(0, 32);
    const key = `e!${ev.feed}!${ev.kind}!${digest}`;
    if ((await this.store.get(key)) !== undefined) return false;
    await this.store.put(key, JSON.stringify(ev));
    this.emit(ev.kind === 'split' ? 'equivocation' : 'rollback', ev);
    return true;
  }

  private open(f: string, n: string): (Checkpoint & { text: string; authorLine: string }) | undefined {
    try {
      const origin = this.ledger.origin(f);
      const cp = openCheckpoint(n, origin, this.ledger.feedKeys(f));
      const { sigs } = splitNote(n);
      const authorLine = sigs.find((s) => s.name === origin && s.keyId.toString('hex') === cp.keyId);
      if (!authorLine) return undefined;
      return { ...cp, text: formatCheckpoint(cp), authorLine: authorLine.line };
    } catch {
      return undefined;
    }
  }

  /** The valid cosignature lines of `n` by agents of the federation (not the feed's author), as far as this agent knows their keys. */
  private validCosignatures(f: string, text: string, n: string): string[] {
    const caPem = this.ledger.trustAnchors.caPem;
    const out: string[] = [];
    let sigs;
    try {
      sigs = splitNote(n).sigs;
    } catch {
      return out;
    }
    for (const s of sigs.slice(0, MAX_COSIGNATURES_READ)) {
      const id = witnessIdOf(caPem, s.name);
      if (!id || id === f) continue;
      for (const k of this.ledger.feedKeys(id)) {
        try {
          if (verifyCosignature(text, s, cosignerKey(s.name, k)) !== undefined) {
            out.push(s.line);
            break;
          }
        } catch {
          // A bad line is ignored here; the verifier of a proof refuses it.
        }
      }
    }
    return out;
  }

  private async merge(f: string, cp: { size: number; text: string; authorLine: string }, lines: string[]): Promise<string> {
    const before = await this.cosigned(f, cp.size);
    const after = addSignatures(before ?? `${cp.text}\n${cp.authorLine}`, lines, MAX_COSIGNATURES_READ);
    if (after !== before) {
      await this.store.put(cosignedKey(f, cp.size), after);
      this.emit('cosignatures', { feed: f, size: cp.size });
    }
    return after;
  }

  /**
   * Takes an author-signed checkpoint of `feed` (possibly carrying
   * cosignatures) seen from `peer`: checks it against the entries held and
   * the last checkpoint cosigned; cosigns it when it is newer and consistent;
   * stores the valid cosignatures it carries; records a split view as evidence.
   */
  observe(f: string, n: string, peer?: string): Promise<WitnessOutcome> {
    return this.serial(() => this._observe(f, n, peer));
  }

  private async _observe(f: string, n: string, peer: string | undefined): Promise<WitnessOutcome> {
    // Gossip repeats itself: a note whose every line is already stored (and that needs no cosignature of ours) costs no signature check.
    const seen = await this.alreadyHeld(f, n);
    if (seen) return seen;
    const cp = this.open(f, n);
    if (!cp) return 'invalid';
    const detectedAt = this.now().toISOString();
    const split = async (other: string | undefined, detail: string): Promise<WitnessOutcome> => {
      await this.record({ kind: 'split', feed: f, detectedAt, ...(peer ? { peer } : {}), notes: other ? [n, other] : [n], detail });
      return 'equivocation';
    };
    const held = this.ledger.treeSize(f);
    if (cp.size <= held) {
      const ours = await this.ledger.treeRoot(f, cp.size);
      if (!hashesEqual(ours, cp.root)) {
        const other = (await this.ledger.checkpointNote(f, cp.size)) ?? (await this.lastCosigned(f))?.note;
        return split(other, `author-signed checkpoint of size ${cp.size} names root ${hex(cp.root)}, the entries held make ${hex(ours)}`);
      }
    }
    const cosigs = this.validCosignatures(f, cp.text, n);
    if (f === this.ledger.feed) {
      if (cp.size > held) {
        // A checkpoint signed with our own key beyond the entries we hold: our feed was rolled back (or lost its tail).
        const by = cosigs.length > 0 ? `, cosigned by ${cosigs.length} witness${cosigs.length === 1 ? '' : 'es'}` : '';
        await this.record({
          kind: 'rollback',
          feed: f,
          detectedAt,
          ...(peer ? { peer } : {}),
          notes: [n],
          detail: `a checkpoint of this agent's own feed at tree size ${cp.size}${by}, is beyond the ${held} entries it holds`,
        });
        return 'equivocation';
      }
      await this.merge(f, cp, cosigs);
      return 'stored';
    }
    const last = await this.lastCosigned(f);
    if (last) {
      if (cp.size === last.size && !hashesEqual(cp.root, last.root))
        return split(last.note, `two author-signed checkpoints of size ${cp.size}: roots ${hex(cp.root)} and ${hex(last.root)}`);
      if (cp.size <= last.size) {
        if (cp.size <= held || cp.size === last.size) await this.merge(f, cp, cosigs);
        return cp.size === last.size ? 'stored' : 'stale';
      }
      if (cp.size > held) return 'pending';
      const proof = await this.ledger.consistencyProof(f, last.size, cp.size);
      if (!verifyConsistency(last.size, cp.size, proof, last.root, cp.root))
        return split(last.note, `checkpoint of size ${cp.size} is not consistent with the checkpoint of size ${last.size} cosigned before`);
    } else if (cp.size > held) return 'pending';
    const line = cosign(cp.text, this.name, this.key, Math.floor(this.now().getTime() / 1000));
    const mine = `${cp.text}\n${cp.authorLine}${line}`;
    await this.store.put(lastKey(f), JSON.stringify({ size: cp.size, root: cp.root.toString('base64'), note: mine }));
    await this.merge(f, cp, [line, ...cosigs]);
    return 'cosigned';
  }

  private async alreadyHeld(f: string, n: string): Promise<WitnessOutcome | undefined> {
    let size: number;
    let lines: string[];
    try {
      const split = splitNote(n);
      size = Number(split.text.split('\n')[1]);
      lines = split.sigs.map((x) => x.line);
    } catch {
      return undefined;
    }
    if (!Number.isSafeInteger(size)) return undefined;
    const have = await this.cosigned(f, size);
    if (have === undefined || !lines.every((l) => have.includes(l))) return undefined;
    if (f === this.ledger.feed) return size <= this.ledger.treeSize(f) ? 'stored' : undefined;
    const last = await this.lastCosigned(f);
    return last && last.size >= size ? (last.size === size ? 'stored' : 'stale') : undefined;
  }

  /**
   * A signed head the author `peer` announced for its own feed: one below
   * the last checkpoint this agent cosigned, and signed after the newer head
   * this agent holds, means the author rolled its feed back and wrote again;
   * it is kept as evidence. (A rolled-back author that writes nothing shows
   * only old heads: its witnesses' gossip tells it, see `_observe`.)
   */
  checkHead(head: SignedHead, peer: string): Promise<boolean> {
    return this.serial(async () => {
      if (head.feed !== peer) return false;
      const last = await this.lastCosigned(head.feed);
      if (!last || head.seq + 1 >= last.size) return false;
      if (!this.ledger.feedKeys(head.feed).some((k) => verifyHeadSignature(head, k))) return false;
      // A head the author signed before the newer one we hold is a late message (gossip queued through a relay
      // restart), not a rollback: only a lower head signed after it shows the author went back on its feed.
      const held = await this.ledger.signedHead(head.feed);
      if (held && held.seq > head.seq && Date.parse(head.ts) <= Date.parse(held.ts)) return false;
      return this.record({
        kind: 'rollback',
        feed: head.feed,
        detectedAt: this.now().toISOString(),
        peer,
        notes: [last.note],
        head,
        detail: `the author shows its feed ending at seq ${head.seq} (tree size ${head.seq + 1}), below the checkpoint of size ${last.size} this agent witnessed`,
      });
    });
  }

  /**
   * Takes gossiped evidence: kept when both notes verify under the feed's
   * keys and cannot both be true (same size, different roots; or one
   * contradicts the entries this agent holds).
   */
  takeEvidence(ev: { feed: string; notes: string[] }, peer: string): Promise<boolean> {
    return this.serial(async () => {
      const cps = ev.notes.map((n) => this.open(ev.feed, n));
      if (cps.length !== 2 || cps.some((c) => !c)) return false;
      const a = cps[0] as Checkpoint;
      const b = cps[1] as Checkpoint;
      let conflict = a.size === b.size && !hashesEqual(a.root, b.root);
      for (const c of [a, b] as Checkpoint[]) {
        if (!conflict && c.size <= this.ledger.treeSize(ev.feed)) conflict = !hashesEqual(await this.ledger.treeRoot(ev.feed, c.size), c.root);
      }
      if (!conflict) return false;
      return this.record({
        kind: 'split',
        feed: ev.feed,
        detectedAt: this.now().toISOString(),
        peer,
        notes: ev.notes,
        detail: `two author-signed checkpoints (sizes ${a.size} and ${b.size}) that are not consistent, gossiped by ${peer}`,
      });
    });
  }

  /** What to gossip: the newest checkpoint of each feed held with its cosignatures (our own: the newest author checkpoint), and split-view evidence. */
  async gossip(): Promise<{ notes: Array<{ feed: string; note: string }>; evidence: Array<{ feed: string; notes: string[] }> }> {
    const notes: Array<{ feed: string; note: string }> = [];
    for (const f of this.ledger.feeds()) {
      let n: string | undefined;
      if (f === this.ledger.feed) {
        const size = this.ledger.treeSize(f);
        n = (await this.cosigned(f, size)) ?? (await this.ledger.checkpointNote(f, size));
      }
      if (n === undefined) for await (const v of this.store.values({ gte: `c!${f}!`, lt: `c!${f}"`, reverse: true, limit: 1 })) n = v;
      if (n !== undefined) notes.push({ feed: f, note: n });
    }
    const evidence = (await this.evidence())
      .filter((e) => e.kind === 'split' && e.notes.length === 2)
      .slice(-MAX_WITNESS_EVIDENCE)
      .map((e) => ({ feed: e.feed, notes: e.notes }));
    return { notes, evidence };
  }
}

function hex(b: Buffer): string {
  return `${b.toString('hex').slice(0, 16)}...`;
}
