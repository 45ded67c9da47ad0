// `npm run bench -- agent [--size 2GiB] [--rounds 3] [--small 3000] [--small-rounds 3] [--warmup 1000] [--concurrency 64] [--bundle file]
//   [--validations 2000] [--validation-only]`:
// end-to-end exchange throughput (agent API in, relay, agent inbox out, receipt back) beside the relay-only
// figure for the same bytes in the same run, the rate of small exchanges (the issue's 2 KB FHIR Bundle
// by default, or the JSON Bundle in `--bundle`) with time to receipt, and the time FHIR R4 validation takes
// per small Bundle (p50/p99; `--validation-only` measures that alone, in seconds, without a federation).
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { parsePatientId } from '../../hospital-agent/consent/patient.ts';
import { DEFAULT_VALIDATION_THREADS, loadR4Definitions, validateFhirBundle } from '../../hospital-agent/fhir/index.ts';
import { patternStream } from '../../test/support/data.ts';
import { rawTransfer, type IdFiles } from './relay.ts';
import { startLocalFederation, waitFor, type LocalFederation } from '../lib/federation.ts';
import type { BenchTable } from './types.ts';
import { cpuSecondsOfPid, httpJson, mbps, mib, option, parseSize, percentile, rssOfPid } from './util.ts';

/** End to end against relay-only in the same run (issue #27's acceptance; it was 0.50 before). */
const E2E_TARGET = 0.7;
/**
 * Small exchanges per second and their p99 time to receipt (issue #27's acceptance; it was >= 500/s before). The
 * issue set the rate on a machine where that day's code gave about 1,000/s: on another machine, compare against
 * that code run in the same sitting.
 */
const SMALL_TARGET = { rate: 1500, p99Ms: 100 };

/** Relay-only / end-to-end pairs run for the large exchange; the median ratio is reported. */
const DEFAULT_ROUNDS = 3;
/** Rounds of small exchanges (after the warm-up); the median rate is reported. */
const DEFAULT_SMALL_ROUNDS = 3;

/** The small exchange: a 2 KB FHIR Bundle (a patient, a condition, a blood pressure panel), as the issue sizes it. */
const SMALL_BUNDLE = fileURLToPath(new URL('../fixtures/small-bundle.json', import.meta.url));
/** The small bundle's patient: the agent reads the patient from a Bundle's content and refuses a Bundle about another. */
const BENCH_PATIENT = 'SYN-000001';

/** Timed validations of the small Bundle (after as many untimed ones, up to 500). */
const DEFAULT_VALIDATIONS = 2000;

/**
 * What validating one small Bundle costs the submitting agent, timed in
 * this process: the call the API makes on every FHIR submission (shape, R4
 * profiles and invariants, references, the patient check).
 */
function validationTable(bundle: Buffer, n: number): BenchTable {
  const t0 = performance.now();
  loadR4Definitions();
  const loadMs = performance.now() - t0;
  const patient = parsePatientId(BENCH_PATIENT);
  for (let i = 0; i < Math.min(500, n); i += 1) validateFhirBundle(bundle, { patient });
  const ms: number[] = [];
  const cpu = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < n; i += 1) {
    const t = performance.now();
    validateFhirBundle(bundle, { patient });
    ms.push(performance.now() - t);
  }
  const total = performance.now() - start;
  const used = process.cpuUsage(cpu);
  const cpuMs = (used.user + used.system) / 1000 / n;
  const kb = (bundle.length / 1024).toFixed(1);
  const p99 = percentile(ms, 99);
  return {
    title: `agent: FHIR R4 validation of one ${kb} KB Bundle (R4 StructureDefinitions, invariants, required codes, references, patient), ${n} runs in one process`,
    rows: [
      {
        'p50 ms': percentile(ms, 50).toFixed(2),
        'p99 ms': p99.toFixed(2),
        'mean ms': (total / n).toFixed(2),
        'CPU ms per Bundle': cpuMs.toFixed(2),
        'Bundles/s per core (by CPU)': (1000 / cpuMs).toFixed(0),
      },
    ],
    notes: [
      'Times are wall-clock per call (p50, p99, mean) and CPU time (user + system) per call: on a shared machine the wall-clock tail is mostly time spent waiting for a core.',
      `The R4 definitions are indexed once, at agent start (${loadMs.toFixed(0)} ms in this process, before the runs); each submission of a FHIR Bundle then pays the time above on the sending agent, inside the small-exchange figures.`,
    ],
    summary: [
      { metric: `FHIR R4 validation per ${kb} KB Bundle, p50 / p99`, value: `${percentile(ms, 50).toFixed(2)} / ${p99.toFixed(2)} ms`, target: 'reported' },
    ],
  };
}

