import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { ROOT, fencedBlocks, readPage } from '../support/markdown.ts';
import { tempDir } from '../support/tmp.ts';

const BINS = ['hie-certs', 'hie-relay', 'hie-agent', 'hie-ledger'];

/** `n` ports that were free a moment ago on 127.0.0.1 (held together, so they differ). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('docs/getting-started.md', function () {
  this.timeout(180_000);
  const page = readPage('docs/getting-started.md');
  const blocks = fencedBlocks(page, 'sh');
  let tmp: ReturnType<typeof tempDir>;
  let child: ChildProcess | undefined;

  before(function () {
    tmp = tempDir('hie-getting-started-');
  });

  // The page's background processes (lines ending in `&`) run in the script's process group: stop that group.
  after(async function () {
    const pid = child?.pid;
    if (pid !== undefined && groupAlive(pid)) {
      process.kill(-pid, 'SIGTERM');
      for (let i = 0; i < 100 && groupAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
      if (groupAlive(pid)) process.kill(-pid, 'SIGKILL');
    }
    tmp.cleanup();
  });

  it('shows every step as sh blocks: CA, certificates, configs, processes, consent, send, inbox, verify', function () {
    const all = blocks.join('\n');
    for (const step of [
      'hie-certs init',
      'hie-certs issue-relay',
      'hie-certs issue-agent --dir ./pki --id myongji',
      'hie-certs issue-agent --dir ./pki --id severance',
      'cat > relay/relay.yaml',
      'cat > myongji/agent.yaml',
      'cat > severance/agent.yaml',
      'hie-relay --config relay/relay.yaml',
      'hie-agent start --config myongji/agent.yaml',
      'hie-agent start --config severance/agent.yaml',
      'hie-agent consent grant',
      'hie-agent send',
      'hie-agent inbox content',
      'hie-agent verify --config myongji/agent.yaml',
      'hie-agent verify --config severance/agent.yaml',
      'hie-ledger verify',
    ])
      expect(all, step).to.contain(step);
    expect(
      all.split('\n').filter((l) => /&\s*(#.*)?$/.test(l)),
      'processes started in the background',
    ).to.have.length(3);
  });

  it('runs, in order, in an empty directory: the exchange is delivered and read at the other hospital, and every ledger verifies', async function () {
    const bin = join(tmp.dir, 'bin');
    const work = join(tmp.dir, 'work');
    mkdirSync(bin);
    mkdirSync(work);
    // The installed-command names, as an install from the tarball puts them on PATH.
    for (const b of BINS) symlinkSync(join(ROOT, 'bin', `${b}.js`), join(bin, b));
    const script = join(tmp.dir, 'getting-started.sh');
    writeFileSync(script, ['set -euo pipefail', ...blocks.map((b, i) => `# --- block ${i + 1}\n${b}`)].join('\n'));
    const [relay, admin, myongji, severance] = await freePorts(4);

    const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
      child = spawn('bash', [script], {
        cwd: work,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          PATH: `${bin}:${process.env['PATH'] ?? ''}`,
          RELAY_PORT: String(relay),
          RELAY_ADMIN_PORT: String(admin),
          MYONGJI_API_PORT: String(myongji),
          SEVERANCE_API_PORT: String(severance),
        },
      });
      let out = '';
      child.stdout?.on('data', (d) => (out += d));
      child.stderr?.on('data', (d) => (out += d));
      // A step that hangs (e.g. waiting for a relay that never came up) fails the test instead of the suite's timeout.
      const limit = setTimeout(() => child?.pid !== undefined && process.kill(-child.pid, 'SIGTERM'), 150_000);
      child.on('close', (c) => {
        clearTimeout(limit);
        resolve({ code: c, out });
      });
    });
    const logs = ['relay/relay.log', 'myongji/agent.log', 'severance/agent.log']
      .map((f) => {
        try {
          return `--- ${f}\n${readFileSync(join(work, f), 'utf8').slice(-3000)}`;
        } catch {
          return `--- ${f}: none`;
        }
      })
      .join('\n');
    expect(code, `${out}\n${logs}`).to.equal(0);
    expect(out).to.match(/exchange \S+ delivered to severance; receipt signed by the recipient/);
    expect(out).to.contain('severance received the bundle byte for byte');
    expect(readFileSync(join(work, 'received.json'))).to.deep.equal(readFileSync(join(work, 'bundle.json')));
    expect(out.match(/^ledger OK: 2 feeds, \d+ entries$/gm), 'hie-agent verify, on both agents').to.have.length(2);
    expect(out).to.match(/^OK: \d+ entries in 2 feeds verified in \d+ ms, no findings$/m);
    expect(groupAlive(child?.pid as number), 'a process the page started is still running after its last step').to.equal(false);
  });
});
