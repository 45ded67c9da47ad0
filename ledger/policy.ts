import { z } from 'zod';
import { HOSPITAL_ID_PATTERN } from '../certs/index.ts';
import { LedgerError } from './errors.ts';
import { splitNote, verifyCosignature, type CosignerKey } from './cosign.ts';

/**
 * When a checkpoint counts as witnessed: `quorum` distinct witnesses, each
 * one of `witnesses` (agent ids of the federation, whose keys come from
 * CA-bound key bundles, or cosignature/v1 vkeys of outside witnesses), and
 * never the feed's own author. An empty `witnesses` list means any agent of
 * the federation other than the author.
 */

/** Witnesses a checkpoint needs by default. */
export const DEFAULT_WITNESS_QUORUM = 1;
/** Signature lines read from one checkpoint note at most; a note with more is refused, not partly read. */
export const MAX_COSIGNATURES_READ = 32;
/** Most witnesses a policy may name. */
export const MAX_POLICY_WITNESSES = 64;

/** A witness in a policy: an agent id of the federation, or a cosignature/v1 vkey `<name>+<key id>+<base64(0x04 || key)>`. */
const WITNESS_PATTERN = new RegExp(`^(?:${HOSPITAL_ID_PATTERN.source.slice(1, -1)}|[^+\\s]+\\+[0-9a-f]{8}\\+[A-Za-z0-9+/]+={0,2})$`);

/** Schema of a witness policy (config `ledger.witness.policy`, or an auditor's `--policy FILE`). */
export const witnessPolicySchema = z.strictObject({
  quorum: z.number().int().min(0).max(MAX_POLICY_WITNESSES).default(DEFAULT_WITNESS_QUORUM),
  witnesses: z.array(z.string().max(512).regex(WITNESS_PATTERN, 'must be an agent id or a cosignature/v1 vkey')).max(MAX_POLICY_WITNESSES).default([]),
});

/** A witness policy. */
export type WitnessPolicy = z.infer<typeof witnessPolicySchema>;

/** The default policy: one witness, any agent of the federation other than the author. */
export const DEFAULT_WITNESS_POLICY: WitnessPolicy = { quorum: DEFAULT_WITNESS_QUORUM, witnesses: [] };

/** Parses a policy (file text as JSON, or an already parsed value); throws ERR_LEDGER_INVALID_ARGUMENT naming what is wrong. */
export function parseWitnessPolicy(input: unknown): WitnessPolicy {
  let value = input;
  if (typeof input === 'string') {
    try {
      value = JSON.parse(input);
    } catch {
      throw new LedgerError('ERR_LEDGER_INVALID_ARGUMENT', 'witness policy is not JSON');
    }
  }
  const r = witnessPolicySchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new LedgerError('ERR_LEDGER_INVALID_ARGUMENT', `witness policy is invalid at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  if (r.data.witnesses.length > 0 && r.data.quorum > r.data.witnesses.length)
    throw new LedgerError('ERR_LEDGER_INVALID_ARGUMENT', `witness policy asks for ${r.data.quorum} witnesses but names ${r.data.witnesses.length}`);
  return r.data;
}

/** A witness the verifier knows a key of: `id` is an agent id (federation witness) or the vkey (outside witness). */
export interface KnownWitness extends CosignerKey {
  id: string;
}

/** Outcome of {@link countWitnesses}. */
export interface WitnessCount {
  /** At least `quorum` distinct witnesses of the policy cosigned. */
  witnessed: boolean;
  quorum: number;
  /** Each counted witness once, with the time of its (first valid) cosignature. */
  witnesses: Array<{ id: string; time: number }>;
  /** Signature lines by keys the verifier does not know, or knows but outside the policy, or the author's. */
  ignored: number;
  /** Why the count could not be made or a known witness's line was refused, in plain words. */
  problems: string[];
}

/** True when `w` is a witness the policy accepts for a checkpoint of `author`. */
export function inPolicy(policy: WitnessPolicy, w: KnownWitness, author: string): boolean {
  if (w.id === author) return false;
  if (policy.witnesses.length === 0) return true;
  return policy.witnesses.includes(w.id);
}

/**
 * Counts the witnesses of a checkpoint note: reads at most
 * {@link MAX_COSIGNATURES_READ} signature lines (more: nothing is counted),
 * matches each line to a known witness by key name and key id together,
 * ignores lines of unknown keys (and of the author, and of witnesses outside
 * the policy), refuses a known witness's line that does not verify, and
 * counts each witness once however many of its keys or lines signed.
 * `validAt` may refuse a witness key at the cosignature's time (a revoked or
 * expired bundle) with a reason.
 */
export function countWitnesses(
  note: string,
  author: string,
  known: readonly KnownWitness[],
  policy: WitnessPolicy,
  validAt: (w: KnownWitness, time: number) => string | undefined = () => undefined,
): WitnessCount {
  const out: WitnessCount = { witnessed: false, quorum: policy.quorum, witnesses: [], ignored: 0, problems: [] };
  let split: ReturnType<typeof splitNote>;
  try {
    split = splitNote(note, MAX_COSIGNATURES_READ);
  } catch (err) {
    out.problems.push((err as Error).message);
    return out;
  }
  const counted = new Map<string, number>();
  for (const sig of split.sigs) {
    const candidates = known.filter((w) => w.name === sig.name && w.keyId.equals(sig.keyId));
    const accepted = candidates.filter((w) => inPolicy(policy, w, author));
    if (accepted.length === 0) {
      out.ignored += 1;
      continue;
    }
    let time: number | undefined;
    let who: KnownWitness | undefined;
    for (const w of accepted) {
      try {
        time = verifyCosignature(split.text, sig, w);
      } catch (err) {
        out.problems.push((err as Error).message);
        continue;
      }
      if (time === undefined) continue;
      const refused = validAt(w, time);
      if (refused) {
        out.problems.push(`cosignature of ${w.id} at ${new Date(time * 1000).toISOString()}: ${refused}`);
        time = undefined;
        continue;
      }
      who = w;
      break;
    }
    if (who && time !== undefined && !counted.has(who.id)) counted.set(who.id, time);
  }
  out.witnesses = [...counted].map(([id, time]) => ({ id, time }));
  out.witnessed = out.problems.length === 0 && out.witnesses.length >= policy.quorum;
  return out;
}
