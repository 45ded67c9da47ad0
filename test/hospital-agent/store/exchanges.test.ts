import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { expect } from 'chai';
import { AgentError } from '../../../hospital-agent/errors.ts';
import type { ExchangeStore, NewExchange } from '../../../hospital-agent/store/exchanges.ts';
import { StateStore } from '../../../hospital-agent/store/state.ts';
import { tempDir } from '../../support/tmp.ts';

function exchange(overrides: Partial<NewExchange> = {}): NewExchange {
  return {
    id: randomUUID(),
    to: 'severance',
    patientHash: 'a'.repeat(64),
    consentId: randomUUID(),
    purpose: 'TREAT',
    contentType: 'application/fhir+json',
    bytes: 10,
    contentSha256: 'b'.repeat(64),
    ...overrides,
  };
}

describe('ExchangeStore', function () {
  let tmp: ReturnType<typeof tempDir>;
  let store: ExchangeStore;
  let state: StateStore;

  beforeEach(async function () {
    tmp = tempDir();
    state = new StateStore(join(tmp.dir, 'state'));
    await state.open();
    store = state.exchanges;
  });
  afterEach(async function () {
    await state.close();
    tmp.cleanup();
  });

  it('writes every new exchange durably (synced) before create resolves, with or without an inline body', async function () {
    // The API acknowledges with 202 once create resolves: the record must be on disk, not only in the page cache.
    type Batch = { _put(key: string, value: unknown, o: object): void; _write(options: { sync?: boolean }): Promise<void> };
    // The LevelDB instance the state database owns (StateDb.db).
    const db = (state.db as unknown as { db: { _chainedBatch(): Batch } }).db;
    const original = db._chainedBatch.bind(db);
    const writes: Array<{ keys: string[]; sync: boolean }> = [];
    db._chainedBatch = () => {
      const batch = original();
      const keys: string[] = [];
      const put = batch._put.bind(batch);
      const write = batch._write.bind(batch);
      batch._put = (key, value, o) => {
        keys.push(key);
        put(key, value, o);
      };
      batch._write = (options) => {
        writes.push({ keys, sync: options?.sync === true });
        return write(options);
      };
      return batch;
    };
    const large = exchange({ bytes: 5_000_000_000 });
    const small = exchange();
    await store.create(large);
    await store.create(small, undefined, { body: Buffer.from('{"resourceType":"Bundle"}') });
    for (const x of [large, small]) {
      const write = writes.find((w) => w.keys.some((k) => k.endsWith(x.id)));
      expect(write, `the write of ${x.id}`).to.not.equal(undefined);
      expect(write!.sync, `the write of ${x.bytes} bytes`).to.equal(true);
    }
  });

  it('returns the same exchange for a retried request with the same idempotency key, even concurrently', async function () {
    const base = exchange();
    const key = { principal: 'ehr', key: 'retry-1' };
    const results = await Promise.all([
      store.create(base, key),
      store.create({ ...base, id: randomUUID() }, key),
      store.create({ ...base, id: randomUUID() }, key),
    ]);
    expect(new Set(results.map((r) => r.record.id)).size).to.equal(1);
    expect(results.filter((r) => r.created)).to.have.length(1);
    expect(await store.list()).to.have.length(1);
  });

  it('refuses an idempotency key reused for a different request', async function () {
    const key = { principal: 'ehr', key: 'k' };
    await store.create(exchange(), key);
    try {
      await store.create(exchange({ to: 'mgh' }), key);
      throw new Error('accepted');
    } catch (err) {
      expect((err as AgentError).code).to.equal('ERR_CONFLICT');
    }
    // Another principal's key space is separate.
    expect((await store.create(exchange({ to: 'mgh' }), { principal: 'other', key: 'k' })).created).to.equal(true);
  });

  it('enforces the life cycle and keeps final states final', async function () {
    const { record } = await store.create(exchange());
    await store.transition(record.id, 'sending', { attempts: 1 });
    await store.transition(record.id, 'queued', { nextAttemptAt: new Date().toISOString() });
    await store.transition(record.id, 'sending', { attempts: 2 });
    const done = await store.transition(record.id, 'delivered', { receipt: { ok: true } });
    expect(done.status).to.equal('delivered');
    expect(done.attempts).to.equal(2);
    try {
      await store.transition(record.id, 'failed', { failure: { code: 'X', message: 'y' } });
      throw new Error('left a final state');
    } catch (err) {
      expect(err).to.be.instanceOf(TypeError);
    }
  });

  it('lists one status from its index, most recent first, without stale entries', async function () {
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      ids.push((await store.create(exchange())).record.id);
      await new Promise((r) => setTimeout(r, 2)); // createdAt has millisecond resolution
    }
    await store.transition(ids[1]!, 'sending');
    await store.transition(ids[1]!, 'delivered');
    await new Promise((r) => setTimeout(r, 5)); // statusAt has millisecond resolution
    await store.transition(ids[3]!, 'sending');
    await store.transition(ids[3]!, 'delivered');
    await store.transition(ids[4]!, 'failed', { failure: { code: 'X', message: 'y' } });
    expect((await store.list({ status: 'delivered' })).map((r) => r.id)).to.deep.equal([ids[3], ids[1]]);
    expect((await store.list({ status: 'delivered', limit: 1 })).map((r) => r.id)).to.deep.equal([ids[3]]);
    expect((await store.list({ status: 'queued' })).map((r) => r.id)).to.have.members([ids[0], ids[2]]);
    expect(await store.list({ status: 'sending' })).to.deep.equal([]);
    expect((await store.unfinished()).map((r) => r.id)).to.deep.equal([ids[0], ids[2]]);
    expect(await store.countUnfinished()).to.equal(2);
  });

  it('merges ledger bookkeeping from concurrent steps instead of overwriting it', async function () {
    const { record } = await store.create(exchange());
    await store.update(record.id, { ledger: { sent: 'a'.repeat(64) } });
    await Promise.all([
      store.update(record.id, { ledger: { charges: ['t1'] } }),
      store.transition(record.id, 'sending', { ledger: { receipt: 'b'.repeat(64) } }),
      store.update(record.id, { ledger: { charges: ['t2', 't1'] } }),
    ]);
    const got = await store.get(record.id);
    expect(got?.ledger).to.deep.equal({ sent: 'a'.repeat(64), receipt: 'b'.repeat(64), charges: ['t1', 't2'] });
  });

  it('survives a restart with unfinished work to resume', async function () {
    const a = (await store.create(exchange())).record;
    const b = (await store.create(exchange())).record;
    await store.transition(b.id, 'sending');
    const c = (await store.create(exchange())).record;
    await store.transition(c.id, 'failed', { failure: { code: 'ERR_CONSENT_REVOKED', message: 'revoked' } });
    await state.close();
    state = new StateStore(join(tmp.dir, 'state'));
    await state.open();
    store = state.exchanges;
    expect((await store.unfinished()).map((r) => r.id)).to.have.members([a.id, b.id]);
    expect((await store.get(c.id))?.failure?.code).to.equal('ERR_CONSENT_REVOKED');
    // `sending` was never written: the restart finds it queued, which is where a resumed send starts anyway.
    expect((await store.get(b.id))?.status).to.equal('queued');
    await store.transition(b.id, 'sending');
    await store.transition(b.id, 'delivered');
    expect((await store.get(b.id))?.status).to.equal('delivered');
    await state.close();
    state = new StateStore(join(tmp.dir, 'state'));
    await state.open();
    store = state.exchanges;
    expect((await store.get(b.id))?.status).to.equal('delivered');
  });

  it('keeps sending in memory: lists it, writes its fields with the next durable step, and a restart resumes it as queued', async function () {
    const { record } = await store.create(exchange());
    const other = (await store.create(exchange())).record;
    await store.transition(record.id, 'sending', { attempts: 1, ledger: { sent: 'a'.repeat(64) } });
    expect((await store.get(record.id))?.status).to.equal('sending');
    expect((await store.list({ status: 'sending' })).map((r) => r.id)).to.deep.equal([record.id]);
    expect((await store.list({ status: 'queued' })).map((r) => r.id)).to.deep.equal([other.id]);
    // A change while sending is written with the durable status, so record and index agree on disk.
    await store.update(record.id, { ledger: { charges: ['t1'] } });
    await state.close();
    state = new StateStore(join(tmp.dir, 'state'));
    await state.open();
    store = state.exchanges;
    const resumed = await store.get(record.id);
    expect(resumed?.status).to.equal('queued');
    expect(resumed?.ledger).to.deep.equal({ sent: 'a'.repeat(64), charges: ['t1'] });
    expect((await store.list({ status: 'queued' })).map((r) => r.id)).to.have.members([record.id, other.id]);
    // From sending to a durable state: the index entry written last (queued) is the one replaced.
    await store.transition(record.id, 'sending', { attempts: 2 });
    await store.transition(record.id, 'queued', { nextAttemptAt: new Date().toISOString() });
    await store.transition(record.id, 'sending', { attempts: 3 });
    await store.transition(record.id, 'delivered', { receipt: { ok: true } });
    await state.close();
    state = new StateStore(join(tmp.dir, 'state'));
    await state.open();
    store = state.exchanges;
    expect((await store.list({ status: 'delivered' })).map((r) => [r.id, r.attempts])).to.deep.equal([[record.id, 3]]);
    expect((await store.list({ status: 'queued' })).map((r) => r.id)).to.deep.equal([other.id]);
    expect(await store.countUnfinished()).to.equal(1);
  });
});
