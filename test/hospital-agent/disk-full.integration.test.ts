import { createHash } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { patternStream } from '../support/data.ts';
import { tempDir } from '../support/tmp.ts';
import { fill, mountTmpfs, unmountTmpfs } from '../support/tmpfs.ts';

const PATIENT = 'SYN-DISK-FULL-0001';
/** Each agent under test gets a data directory on its own tmpfs of this size. */
const TMPFS_MIB = 64;
const MiB = 1024 * 1024;

/**
 * Disk full, as hospital IT meets it: an agent whose data directory fills up
 * (each on a small tmpfs of its own) mid-upload, mid-receive and mid-append
 * answers with clear errors (507 ERR_INSUFFICIENT_STORAGE, or a failed
 * receipt ERR_RECIPIENT_STORAGE_FULL the sender retries), loses nothing it
 * had acknowledged, and goes on once space is back.
 */
describe('an agent whose data directory fills up', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  const mounts: string[] = [];

  before(async function () {
    if (process.getuid?.() !== 0) {
      console.log('    (skipped: mounting a tmpfs for the disk-full tests needs root; CI runs as root)');
      this.skip();
    }
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance'], { agentStart: false });
    for (const id of ['myongji', 'severance']) {
      const dir = net.configs[id]!.dataDir;
      try {
        mountTmpfs(dir, TMPFS_MIB);
      } catch (err) {
        console.log(`    (skipped: cannot mount a tmpfs for the disk-full tests: ${(err as Error).message.split('\n')[0]})`);
        this.skip();
      }
      mounts.push(dir);
      await net.startAgent(id);
    }
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
  });
  after(async function () {
    await net?.close();
    for (const dir of mounts) unmountTmpfs(dir);
    tmp?.cleanup();
  });

  async function submit(from: string, to: string, consent: string, body: Buffer): Promise<Response> {
    return net.api(from, '/v1/exchanges', {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'hie-recipient': to,
        'hie-patient-id': PATIENT,
        'hie-consent-id': consent,
        'content-length': String(body.length),
      },
      body,
    });
  }

  async function exchange(from: string, id: string): Promise<{ status: string; attempts: number; failure?: { code: string } }> {
    return (await (await net.api(from, `/v1/exchanges/${id}`)).json()) as { status: string; attempts: number; failure?: { code: string } };
  }

  async function verified(id: string): Promise<void> {
    const res = await net.api(id, '/v1/ledger/verify');
    const report = (await res.json()) as { ok: boolean; findings?: unknown[] };
    expect(report.ok, JSON.stringify(report).slice(0, 2000)).to.equal(true);
  }

  async function payload(seed: number, bytes = 8 * MiB): Promise<{ data: Buffer; sha256: string }> {
    const chunks: Buffer[] = [];
    for await (const c of patternStream(bytes, seed).stream) chunks.push(c as Buffer);
    const data = Buffer.concat(chunks);
    return { data, sha256: createHash('sha256').update(data).digest('hex') };
  }

  it('answers an upload it has no room for with 507 ERR_INSUFFICIENT_STORAGE, keeps nothing of it, and takes it once space is back', async function () {
    const consent = await grantConsent(net, 'myongji', 'severance', PATIENT);
    const dir = net.configs['myongji']!.dataDir;
    const { data, sha256 } = await payload(1);
    const filler = fill(dir, 2 * MiB);
    const before = ((await (await net.api('myongji', '/v1/exchanges')).json()) as { exchanges: unknown[] }).exchanges.length;
    const refused = await submit('myongji', 'severance', consent, data);
    const text = await refused.text();
    expect(refused.status, text).to.equal(507);
    expect((JSON.parse(text) as { error: { code: string } }).error.code).to.equal('ERR_INSUFFICIENT_STORAGE');
    // Nothing partial is left behind, and no exchange was recorded.
    expect(readdirSync(join(dir, 'outbox'))).to.deep.equal([]);
    expect(((await (await net.api('myongji', '/v1/exchanges')).json()) as { exchanges: unknown[] }).exchanges).to.have.length(before);
    rmSync(filler);
    const res = await submit('myongji', 'severance', consent, data);
    expect(res.status, await res.clone().text()).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    const done = await waitFor(async () => ((await exchange('myongji', id)).status === 'delivered' ? true : undefined), 60_000, 'delivery');
    expect(done).to.equal(true);
    const got = await (await net.api('severance', `/v1/inbox/${id}/content`)).arrayBuffer();
    expect(createHash('sha256').update(Buffer.from(got)).digest('hex')).to.equal(sha256);
    await verified('myongji');
  });

  it('refuses to receive while its disk is full with a failed receipt the sender retries (ERR_RECIPIENT_STORAGE_FULL), and delivers once, whole, when space is back', async function () {
    const consent = await grantConsent(net, 'myongji', 'severance', PATIENT);
    const dir = net.configs['severance']!.dataDir;
    const { data, sha256 } = await payload(2);
    const filler = fill(dir, 2 * MiB);
    const res = await submit('myongji', 'severance', consent, data);
    expect(res.status, await res.clone().text()).to.equal(202);
    const { id } = (await res.json()) as { id: string };
    // The recipient refuses the attempt; the sender keeps the exchange and tries again (never fails it for this).
    await waitFor(async () => ((await exchange('myongji', id)).attempts >= 2 ? true : undefined), 60_000, 'a second attempt');
    const during = await exchange('myongji', id);
    expect(during.status, JSON.stringify(during)).to.be.oneOf(['queued', 'sending']);
    expect((await net.api('severance', `/v1/inbox/${id}`)).status).to.equal(404);
    rmSync(filler);
    await waitFor(async () => ((await exchange('myongji', id)).status === 'delivered' ? true : undefined), 120_000, 'delivery after space is back');
    const got = await (await net.api('severance', `/v1/inbox/${id}/content`)).arrayBuffer();
    expect(createHash('sha256').update(Buffer.from(got)).digest('hex')).to.equal(sha256);
    const inbox = (await (await net.api('severance', '/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> };
    expect(inbox.items.filter((i) => i.exchangeId === id)).to.have.length(1);
    // Every refused attempt's quarantine was discarded.
    expect(readdirSync(join(dir, 'inbox', 'quarantine'))).to.not.include(id);
    await verified('severance');
    await verified('myongji');
  });

  it('answers a consent it cannot log with 507, keeps its ledger valid, and logs the next one once space is back', async function () {
    const dir = net.configs['myongji']!.dataDir;
    const ownHead = async (): Promise<unknown> =>
      ((await (await net.api('myongji', '/v1/ledger/status')).json()) as { feeds: Array<{ feed: string }> }).feeds.find((f) => f.feed === 'myongji');
    const filler = fill(dir, 0);
    // The last pages LevelDB's log already holds may still take a small entry or two: grant until the disk says no.
    let res: Response | undefined;
    let headBefore: unknown;
    for (let i = 0; i < 500; i += 1) {
      headBefore = await ownHead();
      res = await net.api('myongji', '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          patientId: PATIENT,
          grantee: 'severance',
          purposes: ['TREAT'],
          scope: ['*'],
          validUntil: new Date(Date.now() + 86_400_000).toISOString(),
        }),
      });
      if (res.status !== 201) break;
      await res.arrayBuffer();
    }
    const text = await res!.text();
    expect(res!.status, text).to.equal(507);
    expect((JSON.parse(text) as { error: { code: string } }).error.code).to.equal('ERR_INSUFFICIENT_STORAGE');
    expect(await ownHead()).to.deep.equal(headBefore);
    rmSync(filler);
    await verified('myongji');
    await grantConsent(net, 'myongji', 'severance', PATIENT);
    await verified('myongji');
  });
});
