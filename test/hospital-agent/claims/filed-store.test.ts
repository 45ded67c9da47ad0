import { expect } from 'chai';
import { join } from 'node:path';
import { ClaimStore, type ClaimRecord } from '../../../hospital-agent/claims/index.ts';
import { StateDb } from '../../../hospital-agent/store/state-db.ts';
import { tempDir } from '../../support/tmp.ts';

const record = (id: string, identifier: string): ClaimRecord => ({
  id,
  direction: 'incoming',
  peer: 'hospital-a',
  identifier,
  status: 'queued',
  amount: 100,
  currency: 'EUR',
  hash: 'h',
  createdAt: '2026-12-02T10:00:00.000Z',
  updatedAt: '2026-12-02T10:00:00.000Z',
  claim: { resourceType: 'Claim' },
  coverage: { resourceType: 'Coverage' },
  responses: [],
});

describe('FiledStore (ClaimStore)', function () {
  let tmp: ReturnType<typeof tempDir>;
  let db: StateDb;
  let store: ClaimStore;
  beforeEach(async function () {
    tmp = tempDir();
    db = new StateDb(join(tmp.dir, 'state'));
    await db.open();
    store = new ClaimStore(db);
  });
  afterEach(async function () {
    await db.close();
    tmp.cleanup();
  });

  it('files one record of an identifier when many claim ids race for it', async function () {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.create(record(`claim-${i}`, 'urn:x|C-1'))));
    expect(results.filter((r) => r.created)).to.have.length(1);
    const winner = results.find((r) => r.created)!.record.id;
    for (const r of results) expect(r.record.id).to.equal(winner);
    expect((await store.list()).map((r) => r.id)).to.deep.equal([winner]);
    expect((await store.byClaimIdentifier('incoming', 'hospital-a', 'urn:x|C-1'))?.id).to.equal(winner);
  });

  it('files records of different identifiers side by side, each once', async function () {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => store.create(record(`claim-${i}`, `urn:x|C-${i}`))));
    expect(results.every((r) => r.created)).to.equal(true);
    expect(await store.list()).to.have.length(20);
  });

  it('loses no change when many updates of one record run at once', async function () {
    await store.create(record('claim-1', 'urn:x|C-1'));
    await Promise.all(Array.from({ length: 25 }, (_, i) => store.update('claim-1', (cur) => ({ ...cur, responses: [...cur.responses, `r${i}`] }))));
    const r = await store.get('claim-1');
    expect(r?.responses).to.have.length(25);
    expect(new Set(r?.responses).size).to.equal(25);
  });

  it('keeps updates of different records apart', async function () {
    await Promise.all([store.create(record('claim-1', 'urn:x|C-1')), store.create(record('claim-2', 'urn:x|C-2'))]);
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => store.update(i % 2 === 0 ? 'claim-1' : 'claim-2', (cur) => ({ ...cur, responses: [...cur.responses, `r${i}`] }))),
    );
    expect((await store.get('claim-1'))?.responses).to.deep.equal(['r0', 'r2', 'r4', 'r6', 'r8']);
    expect((await store.get('claim-2'))?.responses).to.deep.equal(['r1', 'r3', 'r5', 'r7', 'r9']);
  });
});
