import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import type { BodyOf } from '../../ledger/index.ts';
import { KeyRing, verifyReceipt, type Receipt } from '../../hospital-agent/crypto/index.ts';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { tempDir } from '../support/tmp.ts';
import { bundleFor } from '../support/fhir.ts';

// About the patient the requests name: the agent reads the patient from the content.
const BUNDLE = bundleFor('SYN-BATCH-1');

describe('small exchanges in batch envelopes (integration)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance', 'mgh']);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  it('sends a burst in a few batch envelopes: each exchange delivered once, byte-identical, with its own verifiable receipt, charged once per transfer', async function () {
    const consent = await grantConsent(net, 'myongji', 'severance', 'SYN-BATCH-1');
    const batchesBefore = (await net.agents['myongji']!.metrics.batchSize.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
    const ids = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const res = await net.api('myongji', '/v1/exchanges', {
          method: 'POST',
          headers: { 'content-type': 'application/fhir+json', 'hie-recipient': 'severance', 'hie-patient-id': 'SYN-BATCH-1', 'hie-consent-id': consent },
          body: BUNDLE,
        });
        expect(res.status).to.equal(202);
        return ((await res.json()) as { id: string }).id;
      }),
    );
    const records = await Promise.all(
      ids.map((id) =>
        waitFor(
          async () => {
            const r = (await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string; receipt?: Receipt };
            return r.status === 'delivered' || r.status === 'failed' ? r : undefined;
          },
          60_000,
          `exchange ${id}`,
        ),
      ),
    );
    expect(records.map((r) => r.status)).to.deep.equal(ids.map(() => 'delivered'));
    const metric = await net.agents['myongji']!.metrics.batchSize.get();
    const batches = (metric.values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0) - batchesBefore;
    expect(batches, 'fewer envelopes than exchanges').to.be.within(1, 39);
    // Each receipt verifies on its own (those of a batch by their Merkle proof under one signature).
    const ring = new KeyRing({ caPem: readFileSync(net.fed.caPath, 'utf8') });
    for (const { entry } of await net.agents['myongji']!.ledger.byType('genesis')) await ring.add((entry.body as { bundle: unknown }).bundle);
    for (const [i, r] of records.entries()) {
      const v = await verifyReceipt(r.receipt, {
        resolveSigner: ring.signerLookup(),
        expect: { exchangeId: ids[i], sender: 'myongji', recipient: 'severance' },
      });
      expect(v.receipt.contentHash).to.equal(createHash('sha256').update(BUNDLE).digest('base64url'));
    }
    expect(
      records.some((r) => r.receipt?.batch !== undefined),
      'some receipts were signed together',
    ).to.equal(true);
    // Delivered once each, byte-identical.
    const inbox = ((await (await net.api('severance', '/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> }).items.map((i) => i.exchangeId);
    for (const id of ids) {
      expect(
        inbox.filter((x) => x === id),
        id,
      ).to.have.length(1);
      expect(Buffer.from(await (await net.api('severance', `/v1/inbox/${id}/content`)).arrayBuffer()).equals(BUNDLE)).to.equal(true);
    }
    // One transport charge per transfer (the batch), on its first exchange.
    const charges = (await net.agents['myongji']!.ledger.byType('payment.charged', 'myongji'))
      .map((e) => e.entry.body as BodyOf<'payment.charged'>)
      .filter((c) => ids.includes(c.exchange));
    expect(charges.filter((c) => c.kind === 'transport')).to.have.length(batches);
    // Every ledger verifies (receipts answer every release, hashes agree across feeds).
    await waitFor(
      async () => {
        for (const id of Object.keys(net.agents)) {
          const result = (await (await net.api(id, '/v1/ledger/verify?grace=0')).json()) as { ok: boolean };
          if (!result.ok) return undefined;
        }
        return true;
      },
      30_000,
      'ledgers to converge and verify',
    );
  });
});
