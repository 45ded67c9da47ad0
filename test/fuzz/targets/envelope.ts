import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { createKeyBundle, generateAgentKeys, loadIdentity, verifyKeyBundle } from '../../../certs/index.ts';
import {
  CryptoError,
  KeyRing,
  MemoryReplayStore,
  openEnvelope,
  recipientKeys,
  sealEnvelope,
  senderKeys,
  withKids,
  type RecipientKeys,
  type SenderKeys,
} from '../../../hospital-agent/crypto/index.ts';
import { makeFederation } from '../../support/federation.ts';
import type { FuzzTarget } from '../support/harness.ts';
import { mutate, mutationArb } from '../support/mutate.ts';

/** Codes a refused envelope may carry (ERR_ENVELOPE_SINK or REPLAYED would mean the harness, not the input, failed). */
export const ENVELOPE_REJECTIONS = new Set([
  'ERR_ENVELOPE_TRUNCATED',
  'ERR_ENVELOPE_TAMPERED',
  'ERR_ENVELOPE_REORDERED',
  'ERR_ENVELOPE_WRONG_RECIPIENT',
  'ERR_ENVELOPE_BAD_SIGNATURE',
  'ERR_ENVELOPE_STALE',
  'ERR_ENVELOPE_MALFORMED',
  'ERR_ENVELOPE_UNTRUSTED_SENDER',
]);

interface EnvelopeCtx {
  dir: string;
  ring: KeyRing;
  bravo: RecipientKeys;
  envelopes: Buffer[];
  runs: number;
}

async function seal(
  data: Buffer,
  exchangeId: string,
  sender: SenderKeys,
  recipients: Awaited<ReturnType<typeof verifyKeyBundle>>[],
  chunkSize: number,
): Promise<Buffer> {
  const s = sealEnvelope(Readable.from(data.length ? [data] : []), {
    exchangeId,
    sender,
    recipients,
    contentType: 'application/fhir+json',
    consentRef: 'consent-fuzz',
    chunkSize,
  });
  const parts: Buffer[] = [];
  for await (const p of s) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

function* pieces(buf: Buffer, sizes: number[]): Generator<Buffer> {
  let pos = 0;
  let i = 0;
  while (pos < buf.length) {
    const n = Math.max(1, sizes[i++ % sizes.length] ?? buf.length);
    yield buf.subarray(pos, pos + n);
    pos += n;
  }
}

/** hospital-agent/crypto openEnvelope: any edit of a sealed envelope is refused with a CryptoError and leaves no quarantine file. */
export const envelopeTarget: FuzzTarget<EnvelopeCtx> = {
  name: 'envelope-open',
  async setup(dir) {
    const fed = makeFederation(dir, ['alpha', 'bravo', 'charlie']);
    const caPem = readFileSync(fed.caPath, 'utf8');
    const ring = new KeyRing({ caPem });
    const party = async (id: string) => {
      const keys = await withKids(generateAgentKeys());
      const bundle = await createKeyBundle(loadIdentity(fed.agents[id]!), keys);
      await ring.add(bundle);
      return { keys, verified: await verifyKeyBundle(bundle, { caPem }) };
    };
    const alpha = await party('alpha');
    const bravo = await party('bravo');
    const charlie = await party('charlie');
    const data = Buffer.from(
      JSON.stringify({ resourceType: 'Bundle', type: 'collection', entry: Array.from({ length: 12 }, (_, i) => ({ i, text: 'x'.repeat(40) })) }),
    );
    const from = senderKeys('alpha', alpha.keys);
    // Several envelopes (sizes, chunk sizes, recipient sets) so splices mix real frames of different exchanges.
    const envelopes = [
      await seal(data, 'fuzz-exchange-0001', from, [bravo.verified], 128),
      await seal(data.subarray(0, 100), 'fuzz-exchange-0002', from, [bravo.verified, charlie.verified], 64),
      await seal(Buffer.alloc(0), 'fuzz-exchange-0003', from, [bravo.verified], 64),
      await seal(data, 'fuzz-exchange-0004', from, [charlie.verified, bravo.verified], 256),
    ];
    return { dir, ring, bravo: recipientKeys('bravo', [bravo.keys]), envelopes, runs: 0 };
  },
  async teardown() {},
  properties: {
    'unaltered envelopes open (control)': {
      quickRuns: 4,
      control: true,
      build: (ctx) =>
        fc.asyncProperty(fc.integer({ min: 0, max: 3 }), fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 1, maxLength: 4 }), async (i, cuts) => {
          const q = join(ctx.dir, `q-${ctx.runs++}`);
          mkdirSync(q);
          await openEnvelope(Readable.from(pieces(ctx.envelopes[i]!, cuts)), {
            recipient: ctx.bravo,
            resolveSender: ctx.ring.signerLookup(),
            replay: new MemoryReplayStore(),
            quarantine: { dir: q },
          });
          if (readdirSync(q).length !== 1) throw new Error('an opened envelope left no plaintext in quarantine');
        }),
    },
    'bit flips, truncations, insertions and splices are refused with a CryptoError and leave no quarantine file': {
      quickRuns: 120,
      build: (ctx) =>
        fc.asyncProperty(mutationArb(ctx.envelopes.length, 3), fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 4 }), async (m, cuts) => {
          const bad = mutate(ctx.envelopes, m);
          // An edit that rebuilds one of the originals (e.g. a splice at 0) is not an alteration.
          fc.pre(!ctx.envelopes.some((e) => e.equals(bad)));
          const q = join(ctx.dir, `q-${ctx.runs++}`);
          mkdirSync(q);
          let opened: unknown;
          try {
            opened = await openEnvelope(Readable.from(pieces(bad, cuts)), {
              recipient: ctx.bravo,
              resolveSender: ctx.ring.signerLookup(),
              replay: new MemoryReplayStore(),
              quarantine: { dir: q },
            });
          } catch (err) {
            if (!(err instanceof CryptoError)) throw new Error(`openEnvelope threw ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err });
            if (!ENVELOPE_REJECTIONS.has(err.code)) throw new Error(`unexpected code ${err.code}: ${err.message}`, { cause: err });
            const left = readdirSync(q);
            if (left.length > 0) throw new Error(`quarantine kept ${left.join(', ')} after ${err.code}`, { cause: err });
            return;
          }
          throw new Error(`an altered envelope opened: ${JSON.stringify(opened)}`);
        }),
    },
  },
};
