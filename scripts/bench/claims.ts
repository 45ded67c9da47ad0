// `npm run bench -- claims [--claims 1000] [--warmup 200] [--concurrency 32]`: insurance claims end to end between a
// hospital agent and an insurer agent (separate processes, through the relay): submit a FHIR Claim
// (R4 validation, payment consent, ledger entry, sealed message) until the hospital holds the insurer's
// verified, signed `queued` ClaimResponse; then the claims system's adjudication of every claim until the
// hospital holds each signed final response (docs/insurers.md). The first W claims (submitted and adjudicated) warm
// the processes up and are not counted; the client is node:http with keep-alive connections. Then the prescriptions section (scripts/bench/prescriptions.ts):
// accept+close per second, p50/p99, so this one command reports both figures the issue asks for.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLocalFederation, waitFor, type LocalFederation } from '../lib/federation.ts';
import type { BenchTable } from './types.ts';
import { run as runPrescriptions } from './prescriptions.ts';
import { cpuSecondsOfPid, httpJson, option, percentile } from './util.ts';

const DEFAULT_CLAIMS = 1000;
const DEFAULT_CONCURRENCY = 32;
/** Claims submitted and adjudicated first and not counted (the JIT warm-up of three processes). */
const DEFAULT_WARMUP = 200;
/**
 * How the client waits for a claim's response: by default a long poll (the submission with `Prefer: wait`, then
 * `GET /v1/claims/ID` with `If-None-Match` and `Prefer: wait`, answered at the claim's next change); `--poll MS`
 * asks every MS ms instead (each poll an API call the agents serve beside the claims; 25 was the bench's old way).
 */
const DEFAULT_POLL_MS = 0;
/** Seconds of each long poll (`Prefer: wait=N`). */
const LONG_POLL_S = 20;
/** Claims per second the issue asks for, end to end. */
const TARGET_PER_SECOND = 200;
const HOSPITAL = 'hospital';
const INSURER = 'insurer';
const PATIENT = 'SYN-000001';
const fixture = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`../fixtures/${name}.json`, import.meta.url)), 'utf8')) as Record<string, unknown>;

/** Runs `work(i)` for `from` <= i < `from` + n, `concurrency` at a time. */
async function pool(n: number, concurrency: number, work: (i: number) => Promise<void>, from = 0): Promise<void> {
  let next = from;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < from + n) await work(next++);
    }),
  );
}

/** See the module comment; then the prescriptions section (accept+close/s), which the issue asks this command to report too. */
export async function run(args: string[]): Promise<BenchTable[]> {
  const claims = await runClaims(args);
  // Its own options (--count, --in-process); a --concurrency given here applies to both.
  return [...claims, ...(await runPrescriptions(args))];
}

