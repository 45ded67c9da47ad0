import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { InboundTransfer, TransferAbortedError } from '../../relay/protocol/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { connectAgent, hashOf, patternStream, startTestRelay, until } from './helpers.ts';

const BIN = fileURLToPath(new URL('../../bin/hie-relay.js', import.meta.url));

describe('relay lifecycle (integration)', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;

  before(function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha', 'bravo']);
  });

  after(function () {
    tmp?.cleanup();
  });

  it('drains on shutdown: tells agents, refuses new transfers, lets an open one finish', async function () {
    const relay = await startTestRelay(fed);
    const alpha = await connectAgent(fed, relay, 'alpha');
    const bravo = await connectAgent(fed, relay, 'bravo');
    try {
      const src = patternStream(32 * 1024 * 1024);
      const incoming = new Promise<InboundTransfer>((r) => bravo.once('transfer', r));
      const out = alpha.openTransfer('bravo');
      const sending = pipeline(src.stream, out);
      const inbound = await incoming;
      const notice = once(alpha, 'notice');
      const closing = relay.close(20_000);
      const [type] = (await notice) as [string];
      expect(type).to.equal('shutting-down');
      const late = alpha.openTransfer('bravo');
      late.on('error', () => {});
      const err = await late.usage.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(TransferAbortedError).with.property('reason', 'shutting-down');
      const [received] = await Promise.all([hashOf(inbound), sending]);
      expect(received.hex).to.equal(src.digest());
      await out.usage;
      await closing;
      await until(() => !alpha.connected && !bravo.connected, 5000, 'agents disconnected');
    } finally {
      await alpha.close();
      await bravo.close();
      await relay.close(0);
    }
  });

  it('reconnects with backoff after the relay restarts', async function () {
    const first = await startTestRelay(fed);
    const port = first.port;
    const alpha = await connectAgent(fed, first, 'alpha', { reconnect: { baseMs: 50, maxMs: 200 } });
    try {
      const lost = once(alpha, 'disconnected');
      await first.close(0);
      await lost;
      const second = await startTestRelay(fed, { listen: { host: '127.0.0.1', port } });
      try {
        await until(() => alpha.connected, 10_000, 'reconnect');
        expect(alpha.agentId).to.equal('alpha');
      } finally {
        await alpha.close();
        await second.close(0);
      }
    } finally {
      await alpha.close();
    }
  });

  it('runs as `hie-relay --config FILE`, serves /healthz, and stops cleanly on SIGTERM', async function () {
    const cfg = join(tmp.dir, 'relay.yaml');
    writeFileSync(
      cfg,
      [
        'listen: { host: 127.0.0.1, port: 0 }',
        `tls: { cert: ${fed.relay.cert}, key: ${fed.relay.key}, ca: ${fed.caPath}, crl: ${fed.crlPath} }`,
        'admin: { host: 127.0.0.1, port: 0 }',
        'tariff: { currency: EUR, perTransfer: 1, perGiB: 10 }',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [BIN, '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    try {
      await until(() => out.includes('relay listening'), 20_000, 'relay listening');
      const line = JSON.parse(out.split('\n').find((l) => l.includes('relay listening')) as string) as { port: number; adminPort: number };
      expect(line.port).to.be.above(0);
      const res = await fetch(`http://127.0.0.1:${line.adminPort}/healthz`);
      expect(res.status).to.equal(200);
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number];
      expect(code).to.equal(0);
      expect(out).to.contain('relay stopped');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('check-config names the bad key and exits non-zero', async function () {
    const cfg = join(tmp.dir, 'bad.yaml');
    writeFileSync(cfg, `tls: { cert: a, key: b, ca: c }\nlimits: { maxOpenTransfers: 0 }\n`);
    const child = spawn(process.execPath, [BIN, 'check-config', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).to.equal(1);
    expect(err).to.match(/^hie-relay: error: config key limits\.maxOpenTransfers: .*\[ERR_RELAY_CONFIG\]/);
  });
});
