import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { spawnAgent, type AgentProcess } from '../support/agent-process.ts';
import { startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { patternStream } from '../support/data.ts';
import { tempDir } from '../support/tmp.ts';
import { assertLedgers, assertSound, call, grant, settle, submit, type AgentHandle } from './support/harness.ts';

const SKEW_PRELOAD = fileURLToPath(new URL('./support/skewed-clock.mjs', import.meta.url));
/** The clock offset the skew scenario runs with (documented tolerance: DEFAULT_MAX_CLOCK_SKEW_MS, 5 min). */
const SKEW_MS = 2 * 60_000;

describe('fault injection: agents killed, partitioned, and with a skewed clock', function () {
  this.timeout(240_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  // alpha runs as its own process (SIGKILL); bravo and charlie run in this process.
  let alpha: AgentProcess | undefined;
  const alphaHandle = (): AgentHandle => ({ id: 'alpha', dataDir: net.configs['alpha']!.dataDir, port: () => alpha!.apiPort });
  const handle = (id: string): AgentHandle => (id === 'alpha' ? alphaHandle() : { id, dataDir: net.configs[id]!.dataDir, port: () => net.agents[id]!.apiPort });
  const all = (): AgentHandle[] => ['alpha', 'bravo', 'charlie'].map(handle);

  async function startAlpha(offsetMs = 0): Promise<void> {
    const saved = process.env['NODE_OPTIONS'];
    // spawnAgent passes this process's environment on; the child is spawned before its first await.
    if (offsetMs !== 0) {
      process.env['NODE_OPTIONS'] = `${saved ?? ''} --import ${SKEW_PRELOAD}`.trim();
      process.env['HIE_TEST_CLOCK_OFFSET_MS'] = String(offsetMs);
    }
    const starting = spawnAgent(net.configs['alpha']!, net.secrets['alpha']!);
    if (saved === undefined) delete process.env['NODE_OPTIONS'];
    else process.env['NODE_OPTIONS'] = saved;
    delete process.env['HIE_TEST_CLOCK_OFFSET_MS'];
    alpha = await starting;
    await waitFor(async () => (await call<{ relay: string }>(alphaHandle(), '/healthz')).body.relay === 'connected', 30_000, 'alpha connected');
  }

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['alpha', 'bravo', 'charlie'], { agentStart: false });
    // alpha stores each body before sending it, so a kill lands mid-send from its outbox (the live path has its own test).
    net.configs['alpha']!.limits.sendWhileUploading = false;
    await net.startAgent('bravo');
    await net.startAgent('charlie');
    await startAlpha();
  });
  after(async function () {
    await alpha?.kill('SIGKILL');
    await net?.close();
    tmp.cleanup();
  });

  it('keeps running and serving on SIGHUP (which re-reads the CRL), as `hie-agent --help` says', async function () {
    alpha!.child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 1000));
    expect(alpha!.child.exitCode, alpha!.stderr()).to.equal(null);
    expect(alpha!.child.signalCode).to.equal(null);
    const health = await call<{ relay: string }>(alphaHandle(), '/healthz');
    expect(health.status).to.equal(200);
    expect(health.body.relay).to.equal('connected');
  });

  it('completes an exchange exactly once when its sender is SIGKILLed mid-send and restarted', async function () {
    const [a, b] = [alphaHandle(), handle('bravo')];
    const consent = await grant(a, 'bravo', 'SYN-SENDER-KILL');
    const size = 150 * 1024 * 1024;
    const data = patternStream(size, 23);
    const id = await submit(a, 'bravo', { consent, patientId: 'SYN-SENDER-KILL', body: data.stream, contentType: 'application/octet-stream', length: size });
    const partial = join(b.dataDir, 'inbox', 'quarantine', id, 'content');
    await waitFor(() => existsSync(partial) && statSync(partial).size > 16 * 1024 * 1024, 60_000, 'bytes arriving at bravo');
    await alpha!.kill('SIGKILL');
    await startAlpha();
    const [done] = await settle(a, [id], 150_000);
    expect(done!.status, JSON.stringify(done)).to.equal('delivered');
    expect(done!.contentSha256).to.equal(data.sha256());
    await assertSound(all(), [{ from: a, ids: [id] }]);
  });

  it('leaves nothing at the recipient and no exchange when the sender is SIGKILLed while a live send uploads', async function () {
    const [a, b] = [alphaHandle(), handle('bravo')];
    await alpha!.kill('SIGKILL');
    net.configs['alpha']!.limits.sendWhileUploading = true;
    await startAlpha();
    try {
      const consent = await grant(a, 'bravo', 'SYN-LIVE-KILL');
      const [inboxBefore, sentBefore] = [
        (await call<{ items: unknown[] }>(b, '/v1/inbox')).body.items.length,
        (await call<{ exchanges: unknown[] }>(a, '/v1/exchanges?limit=1000')).body.exchanges.length,
      ];
      const quarantine = join(b.dataDir, 'inbox', 'quarantine');
      const arriving = (): boolean =>
        existsSync(quarantine) &&
        readdirSync(quarantine).some((d) => existsSync(join(quarantine, d, 'content')) && statSync(join(quarantine, d, 'content')).size > 16 * 1024 * 1024);
      const size = 150 * 1024 * 1024;
      const upload = submit(a, 'bravo', {
        consent,
        patientId: 'SYN-LIVE-KILL',
        body: patternStream(size, 29).stream,
        contentType: 'application/octet-stream',
        length: size,
      }).then(
        () => 'accepted',
        () => 'cut',
      );
      await waitFor(arriving, 60_000, 'bytes arriving at bravo while the upload runs');
      await alpha!.kill('SIGKILL');
      expect(await upload, 'the EHR saw its upload fail').to.equal('cut');
      // The relay aborts the transfer when alpha's connection drops; bravo discards what it had.
      await waitFor(() => !existsSync(quarantine) || readdirSync(quarantine).length === 0, 30_000, 'bravo discards the partial envelope');
      await startAlpha();
      expect((await call<{ items: unknown[] }>(b, '/v1/inbox')).body.items.length).to.equal(inboxBefore);
      expect((await call<{ exchanges: unknown[] }>(a, '/v1/exchanges?limit=1000')).body.exchanges.length).to.equal(sentBefore);
      await assertLedgers(all());
    } finally {
      await alpha?.kill('SIGKILL');
      net.configs['alpha']!.limits.sendWhileUploading = false;
      await startAlpha();
    }
  });

  it('keeps a verifiable ledger and every acknowledged append when killed mid-append', async function () {
    const a = alphaHandle();
    const acked: string[] = [];
    const attempts = Array.from({ length: 60 }, (_, i) =>
      call<{ id: string }>(a, '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ patientId: `SYN-APPEND-${i}`, grantee: 'charlie', validUntil: new Date(Date.now() + 86_400_000).toISOString() }),
      }).then(
        (r) => {
          if (r.status === 201) acked.push(r.body.id);
        },
        () => undefined,
      ),
    );
    await waitFor(() => acked.length >= 5, 30_000, 'first appends acknowledged');
    await alpha!.kill('SIGKILL');
    await Promise.all(attempts);
    expect(acked.length, 'killed while appends were in flight').to.be.lessThan(60);
    await startAlpha();
    for (const id of acked) expect((await call(a, `/v1/consents/${id}`)).status, `acknowledged consent ${id} survived`).to.equal(200);
    await assertLedgers(all());
  });

  it('converges, verifies and delivers queued exchanges after a long partition of one agent', async function () {
    const [a, b] = [alphaHandle(), handle('bravo')];
    const consent = await grant(a, 'charlie', 'SYN-PARTITION');
    await net.agents['charlie']!.close();
    delete net.agents['charlie'];
    const queued = await Promise.all(
      Array.from({ length: 3 }, () =>
        submit(a, 'charlie', { consent, patientId: 'SYN-PARTITION', body: Buffer.from('{"resourceType":"Binary"}'), contentType: 'application/octet-stream' }),
      ),
    );
    // Others keep appending while charlie is away: several hundred entries across two feeds.
    for (let round = 0; round < 15; round += 1) {
      await Promise.all([
        ...Array.from({ length: 10 }, (_, i) => grant(a, 'bravo', `SYN-PART-A-${round}-${i}`)),
        ...Array.from({ length: 10 }, (_, i) => grant(b, 'alpha', `SYN-PART-B-${round}-${i}`)),
      ]);
    }
    const pending = await Promise.all(queued.map(async (id) => (await call<{ status: string }>(a, `/v1/exchanges/${id}`)).body.status));
    expect(
      pending.every((s) => s !== 'delivered'),
      'nothing delivered to an offline agent',
    ).to.equal(true);
    await net.startAgent('charlie');
    await assertSound(all(), [{ from: a, ids: queued }]);
  });

  it(`delivers and verifies both ways with one agent's clock ${SKEW_MS / 60_000} minutes ahead`, async function () {
    await alpha!.kill('SIGTERM');
    await startAlpha(SKEW_MS);
    const [a, b] = [alphaHandle(), handle('bravo')];
    const c1 = await grant(a, 'bravo', 'SYN-SKEW-A');
    const c2 = await grant(b, 'alpha', 'SYN-SKEW-B');
    const fromA = [
      await submit(a, 'bravo', { consent: c1, patientId: 'SYN-SKEW-A', body: Buffer.from('skewed sender'), contentType: 'application/octet-stream' }),
    ];
    const fromB = [
      await submit(b, 'alpha', { consent: c2, patientId: 'SYN-SKEW-B', body: Buffer.from('skewed receiver'), contentType: 'application/octet-stream' }),
    ];
    const aHead = (await call<{ feeds: Array<{ feed: string; ts: string }> }>(a, '/v1/ledger/status')).body.feeds.find((f) => f.feed === 'alpha')!;
    expect(Date.parse(aHead.ts) - Date.now(), "the preload is in effect: alpha stamps its ledger ahead of this process's clock").to.be.greaterThan(
      SKEW_MS - 30_000,
    );
    await assertSound(all(), [
      { from: a, ids: fromA },
      { from: b, ids: fromB },
    ]);
  });
});