/**
 * The floor an agent's CPU per GiB is compared to: one process doing the work every byte must get
 * (AES-256-GCM, SHA-256, a write of the same bytes, fsynced at the end) on `size` bytes in 1 MiB chunks.
 * CPU seconds (user + system) per GiB and the wall time.
 */
function floorPerGiB(dir: string, size: number): { cpuPerGiB: number; ms: number } {
  const chunk = randomBytes(1024 * 1024);
  const file = join(dir, 'floor.bin');
  const fd = openSync(file, 'w');
  const cpu = process.cpuUsage();
  const start = performance.now();
  const cipher = createCipheriv('aes-256-gcm', randomBytes(32), randomBytes(12));
  const hash = createHash('sha256');
  for (let done = 0; done < size; done += chunk.length) {
    const sealed = cipher.update(chunk);
    hash.update(sealed);
    writeSync(fd, sealed);
  }
  cipher.final();
  hash.digest();
  fsyncSync(fd);
  closeSync(fd);
  const ms = performance.now() - start;
  const used = process.cpuUsage(cpu);
  rmSync(file, { force: true });
  return { cpuPerGiB: (used.user + used.system) / 1e6 / (size / 2 ** 30), ms };
}

/** CPU seconds each process used in one lap, and those of its main thread (JavaScript, crypto, sockets) alone. */
type CpuLap = Array<{ name: string; seconds: number; main: number }>;

/** One measured round of small exchanges. */
interface SmallRound {
  ms: number;
  lat: number[];
  failed: number;
  cpu: CpuLap;
  batches: { count: number; exchanges: number };
  rate: number;
}

/** CPU time used by each federation process and by this bench process (which plays the EHR clients), between laps. */
function cpuMeter(fed: LocalFederation): { lap(): CpuLap } {
  const read = (): CpuLap => {
    const own = process.cpuUsage();
    return [
      ...fed.procs.map((p) => ({
        name: p.name,
        seconds: cpuSecondsOfPid(p.child.pid as number),
        main: cpuSecondsOfPid(p.child.pid as number, p.child.pid as number),
      })),
      { name: 'bench client', seconds: (own.user + own.system) / 1e6, main: 0 },
    ];
  };
  let last = read();
  return {
    lap() {
      const now = read();
      const used = now.map(({ name, seconds, main }, i) => ({ name, seconds: seconds - (last[i]?.seconds ?? 0), main: main - (last[i]?.main ?? 0) }));
      last = now;
      return used;
    },
  };
}

/** `relay 1.2, myongji 3.4, ...` (seconds), or per item in ms when `items` is given. */
function formatCpu(lap: CpuLap, items?: number): string {
  return lap
    .map(({ name, seconds }) => (items === undefined ? `${name} ${seconds.toFixed(1)}` : `${name} ${((seconds / Math.max(1, items)) * 1000).toFixed(2)} ms`))
    .join(', ');
}