/** Claims end to end (see the module comment). */
async function runClaims(args: string[]): Promise<BenchTable[]> {
  const n = Number(option(args, 'claims') ?? DEFAULT_CLAIMS);
  const concurrency = Number(option(args, 'concurrency') ?? DEFAULT_CONCURRENCY);
  const warmup = Number(option(args, 'warmup') ?? DEFAULT_WARMUP);
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(concurrency) || concurrency < 1)
    throw new Error('--claims and --concurrency must be positive integers');
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error('--warmup must be a whole number >= 0');
  const dir = mkdtempSync(join(tmpdir(), 'hie-bench-claims-'));
  let fed: LocalFederation | undefined;
  const keepAlive = new Agent({ keepAlive: true });
  try {
    fed = await startLocalFederation({ dir, hospitals: [HOSPITAL, INSURER], roles: { [INSURER]: 'insurer' }, logLevel: 'warn' });
    const started = fed;
    /** The hospital's or insurer's API over keep-alive connections (JSON answers parsed). */
    const api = (member: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
      httpJson(`${started.apis[member]}${path}`, { ...init, headers: { authorization: `Bearer ${started.tokens[member]}`, ...init.headers } }, keepAlive);
    await waitFor('the member directory', async () => ((await api(HOSPITAL, '/v1/federation')).body['directory'] ? true : undefined));
    const consent = await api(HOSPITAL, '/v1/consents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        patientId: PATIENT,
        grantee: INSURER,
        purposes: ['HPAYMT'],
        scope: ['Claim', 'Coverage'],
        validUntil: new Date(Date.now() + 86_400_000).toISOString(),
      }),
    });
    if (consent.status !== 201) throw new Error(`consent refused: ${JSON.stringify(consent.body)}`);
    // CPU seconds of each process (agents and relay), read before and after each step: what a claim costs,
    // whatever else the machine is running (the claims/s figure depends on that, this one much less).
    const procs = fed.procs.filter((p) => p.child.pid !== undefined);
    const cpu = (): number[] => procs.map((p) => cpuSecondsOfPid(p.child.pid as number));
    const cpuPerClaim = (before: number[], after: number[]): Record<string, string> =>
      Object.fromEntries(procs.map((p, i) => [`${p.name} CPU ms/claim`, ((1000 * ((after[i] ?? 0) - (before[i] ?? 0))) / n).toFixed(1)]));
    const claim = fixture('claim');
    const coverage = fixture('coverage');
    const pollMs = Number(option(args, 'poll') ?? DEFAULT_POLL_MS);
    if (!Number.isInteger(pollMs) || pollMs < 0) throw new Error('--poll must be a whole number of milliseconds (0: long poll)');
    const statusOf = async (id: string): Promise<string> => String((await api(HOSPITAL, `/v1/claims/${id}`)).body['status']);
    /** Waits until the hospital holds claim `id` in `status` (from `seen`, its state when last answered). */
    const awaitStatus = async (id: string, status: string, seen: { status: string; etag?: string | null }): Promise<void> => {
      if (seen.status === status) return;
      if (pollMs > 0) {
        for (;;) {
          await new Promise((r) => setTimeout(r, pollMs));
          if ((await statusOf(id)) === status) return;
        }
      }
      let etag = seen.etag;
      for (;;) {
        const res = await api(HOSPITAL, `/v1/claims/${id}`, { headers: { prefer: `wait=${LONG_POLL_S}`, ...(etag ? { 'if-none-match': etag } : {}) } });
        if (res.status === 200 && String(res.body['status']) === status) return;
        if (res.status !== 200 && res.status !== 304) throw new Error(`claim ${id} answered ${res.status}`);
        const e = res.headers['etag'];
        etag = typeof e === 'string' ? e : null;
      }
    };
    const ids: string[] = [];
    /** Submits claim `i` and waits for its signed queued response; its time in ms. */
    const submit = async (i: number): Promise<number> => {
      const t = performance.now();
      const body = {
        insurer: INSURER,
        patientId: PATIENT,
        consentId: consent.body['id'],
        claim: { ...claim, identifier: [{ system: 'urn:bench:claim', value: `B-${i}` }] },
        coverage,
      };
      const res = await api(HOSPITAL, '/v1/claims', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(pollMs > 0 ? {} : { prefer: `wait=${LONG_POLL_S}` }) },
        body: JSON.stringify(body),
      });
      if (res.status !== 202) throw new Error(`claim ${i} answered ${res.status}: ${JSON.stringify(res.body)}`);
      const id = res.body['id'] as string;
      ids[i] = id;
      await awaitStatus(id, 'queued', { status: String(res.body['status']) });
      return performance.now() - t;
    };
    /** The claims system adjudicates claim `i` (complete); waits until the hospital holds the final response. */
    const adjudicate = async (i: number): Promise<number> => {
      const t = performance.now();
      const id = ids[i] as string;
      const res = await api(INSURER, `/v1/claims/${id}/response`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"outcome":"complete"}',
      });
      if (res.status !== 200) throw new Error(`adjudication of ${id} answered ${res.status}: ${JSON.stringify(res.body)}`);
      await awaitStatus(id, 'complete', { status: 'queued' });
      return performance.now() - t;
    };
    // Warm-up, not counted: claims 0 .. warmup-1, submitted then adjudicated.
    await pool(warmup, concurrency, async (i) => void (await submit(i)));
    await pool(warmup, concurrency, async (i) => void (await adjudicate(i)));
    const submitMs: number[] = [];
    const cpu0 = cpu();
    const t0 = performance.now();
    await pool(n, concurrency, async (i) => void submitMs.push(await submit(i)), warmup);
    const submitS = (performance.now() - t0) / 1000;
    const cpu1 = cpu();
    const respondMs: number[] = [];
    const t1 = performance.now();
    await pool(n, concurrency, async (i) => void respondMs.push(await adjudicate(i)), warmup);
    const respondS = (performance.now() - t1) / 1000;
    const cpu2 = cpu();
    const row = (what: string, ms: number[], s: number, cpuMs: Record<string, string>): Record<string, string | number> => ({
      step: what,
      claims: n,
      'claims/s': (n / s).toFixed(0),
      'p50 ms': percentile(ms, 50).toFixed(1),
      'p99 ms': percentile(ms, 99).toFixed(1),
      ...cpuMs,
    });
    const submitRate = n / submitS;
    const respondRate = n / respondS;
    return [
      {
        title: `claims: hospital agent -> relay -> insurer agent and back, ${n} claims, ${concurrency} at a time`,
        rows: [
          row("submit until the hospital holds the insurer's signed queued ClaimResponse", submitMs, submitS, cpuPerClaim(cpu0, cpu1)),
          row('adjudicate (complete) until the hospital holds the signed final ClaimResponse', respondMs, respondS, cpuPerClaim(cpu1, cpu2)),
        ],
        notes: [
          'Each claim: R4 validation of the Claim and Coverage, the HPAYMT consent check, claim.submitted / claim.received / claim.responded ledger entries (and the benefit as a payment.charged on both sides), a JWE of a JWS each way.',
          pollMs > 0
            ? `Latencies include the client polling GET /v1/claims/ID every ${pollMs} ms (--poll) for the response to arrive; so does the hospital's CPU (the longer a claim takes, the more polls it serves).`
            : `The client waits for each response with a long poll (the submission with Prefer: wait=${LONG_POLL_S}, then GET /v1/claims/ID with If-None-Match and Prefer: wait), answered at the claim's change; --poll MS polls every MS ms instead.`,
          'CPU ms/claim: user + system CPU of each process during the step (from /proc), divided by the claims; it depends less on what else the machine runs than claims/s does.',
          `${warmup} claims were submitted and adjudicated first and are not counted (warm-up); the client is node:http with keep-alive connections.`,
        ],
        summary: [
          {
            metric: 'claims submitted end to end (signed queued response back)',
            value: `${submitRate.toFixed(0)}/s`,
            target: `>= ${TARGET_PER_SECOND}/s`,
            met: submitRate >= TARGET_PER_SECOND,
          },
          {
            metric: 'claims adjudicated end to end (signed final response back)',
            value: `${respondRate.toFixed(0)}/s`,
            target: `>= ${TARGET_PER_SECOND}/s`,
            met: respondRate >= TARGET_PER_SECOND,
          },
        ],
      },
    ];
  } finally {
    keepAlive.destroy();
    await fed?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
