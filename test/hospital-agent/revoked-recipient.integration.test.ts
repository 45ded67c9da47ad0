import { expect } from 'chai';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { tempDir } from '../support/tmp.ts';
import { bundleFor } from '../support/fhir.ts';

// About the patient the request names: the agent reads the patient from the content.
const BUNDLE = bundleFor('SYN-000070');

describe('a recipient whose certificate is revoked', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance']);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  const send = (consent: string): Promise<Response> =>
    net.api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', 'hie-recipient': 'severance', 'hie-patient-id': 'SYN-000070', 'hie-consent-id': consent },
      body: BUNDLE,
    });

  it('fails what was queued for it with ERR_UNKNOWN_RECIPIENT, and refuses new exchanges at once with 422', async function () {
    const consent = await grantConsent(net, 'myongji', 'severance', 'SYN-000070');
    // Known (one exchange went through, so its key bundle is in myongji's key ring) but away: the next one waits in the queue.
    const first = await send(consent);
    expect(first.status).to.equal(202);
    const firstId = ((await first.json()) as { id: string }).id;
    await waitFor(
      async () => ((await (await net.api('myongji', `/v1/exchanges/${firstId}`)).json()) as { status: string }).status === 'delivered',
      30_000,
      'the first exchange',
    );
    await net.agents['severance']!.close();
    const queued = await send(consent);
    expect(queued.status).to.equal(202);
    const id = ((await queued.json()) as { id: string }).id;
    await waitFor(
      async () => ((await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { attempts: number }).attempts >= 1,
      30_000,
      'a first attempt',
    );

    net.fed.ca.revoke({ id: 'severance', now: new Date(Date.now() - 1000) });
    net.agents['myongji']!.reloadCrl();
    const failed = await waitFor(
      async () => {
        const x = (await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string; failure?: { code: string } };
        return x.status === 'failed' || x.status === 'delivered' ? x : undefined;
      },
      60_000,
      'the queued exchange to end',
    );
    expect(failed.status).to.equal('failed');
    expect(failed.failure?.code).to.equal('ERR_UNKNOWN_RECIPIENT');

    const before = ((await (await net.api('myongji', '/v1/exchanges')).json()) as { exchanges: unknown[] }).exchanges.length;
    const refused = await send(consent);
    expect(refused.status).to.equal(422);
    expect(((await refused.json()) as { error: { code: string } }).error.code).to.equal('ERR_UNKNOWN_RECIPIENT');
    expect(((await (await net.api('myongji', '/v1/exchanges')).json()) as { exchanges: unknown[] }).exchanges.length).to.equal(before);
    // A records request to it likewise: 422 with the code, not an internal error.
    const asked = await net.api('myongji', '/v1/requests', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ holder: 'severance', patientId: 'SYN-000070' }),
    });
    expect(asked.status, await asked.clone().text()).to.equal(422);
    expect(((await asked.json()) as { error: { code: string } }).error.code).to.equal('ERR_UNKNOWN_RECIPIENT');
  });
});