/** `myongji 1.20 ms, severance 0.50 ms`: the agents' main-thread CPU per item. */
function mainPerExchange(lap: CpuLap, items: number): string {
  return lap
    .filter(({ name }) => name !== 'relay' && name !== 'bench client')
    .map(({ name, main }) => `${name} ${((main / Math.max(1, items)) * 1000).toFixed(2)} ms`)
    .join(', ');
}

/** Exchanges per second the sending agent's main thread would allow at full use of one core. */
function mainCeiling(lap: CpuLap, items: number): string {
  const main = lap.find(({ name }) => name === 'myongji')?.main ?? 0;
  return main > 0 ? (items / main).toFixed(0) : '-';
}

/** Where the agents validate FHIR Bundles (`limits.fhirValidationThreads`, as the bench's environment sets it). */
function validationThreads(): string {
  const set = process.env['HIE_AGENT_LIMITS_FHIR_VALIDATION_THREADS'];
  const n = set === undefined ? DEFAULT_VALIDATION_THREADS : Number(set);
  return n === 0 ? 'the main thread' : `${n} worker thread(s) (limits.fhirValidationThreads${set === undefined ? ' unset: the default' : ''})`;
}

async function grant(fed: LocalFederation, from: string, to: string, patient: string): Promise<string> {
  const res = await fed.api(from, '/v1/consents', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ patientId: patient, grantee: to, validUntil: new Date(Date.now() + 86_400_000).toISOString() }),
  });
  if (res.status !== 201) throw new Error(`consent refused: ${JSON.stringify(res.body)}`);
  return res.body['id'] as string;
}

/**
 * Raw transfer through the same relay process between two extra agent identities, each client in its own
 * process with the agent's node flags (as `npm run bench -- relay` runs them): the relay-only figure, and the
 * clients' CPU-seconds. (Until 2026-12-07 both clients ran in this bench process, whose one thread they
 * saturated: that measured the bench more than the relay, and flattered the ratio.)
 */
async function relayOnly(fed: LocalFederation, size: number): Promise<{ ms: number; clients: number }> {
  const out = join(fed.dir, 'bench-clients');
  const files = (id: string): { id: string; files: IdFiles } => {
    const f = fed.ca.issueAgent({ id, outDir: out, renew: true });
    return { id, files: { cert: f.certPath, key: f.keyPath, ca: f.caPath } };
  };
  const t = await rawTransfer(`wss://localhost:${fed.relayPort}`, files('bench-a'), files('bench-b'), size);
  return { ms: t.ms, clients: t.sender + t.receiver };
}

async function finished(fed: LocalFederation, from: string, id: string): Promise<void> {
  await waitFor(
    `exchange ${id}`,
    async () => {
      const x = (await fed.api(from, `/v1/exchanges/${id}`)).body;
      if (x['status'] === 'failed') throw new Error(`exchange failed: ${JSON.stringify(x['failure'])}`);
      return x['status'] === 'delivered' ? true : undefined;
    },
    3_600_000,
  );
}

/**
 * `POST /v1/exchanges` to the sending agent with node:http (a lean client, like an EHR's or curl; fetch
 * costs several times more CPU per request and per streamed byte on this machine, which would be taken
 * from the agents sharing its cores). The body is a buffer or a stream of `length` bytes.
 */
function post(
  fed: LocalFederation,
  body: Buffer | { stream: Readable; length: number },
  headers: Record<string, string>,
  agent?: Agent,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return httpJson(
    `${fed.apis['myongji']}/v1/exchanges`,
    { method: 'POST', headers: { ...headers, authorization: `Bearer ${fed.tokens['myongji']}` }, body },
    agent,
  );
}

