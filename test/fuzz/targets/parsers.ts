import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { LedgerError } from '../../../ledger/index.ts';
import { leafHash, merkleTree, verifyConsistency, verifyInclusion } from '../../../ledger/merkle.ts';
import { openCheckpoint, signCheckpointNote } from '../../../ledger/note.ts';
import { parsePatientId } from '../../../hospital-agent/consent/patient.ts';
import { parseFhirDateTime } from '../../../hospital-agent/fhir/datetime.ts';
import { bundlePatientIssues } from '../../../hospital-agent/fhir/patients.ts';
import type { FuzzTarget } from '../support/harness.ts';
import { applyJsonOps, applyOps, jsonOpArb, mutationArb } from '../support/mutate.ts';

interface ParsersCtx {
  key: KeyObject;
  origin: string;
  note: string;
  leaves: Buffer[];
  root: Buffer;
  proofs: Buffer[][];
  bundle: Record<string, unknown>;
}

const PATIENT_CODES = new Set(['ERR_FHIR_PATIENT_MISMATCH', 'ERR_FHIR_PATIENT_MULTIPLE', 'ERR_FHIR_PATIENT_UNRESOLVED', 'ERR_FHIR_PATIENT_MISSING']);

/** A proof with one hash changed, dropped, duplicated or added (or the same proof). */
const proofEditArb = fc.record({
  kind: fc.constantFrom('flip', 'drop', 'dup', 'add', 'none'),
  at: fc.nat({ max: 63 }),
  bit: fc.nat({ max: 255 }),
});

function editProof(proof: readonly Buffer[], e: { kind: string; at: number; bit: number }): Buffer[] {
  const out = proof.map((h) => Buffer.from(h));
  const i = out.length === 0 ? 0 : e.at % out.length;
  const target = out[i];
  if (e.kind === 'flip' && target) target[e.bit % 32] = (target[e.bit % 32] as number) ^ (1 << (e.bit % 8));
  if (e.kind === 'drop' && out.length > 0) out.splice(i, 1);
  if (e.kind === 'dup' && out.length > 0) out.splice(i, 0, Buffer.from(out[i] as Buffer));
  if (e.kind === 'add') out.push(createHash('sha256').update(String(e.bit)).digest());
  return out;
}

/**
 * This wave's parsers of untrusted input: C2SP signed checkpoints (as a peer or
 * a proof file hands them over), RFC 9162 inclusion and consistency proofs,
 * FHIR dateTime values and the patients of a FHIR Bundle (as the EHR posts
 * them). Each refuses what it must with a typed answer and never throws
 * anything else.
 */
