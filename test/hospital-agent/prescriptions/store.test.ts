import { expect } from 'chai';
import { join } from 'node:path';
import { PrescriptionStore } from '../../../hospital-agent/prescriptions/store.ts';
import type { PrescriptionTask } from '../../../hospital-agent/prescriptions/task.ts';
import { StateDb } from '../../../hospital-agent/store/state-db.ts';
import { tempDir } from '../../support/tmp.ts';

const task = (id: string): PrescriptionTask => ({
  id,
  status: 'ready',
  accessCodeHash: 'a'.repeat(64),
  patient: 'p'.repeat(64),
  medicationRequest: 'jws',
  medicationRequestHash: 'h',
  createdAt: '2026-12-02T10:00:00.000Z',
  updatedAt: '2026-12-02T10:00:00.000Z',
});

describe('PrescriptionStore', function () {
  let tmp: ReturnType<typeof tempDir>;
  let db: StateDb;
  let store: PrescriptionStore;
  beforeEach(async function () {
    tmp = tempDir();
    db = new StateDb(join(tmp.dir, 'state'));
    await db.open();
    store = new PrescriptionStore(db);
  });
  afterEach(async function () {
    await db.close();
    tmp.cleanup();
  });

  it('lets one of many pharmacies racing for a ready Task win, and writes its state before any of them hears', async function () {
    await store.create(task('rx-1'));
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        store.update('rx-1', (t) => {
          if (t.status !== 'ready') return { result: { won: false, holder: t.pharmacy } };
          return { next: { ...t, status: 'in-progress', pharmacy: `pharmacy-${i}` }, result: { won: true, holder: `pharmacy-${i}` } };
        }),
      ),
    );
    expect(results.filter((r) => r?.won)).to.have.length(1);
    const winner = results.find((r) => r?.won)!.holder;
    for (const r of results) expect(r?.holder).to.equal(winner);
    expect((await store.get('rx-1'))?.pharmacy).to.equal(winner);
  });

  it('decides Tasks of different ids side by side, each on its own state', async function () {
    const ids = Array.from({ length: 16 }, (_, i) => `rx-${i}`);
    await Promise.all(ids.map((id) => store.create(task(id))));
    const seen = await Promise.all(
      ids.map((id) => store.update(id, (t) => ({ next: { ...t, status: 'in-progress', pharmacy: `for-${t.id}` }, result: t.status }))),
    );
    expect(seen).to.deep.equal(ids.map(() => 'ready'));
    for (const id of ids) expect((await store.get(id))?.pharmacy).to.equal(`for-${id}`);
  });

  it('answers undefined for a Task it does not own', async function () {
    expect(await store.update('nope', () => ({ result: 1 }))).to.equal(undefined);
  });
});
