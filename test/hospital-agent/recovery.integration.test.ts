import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type { RunningAgent } from '../../hospital-agent/agent.ts';
import { alterEntry, dropTail, truncateNewestLog } from '../support/ledger-damage.ts';
import { grantConsent, startNetwork, waitFor, type TestNetwork } from '../support/agents.ts';
import { tempDir } from '../support/tmp.ts';

const IDS = ['myongji', 'severance', 'mgh'];

describe('an agent that lost its own ledger feed gets it back from its peers at start-up', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;
  let patient = 0;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, IDS);
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  const agent = (id: string): RunningAgent => net.agents[id]!;
  const ledgerDir = (id: string): string => join(net.configs[id]!.dataDir, 'ledger');
  /** Raw bytes (base64) of every entry of `feed` held by `id`. */
  const feedBytes = async (id: string, feed: string): Promise<string[]> => {
    const head = agent(id).ledger.head(feed);
    if (!head) return [];
    return (await agent(id).ledger.rawRange(feed, 0, head.seq, head.seq + 1, Number.POSITIVE_INFINITY)).map((b) => b.toString('base64'));
  };
  /** Grants `n` consents at myongji (each an entry of its feed) and waits until every running peer holds them. */
  const writeAndReplicate = async (n: number): Promise<string[]> => {
    for (let i = 0; i < n; i++) await grantConsent(net, 'myongji', 'severance', `SYN-RECOVER-${++patient}`);
    const head = agent('myongji').ledger.head()!;
    for (const id of IDS.filter((p) => p !== 'myongji' && net.agents[p]))
      await waitFor(() => agent(id).ledger.head('myongji')?.hash === head.hash, 30_000, `${id} holds myongji's feed`);
    return feedBytes('myongji', 'myongji');
  };
  const stop = async (id: string): Promise<void> => {
    await agent(id).close();
    delete net.agents[id];
  };
  const noEvidenceAnywhere = async (): Promise<void> => {
    for (const id of Object.keys(net.agents)) {
      expect(await agent(id).ledger.evidence(), `evidence at ${id}`).to.deep.equal([]);
      expect(agent(id).ledger.isStopped('myongji'), `myongji stopped at ${id}`).to.equal(false);
    }
  };
  /** A new consent lands right after the restored head, and every running peer replicates it. */
  const appendsGoOnAndReplicate = async (restoredHead: number): Promise<void> => {
    await grantConsent(net, 'myongji', 'mgh', `SYN-RECOVER-${++patient}`);
    const head = agent('myongji').ledger.head()!;
    expect(head.seq).to.equal(restoredHead + 1);
    for (const id of IDS.filter((p) => p !== 'myongji' && net.agents[p]))
      await waitFor(() => agent(id).ledger.head('myongji')?.hash === head.hash, 30_000, `${id} replicates the new entry`);
    await noEvidenceAnywhere();
  };

  it('after a damaged disk cut its LevelDB log: every entry back byte for byte, no equivocation, appends go on', async function () {
    const before = await writeAndReplicate(30);
    await stop('myongji');
    const cut = truncateNewestLog(ledgerDir('myongji'), 0.5);
    expect(cut.to).to.be.lessThan(cut.from);

    const restarted = await net.startAgent('myongji');
    const outcome = (await restarted.recovered)!;
    expect(outcome.state).to.equal('complete');
    // The cut really lost entries of myongji's own feed (or all of it), and the peers gave every one back.
    expect(outcome.from).to.be.lessThan(before.length - 1);
    expect(outcome.restored).to.equal(before.length - 1 - outcome.from);
    expect(outcome.answered).to.deep.equal(['mgh', 'severance']);
    expect(await feedBytes('myongji', 'myongji')).to.deep.equal(before);
    await noEvidenceAnywhere();
    await appendsGoOnAndReplicate(before.length - 1);
  });

  it('after the whole data directory was lost but its keys kept: no fresh feed at seq 0, the old one comes back', async function () {
    const before = await writeAndReplicate(5);
    const dataDir = net.configs['myongji']!.dataDir;
    await stop('myongji');
    for (const name of readdirSync(dataDir)) if (name !== 'keys') rmSync(join(dataDir, name), { recursive: true, force: true });

    const restarted = await net.startAgent('myongji');
    const outcome = (await restarted.recovered)!;
    expect(outcome).to.include({ state: 'complete', from: -1, restored: before.length });
    expect(await feedBytes('myongji', 'myongji')).to.deep.equal(before);
    await noEvidenceAnywhere();
    await appendsGoOnAndReplicate(before.length - 1);
  });

  it('refuses a peer that serves an altered entry of its feed, holds writes (503) until an honest peer answers, then restores', async function () {
    const before = await writeAndReplicate(20);
    const keep = before.length - 12;
    // severance's copy of myongji's feed gets one changed byte in an entry myongji is about to lose; mgh is away.
    await stop('severance');
    await stop('mgh');
    await stop('myongji');
    await alterEntry(ledgerDir('severance'), 'myongji', keep + 3);
    await dropTail(ledgerDir('myongji'), 'myongji', keep);
    net.configs['myongji']!.recovery.timeoutMs = 1000;
    await net.startAgent('severance');
    const restarted = await net.startAgent('myongji');

    const status = await waitFor(() => restarted.recoveryStatus()?.refused.find((r) => r.peer === 'severance'), 30_000, 'severance refused');
    expect(status.code).to.be.oneOf(['ERR_LEDGER_NOT_COVERED', 'ERR_LEDGER_CHAIN_BROKEN']);
    expect(restarted.ledger.head()!.seq).to.equal(keep - 1);
    // While it recovers, writes wait: a clear 503 with a code and Retry-After; reads are served.
    // Both an express route and the fast submission route.
    const [held, submit] = await Promise.all([
      net.api('myongji', '/v1/consents', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ patientId: 'SYN-RECOVER-HELD', grantee: 'severance', purposes: ['TREAT'], scope: ['*'] }),
      }),
      net.api('myongji', '/v1/exchanges', {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'hie-recipient': 'severance', 'hie-patient-id': 'SYN-RECOVER-HELD', 'hie-consent-id': 'c-none' },
        body: 'held',
      }),
    ]);
    for (const res of [held, submit]) {
      expect(res.status).to.equal(503);
      expect(res.headers.get('retry-after')).to.equal('5');
      expect(((await res.json()) as { error: { code: string } }).error.code).to.equal('ERR_RECOVERING');
    }
    expect((await net.api('myongji', '/v1/ledger/status')).status).to.not.equal(503);
    expect(restarted.ledger.head()!.seq).to.equal(keep - 1);

    await net.startAgent('mgh');
    const outcome = (await restarted.recovered)!;
    expect(outcome.state).to.equal('complete');
    expect(outcome.refused.map((r) => r.peer)).to.deep.equal(['severance']);
    expect(await feedBytes('myongji', 'myongji')).to.deep.equal(before);
    expect(await agent('myongji').ledger.evidence()).to.deep.equal([]);
    expect(await agent('mgh').ledger.evidence()).to.deep.equal([]);
    await grantConsent(net, 'myongji', 'mgh', `SYN-RECOVER-${++patient}`);
    const head = agent('myongji').ledger.head()!;
    expect(head.seq).to.equal(before.length);
    await waitFor(() => agent('mgh').ledger.head('myongji')?.hash === head.hash, 30_000, 'mgh replicates the new entry');
  });
});
