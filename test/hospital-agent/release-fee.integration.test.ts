import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { dicomFile } from '../support/dicom.ts';
import { tempDir } from '../support/tmp.ts';

describe('the release fee of an answer the requester refused', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'mgh'], { agentStart: false });
    // mgh stores an answer whole before sending it, so the stored body can be altered before it goes.
    net.configs['mgh']!.limits.sendWhileUploading = false;
    await net.startAgent('myongji');
    await net.startAgent('mgh');
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  it('is not charged: the relay carried the answer (transport is charged) but the requester refused it', async function () {
    const consent = await grantConsent(net, 'mgh', 'myongji', 'SYN-000090');
    const asked = await net.api('myongji', '/v1/requests', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ holder: 'mgh', patientId: 'SYN-000090' }),
    });
    expect(asked.status, await asked.clone().text()).to.equal(202);
    const requestId = ((await asked.json()) as { id: string }).id;
    await waitFor(
      async () => ((await (await net.api('myongji', `/v1/requests/${requestId}`)).json()) as { status: string }).status === 'accepted',
      20_000,
      'the request accepted',
    );

    // The requester goes away; the answer waits in mgh's outbox, where its bytes change (disk fault, tampering).
    await net.agents['myongji']!.close();
    // A DICOM study about the patient: its Patient ID is checked before it may leave.
    const study = dicomFile({ patientId: 'SYN-000090', pixelBytes: 400 * 1024 });
    const answer = await net.api('mgh', '/v1/exchanges', {
      method: 'POST',
      headers: {
        'content-type': 'application/dicom',
        'hie-recipient': 'myongji',
        'hie-patient-id': 'SYN-000090',
        'hie-consent-id': consent,
        'hie-request-id': requestId,
      },
      body: study,
    });
    expect(answer.status, await answer.clone().text()).to.equal(202);
    const id = ((await answer.json()) as { id: string }).id;
    const stored = join(net.configs['mgh']!.dataDir, 'outbox', `${id}.body`);
    const bytes = readFileSync(stored);
    bytes[1000] = (bytes[1000] as number) ^ 0xff;
    writeFileSync(stored, bytes);

    await net.startAgent('myongji');
    const done = await waitFor(
      async () => {
        const x = (await (await net.api('mgh', `/v1/exchanges/${id}`)).json()) as { status: string; failure?: { code: string } };
        return x.status === 'delivered' || x.status === 'failed' ? x : undefined;
      },
      60_000,
      'the answer to end',
    );
    expect(done.status, JSON.stringify(done)).to.equal('failed');
    const inbox = ((await (await net.api('myongji', '/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> }).items;
    expect(inbox.filter((i) => i.exchangeId === id)).to.deep.equal([]);
    // The transfer happened, so its transport is charged; the records did not reach the requester, so no release fee.
    await waitFor(async () => (await net.agents['mgh']!.ledger.byExchange(id)).some((e) => e.entry.type === 'payment.charged'), 20_000, 'the transport charge');
    const charged = (await net.agents['mgh']!.ledger.byExchange(id))
      .filter((e) => e.entry.type === 'payment.charged')
      .map((e) => (e.entry.body as { kind: string }).kind);
    expect(charged).to.deep.equal(['transport']);
  });
});