export const parsersTarget: FuzzTarget<ParsersCtx> = {
  name: 'parsers',
  async setup() {
    const key = generateKeyPairSync('ed25519').privateKey;
    const origin = 'hie.example/federation/alpha';
    const leaves = Array.from({ length: 13 }, (_, i) => leafHash(Buffer.from(`entry ${i}`)));
    const tree = merkleTree(leaves);
    const note = signCheckpointNote({ origin, size: leaves.length, root: tree.root }, key);
    const bundle = JSON.parse(readFileSync(new URL('../../../scripts/fixtures/small-bundle.json', import.meta.url), 'utf8')) as Record<string, unknown>;
    return { key, origin, note, leaves, root: tree.root, proofs: tree.proofs, bundle };
  },
  async teardown() {},
  properties: {
    'the unaltered checkpoint opens and every leaf proves its inclusion (control)': {
      quickRuns: 1,
      control: true,
      build: (ctx) =>
        fc.property(fc.constant(0), () => {
          const cp = openCheckpoint(ctx.note, ctx.origin, [ctx.key]);
          if (cp.size !== ctx.leaves.length || !cp.root.equals(ctx.root)) throw new Error('the checkpoint opened to something else');
          ctx.leaves.forEach((leaf, i) => {
            if (!verifyInclusion(i, ctx.leaves.length, leaf, ctx.proofs[i], ctx.root)) throw new Error(`leaf ${i} does not prove`);
          });
        }),
    },
    'openCheckpoint refuses every altered note with a LedgerError, or opens it to the same checkpoint': {
      quickRuns: 300,
      build: (ctx) =>
        fc.property(mutationArb(1, 3), (m) => {
          const text = applyOps(Buffer.from(ctx.note), m.ops).toString('utf8');
          fc.pre(text !== ctx.note);
          let cp;
          try {
            cp = openCheckpoint(text, ctx.origin, [ctx.key]);
          } catch (err) {
            if (!(err instanceof LedgerError) || !err.code.startsWith('ERR_LEDGER_'))
              throw new Error(`openCheckpoint threw ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err });
            return;
          }
          if (cp.size !== ctx.leaves.length || !cp.root.equals(ctx.root) || cp.origin !== ctx.origin)
            throw new Error(`an altered note opened to another checkpoint: ${JSON.stringify(text)}`);
        }),
    },
    'verifyInclusion refuses every altered proof, index, size or leaf, and never throws': {
      quickRuns: 400,
      build: (ctx) =>
        fc.property(
          fc.nat({ max: 12 }),
          proofEditArb,
          // The index as given, or one no tree of this size has; the size as given, or one that cannot hold the index.
          fc.constantFrom('same', -1, 13, 14, 0.5, 2 ** 53),
          fc.constantFrom('same', 0, -1, Number.NaN, 2 ** 53, 'index'),
          fc.boolean(),
          (index, edit, iPick, nPick, otherLeaf) => {
            const i2 = iPick === 'same' ? index : iPick;
            const n2 = nPick === 'same' ? 13 : nPick === 'index' ? index : nPick;
            const proof = editProof(ctx.proofs[index] as Buffer[], edit);
            const leaf = otherLeaf ? (ctx.leaves[(index + 1) % ctx.leaves.length] as Buffer) : (ctx.leaves[index] as Buffer);
            const same = edit.kind === 'none' && i2 === index && n2 === ctx.leaves.length && !otherLeaf;
            if (verifyInclusion(i2, n2, leaf, proof, ctx.root) !== same) throw new Error(`verifyInclusion(${i2}, ${n2}) with ${edit.kind} answered ${!same}`);
          },
        ),
    },
    'verifyConsistency answers false, never throws, on arbitrary sizes, proofs and roots': {
      quickRuns: 300,
      build: (ctx) =>
        fc.property(
          fc.oneof(fc.integer({ min: -1, max: 20 }), fc.constantFrom(2 ** 53, Number.NaN, 0.5)),
          fc.oneof(fc.integer({ min: -1, max: 20 }), fc.constantFrom(2 ** 53, Number.NaN)),
          fc.array(fc.uint8Array({ minLength: 0, maxLength: 40 }), { maxLength: 8 }),
          (s1, s2, proof) => {
            const ok = verifyConsistency(
              s1,
              s2,
              proof.map((p) => Buffer.from(p)),
              ctx.root,
              ctx.root,
            );
            // Only the trivial cases (same size and root, or an empty first tree, with an empty proof) may hold.
            if (ok && !(proof.length === 0 && (s1 === s2 || s1 === 0))) throw new Error(`verifyConsistency(${s1}, ${s2}) accepted random hashes`);
          },
        ),
    },
    'parseFhirDateTime never throws and accepts only finite instants of what it recognises': {
      quickRuns: 600,
      build: () =>
        fc.property(
          fc.oneof(
            fc.string({ maxLength: 40 }),
            fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true }).map((d) => d.toISOString()),
            fc
              .tuple(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 14 }), fc.integer({ min: 0, max: 33 }))
              .map(([y, m, d]) => `${String(y).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`),
          ),
          fc.constantFrom('start' as const, 'end' as const),
          (text, bound) => {
            const t = parseFhirDateTime(text, bound);
            if (t === undefined) return;
            if (!(t instanceof Date) || !Number.isFinite(t.getTime())) throw new Error(`${JSON.stringify(text)} parsed to an invalid instant`);
            // A full date-time with a zone means exactly the instant JavaScript reads from it.
            if (/T.*(Z|[+-]\d\d:\d\d)$/.test(text) && /^\d{4}-/.test(text) && Number(text.slice(0, 4)) >= 100) {
              const expected = Date.parse(text);
              if (Number.isFinite(expected) && expected !== t.getTime()) throw new Error(`${text} parsed to ${t.toISOString()}`);
            }
          },
        ),
    },
    'bundlePatientIssues never throws on an altered Bundle, and names only its four codes': {
      quickRuns: 300,
      build: (ctx) =>
        fc.property(fc.array(jsonOpArb, { minLength: 1, maxLength: 4 }), fc.constantFrom('SYN-000001', 'urn:oid:1|SYN-000001', 'SYN-OTHER'), (ops, id) => {
          const altered = applyJsonOps(ctx.bundle, ops);
          if (typeof altered !== 'object' || altered === null || Array.isArray(altered)) return;
          const issues = bundlePatientIssues(altered as Record<string, unknown>, parsePatientId(id));
          for (const issue of issues) if (!PATIENT_CODES.has(issue.code)) throw new Error(`unknown issue code ${issue.code}`);
        }),
    },
  },
};
