import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MARK = 'HIE_BENCH_HYGIENE_MARK';

/** What a process found by its marker is, from its command line. */
type Kind = 'relay' | 'agent' | 'nats' | 'proxy' | 'watchdog' | 'launcher';

interface Found {
  pid: number;
  kind: Kind;
  cmd: string;
}

function kindOf(cmd: string): Kind {
  if (cmd.includes('hie-relay.js')) return 'relay';
  if (cmd.includes('hie-agent.js')) return 'agent';
  if (cmd.includes('nats-server')) return 'nats';
  if (cmd.includes('scripts/bench/relay.ts')) return 'proxy';
  if (cmd.includes('child-watchdog.js')) return 'watchdog';
  // npm, sh, tsx and the bench process itself.
  return 'launcher';
}

/** Every live (not zombie) process whose environment carries `MARK=marker`: the bench run and all it started. */
function marked(marker: string): Found[] {
  const needle = `${MARK}=${marker}`;
  const out: Found[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (!readFileSync(`/proc/${name}/environ`, 'utf8').split('\0').includes(needle)) continue;
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (stat[stat.lastIndexOf(')') + 2] === 'Z') continue;
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ');
      out.push({ pid: Number(name), kind: kindOf(cmd), cmd });
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return out;
}

/** Polls until no marked process is left or `ms` passed; returns what is left. */
async function leftAfter(marker: string, ms: number): Promise<Found[]> {
  const end = Date.now() + ms;
  for (;;) {
    const left = marked(marker);
    if (left.length === 0 || Date.now() > end) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  /** Every child process seen while the bench ran, by pid. */
  seen: Map<number, Found>;
  /** Marked processes other than the watchdog still alive the moment the bench exited. */
  atExit: Found[];
}

/**
 * Runs a bench with a fresh marker, scanning /proc every 100 ms for what it started; `interrupt`
 * is called once, with the bench's pid, when `when` first holds for the children seen.
 */
function runBench(
  marker: string,
  command: 'npm' | 'node',
  args: string[],
  o: { env?: Record<string, string>; when?: (seen: Found[]) => boolean; interrupt?: (pid: number) => void } = {},
): Promise<Run> {
  const [cmd, argv] =
    command === 'npm' ? ['npm', ['run', '--silent', 'bench', '--', ...args]] : [process.execPath, ['--import', 'tsx', 'scripts/bench.ts', ...args]];
  const child = spawn(cmd as string, argv as string[], {
    cwd: ROOT,
    env: { ...process.env, ...o.env, [MARK]: marker },
    stdio: ['ignore', 'pipe', 'pipe'],
    // npm runs in its own process group, so an interrupt can go to the whole group, as a terminal's Ctrl-C does.
    detached: command === 'npm',
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const seen = new Map<number, Found>();
  let interrupted = false;
  const scan = setInterval(() => {
    for (const f of marked(marker)) if (f.kind !== 'launcher') seen.set(f.pid, f);
    if (!interrupted && o.when?.([...seen.values()])) {
      interrupted = true;
      o.interrupt?.(child.pid as number);
    }
  }, 100);
  const limit = setTimeout(() => child.kill('SIGKILL'), 45_000);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearInterval(scan);
      clearTimeout(limit);
      const atExit = marked(marker).filter((f) => f.kind !== 'watchdog');
      // The rest of the output; a leaked child holding the pipes open must not hold the test up.
      const done = (): void => resolve({ code, signal, out, seen, atExit });
      const timer = setTimeout(done, 1_000);
      child.on('close', () => {
        clearTimeout(timer);
        done();
      });
    });
  });
}

function count(run: Run, kind: Kind): number {
  return [...run.seen.values()].filter((f) => f.kind === kind).length;
}