/** One large exchange through the agents' API, timed from the first byte posted to the verified receipt; the delivered copy is deleted after. */
async function endToEnd(fed: LocalFederation, size: number, consent: string): Promise<{ ms: number; acknowledgedMs: number }> {
  const started = performance.now();
  const res = await post(
    fed,
    { stream: patternStream(size, 5, { hash: false }).stream, length: size },
    { 'content-type': 'application/octet-stream', 'hie-recipient': 'severance', 'hie-patient-id': BENCH_PATIENT, 'hie-consent-id': consent },
  );
  if (res.status !== 202) throw new Error(`POST failed: ${res.status} ${JSON.stringify(res.body)}`);
  const acknowledgedMs = performance.now() - started;
  const id = res.body['id'] as string;
  await finished(fed, 'myongji', id);
  const ms = performance.now() - started;
  await fed.api('severance', `/v1/inbox/${id}`, { method: 'DELETE' });
  return { ms, acknowledgedMs };
}

/** One round of the large-exchange comparison: relay-only, then end to end, with each phase's CPU. */
interface Round {
  relayMs: number;
  e2eMs: number;
  acknowledgedMs: number;
  relayCpu: CpuLap;
  e2eCpu: CpuLap;
}

/** GET on the sending agent with node:http and keep-alive (fetch costs the shared cores several times more). */
function getText(fed: LocalFederation, path: string, agent?: Agent): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const req = request(`${fed.apis['myongji']}${path}`, { agent }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Batch envelopes the sending agent sent so far and the exchanges they carried, from its metrics. */
async function batches(fed: LocalFederation): Promise<{ count: number; exchanges: number }> {
  const text = await getText(fed, '/metrics');
  const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? 0);
  return { count: value('hie_agent_batch_exchanges_count'), exchanges: value('hie_agent_batch_exchanges_sum') };
}

/** How often the client reads the sending agent's unfinished count (`/healthz`). */
const POLL_MS = 25;

/**
 * Many small FHIR exchanges, up to `concurrency` unfinished: the client (8 connections, like an EHR's
 * pool) posts while the sending agent's `/healthz` counts fewer unfinished exchanges than that, and waits
 * for the next count otherwise. Afterwards, time to receipt comes from each exchange's own record
 * (accepted -> delivered).
 */
async function smallExchanges(
  fed: LocalFederation,
  bundle: Buffer,
  count: number,
  concurrency: number,
  consent: string,
  cpu: { lap(): CpuLap },
): Promise<{ ms: number; lat: number[]; failed: number; cpu: CpuLap; batches: { count: number; exchanges: number } }> {
  const batchesBefore = await batches(fed);
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 8 });
  const pollAgent = new Agent({ keepAlive: true, maxSockets: 1 });
  const ids: string[] = [];
  const t0 = Date.now();
  let posted = 0;
  let answered = 0;
  let unfinished = 0;
  let done = false;
  let wake: Array<() => void> = [];
  const nextCount = (): Promise<void> => new Promise((resolve) => wake.push(resolve));
  const worker = async (): Promise<void> => {
    while (posted < count) {
      // Posts not answered yet are not in the agent's count.
      if (unfinished + (posted - answered) >= concurrency) {
        await nextCount();
        continue;
      }
      posted += 1;
      const res = await post(
        fed,
        bundle,
        { 'content-type': 'application/fhir+json', 'hie-recipient': 'severance', 'hie-patient-id': BENCH_PATIENT, 'hie-consent-id': consent },
        keepAlive,
      );
      if (res.status !== 202) throw new Error(`POST failed: ${res.status} ${JSON.stringify(res.body)}`);
      answered += 1;
      unfinished += 1;
      ids.push(res.body['id'] as string);
    }
  };
  const poller = (async () => {
    while (!done) {
      const health = JSON.parse(await getText(fed, '/healthz', pollAgent)) as { outbox: number };
      unfinished = health.outbox;
      const woken = wake;
      wake = [];
      for (const w of woken) w();
      if (answered === count && unfinished === 0) break;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  })();
  await Promise.all(Array.from({ length: 8 }, worker));
  await poller;
  done = true;
  keepAlive.destroy();
  pollAgent.destroy();
  // CPU of the exchanges themselves, not of reading back their records below.
  const used = cpu.lap();
  const batchesAfter = await batches(fed);
  const lat: number[] = [];
  let failed = 0;
  let lastDone = t0;
  for (const id of ids) {
    const x = (await fed.api('myongji', `/v1/exchanges/${id}`)).body as { status: string; createdAt: string; updatedAt: string };
    if (x.status !== 'delivered') {
      failed += 1;
      continue;
    }
    lat.push(Date.parse(x.updatedAt) - Date.parse(x.createdAt));
    lastDone = Math.max(lastDone, Date.parse(x.updatedAt));
  }
  return {
    ms: lastDone - t0,
    lat,
    failed,
    cpu: used,
    batches: { count: batchesAfter.count - batchesBefore.count, exchanges: batchesAfter.exchanges - batchesBefore.exchanges },
  };
}

