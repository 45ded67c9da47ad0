import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { spawnAgent, type AgentProcess } from '../support/agent-process.ts';
import { grantConsent, startNetwork, TEST_TOKEN, waitFor, type TestNetwork } from '../support/agents.ts';
import { patternStream } from '../support/data.ts';
import { tempDir } from '../support/tmp.ts';

describe('an agent killed while receiving', function () {
  this.timeout(300_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let receiver: AgentProcess | undefined;

  before(async function () {
    tmp = tempDir();
    // myongji runs in this process; severance runs as its own process so it can be SIGKILLed.
    net = await startNetwork(tmp.dir, ['myongji', 'severance'], { agentStart: false });
    await net.startAgent('myongji');
  });
  after(async function () {
    await receiver?.kill('SIGKILL');
    await net?.close();
    tmp.cleanup();
  });

  /** Consents and POSTs `size` bytes of pattern (seeded) from myongji to severance; the exchange id and the data. */
  async function sendBinary(patientId: string, size: number, seed: number): Promise<{ id: string; data: ReturnType<typeof patternStream> }> {
    const consent = await grantConsent(net, 'myongji', 'severance', patientId);
    const data = patternStream(size, seed);
    const res = await net.api('myongji', '/v1/exchanges', {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'content-length': String(size),
        'hie-recipient': 'severance',
        'hie-patient-id': patientId,
        'hie-consent-id': consent,
      },
      body: data.stream as unknown as RequestInit['body'],
      duplex: 'half',
    } as RequestInit);
    expect(res.status).to.equal(202);
    return { id: ((await res.json()) as { id: string }).id, data };
  }

  const receiverApi = (path: string): Promise<Response> =>
    fetch(`http://127.0.0.1:${receiver!.apiPort}${path}`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });

  it('never exposes a partial file, and the resent exchange is delivered once after restart', async function () {
    const config = net.configs['severance']!;
    receiver = await spawnAgent(config, net.secrets['severance']!);
    await waitFor(async () => ((await (await receiverApi('/healthz')).json()) as { relay: string }).relay === 'connected', 20_000, 'receiver connected');
    const { id, data } = await sendBinary('SYN-CRASH-1', 300 * 1024 * 1024, 99);

    const quarantine = join(config.dataDir, 'inbox', 'quarantine', id, 'content');
    await waitFor(() => existsSync(quarantine) && statSync(quarantine).size > 30 * 1024 * 1024, 60_000, 'bytes in quarantine');
    await receiver.kill('SIGKILL');
    // Killed mid-receive: the partial bytes exist only in quarantine, never among the inbox items.
    expect(readdirSync(join(config.dataDir, 'inbox', 'items'))).to.deep.equal([]);

    receiver = await spawnAgent(config, net.secrets['severance']!);
    expect(readdirSync(join(config.dataDir, 'inbox', 'quarantine')).filter((n) => n === id)).to.deep.equal([]);
    const done = await waitFor(
      async () => {
        const r = (await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string; attempts: number };
        return r.status === 'delivered' || r.status === 'failed' ? r : undefined;
      },
      180_000,
      'delivery after restart',
    );
    expect(done.status).to.equal('delivered');
    expect(done.attempts).to.be.greaterThan(1);
    const items = ((await (await receiverApi('/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> }).items;
    expect(items.map((i) => i.exchangeId)).to.deep.equal([id]);
    const hash = createHash('sha256');
    for await (const chunk of (await receiverApi(`/v1/inbox/${id}/content`)).body as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
    expect(hash.digest('hex')).to.equal(data.sha256());
  });

  it('delivers an exchange that was opened (and remembered against replays) but not released when the agent stopped', async function () {
    const config = net.configs['severance']!;
    await receiver?.kill('SIGKILL');
    receiver = undefined;
    const { id } = await sendBinary('SYN-CRASH-2', 2 * 1024 * 1024, 7);
    // What an open leaves when the agent stops right after it (the replay store is written before the release):
    // the exchange id is remembered, and nothing was delivered, receipted or logged.
    appendFileSync(join(config.dataDir, 'replay.log'), `${JSON.stringify({ k: `myongji/${id}`, e: Date.now() + 7 * 86_400_000 })}\n`);

    receiver = await spawnAgent(config, net.secrets['severance']!);
    const done = await waitFor(
      async () => {
        const r = (await (await net.api('myongji', `/v1/exchanges/${id}`)).json()) as { status: string };
        return r.status === 'delivered' || r.status === 'failed' ? r : undefined;
      },
      180_000,
      'delivery of the resend',
    );
    expect(done.status, JSON.stringify(done)).to.equal('delivered');
    const items = ((await (await receiverApi('/v1/inbox')).json()) as { items: Array<{ exchangeId: string }> }).items;
    expect(items.filter((i) => i.exchangeId === id)).to.have.length(1);
  });
});
