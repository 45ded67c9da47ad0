import { splitNote, witnessIdOf } from './cosign.ts';
import type { KeyHistory } from './keys.ts';
import { hashesEqual } from './merkle.ts';
import { checkpointOrigin, openCheckpoint, type Checkpoint } from './note.ts';
import type { LedgerSource } from './source.ts';
import type { VerifyRule } from './verify.ts';
import { witnessEvidenceSchema } from './witness.ts';

/** The verify rules about witnesses: what a database's witness records say about its feeds (see verify.ts). */

type Report = (feed: string | null, seq: number | null, rule: VerifyRule, detail: string) => void;

/** The feed's checkpoints with cosignatures, by tree size (empty for a source without witness records). */
export async function readWitnessed(source: LedgerSource, feed: string): Promise<Map<number, unknown>> {
  const out = new Map<number, unknown>();
  if (source.witnessedCheckpoints) for await (const { size, note } of source.witnessedCheckpoints(feed)) out.set(size, note);
  return out;
}

function openAny(note: unknown, origin: string, history: KeyHistory | undefined): Checkpoint | undefined {
  try {
    return openCheckpoint(
      note,
      origin,
      (history?.eras ?? []).map((e) => e.key),
    );
  } catch {
    return undefined;
  }
}

function cosigners(caPem: string, feed: string, note: string): string[] {
  try {
    return [...new Set(splitNote(note).sigs.flatMap((s) => witnessIdOf(caPem, s.name) ?? []))].filter((id) => id !== feed);
  } catch {
    return [];
  }
}

/**
 * Each checkpoint of `feed` held with cosignatures (validly signed by the
 * feed's key) must fit the stored entries: a size beyond them, or a root
 * other than theirs at its size, is a rollback (or a rewritten feed).
 */
export function checkWitnessed(
  feed: string,
  witnessed: Map<number, unknown>,
  roots: Map<number, Buffer>,
  treeSize: number,
  history: KeyHistory,
  caPem: string,
  report: Report,
): void {
  const origin = checkpointOrigin(caPem, feed);
  for (const [size, note] of witnessed) {
    const cp = openAny(note, origin, history);
    if (!cp || cp.size !== size) continue;
    const by = cosigners(caPem, feed, note as string);
    if (by.length === 0) continue;
    const who = `cosigned by ${by.join(', ')}`;
    if (size > treeSize) report(feed, treeSize, 'witness.rollback', `the feed holds ${treeSize} entries, below the checkpoint of tree size ${size} ${who}`);
    else {
      const ours = roots.get(size);
      if (ours && !hashesEqual(ours, cp.root))
        report(feed, size - 1, 'witness.rollback', `the stored entries make another root at tree size ${size} than the checkpoint ${who} (feed rewritten)`);
    }
  }
}

/** Split-view and rollback evidence: reported when its notes verify under the feed's keys, `evidence.invalid` when not. */
export async function checkWitnessEvidence(source: LedgerSource, histories: Map<string, KeyHistory>, caPem: string, report: Report): Promise<void> {
  if (!source.witnessEvidence) return;
  for (const raw of await source.witnessEvidence()) {
    const r = witnessEvidenceSchema.safeParse(raw);
    if (!r.success) {
      report(null, null, 'evidence.invalid', 'stored witness evidence is malformed');
      continue;
    }
    const ev = r.data;
    const origin = checkpointOrigin(caPem, ev.feed);
    const history = histories.get(ev.feed);
    const cps = ev.notes.map((n) => openAny(n, origin, history));
    if (cps.some((c) => !c)) {
      report(ev.feed, null, 'evidence.invalid', `${ev.kind} evidence of ${ev.detectedAt} carries a checkpoint that does not verify under the feed's keys`);
      continue;
    }
    const from = `seen from ${ev.peer ?? 'a peer'} at ${ev.detectedAt}`;
    if (ev.kind === 'split') {
      const sizes = (cps as Checkpoint[]).map((c) => c.size).join(' and ');
      report(ev.feed, null, 'witness.equivocation', `the author signed checkpoints (tree sizes ${sizes}) that are not consistent: ${ev.detail}; ${from}`);
    } else {
      report(ev.feed, ev.head ? ev.head.seq : null, 'witness.rollback', `${ev.detail}; ${from}`);
    }
  }
}
