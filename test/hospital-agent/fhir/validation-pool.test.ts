import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { parsePatientId } from '../../../hospital-agent/consent/patient.ts';
import { AgentError } from '../../../hospital-agent/errors.ts';
import {
  BUSY_THREAD_BYTES,
  DEFAULT_VALIDATION_THREADS,
  FhirValidationPool,
  fhirValidator,
  MAIN_THREAD_BUNDLE_BYTES,
  checkOf,
  mainThreadValidator,
  MAX_RESTARTS_PER_MINUTE,
  startValidationWorker,
} from '../../../hospital-agent/fhir/validation-pool.ts';
import { parseAgentConfig } from '../../../hospital-agent/config.ts';

const SMALL = readFileSync(new URL('../../../scripts/fixtures/small-bundle.json', import.meta.url));
const PATIENT = parsePatientId('SYN-000001');
const OTHER = parsePatientId('SYN-999999');
const parsed = JSON.parse(SMALL.toString('utf8')) as { entry: Array<{ resource: Record<string, unknown> }> };
/** The small Bundle with an Observation status R4 does not have (a required binding): 422 ERR_FHIR_INVALID. */
const BAD_CODE = Buffer.from(
  JSON.stringify({
    ...parsed,
    entry: parsed.entry.map((e) => (e.resource['resourceType'] === 'Observation' ? { ...e, resource: { ...e.resource, status: 'sort-of-final' } } : e)),
  }),
);
const NOT_JSON = Buffer.from('{"resourceType": "Bundle",');
/** The small Bundle with 2,000 more blood-pressure Observations: a Bundle whose validation takes a while. */
const LARGE = Buffer.from(
  JSON.stringify({
    ...parsed,
    entry: [
      ...parsed.entry,
      ...Array.from({ length: 2000 }, (_, i) => ({
        fullUrl: `urn:uuid:7d3f1c8e-0000-4000-8000-${String(1_000_000 + i).padStart(12, '0')}`,
        resource: { ...(parsed.entry[2]?.resource ?? {}), id: `synthetic-observation-${i + 2}` },
      })),
    ],
  }),
);

/** What the main thread answers for `bytes`: its kinds and entries, or the error's code, status, message and issues. */
function onMainThread(bytes: Buffer, patient = PATIENT): unknown {
  try {
    return { check: checkOf(bytes, patient) };
  } catch (err) {
    const e = err as AgentError;
    return { error: [e.code, e.status, e.message, e.issues] };
  }
}

async function viaPool(pool: FhirValidationPool, bytes: Buffer, patient = PATIENT): Promise<unknown> {
  try {
    return { check: await pool.check(bytes, patient) };
  } catch (err) {
    expect(err).to.be.instanceOf(AgentError);
    const e = err as AgentError;
    return { error: [e.code, e.status, e.message, e.issues] };
  }
}

/** A pool whose threads are recorded, with every answer each one posted. */
function recordedPool(threads: number, spawn?: () => Worker): { pool: FhirValidationPool; workers: Worker[]; answeredBy: Map<number, Worker> } {
  const workers: Worker[] = [];
  const answeredBy = new Map<number, Worker>();
  const make = spawn ?? startValidationWorker;
  const pool = new FhirValidationPool(threads, undefined, () => {
    const w = make();
    workers.push(w);
    w.on('message', (m: { id: number }) => answeredBy.set(m.id, w));
    return w;
  });
  return { pool, workers, answeredBy };
}

