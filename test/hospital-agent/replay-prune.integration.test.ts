import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { startNetwork, type TestNetwork } from '../support/agents.ts';
import { tempDir } from '../support/tmp.ts';

describe('the replay list of a starting agent', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startNetwork(tmp.dir, ['myongji', 'severance'], { agentStart: false });
  });
  after(async function () {
    await net?.close();
    tmp.cleanup();
  });

  it('forgets the exchange ids past the replay window (they would be refused as stale anyway) and keeps the rest', async function () {
    const dir = net.configs['severance']!.dataDir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const log = join(dir, 'replay.log');
    const past = Date.now() - 1000;
    const future = Date.now() + 86_400_000;
    writeFileSync(log, `${JSON.stringify({ k: 'myongji/expired-exchange', e: past })}\n${JSON.stringify({ k: 'myongji/recent-exchange', e: future })}\n`, {
      mode: 0o600,
    });
    await net.startAgent('severance');
    const keys = readFileSync(log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { k: string }).k);
    expect(keys).to.deep.equal(['myongji/recent-exchange']);
  });
});
