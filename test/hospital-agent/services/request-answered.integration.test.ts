import { expect } from 'chai';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../../support/agents.ts';
import { tempDir } from '../../support/tmp.ts';
import { dicomFile } from '../../support/dicom.ts';

interface RequestView {
  id: string;
  status: string;
  exchanges?: string[];
}

describe('a records request answered by an exchange', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'mgh']);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  const request = async (at: string, id: string): Promise<RequestView> => (await (await net.api(at, `/v1/requests/${id}`)).json()) as RequestView;

  it('shows answered (with the exchange) at both hospitals, and the inbox item names the request', async function () {
    const consent = await grantConsent(net, 'mgh', 'myongji', 'SYN-000091');
    const asked = await net.api('myongji', '/v1/requests', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ holder: 'mgh', patientId: 'SYN-000091' }),
    });
    expect(asked.status, await asked.clone().text()).to.equal(202);
    const requestId = ((await asked.json()) as { id: string }).id;
    await waitFor(async () => (await request('myongji', requestId)).status === 'accepted', 20_000, 'the request accepted');

    const answer = await net.api('mgh', '/v1/exchanges', {
      method: 'POST',
      headers: {
        'content-type': 'application/dicom',
        'hie-recipient': 'myongji',
        'hie-patient-id': 'SYN-000091',
        'hie-consent-id': consent,
        'hie-request-id': requestId,
      },
      body: dicomFile({ patientId: 'SYN-000091', pixelBytes: 50 * 1024 }),
    });
    expect(answer.status, await answer.clone().text()).to.equal(202);
    const exchangeId = ((await answer.json()) as { id: string }).id;

    const holder = await request('mgh', requestId);
    expect(holder.status).to.equal('answered');
    expect(holder.exchanges).to.deep.equal([exchangeId]);
    const asker = await waitFor(
      async () => {
        const r = await request('myongji', requestId);
        return r.status === 'answered' ? r : undefined;
      },
      20_000,
      'the request answered at the requester',
    );
    expect(asker.exchanges).to.deep.equal([exchangeId]);

    const item = await waitFor(
      async () => {
        const res = await net.api('myongji', `/v1/inbox/${exchangeId}`);
        return res.status === 200 ? ((await res.json()) as { requestId?: string }) : undefined;
      },
      30_000,
      'the answer in the inbox',
    );
    expect(item.requestId).to.equal(requestId);
    const listed = ((await (await net.api('myongji', '/v1/inbox')).json()) as { items: Array<{ exchangeId: string; requestId?: string }> }).items;
    expect(listed.find((i) => i.exchangeId === exchangeId)?.requestId).to.equal(requestId);
  });
});