export async function run(args: string[]): Promise<BenchTable[]> {
  const size = parseSize(option(args, 'size') ?? '2GiB');
  const count = Number(option(args, 'small') ?? 3000);
  const warmup = Number(option(args, 'warmup') ?? 1000);
  const concurrency = Number(option(args, 'concurrency') ?? 64);
  const bundle = readFileSync(option(args, 'bundle') ?? SMALL_BUNDLE);
  const roundCount = Math.max(1, Number(option(args, 'rounds') ?? DEFAULT_ROUNDS));
  const smallRoundCount = Math.max(1, Number(option(args, 'small-rounds') ?? DEFAULT_SMALL_ROUNDS));
  const validation = validationTable(bundle, Math.max(1, Number(option(args, 'validations') ?? DEFAULT_VALIDATIONS)));
  if (args.includes('--validation-only')) return [validation];
  const dir = mkdtempSync(join(tmpdir(), 'hie-bench-agent-'));
  const fed = await startLocalFederation({
    dir,
    hospitals: ['myongji', 'severance'],
    logLevel: 'warn',
    tariff: { currency: 'EUR', perTransfer: 1, perGiB: 1 },
  });
  try {
    const consent = await grant(fed, 'myongji', 'severance', BENCH_PATIENT);
    const cpu = cpuMeter(fed);
    // Small exchanges first, on agents that have not just streamed gigabytes (whose heaps and disk are still
    // busy with them). A warm-up round comes before the measured one, not counted: the agents run for days,
    // and what matters is their steady state, not V8 compiling the small-exchange code paths.
    await smallExchanges(fed, bundle, warmup, concurrency, consent, cpu);
    // Rounds, as for the large exchange: this shared machine's speed drifts by 10-15 % within minutes, so
    // one round can land in a slow or a fast spell; the median round is the figure.
    const smallRounds: SmallRound[] = [];
    for (let r = 0; r < smallRoundCount; r += 1) {
      cpu.lap();
      const x = await smallExchanges(fed, bundle, count, concurrency, consent, cpu);
      smallRounds.push({ ...x, rate: (x.lat.length / x.ms) * 1000 });
    }
    const smallRate = percentile(
      smallRounds.map((x) => x.rate),
      50,
    );
    const small = smallRounds.find((x) => x.rate === smallRate) as SmallRound;
    const smallCpu = small.cpu;
    execFileSync('sync');
    // The floor once before the rounds too: its write then lands on memory the machine has not written for a
    // while, as the agents' writes in the rounds do. On a VM that hands free memory back to its host (this
    // one does) the first write into such pages costs several times a rewrite (docs/performance.md, Agent).
    const floorBefore = floorPerGiB(dir, size);
    // Several rounds, each relay-only then end to end: on a shared machine one pair of runs can land in a slow spell.
    const rounds: Round[] = [];
    for (let r = 0; r < roundCount; r += 1) {
      cpu.lap();
      const { ms: relayMs, clients } = await relayOnly(fed, size);
      const relayCpu = [...cpu.lap(), { name: 'raw clients (2 processes)', seconds: clients, main: 0 }];
      const { ms: e2eMs, acknowledgedMs } = await endToEnd(fed, size, consent);
      rounds.push({ relayMs, e2eMs, acknowledgedMs, relayCpu, e2eCpu: cpu.lap() });
    }
    const rss = await Promise.all(fed.procs.map(async (p) => `${p.name} ${mib(await rssOfPid(p.child.pid as number))}`));
    const ratios = rounds.map((r) => r.relayMs / r.e2eMs);
    const ratio = percentile(ratios, 50);
    // The median round (the lower middle one of an even count) is the one described in detail.
    const mid = rounds[ratios.indexOf(ratio)] as Round;
    const floor = floorPerGiB(dir, size);
    const perGiB = (name: string, part: 'seconds' | 'main' = 'seconds'): number => ((mid.e2eCpu.find((c) => c.name === name)?.[part] ?? 0) * 2 ** 30) / size;
    const agentFloor = ['myongji', 'severance'].map(
      (name) =>
        `${name} ${perGiB(name).toFixed(2)} s/GiB (${(perGiB(name) / floor.cpuPerGiB).toFixed(1)} x; main thread ${perGiB(name, 'main').toFixed(2)}, other threads ${(perGiB(name) - perGiB(name, 'main')).toFixed(2)})`,
    );
    return [
      {
        title: `agent: end-to-end exchange of ${mib(size)} MiB (API in -> outbox -> seal -> relay -> open -> inbox -> receipt) vs relay-only, same run, ${rounds.length} round(s)`,
        rows: rounds.flatMap((r, i) => [
          {
            round: i + 1,
            path: 'relay only (raw transfer through the relay process between two clients, each in its own process)',
            'MB/s': mbps(size, r.relayMs),
            seconds: (r.relayMs / 1000).toFixed(1),
            ratio: '',
          },
          {
            round: i + 1,
            path: 'end to end through both agent processes',
            'MB/s': mbps(size, r.e2eMs),
            seconds: (r.e2eMs / 1000).toFixed(1),
            ratio: (r.relayMs / r.e2eMs).toFixed(2),
          },
        ]),
        notes: [
          `Ratio end-to-end / relay-only, median of ${rounds.length} round(s): ${ratio.toFixed(2)} (target >= ${E2E_TARGET.toFixed(2)}; rounds: ${ratios.map((x) => x.toFixed(2)).join(', ')}). Each round runs relay-only, then end to end, back to back. Relay and the two agents are separate processes (as deployed); RSS after the run (MiB): ${rss.join(', ')}.`,
          `CPU seconds (user + system) per process in the median round, relay-only: ${formatCpu(mid.relayCpu)}; end to end: ${formatCpu(mid.e2eCpu)}. Both runs share the machine's ${cpus().length} cores.`,
          "Relay-only: a sending and a receiving RelayClient, each in a process of its own with the agent's node flags (as `npm run bench -- relay` runs them); until 2026-12-07 both ran in the bench process, whose one thread they saturated, so that baseline measured the bench more than the relay.",
          `CPU seconds per GiB end to end beside the floor (one process doing AES-256-GCM + SHA-256 + a fsynced write of the same ${mib(size)} MiB: ${floor.cpuPerGiB.toFixed(2)} s/GiB, ${mbps(size, floor.ms)} MB/s, right after the rounds; ${floorBefore.cpuPerGiB.toFixed(2)} s/GiB before them): ${agentFloor.join(', ')}; target <= 2.5 x the floor (the one after the rounds). The other threads are libuv's (the file writes and fsyncs) and V8's compiler.`,
          'The end-to-end time includes the upload into the sending agent (stored and fsynced before it is acknowledged), sealing, the relay, opening into quarantine, release to the inbox and the signed receipt.',
          `The sending agent seals and sends while the upload arrives (the envelope's signed trailer waits until the body is stored and logged): in the median round the upload was acknowledged after ${(mid.acknowledgedMs / 1000).toFixed(1)} s, the receipt verified ${((mid.e2eMs - mid.acknowledgedMs) / 1000).toFixed(1)} s later.`,
        ],
        summary: [
          {
            metric: `agent end-to-end vs relay-only (${mib(size)} MiB)`,
            value: ratio.toFixed(2),
            target: `>= ${E2E_TARGET.toFixed(2)}`,
            met: ratio >= E2E_TARGET,
          },
          {
            metric: 'agent CPU per GiB / floor (the busier agent)',
            value: (Math.max(perGiB('myongji'), perGiB('severance')) / floor.cpuPerGiB).toFixed(1),
            target: '<= 2.5',
            met: Math.max(perGiB('myongji'), perGiB('severance')) / floor.cpuPerGiB <= 2.5,
          },
        ],
      },
      {
        title: `agent: ${smallRounds.length} round(s) of ${count} small exchanges (${(bundle.length / 1024).toFixed(1)} KB FHIR Bundle), up to ${concurrency} unfinished, after ${warmup} not counted`,
        rows: smallRounds.map((x, i) => ({
          round: i + 1,
          'exchanges/s': x.rate.toFixed(0),
          'p50 ms to receipt': percentile(x.lat, 50).toFixed(0),
          'p99 ms to receipt': percentile(x.lat, 99).toFixed(0),
          delivered: x.lat.length,
          failed: x.failed,
          'batch size': (x.batches.exchanges / Math.max(1, x.batches.count)).toFixed(1),
        })),
        summary: [
          {
            metric: `agent small exchanges/s (${(bundle.length / 1024).toFixed(1)} KB FHIR), median of ${smallRounds.length} round(s)`,
            value: smallRate.toFixed(0),
            target: `>= ${SMALL_TARGET.rate}`,
            met: smallRate >= SMALL_TARGET.rate,
          },
          {
            metric: 'agent small exchanges, p99 ms to receipt (the median round)',
            value: percentile(small.lat, 99).toFixed(0),
            target: `<= ${SMALL_TARGET.p99Ms}`,
            met: percentile(small.lat, 99) <= SMALL_TARGET.p99Ms,
          },
        ],
        notes: [
          `Median of ${smallRounds.length} round(s): ${smallRate.toFixed(0)} exchanges/s (rounds: ${smallRounds.map((x) => x.rate.toFixed(0)).join(', ')}).`,
          `CPU seconds (user + system) per process in the median round: ${formatCpu(smallCpu)}; per exchange: ${formatCpu(smallCpu, small.lat.length + small.failed)}.`,
          `Of that, the main thread of each agent per exchange: ${mainPerExchange(smallCpu, small.lat.length + small.failed)}. The sending agent's main thread is the one every exchange passes through: on a machine of its own (as deployed, the relay and the recipient elsewhere) it would allow at most ${mainCeiling(smallCpu, small.lat.length + small.failed)} exchanges/s. FHIR validation runs in ${validationThreads()}.`,
          `In the median round the sending agent sealed them into ${small.batches.count} batch envelopes, ${(small.batches.exchanges / Math.max(1, small.batches.count)).toFixed(1)} exchanges each on average (a batch takes whatever is due when a send slot frees up: nothing waits to fill one).`,
          `Target: >= ${SMALL_TARGET.rate} small exchanges/s with p99 <= ${SMALL_TARGET.p99Ms} ms to receipt, on a machine where the code of issue 27's day gave about 1,000/s. Time to receipt is from acceptance by the API to the verified receipt, on the sending agent's clock. Each exchange is consent-checked, fsynced to the outbox, sealed, relayed, opened, released to the inbox, receipted and logged on both ledgers (plus a charge).`,
        ],
      },
      validation,
    ];
  } finally {
    await fed.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