async function until(check: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('FHIR validation threads', function () {
  this.timeout(60_000);

  it('answers as the main thread does: the kinds and entries of a valid Bundle, the same 400 and 422 errors with the same issues', async function () {
    const { pool, answeredBy, workers } = recordedPool(1);
    try {
      const cases: Array<[Buffer, ReturnType<typeof parsePatientId>]> = [
        [SMALL, PATIENT],
        [BAD_CODE, PATIENT],
        [SMALL, OTHER],
        [NOT_JSON, PATIENT],
      ];
      for (const [bytes, patient] of cases) expect(await viaPool(pool, bytes, patient)).to.deep.equal(onMainThread(bytes, patient));
      expect(onMainThread(SMALL), 'the valid case').to.have.nested.property('check.entries', 3);
      expect(onMainThread(BAD_CODE)).to.have.nested.property('error[0]', 'ERR_FHIR_INVALID');
      expect(onMainThread(SMALL, OTHER)).to.have.nested.property('error[1]', 422);
      expect(onMainThread(NOT_JSON)).to.have.nested.property('error[0]', 'ERR_INVALID_FHIR');
      // Every answer came from the thread, not from a fallback on this one.
      expect([...answeredBy.values()]).to.have.length(cases.length);
      expect(new Set(answeredBy.values())).to.deep.equal(new Set(workers));
    } finally {
      await pool.close();
    }
  });

  it('leaves the main thread free while a large Bundle is validated (it runs a later turn before the answer)', async function () {
    const { pool } = recordedPool(1);
    try {
      await pool.check(SMALL, PATIENT); // the thread is up
      let turned = false;
      setImmediate(() => (turned = true));
      const check = await pool.check(LARGE, PATIENT);
      expect(turned, 'a turn of the event loop ran during the validation').to.equal(true);
      expect(check).to.deep.equal(checkOf(LARGE, PATIENT));
      expect(check.entries).to.equal(2003);
      // On the main thread, nothing else runs until the answer is there.
      turned = false;
      setImmediate(() => (turned = true));
      const answering = mainThreadValidator.check(LARGE, PATIENT);
      const seen = turned;
      await answering;
      expect(seen).to.equal(false);
    } finally {
      await pool.close();
    }
  });

  it('validates a small Bundle on the main thread rather than behind a large one on its only thread', async function () {
    expect(LARGE.length).to.be.greaterThan(BUSY_THREAD_BYTES);
    expect(SMALL.length).to.be.at.most(MAIN_THREAD_BUNDLE_BYTES);
    const { pool, answeredBy } = recordedPool(1);
    try {
      await pool.check(SMALL, PATIENT); // the thread is up
      const order: string[] = [];
      const large = pool.check(LARGE, PATIENT).then((c) => (order.push('large'), c));
      const small = pool.check(SMALL, PATIENT).then((c) => (order.push('small'), c));
      const [l, sm] = await Promise.all([large, small]);
      expect(order).to.deep.equal(['small', 'large']);
      expect(sm).to.deep.equal(checkOf(SMALL, PATIENT));
      expect(l.entries).to.equal(2003);
      expect(answeredBy.size, 'the thread answered the first small Bundle and the large one').to.equal(2);
      // A Bundle above the size the main thread takes waits for the thread, as does any once the thread is free.
      const mid = Buffer.from(JSON.stringify({ ...parsed, entry: [...parsed.entry, ...JSON.parse(LARGE.toString('utf8')).entry.slice(3, 40)] }));
      expect(mid.length).to.be.greaterThan(MAIN_THREAD_BUNDLE_BYTES);
      const busy = pool.check(LARGE, PATIENT);
      await pool.check(mid, PATIENT);
      await busy;
      await pool.check(SMALL, PATIENT);
      expect(answeredBy.size).to.equal(5);
    } finally {
      await pool.close();
    }
  });

  it('sends Bundles to the thread with the fewest bytes waiting, so small ones do not queue behind a large one', async function () {
    const { pool, workers, answeredBy } = recordedPool(2);
    try {
      await Promise.all([pool.check(SMALL, PATIENT), pool.check(SMALL, PATIENT)]); // both threads are up
      answeredBy.clear();
      const large = pool.check(LARGE, PATIENT);
      const smalls = await Promise.all(Array.from({ length: 6 }, () => pool.check(SMALL, PATIENT)));
      for (const c of smalls) expect(c).to.deep.equal(checkOf(SMALL, PATIENT));
      await large;
      const by = [...answeredBy.values()];
      expect(by).to.have.length(7);
      // One thread took the large Bundle (answered last), the other every small one.
      const largeThread = by.at(-1) as Worker;
      expect(by.slice(0, 6).every((w) => w !== largeThread && workers.includes(w))).to.equal(true);
    } finally {
      await pool.close();
    }
  });

  it('gives each of many concurrent Bundles its own answer, spread over the threads', async function () {
    const { pool, answeredBy, workers } = recordedPool(2);
    try {
      const inputs = Array.from({ length: 60 }, (_, i) => [SMALL, BAD_CODE, NOT_JSON][i % 3] as Buffer);
      const expected = inputs.map((b) => onMainThread(b));
      const got = await Promise.all(inputs.map((b) => viaPool(pool, b)));
      expect(got).to.deep.equal(expected);
      const perWorker = workers.map((w) => [...answeredBy.values()].filter((x) => x === w).length);
      expect(perWorker.reduce((a, b) => a + b)).to.equal(60);
      expect(Math.min(...perWorker)).to.be.greaterThan(0);
    } finally {
      await pool.close();
    }
  });

  it('loses no Bundle when a thread dies with some waiting: they are validated here and the thread is replaced', async function () {
    const { pool, workers, answeredBy } = recordedPool(1);
    try {
      await pool.check(SMALL, PATIENT); // the thread is up
      const inputs = Array.from({ length: 30 }, (_, i) => (i % 2 ? BAD_CODE : SMALL));
      const answers = Promise.all(inputs.map((b) => viaPool(pool, b)));
      await workers[0]?.terminate();
      expect(await answers).to.deep.equal(inputs.map((b) => onMainThread(b)));
      expect(answeredBy.size - 1, 'some were still waiting in the thread when it died').to.be.lessThan(inputs.length);
      await until(() => workers.length === 2);
      const before = answeredBy.size;
      expect(await viaPool(pool, SMALL)).to.deep.equal(onMainThread(SMALL));
      expect(answeredBy.size, 'the replacement answers').to.equal(before + 1);
      expect(pool.threads).to.equal(1);
    } finally {
      await pool.close();
    }
  });

  it(`leaves a slot whose thread fails ${MAX_RESTARTS_PER_MINUTE} times in a minute empty, and validates on the main thread`, async function () {
    const { pool, workers } = recordedPool(1, () => new Worker('process.exit(3)', { eval: true }));
    try {
      await until(() => pool.threads === 0);
      expect(workers).to.have.length(1 + MAX_RESTARTS_PER_MINUTE);
      expect(await viaPool(pool, SMALL)).to.deep.equal(onMainThread(SMALL));
      expect(await viaPool(pool, BAD_CODE)).to.deep.equal(onMainThread(BAD_CODE));
    } finally {
      await pool.close();
    }
  });

  it('refuses work once closed, and stops its threads', async function () {
    const { pool, workers } = recordedPool(2);
    await pool.check(SMALL, PATIENT);
    const exited = workers.map((w) => new Promise((r) => w.once('exit', r)));
    await pool.close();
    await Promise.all(exited);
    expect(pool.threads).to.equal(0);
    const err = await pool.check(SMALL, PATIENT).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(AgentError).with.property('code', 'ERR_INTERNAL');
  });

  it('defaults to one thread, whatever the cores; the setting is bounded', async function () {
    expect(DEFAULT_VALIDATION_THREADS).to.equal(1);
    const pool = fhirValidator(undefined);
    try {
      expect(pool).to.be.instanceOf(FhirValidationPool);
      expect(pool.threads).to.equal(1);
    } finally {
      await pool.close();
    }
    expect(fhirValidator(0)).to.equal(mainThreadValidator);
    expect(mainThreadValidator.threads).to.equal(0);
    expect(await mainThreadValidator.check(SMALL, PATIENT)).to.deep.equal(checkOf(SMALL, PATIENT));
    const base = { id: 'myongji', identity: { cert: 'c.pem', key: 'k.pem', ca: 'ca.pem' }, relay: { urls: ['wss://relay.example.org:8443'] }, dataDir: 'data' };
    for (const bad of [-1, 17, 1.5])
      expect(() => parseAgentConfig({ ...base, limits: { fhirValidationThreads: bad } }), String(bad)).to.throw(/limits\.fhirValidationThreads/);
    expect(parseAgentConfig({ ...base, limits: { fhirValidationThreads: 0 } }).limits.fhirValidationThreads).to.equal(0);
    expect(parseAgentConfig(base).limits.fhirValidationThreads).to.equal(undefined);
  });
});
