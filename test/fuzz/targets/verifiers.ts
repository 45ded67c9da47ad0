import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { PkiError, createKeyBundle, generateAgentKeys, loadIdentity, verifyKeyBundle, type KeyBundle } from '../../../certs/index.ts';
import { CryptoError, KeyRing, createReceipt, senderKeys, verifyReceipt, withKids, type Receipt } from '../../../hospital-agent/crypto/index.ts';
import { makeFederation } from '../../support/federation.ts';
import type { FuzzTarget } from '../support/harness.ts';
import { applyJsonOps, jsonEqual, jsonOpArb, mutationArb, applyOps } from '../support/mutate.ts';

interface VerifierCtx {
  caPem: string;
  ring: KeyRing;
  bundles: KeyBundle[];
  receipts: Receipt[];
  expectations: Array<{ exchangeId: string; sender: string; recipient: string }>;
}

const b64 = (s: string) => createHash('sha256').update(s).digest('base64url');

/**
 * A mutated document: JSON-level edits (replace, delete, add, edit a string's
 * bytes) or byte edits of its JSON text (parsed when still JSON, else passed as the raw string).
 */
function mutatedDocArb(docs: readonly object[]): fc.Arbitrary<{ base: number; value: unknown }> {
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc
        .record({ base: fc.nat({ max: docs.length - 1 }), ops: fc.array(jsonOpArb, { minLength: 1, maxLength: 3 }) })
        .map(({ base, ops }) => ({ base, value: applyJsonOps(docs[base], ops) })),
    },
    {
      weight: 2,
      arbitrary: mutationArb(1, 3).chain((m) =>
        fc.nat({ max: docs.length - 1 }).map((base) => {
          const text = applyOps(Buffer.from(JSON.stringify(docs[base])), m.ops).toString('utf8');
          let value: unknown = text;
          try {
            value = JSON.parse(text);
          } catch {
            /* raw text it is */
          }
          return { base, value };
        }),
      ),
    },
  );
}

/** certs verifyKeyBundle and hospital-agent/crypto verifyReceipt: every alteration is a typed refusal. */
export const verifiersTarget: FuzzTarget<VerifierCtx> = {
  name: 'verifiers',
  async setup(dir) {
    const fed = makeFederation(dir, ['alpha', 'bravo']);
    const caPem = readFileSync(fed.caPath, 'utf8');
    const ring = new KeyRing({ caPem });
    const bundles: KeyBundle[] = [];
    const receipts: Receipt[] = [];
    const expectations: VerifierCtx['expectations'] = [];
    for (const id of ['alpha', 'bravo']) {
      const keys = await withKids(generateAgentKeys());
      const bundle = await createKeyBundle(loadIdentity(fed.agents[id]!), keys);
      await ring.add(bundle);
      bundles.push(bundle);
      const sender = id === 'alpha' ? 'bravo' : 'alpha';
      const me = senderKeys(id, keys);
      receipts.push(
        createReceipt({ exchangeId: `fuzz-exchange-${id}`, sender, headerHash: b64(`h-${id}`), contentHash: b64(`c-${id}`), disposition: 'delivered' }, me),
      );
      expectations.push({ exchangeId: `fuzz-exchange-${id}`, sender, recipient: id });
      receipts.push(
        createReceipt({ exchangeId: `fuzz-failed-${id}`, sender, headerHash: null, contentHash: null, disposition: { failed: 'ERR_ENVELOPE_TAMPERED' } }, me),
      );
      expectations.push({ exchangeId: `fuzz-failed-${id}`, sender, recipient: id });
    }
    return { caPem, ring, bundles, receipts, expectations };
  },
  async teardown() {},
  properties: {
    'the unaltered bundles and receipts verify (control)': {
      quickRuns: 1,
      control: true,
      build: (ctx) =>
        fc.asyncProperty(fc.constant(0), async () => {
          for (const b of ctx.bundles) await verifyKeyBundle(structuredClone(b), { caPem: ctx.caPem });
          for (const [i, r] of ctx.receipts.entries())
            await verifyReceipt(structuredClone(r), { resolveSigner: ctx.ring.signerLookup(), expect: ctx.expectations[i]! });
        }),
    },
    'verifyKeyBundle refuses every altered bundle with a PkiError ERR_PKI_BUNDLE_*': {
      quickRuns: 150,
      build: (ctx) =>
        fc.asyncProperty(mutatedDocArb(ctx.bundles), async ({ base, value }) => {
          fc.pre(!jsonEqual(value, ctx.bundles[base]));
          try {
            await verifyKeyBundle(value, { caPem: ctx.caPem });
          } catch (err) {
            if (!(err instanceof PkiError) || !err.code.startsWith('ERR_PKI_BUNDLE_'))
              throw new Error(`threw ${(err as Error)?.name} ${(err as PkiError)?.code}: ${(err as Error)?.message}`, { cause: err });
            return;
          }
          throw new Error(`an altered bundle verified: ${JSON.stringify(value)}`);
        }),
    },
    'verifyReceipt refuses every altered receipt with a CryptoError ERR_RECEIPT_*': {
      quickRuns: 200,
      build: (ctx) =>
        fc.asyncProperty(mutatedDocArb(ctx.receipts), async ({ base, value }) => {
          fc.pre(!jsonEqual(value, ctx.receipts[base]));
          try {
            await verifyReceipt(value, { resolveSigner: ctx.ring.signerLookup(), expect: ctx.expectations[base]! });
          } catch (err) {
            if (!(err instanceof CryptoError) || !err.code.startsWith('ERR_RECEIPT_'))
              throw new Error(`threw ${(err as Error)?.name} ${(err as CryptoError)?.code}: ${(err as Error)?.message}`, { cause: err });
            return;
          }
          throw new Error(`an altered receipt verified: ${JSON.stringify(value)}`);
        }),
    },
  },
};
