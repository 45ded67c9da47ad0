import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../../support/agents.ts';
import { tempDir } from '../../support/tmp.ts';
import { bundleFor } from '../../support/fhir.ts';
import { dicomFile } from '../../support/dicom.ts';

// About the patient the requests name: the agent reads the patient from the content.
const BUNDLE = bundleFor('SYN-000080');

describe('inbox delivery to a directory the EHR watches (inbox.directory)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let consent: string;
  let dir: string;

  before(async function () {
    tmp = tempDir();
    dir = join(tmp.dir, 'ehr-drop');
    net = await startNetwork(tmp.dir, ['myongji', 'severance']);
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
    consent = await grantConsent(net, 'myongji', 'severance', 'SYN-000080');
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  async function deliver(body: Buffer, contentType: string): Promise<string> {
    const res = await net.api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: { 'content-type': contentType, 'hie-recipient': 'severance', 'hie-patient-id': 'SYN-000080', 'hie-consent-id': consent },
      body,
    });
    expect(res.status, await res.clone().text()).to.equal(202);
    const id = ((await res.json()) as { id: string }).id;
    await waitFor(
      async () => ((await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string }).status === 'delivered',
      30_000,
      `exchange ${id} delivered`,
    );
    return id;
  }

  const metaFile = (id: string): string => join(dir, `${id}.meta.json`);

  it('writes what was delivered before it was set at the next start (unless the EHR acked it), then each new item as it comes: content first, metadata last', async function () {
    // Delivered while severance has no directory: one the EHR takes over through the API (ack), one it does not.
    const acked = await deliver(BUNDLE, 'application/fhir+json');
    const waitingStudy = dicomFile({ patientId: 'SYN-000080', pixelBytes: 400 * 1024 });
    const waiting = await deliver(waitingStudy, 'application/dicom');
    expect((await net.api('severance', `/v1/inbox/${acked}/ack`, { method: 'POST' })).status).to.equal(200);
    await net.agents['severance']!.close();
    net.configs['severance']!.inbox.directory = dir;
    await net.startAgent('severance');
    await waitFor(() => existsSync(metaFile(waiting)), 20_000, 'the waiting item in the directory');
    expect(readFileSync(join(dir, `${waiting}.dcm`)).equals(waitingStudy)).to.equal(true);
    expect(JSON.parse(readFileSync(metaFile(waiting), 'utf8'))).to.include({
      exchangeId: waiting,
      from: 'myongji',
      contentType: 'application/dicom',
      bytes: waitingStudy.length,
    });
    expect(existsSync(metaFile(acked)), 'an item the EHR acked is not written').to.equal(false);
    await waitFor(
      async () => ((await (await net.api('severance', `/v1/inbox/${waiting}`)).json()) as { copiedAt?: string }).copiedAt !== undefined,
      10_000,
      'copiedAt',
    );

    // Live: a FHIR Bundle delivered now is written as it comes.
    await waitFor(() => net.agents['severance']!.relay.connected, 20_000, 'severance reconnected');
    const live = await deliver(BUNDLE, 'application/fhir+json');
    await waitFor(() => existsSync(metaFile(live)), 20_000, 'the live item in the directory');
    expect(readFileSync(join(dir, `${live}.fhir.json`)).equals(BUNDLE)).to.equal(true);
    expect(readdirSync(dir).filter((n) => n.endsWith('.part'))).to.deep.equal([]);
    // The metadata file is written before the item is marked copied: a restart before the mark writes it again.
    await waitFor(
      async () => ((await (await net.api('severance', `/v1/inbox/${live}`)).json()) as { copiedAt?: string }).copiedAt !== undefined,
      10_000,
      'copiedAt of the live item',
    );

    // The EHR takes the files away; marked copied, they are not written again by a restart.
    for (const name of readdirSync(dir)) rmSync(join(dir, name));
    await net.agents['severance']!.close();
    await net.startAgent('severance');
    await new Promise((r) => setTimeout(r, 500));
    expect(readdirSync(dir)).to.deep.equal([]);
  });

  it('shows every SHA-256 as sha256sum prints it (sender, receipt, inbox, metadata file), and deleting the item removes its copy', async function () {
    await waitFor(() => net.agents['severance']!.relay.connected, 20_000, 'severance connected');
    const id = await deliver(dicomFile({ patientId: 'SYN-000080', pixelBytes: 300 * 1024 }), 'application/dicom');
    const content = join(dir, `${id}.dcm`);
    await waitFor(() => existsSync(metaFile(id)), 20_000, 'the item in the directory');
    const sum = execFileSync('sha256sum', [content], { encoding: 'utf8' }).split(' ')[0] as string;
    expect(sum).to.match(/^[0-9a-f]{64}$/);
    const sent = (await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { contentSha256: string; receiptContentSha256: string };
    expect(sent.contentSha256).to.equal(sum);
    expect(sent.receiptContentSha256).to.equal(sum);
    expect(((await (await net.api('severance', `/v1/inbox/${id}`)).json()) as { contentSha256: string }).contentSha256).to.equal(sum);
    const listed = ((await (await net.api('severance', '/v1/inbox')).json()) as { items: Array<{ exchangeId: string; contentSha256: string }> }).items;
    expect(listed.find((i) => i.exchangeId === id)?.contentSha256).to.equal(sum);
    expect((JSON.parse(readFileSync(metaFile(id), 'utf8')) as { contentSha256: string }).contentSha256).to.equal(sum);

    expect((await net.api('severance', `/v1/inbox/${id}`, { method: 'DELETE' })).status).to.equal(204);
    expect(existsSync(metaFile(id)), 'metadata removed').to.equal(false);
    expect(existsSync(content), 'content removed').to.equal(false);
    expect((await net.api('severance', `/v1/inbox/${id}`)).status).to.equal(404);
  });
});
