import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { witnessName } from '../../ledger/cosign.ts';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { bundleFor } from '../support/fhir.ts';
import { tempDir } from '../support/tmp.ts';

/** Every file under `dir`, concatenated (LevelDB logs, tables, manifest). */
function rawBytes(dir: string): Buffer {
  const parts: Buffer[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else parts.push(readFileSync(p));
    }
  };
  walk(dir);
  return Buffer.concat(parts);
}

/** Three agents on a real relay in `mode`; myongji sends severance one exchange; returns its id, consent and patient hash once mgh holds both feeds. */
async function exchangeBetweenTwo(net: TestNetwork): Promise<{ id: string; consent: string; patient: string }> {
  const consent = await grantConsent(net, 'myongji', 'severance', 'SYN-000042', ['*']);
  const res = await net.api('myongji', '/v1/exchanges', {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json', 'hie-recipient': 'severance', 'hie-patient-id': 'SYN-000042', 'hie-consent-id': consent },
    body: bundleFor('SYN-000042'),
  });
  expect(res.status, await res.clone().text()).to.equal(202);
  const { id } = (await res.json()) as { id: string };
  await waitFor(
    async () => ((await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string }).status === 'delivered' || undefined,
    30_000,
    'delivery',
  );
  const myongji = net.agents['myongji']!.ledger;
  const severance = net.agents['severance']!.ledger;
  // The receipt is myongji's last entry of the story; severance logged the exchange.received.
  await waitFor(async () => (await myongji.byExchange(id)).some((e) => e.entry.type === 'receipt') || undefined, 30_000, 'receipt');
  const sent = (await myongji.byExchange(id)).find((e) => e.entry.type === 'exchange.sent')!;
  const mgh = net.agents['mgh']!.ledger;
  for (const [f, l] of [
    ['myongji', myongji],
    ['severance', severance],
  ] as const) {
    await waitFor(() => (mgh.head(f)?.seq ?? -1) >= l.head(f)!.seq || undefined, 60_000, `mgh to hold ${f}'s feed`);
  }
  return { id, consent, patient: (sent.entry.body as { patient: string }).patient };
}

describe('agents: private replication (docs/replication.md)', function () {
  this.timeout(180_000);

  describe('replication.mode private (the default)', () => {
    let tmp: ReturnType<typeof tempDir>;
    let net: TestNetwork;
    before(async () => {
      tmp = tempDir();
      net = await startNetwork(tmp.dir, ['myongji', 'severance', 'mgh']);
      await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
    });
    after(async () => {
      await net?.close();
      tmp.cleanup();
    });

    it('leaves a third hospital nothing readable of an exchange it was not party to, while it witnesses both feeds and everyone verifies clean', async () => {
      expect(net.agents['mgh']!.config.replication.mode).to.equal('private');
      const { id, consent, patient } = await exchangeBetweenTwo(net);
      const mgh = net.agents['mgh']!;
      // mgh witnesses both parties' feeds: its cosignature reaches each author's checkpoint.
      const name = witnessName(readFileSync(net.fed.caPath, 'utf8'), 'mgh');
      for (const f of ['myongji', 'severance']) {
        const author = net.agents[f]!.ledger;
        await waitFor(
          async () => {
            const size = author.treeSize(f);
            const note = await author._store.witness.get(`c!${f}!${String(size).padStart(16, '0')}`);
            return note?.includes(`\u2014 ${name} `) || undefined;
          },
          60_000,
          `mgh's cosignature on ${f}'s checkpoint`,
        );
      }
      expect(await mgh.ledger.byExchange(id)).to.deep.equal([]);
      for (const a of ['myongji', 'severance', 'mgh']) {
        const v = (await (await net.api(a, '/v1/ledger/verify')).json()) as { ok: boolean; findings: unknown[]; stats: { sealed: number } };
        expect(v.findings, a).to.deep.equal([]);
        expect(v.ok, a).to.equal(true);
        if (a === 'mgh') expect(v.stats.sealed).to.be.greaterThan(0);
      }
      await mgh.close();
      delete net.agents['mgh'];
      const raw = rawBytes(join(tmp.dir, 'data', 'mgh', 'ledger'));
      for (const needle of [id, patient, consent]) expect(raw.includes(needle), `mgh's ledger files hold ${needle.slice(0, 8)}...`).to.equal(false);
    });
  });

  describe('replication.mode full', () => {
    let tmp: ReturnType<typeof tempDir>;
    let net: TestNetwork;
    before(async () => {
      tmp = tempDir();
      net = await startNetwork(tmp.dir, ['myongji', 'severance', 'mgh'], { replicationMode: 'full' });
      await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
    });
    after(async () => {
      await net?.close();
      tmp.cleanup();
    });

    it('keeps every feed in the clear for every hospital: the third one finds the exchange', async () => {
      const { id, consent, patient } = await exchangeBetweenTwo(net);
      const mgh = net.agents['mgh']!;
      await waitFor(async () => (await mgh.ledger.byExchange(id)).length >= 3 || undefined, 60_000, 'mgh to hold the exchange');
      const v = (await (await net.api('mgh', '/v1/ledger/verify')).json()) as { ok: boolean; stats: { sealed: number } };
      expect(v.ok).to.equal(true);
      expect(v.stats.sealed).to.equal(0);
      await mgh.close();
      delete net.agents['mgh'];
      const raw = rawBytes(join(tmp.dir, 'data', 'mgh', 'ledger'));
      for (const needle of [id, patient, consent]) expect(raw.includes(needle)).to.equal(true);
    });
  });
});
