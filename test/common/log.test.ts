import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { LOG_BUFFER_BYTES, LOG_FLUSH_MS } from '../../common/log.ts';

const LOG_MODULE = fileURLToPath(new URL('../../common/log.ts', import.meta.url));

/** Runs `body` (ESM, with `createLogger` in scope) in a child node process; resolves with its stdout lines. */
function child(body: string): { lines: () => string[]; stderr: () => string; exited: Promise<number | null>; kill: () => void } {
  const script = `import { createLogger } from ${JSON.stringify(LOG_MODULE)};\n${body}`;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const exited = once(proc, 'close').then(() => proc.exitCode);
  return { lines: () => out.split('\n').filter(Boolean), stderr: () => err, exited, kill: () => proc.kill('SIGKILL') };
}

describe('common/log: buffered asynchronous logging', function () {
  this.timeout(30_000);

  it('writes every line, the buffered tail included, when the process exits', async function () {
    // Far more than one buffer's worth, so most lines go out in batches and the last ones are still buffered at exit.
    const count = Math.ceil((LOG_BUFFER_BYTES * 20) / 80);
    const c = child(`const log = createLogger({ level: 'info', base: null });
for (let i = 0; i < ${count}; i++) log.info({ n: i }, 'line');
process.exit(3);`);
    expect(await c.exited).to.equal(3);
    const lines = c.lines().map((l) => JSON.parse(l) as { n: number; msg: string });
    expect(lines.map((l) => l.n)).to.deep.equal(Array.from({ length: count }, (_, i) => i));
    expect(lines.every((l) => l.msg === 'line')).to.equal(true);
  });

  it('writes the lines of a process that returns without process.exit', async function () {
    const c = child(`const log = createLogger({ level: 'info', base: null });
log.info('first'); log.warn('last');`);
    expect(await c.exited).to.equal(0);
    expect(c.lines().map((l) => (JSON.parse(l) as { msg: string }).msg)).to.deep.equal(['first', 'last']);
  });

  it('does not hold back the lines of a quiet process', async function () {
    // One short line, far below the buffer size, from a process that then idles: the periodic flush sends it.
    const c = child(`const log = createLogger({ level: 'info', base: null });
log.info('alone');
setTimeout(() => undefined, 60_000);`);
    try {
      const deadline = Date.now() + 20 * LOG_FLUSH_MS + 10_000;
      while (c.lines().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(c.lines().map((l) => (JSON.parse(l) as { msg: string }).msg)).to.deep.equal(['alone']);
    } finally {
      c.kill();
    }
  });

  it('stamps each line with an ISO 8601 UTC time', async function () {
    const c = child(`const log = createLogger({ level: 'info', base: null });
log.info('when');`);
    expect(await c.exited).to.equal(0);
    const line = JSON.parse(c.lines()[0] as string) as { time: unknown };
    expect(line.time)
      .to.be.a('string')
      .and.match(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(Math.abs(Date.parse(line.time as string) - Date.now())).to.be.below(600_000);
  });

  it('respects the level it is given', async function () {
    const c = child(`const log = createLogger({ level: 'warn', base: null });
log.info('hidden'); log.debug('hidden'); log.error('shown');`);
    expect(await c.exited).to.equal(0);
    expect(c.lines().map((l) => (JSON.parse(l) as { msg: string }).msg)).to.deep.equal(['shown']);
  });

  it('drops whole lines past its buffer limit instead of growing, and says so on stderr', async function () {
    // Logged in one synchronous burst: nothing can be written until it ends, so the buffer overflows.
    const count = 20_000;
    const c = child(`const log = createLogger({ level: 'info', base: null }, { maxBufferedBytes: 64 * 1024 });
for (let i = 0; i < ${count}; i++) log.info({ n: i, pad: 'x'.repeat(40) }, 'burst');`);
    expect(await c.exited).to.equal(0);
    const lines = c.lines().map((l) => JSON.parse(l) as { n: number; msg: string });
    expect(lines.length).to.be.above(0).and.below(count);
    expect(lines.every((l) => l.msg === 'burst')).to.equal(true);
    expect(lines.map((l) => l.n)).to.deep.equal([...lines.map((l) => l.n)].sort((a, b) => a - b));
    expect(c.stderr()).to.match(/log lines dropped \(\d+ so far\): stdout is not being read fast enough/);
    expect(c.stderr().match(/log lines dropped/g)).to.have.length(1);
  });
});
