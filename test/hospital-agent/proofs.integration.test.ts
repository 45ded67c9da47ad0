import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { main } from '../../ledger/cli.ts';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { bundleFor } from '../support/fhir.ts';
import { tempDir } from '../support/tmp.ts';

describe('agent API: proofs for auditors against witnessed checkpoints', function () {
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

  it('serves a proof of a delivered exchange that an auditor with only the CA certificate verifies', async function () {
    const consent = await grantConsent(net, 'myongji', 'severance', 'SYN-000001', ['*']);
    const res = await net.api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', 'hie-recipient': 'severance', 'hie-patient-id': 'SYN-000001', 'hie-consent-id': consent },
      body: bundleFor('SYN-000001'),
    });
    expect(res.status, await res.clone().text()).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    await waitFor(
      async () => ((await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string }).status === 'delivered' || undefined,
      30_000,
      'delivery',
    );
    // Peers witness myongji's checkpoint once they have replicated it; the proof is served when it verifies under the agent's policy.
    const proof = await waitFor(
      async () => {
        const r = await net.api('myongji', `/v1/ledger/proofs/exchange/${id}`);
        // Not too often: each answer builds and verifies a proof.
        if (r.status !== 200 || r.headers.get('hie-proof-verified') !== 'true') return new Promise<undefined>((ok) => setTimeout(() => ok(undefined), 500));
        const body = (await r.json()) as { entries: Array<{ entry: string }> };
        const types = body.entries.map((e) => (JSON.parse(Buffer.from(e.entry, 'base64').toString('utf8')) as { type: string }).type);
        return types.includes('receipt') && types.includes('exchange.received') ? body : undefined;
      },
      60_000,
      'a witnessed proof with the receipt and the recipient entry',
    );
    const dir = tempDir();
    try {
      const file = join(dir.dir, 'proof.json');
      writeFileSync(file, JSON.stringify(proof));
      writeFileSync(join(dir.dir, 'ca.pem'), readFileSync(net.fed.caPath));
      let out = '';
      const code = await main(['verify-proof', file, '--ca', join(dir.dir, 'ca.pem')], { out: (t) => (out += t) });
      expect(code, out).to.equal(0);
      expect(out).to.match(new RegExp(`exchange ${id}: sent by myongji to severance at \\S+ for \\w+ under consent ${consent}`));
      expect(out).to.match(/received by severance from myongji/);
      expect(out).to.match(/the log of myongji at tree size \d+ was witnessed by (severance|mgh)/);
    } finally {
      dir.cleanup();
    }
  });

  it('answers 400 for a malformed id and 404 for an exchange it holds nothing of, or another kind', async function () {
    const bad = await net.api('myongji', '/v1/ledger/proofs/exchange/not%20an%20id');
    expect(bad.status).to.equal(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).to.equal('ERR_BAD_REQUEST');
    const none = await net.api('myongji', '/v1/ledger/proofs/exchange/exchange-that-never-was');
    expect(none.status).to.equal(404);
    expect(((await none.json()) as { error: { code: string } }).error.code).to.equal('ERR_NOT_FOUND');
    expect((await net.api('myongji', '/v1/ledger/proofs/patient/x')).status).to.equal(404);
  });
});
