// `npm run bench -- agent [--size 2GiB] [--small 2000] [--concurrency 64]`: end-to-end exchange
// throughput (agent API in, relay, agent inbox out, receipt back) beside the relay-only figure for the
// same bytes in the same run, and the rate of small (2 KB FHIR) exchanges with time to receipt.
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { loadIdentity } from '../../certs/index.ts';
import { RelayClient, type InboundTransfer } from '../../relay/protocol/index.ts';
import { startNetwork, waitFor, type TestNetwork } from '../../test/support/agents.ts';
import { patternStream } from '../../test/support/data.ts';
import { tempDir } from '../../test/support/tmp.ts';
import type { BenchTable } from './types.ts';
import { mbps, mib, PeakRss, percentile } from './util.ts';

const BUNDLE = readFileSync(fileURLToPath(new URL('../fixtures/patient-bundle.json', import.meta.url)));

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)?$/i.exec(s.trim());
  if (!m) throw new Error(`bad size '${s}' (e.g. 512MiB, 2GiB)`);
  const mult: Record<string, number> = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
  return Math.round(Number(m[1]) * (mult[(m[2] ?? 'B').toLowerCase()] as number));
}

async function grant(net: TestNetwork, from: string, to: string, patient: string): Promise<string> {
  const res = await net.api(from, '/v1/consents', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ patientId: patient, grantee: to, validUntil: new Date(Date.now() + 86_400_000).toISOString() }),
  });
  return ((await res.json()) as { id: string }).id;
}

/** Raw transfer through the same relay between two other agents' connections: the relay-only figure. */
async function relayOnly(net: TestNetwork, size: number): Promise<number> {
  const a = net.fed.addAgent('bench-a');
  const b = net.fed.addAgent('bench-b');
  const url = `wss://localhost:${net.relay.port}`;
  const sender = new RelayClient({ url, identity: loadIdentity(a), reconnect: false });
  const receiver = new RelayClient({ url, identity: loadIdentity(b), reconnect: false });
  await Promise.all([sender.connect(), receiver.connect()]);
  const received = new Promise<void>((resolve, reject) => {
    receiver.once('transfer', (t: InboundTransfer) => {
      pipeline(t, new Writable({ write: (_c, _e, cb) => cb() })).then(resolve, reject);
    });
  });
  const started = performance.now();
  await pipeline(patternStream(size, 3).stream, sender.openTransfer('bench-b'));
  await received;
  const ms = performance.now() - started;
  await sender.close();
  await receiver.close();
  return ms;
}

/** One large exchange through the agents' API, timed from the first byte posted to the verified receipt. */
async function endToEnd(net: TestNetwork, size: number, consent: string): Promise<number> {
  const started = performance.now();
  const delivered = new Promise<void>((resolve, reject) => {
    net.agents['myongji']!.engine.once('delivered', () => resolve());
    net.agents['myongji']!.engine.once('failed', (r) => reject(new Error(`exchange failed: ${r.failure?.code}`)));
  });
  const res = await net.api('myongji', '/v1/exchanges', {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size), 'hie-recipient': 'severance', 'hie-patient-id': 'SYN-BENCH', 'hie-consent-id': consent },
    body: patternStream(size, 5).stream as unknown as RequestInit['body'],
    duplex: 'half',
  } as RequestInit);
  if (res.status !== 202) throw new Error(`POST failed: ${res.status} ${await res.text()}`);
  await delivered;
  return performance.now() - started;
}

/** Many small FHIR exchanges, `concurrency` in flight; time from POST to verified receipt. */
async function smallExchanges(net: TestNetwork, count: number, concurrency: number, consent: string): Promise<{ ms: number; lat: number[]; failed: number }> {
  const engine = net.agents['myongji']!.engine;
  const startedAt = new Map<string, number>();
  const lat: number[] = [];
  let failed = 0;
  let finished = 0;
  let done!: () => void;
  const all = new Promise<void>((resolve) => {
    done = resolve;
  });
  const onDone = (id: string, ok: boolean): void => {
    const t0 = startedAt.get(id);
    if (t0 === undefined) return;
    startedAt.delete(id);
    if (ok) lat.push(performance.now() - t0);
    else failed += 1;
    finished += 1;
    if (finished === count) done();
  };
  engine.on('delivered', (r) => onDone(r.id, true));
  engine.on('failed', (r) => onDone(r.id, false));
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < count) {
      next += 1;
      const before = performance.now();
      const res = await net.api('myongji', '/v1/exchanges', {
        method: 'POST',
        headers: { 'content-type': 'application/fhir+json', 'hie-recipient': 'severance', 'hie-patient-id': 'SYN-BENCH', 'hie-consent-id': consent },
        body: BUNDLE,
      });
      const { id } = (await res.json()) as { id: string };
      if (res.status !== 202) throw new Error(`POST failed: ${res.status}`);
      startedAt.set(id, before);
      // Keep at most `concurrency` exchanges unfinished.
      while (startedAt.size >= concurrency) await new Promise((r) => setTimeout(r, 1));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, 8) }, worker));
  await all;
  return { ms: performance.now() - t0, lat, failed };
}

export async function run(args: string[]): Promise<BenchTable[]> {
  const size = parseSize(option(args, 'size') ?? '2GiB');
  const count = Number(option(args, 'small') ?? 2000);
  const concurrency = Number(option(args, 'concurrency') ?? 64);
  const tmp = tempDir('hie-bench-agent-');
  const net = await startNetwork(tmp.dir, ['myongji', 'severance'], { agentStart: false });
  for (const id of ['myongji', 'severance']) net.configs[id]!.limits.maxConcurrentSends = concurrency;
  await net.startAgent('myongji');
  await net.startAgent('severance');
  try {
    await waitFor(() => Object.values(net.agents).every((a) => a.relay.connected), 20_000, 'agents connected');
    const consent = await grant(net, 'myongji', 'severance', 'SYN-BENCH');
    const rss = new PeakRss().start();
    const relayMs = await relayOnly(net, size);
    const e2eMs = await endToEnd(net, size, consent);
    const small = await smallExchanges(net, count, concurrency, consent);
    const peak = rss.stop();
    const ratio = relayMs / e2eMs;
    return [
      {
        title: `agent: end-to-end exchange of ${mib(size)} MiB (API in -> seal -> relay -> open -> inbox -> receipt) vs relay-only, same run`,
        rows: [
          { path: 'relay only (raw transfer, two clients)', 'MB/s': mbps(size, relayMs), seconds: (relayMs / 1000).toFixed(1) },
          { path: 'end to end through both agents', 'MB/s': mbps(size, e2eMs), seconds: (e2eMs / 1000).toFixed(1) },
        ],
        notes: [
          `Ratio end-to-end / relay-only: ${ratio.toFixed(2)} (target >= 0.50). Relay, both agents and the clients share one process; peak RSS of that process ${mib(peak)} MiB.`,
        ],
      },
      {
        title: `agent: ${count} small exchanges (2 KB FHIR bundle), up to ${concurrency} in flight`,
        rows: [
          {
            'exchanges/s': ((small.lat.length / small.ms) * 1000).toFixed(0),
            'p50 ms to receipt': percentile(small.lat, 50).toFixed(1),
            'p99 ms to receipt': percentile(small.lat, 99).toFixed(1),
            delivered: small.lat.length,
            failed: small.failed,
          },
        ],
        notes: ['Target: >= 500 small exchanges/s. Each one is consent-checked, fsynced to the outbox, sealed, relayed, opened, released to the inbox, receipted and logged on both ledgers.'],
      },
    ];
  } finally {
    await net.close();
    tmp.cleanup();
  }
}