describe('bench hygiene: every process a bench starts is gone when it ends', function () {
  this.timeout(60_000);

  it('npm run bench -- cluster: both relay nodes and nats-server are stopped after a full run', async function () {
    const marker = randomUUID();
    const run = await runBench(marker, 'npm', ['cluster', '--size', '1MiB', '--messages', '10']);
    expect(run.code, run.out).to.equal(0);
    expect(run.out).to.contain('cross node (alpha -> n1 -> NATS -> n2 -> charlie)');
    expect(count(run, 'relay'), run.out).to.equal(2);
    expect(count(run, 'nats'), run.out).to.equal(1);
    expect(run.atExit).to.deep.equal([]);
    expect(await leftAfter(marker, 5_000)).to.deep.equal([]);
  });

  it('npm run bench -- cluster: a failure after the first node started stops nats-server and that node', async function () {
    const marker = randomUUID();
    const run = await runBench(marker, 'npm', ['cluster', '--size', '1MiB', '--messages', '10'], { env: { HIE_SPAWN_FAIL_AFTER: '2' } });
    expect(run.code, run.out).to.equal(1);
    expect(run.out).to.contain('bench: error: HIE_SPAWN_FAIL_AFTER=2');
    expect(count(run, 'nats'), run.out).to.equal(1);
    expect(count(run, 'relay'), run.out).to.equal(1);
    expect(run.atExit).to.deep.equal([]);
    expect(await leftAfter(marker, 5_000)).to.deep.equal([]);
  });

  it('npm run bench -- cluster: Ctrl-C (SIGINT to the process group) mid-run stops every child', async function () {
    const marker = randomUUID();
    const run = await runBench(marker, 'npm', ['cluster', '--size', '1MiB', '--messages', '10'], {
      when: (seen) => seen.filter((f) => f.kind === 'relay').length === 2,
      interrupt: (pid) => setTimeout(() => process.kill(-pid, 'SIGINT'), 300),
    });
    expect(run.code, run.out).to.not.equal(0);
    expect(run.out).to.match(/SIGINT: stopping [1-3] child process\(es\)/);
    expect(run.out).to.not.contain('## cluster');
    expect(count(run, 'relay'), run.out).to.equal(2);
    expect(count(run, 'nats'), run.out).to.equal(1);
    expect(run.atExit).to.deep.equal([]);
    expect(await leftAfter(marker, 5_000)).to.deep.equal([]);
  });

  it('npm run bench -- agent: a failure while the local federation starts stops the relay and the agent already up', async function () {
    const marker = randomUUID();
    const args = ['agent', '--size', '1MiB', '--rounds', '1', '--small', '1', '--small-rounds', '1', '--warmup', '1', '--concurrency', '1'];
    const run = await runBench(marker, 'npm', args, { env: { HIE_SPAWN_FAIL_AFTER: '2' } });
    expect(run.code, run.out).to.equal(1);
    expect(run.out).to.contain('bench: error: HIE_SPAWN_FAIL_AFTER=2');
    expect(count(run, 'relay'), run.out).to.equal(1);
    expect(count(run, 'agent'), run.out).to.equal(1);
    expect(run.atExit).to.deep.equal([]);
    expect(await leftAfter(marker, 5_000)).to.deep.equal([]);
  });

  it('npm run bench -- prescriptions: the relay, the prescriber and both pharmacies are stopped after a full run', async function () {
    const marker = randomUUID();
    const run = await runBench(marker, 'npm', ['prescriptions', '--count', '8', '--concurrency', '4', '--warmup', '4']);
    expect(run.code, run.out).to.equal(0);
    expect(run.out).to.match(/\| 8 +\| 4 +\| 0 +\|/);
    expect(run.out).to.contain('separate processes');
    expect(count(run, 'relay'), run.out).to.equal(1);
    expect(count(run, 'agent'), run.out).to.equal(3);
    expect(run.atExit).to.deep.equal([]);
    expect(await leftAfter(marker, 5_000)).to.deep.equal([]);
  });

  it('npm run bench -- prescriptions: a failure after the relay and two agents started stops all three', async function () {
    const marker = randomUUID();
    const run = await runBench(marker, 'npm', ['prescriptions', '--count', '8', '--concurrency', '4', '--warmup', '4'], { env: { HIE_SPAWN_FAIL_AFTER: '3' } });
    expect(run.code, run.out).to.equal(1);
    expect(run.out).to.contain('bench: error: HIE_SPAWN_FAIL_AFTER=3');
    expect(count(run, 'relay'), run.out).to.equal(1);
    expect(count(run, 'agent'), run.out).to.equal(2);
    expect(run.atExit).to.deep.equal([]);
    expect(await leftAfter(marker, 5_000)).to.deep.equal([]);
  });

  it('bench relay: when the bench process itself is killed (SIGKILL), the watchdog stops the relay it started', async function () {
    const marker = randomUUID();
    const run = await runBench(marker, 'node', ['relay', '--size', '1MiB', '--rounds', '1', '--messages', '10', '--senders', '1'], {
      when: (seen) => seen.some((f) => f.kind === 'relay') && seen.some((f) => f.kind === 'watchdog'),
      interrupt: (pid) => setTimeout(() => process.kill(pid, 'SIGKILL'), 300),
    });
    expect(run.signal, run.out).to.equal('SIGKILL');
    expect(count(run, 'relay'), run.out).to.equal(1);
    // Nothing stopped the children before the bench died; the watchdog does (SIGTERM, SIGKILL after 3 s).
    expect(await leftAfter(marker, 8_000)).to.deep.equal([]);
  });
});
