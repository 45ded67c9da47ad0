import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { grantConsent, startNetwork, TEST_WEBHOOK_TOKEN, waitFor, type TestNetwork } from '../support/agents.ts';
import { tempDir } from '../support/tmp.ts';
import { bundleFor } from '../support/fhir.ts';

// About the patient the request names: the agent reads the patient from the content.
const BUNDLE = bundleFor('SYN-000080');

interface Notification {
  authorization: string | undefined;
  text: string;
  event: { event: string; item?: Record<string, unknown>; request?: Record<string, unknown> };
}

describe('the EHR webhook (inbox.webhook)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let ehr: Server;
  const received: Notification[] = [];

  before(async function () {
    // The EHR's endpoint: records every notification.
    ehr = createServer((req, res) => {
      let text = '';
      req.setEncoding('utf8').on('data', (d: string) => (text += d));
      req.on('end', () => {
        received.push({ authorization: req.headers.authorization, text, event: JSON.parse(text) as Notification['event'] });
        res.writeHead(204).end();
      });
    }).listen(0, '127.0.0.1');
    await once(ehr, 'listening');
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance'], { agentStart: false });
    net.configs['severance']!.inbox.webhook = { url: `http://127.0.0.1:${(ehr.address() as AddressInfo).port}/hie/events`, tokenEnv: 'TEST_WEBHOOK_TOKEN' };
    await net.startAgent('myongji');
    await net.startAgent('severance');
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    ehr?.close();
    tmp?.cleanup();
  });

  const grant = (from: string, to: string, patientId: string): Promise<string> => grantConsent(net, from, to, patientId);

  it('tells the EHR about each new inbox item, with its metadata and the bearer token, never the content', async function () {
    const consent = await grant('myongji', 'severance', 'SYN-000080');
    const res = await net.api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': 'application/fhir+json', 'hie-recipient': 'severance', 'hie-patient-id': 'SYN-000080', 'hie-consent-id': consent },
      body: BUNDLE,
    });
    expect(res.status).to.equal(202);
    const id = ((await res.json()) as { id: string }).id;
    const note = await waitFor(
      async () => received.find((n) => n.event.event === 'inbox.delivered' && n.event.item?.['exchangeId'] === id),
      30_000,
      'the inbox notification',
    );
    expect(note.authorization).to.equal(`Bearer ${TEST_WEBHOOK_TOKEN}`);
    expect(note.event.item).to.include({ exchangeId: id, from: 'myongji', contentType: 'application/fhir+json', bytes: BUNDLE.length });
    // Metadata only: the EHR fetches the content from the agent's API.
    const resource = (
      JSON.parse(BUNDLE.toString('utf8')) as { entry: Array<{ resource: { resourceType: string; name?: Array<{ family?: string }> } }> }
    ).entry.find((e) => e.resource.resourceType === 'Patient');
    const family = resource?.resource.name?.[0]?.family;
    expect(family, 'the fixture names its patient').to.be.a('string');
    expect(note.text).not.to.contain(family as string);
    expect(note.text).not.to.contain('SYN-000080');
  });

  it('hands the EHR each records request the consent covers, so it can answer', async function () {
    await grant('severance', 'myongji', 'SYN-000081');
    const asked = await net.api('myongji', '/v1/requests', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ holder: 'severance', patientId: 'SYN-000081' }),
    });
    expect(asked.status, await asked.clone().text()).to.equal(202);
    const requestId = ((await asked.json()) as { id: string }).id;
    const note = await waitFor(
      async () => received.find((n) => n.event.event === 'request.received' && n.event.request?.['id'] === requestId),
      30_000,
      'the request notification',
    );
    expect(note.authorization).to.equal(`Bearer ${TEST_WEBHOOK_TOKEN}`);
    // The holder's EHR needs to know whose records: the request carries the patient id (inside the hospital only).
    expect(note.event.request).to.include({ id: requestId, peer: 'myongji', status: 'accepted', patientId: 'SYN-000081' });
  });
});
