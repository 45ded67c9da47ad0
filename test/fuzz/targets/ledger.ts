import { rmSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  LedgerError,
  checkEntry,
  decodeEntry,
  decodeMessage,
  encodeMessage,
  levelSource,
  sha256Hex,
  verifyLedger,
  type Ledger,
  type ReplicationMessage,
  type SignedHead,
} from '../../../ledger/index.ts';
import { makeWorld, patientHmac, type LedgerWorld } from '../../ledger/support.ts';
import type { FuzzTarget } from '../support/harness.ts';
import { applyJsonOps, jsonEqual, jsonOpArb, mutate, mutationArb, type JsonOp, type Mutation } from '../support/mutate.ts';

interface LedgerCtx {
  dir: string;
  world: LedgerWorld;
  author: Ledger;
  /** Entries 0..prefixEnd of alpha's feed and the head covering them. */
  prefix: { entries: Buffer[]; head: SignedHead };
  /** The entries after the prefix, up to the author's head, and that head. */
  rest: { entries: Buffer[]; head: SignedHead };
  all: Buffer[];
  messages: string[];
  runs: number;
}

function typed(err: unknown, codes: readonly string[]): LedgerError {
  if (!(err instanceof LedgerError)) throw new Error(`threw ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err });
  if (!codes.includes(err.code)) throw new Error(`unexpected code ${err.code}: ${err.message}`, { cause: err });
  return err;
}

/** A range edit: entry bytes, entry order, or the signed head. */
type RangeEdit =
  | { kind: 'bytes'; entry: number; m: Mutation }
  | { kind: 'json'; entry: number; ops: JsonOp[] }
  | { kind: 'drop'; entry: number }
  | { kind: 'dup'; entry: number }
  | { kind: 'swap'; a: number; b: number }
  | { kind: 'head'; ops: JsonOp[] };

const rangeEditArb: fc.Arbitrary<RangeEdit> = fc.oneof(
  fc.record({ kind: fc.constant('bytes' as const), entry: fc.nat(), m: mutationArb(1, 2) }),
  fc.record({ kind: fc.constant('json' as const), entry: fc.nat(), ops: fc.array(jsonOpArb, { minLength: 1, maxLength: 2 }) }),
  fc.record({ kind: fc.constant('drop' as const), entry: fc.nat() }),
  fc.record({ kind: fc.constant('dup' as const), entry: fc.nat() }),
  fc.record({ kind: fc.constant('swap' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ kind: fc.constant('head' as const), ops: fc.array(jsonOpArb, { minLength: 1, maxLength: 2 }) }),
);

function applyRangeEdits(entries: Buffer[], head: SignedHead, edits: RangeEdit[]): { entries: Buffer[]; head: unknown } {
  let out = entries.slice();
  let h: unknown = head;
  for (const e of edits) {
    const i = (n: number) => (out.length === 0 ? 0 : n % out.length);
    switch (e.kind) {
      case 'bytes':
        if (out.length) out[i(e.entry)] = mutate([out[i(e.entry)]!], e.m);
        break;
      case 'json': {
        if (!out.length) break;
        let parsed: unknown;
        try {
          parsed = JSON.parse(out[i(e.entry)]!.toString('utf8'));
        } catch {
          break; // An earlier byte edit already broke this entry's JSON.
        }
        out[i(e.entry)] = Buffer.from(JSON.stringify(applyJsonOps(parsed, e.ops)) ?? 'null');
        break;
      }
      case 'drop':
        if (out.length > 1) out.splice(i(e.entry), 1);
        break;
      case 'dup':
        if (out.length) out.splice(i(e.entry), 0, out[i(e.entry)]!);
        break;
      case 'swap':
        if (out.length) [out[i(e.a)], out[i(e.b)]] = [out[i(e.b)]!, out[i(e.a)]!];
        out = out.filter(Boolean);
        break;
      case 'head':
        h = applyJsonOps(h, e.ops);
        break;
    }
  }
  return { entries: out, head: h };
}

/** ledger: entry decoding, the replication codec and Ledger#ingest under random and mutated input. */
export const ledgerTarget: FuzzTarget<LedgerCtx> = {
  name: 'ledger',
  async setup(dir) {
    const world = await makeWorld(join(dir, 'world'), ['alpha', 'bravo']);
    const author = await world.open('alpha', join(dir, 'alpha'));
    const t0 = new Date(Date.now() - 3_600_000).toISOString();
    // Appended one at a time so a signed head covers every seq.
    await author.append({
      type: 'consent.granted',
      body: { consent: 'consent-0001', patient: patientHmac(1), grantees: ['bravo'], purposes: ['TREAT'], scope: ['*'], validFrom: t0 },
    });
    for (let i = 0; i < 6; i++)
      await author.append({ type: 'exchange.failed', body: { exchange: `exchange-fz-${String(i).padStart(4, '0')}`, peer: 'bravo', reason: 'timeout' } });
    await author.append({ type: 'consent.revoked', body: { consent: 'consent-0001', reason: 'patient-request' } });
    const top = author.head() as { seq: number };
    const prefixEnd = 3;
    const all = await author.rawRange('alpha', 0, top.seq);
    const prefixHead = (await author.signedHeadCovering('alpha', prefixEnd)) as SignedHead;
    if (prefixHead.seq !== prefixEnd) throw new Error('no signed head at the prefix end');
    const head = (await author.signedHead()) as SignedHead;
    const rest = all.slice(prefixEnd + 1);
    const messages: ReplicationMessage[] = [
      { t: 'heads', heads: [head, prefixHead] },
      { t: 'want', feed: 'alpha', from: 4, max: 100 },
      { t: 'range', feed: 'alpha', from: prefixEnd + 1, entries: rest.map((b) => b.toString('base64')), head },
      { t: 'none', feed: 'bravo', from: 0, reason: 'unknown-feed' },
    ];
    return {
      dir,
      world,
      author,
      prefix: { entries: all.slice(0, prefixEnd + 1), head: prefixHead },
      rest: { entries: rest, head },
      all,
      messages: messages.map((m) => encodeMessage(m)),
      runs: 0,
    };
  },
  async teardown(ctx) {
    await ctx.author.close();
  },
  properties: {
    'decodeEntry: random and mutated bytes give a checked entry hashed as received, or ERR_LEDGER_INVALID_ENTRY / ENTRY_TOO_LARGE': {
      quickRuns: 400,
      build: (ctx) =>
        fc.property(
          fc.oneof(
            mutationArb(ctx.all.length).map((m) => mutate(ctx.all, m)),
            fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
          ),
          (bytes) => {
            let s: ReturnType<typeof decodeEntry>;
            try {
              s = decodeEntry(bytes);
            } catch (err) {
              typed(err, ['ERR_LEDGER_INVALID_ENTRY', 'ERR_LEDGER_ENTRY_TOO_LARGE']);
              return;
            }
            if (s.hash !== sha256Hex(bytes) || !s.bytes.equals(bytes)) throw new Error('decoded entry is not hashed over the bytes received');
            if (!checkEntry(JSON.parse(bytes.toString('utf8'))).ok) throw new Error('decodeEntry accepted what checkEntry refuses');
          },
        ),
    },
    'checkEntry: any JSON value or mutated entry is checked without throwing': {
      quickRuns: 400,
      build: (ctx) =>
        fc.property(
          fc.oneof(
            fc.jsonValue(),
            fc
              .tuple(fc.nat(), fc.array(jsonOpArb, { minLength: 1, maxLength: 3 }))
              .map(([i, ops]) => applyJsonOps(JSON.parse(ctx.all[i % ctx.all.length]!.toString()), ops)),
          ),
          (value) => {
            const r = checkEntry(value);
            if (typeof r.ok !== 'boolean') throw new Error('checkEntry returned no verdict');
            if (!r.ok && typeof r.problem !== 'string') throw new Error('a refusal without a problem');
          },
        ),
    },
    'decodeMessage: random and mutated messages decode (and re-encode stably) or fail with ERR_LEDGER_MESSAGE_*': {
      quickRuns: 300,
      build: (ctx) => {
        const texts = ctx.messages.map((m) => Buffer.from(m));
        return fc.property(
          fc.oneof(
            mutationArb(texts.length).map((m) => mutate(texts, m)),
            fc
              .tuple(fc.nat(), fc.array(jsonOpArb, { minLength: 1, maxLength: 3 }))
              .map(([i, ops]) => Buffer.from(JSON.stringify(applyJsonOps(JSON.parse(ctx.messages[i % ctx.messages.length]!), ops)) ?? '')),
            fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)),
          ),
          fc.boolean(),
          (bytes, asString) => {
            let msg: ReplicationMessage;
            try {
              msg = decodeMessage(asString ? bytes.toString('utf8') : bytes);
            } catch (err) {
              typed(err, ['ERR_LEDGER_MESSAGE_INVALID', 'ERR_LEDGER_MESSAGE_TOO_LARGE']);
              return;
            }
            const again = decodeMessage(encodeMessage(msg));
            if (!jsonEqual(again, msg)) throw new Error('a decoded message does not survive encode/decode');
          },
        );
      },
    },
    'ingest: mutated ranges and heads store nothing invalid; the replica verifies clean': {
      quickRuns: 25,
      build: (ctx) =>
        fc.asyncProperty(fc.array(rangeEditArb, { minLength: 1, maxLength: 3 }), async (edits) => {
          const { entries, head } = applyRangeEdits(ctx.rest.entries, ctx.rest.head, edits);
          const path = join(ctx.dir, `replica-${ctx.runs++}`);
          const replica = await ctx.world.open(undefined, path);
          try {
            await replica.ingest('alpha', ctx.prefix.entries, ctx.prefix.head);
            let stored = false;
            try {
              await replica.ingest('alpha', entries, head as SignedHead);
              stored = true;
            } catch (err) {
              if (err instanceof TypeError) throw new Error(`ingest threw a TypeError on peer data: ${err.message}`, { cause: err });
              typed(err, [
                'ERR_LEDGER_INVALID_ENTRY',
                'ERR_LEDGER_ENTRY_TOO_LARGE',
                'ERR_LEDGER_CHAIN_BROKEN',
                'ERR_LEDGER_SEQ',
                'ERR_LEDGER_BAD_SIGNATURE',
                'ERR_LEDGER_UNKNOWN_KEY',
                'ERR_LEDGER_KEY_BUNDLE',
                'ERR_LEDGER_KEY_MISMATCH',
                'ERR_LEDGER_NOT_COVERED',
              ]);
            }
            const h = replica.head('alpha');
            const held = await replica.rawRange('alpha', 0, h?.seq ?? 0);
            // Whatever the replica holds is a prefix of the author's feed, byte for byte.
            held.forEach((b, i) => {
              if (!b.equals(ctx.all[i]!)) throw new Error(`replica holds a different entry at seq ${i}`);
            });
            const expectSeq = stored ? held.length - 1 : ctx.prefix.head.seq;
            if (h?.seq !== expectSeq) throw new Error(`replica head ${h?.seq} after ${stored ? 'a stored' : 'a refused'} range`);
            // A stored range is stored under the author's own signed head, spelled exactly as signed.
            if (stored && !jsonEqual(await replica.signedHead('alpha'), head)) throw new Error('stored head differs from the one received');
            if (stored && !jsonEqual(head, ctx.rest.head) && !jsonEqual(head, ctx.prefix.head))
              throw new Error(`stored a range under an altered head: ${JSON.stringify(head)}`);
            const result = await verifyLedger(levelSource(replica._store), { trust: { caPem: ctx.world.caPem } });
            if (result.findings.length > 0)
              throw new Error(`replica does not verify: ${result.findings.map((f) => `${f.feed}:${f.seq}:${f.rule}`).join(', ')}`);
          } finally {
            await replica.close();
            rmSync(path, { recursive: true, force: true });
          }
        }),
    },
  },
};
