import { join } from 'node:path';
import { expect } from 'chai';
import { Level } from 'level';
import { writeBatch } from '../../ledger/index.ts';
import { tempDir } from '../support/tmp.ts';

describe('writeBatch (sublevel operations straight to the store)', function () {
  let tmp: ReturnType<typeof tempDir>;
  let db: Level<string, string>;

  beforeEach(async function () {
    tmp = tempDir();
    db = new Level<string, string>(join(tmp.dir, 'db'));
    await db.open();
  });
  afterEach(async function () {
    await db.close();
    tmp.cleanup();
  });

  it('writes what each sublevel reads back with its own encoding (json, utf8, buffer), as batch() would', async function () {
    const json = db.sublevel<string, unknown>('j', { valueEncoding: 'json' });
    const text = db.sublevel<string, string>('u', {});
    const bytes = db.sublevel<string, Buffer>('b', { valueEncoding: 'buffer' });
    await writeBatch(db, [
      { type: 'put', sublevel: json, key: 'k1', value: { a: 1, s: 'é€' } },
      { type: 'put', sublevel: text, key: 'k2', value: 'v2' },
      { type: 'put', sublevel: bytes, key: 'k3', value: Buffer.from([0, 255, 1]) },
      { type: 'put', sublevel: text, key: 'old', value: 'x' },
    ]);
    await writeBatch(db, [{ type: 'del', sublevel: text, key: 'old' }], { sync: true });
    expect(await json.get('k1')).to.deep.equal({ a: 1, s: 'é€' });
    expect(await text.get('k2')).to.equal('v2');
    expect((await bytes.get('k3'))?.equals(Buffer.from([0, 255, 1]))).to.equal(true);
    expect(await text.get('old')).to.equal(undefined);
    // The same keys as batch() writes: the sublevel prefix, then the key.
    const viaBatch = db.sublevel<string, string>('v', {});
    await db.batch([{ type: 'put', sublevel: viaBatch, key: 'k', value: 'v' }] as never);
    expect(await db.keys().all()).to.deep.equal(['!b!k3', '!j!k1', '!u!k2', '!v!k']);
  });

  it('writes nothing when an operation is invalid (all or nothing)', async function () {
    const text = db.sublevel<string, string>('u', {});
    for (const bad of [
      { type: 'put', sublevel: text, key: 'k2' },
      { type: 'put', sublevel: text, key: 7, value: 'x' },
      { type: 'merge', sublevel: text, key: 'k2', value: 'x' },
    ]) {
      try {
        await writeBatch(db, [{ type: 'put', sublevel: text, key: 'k1', value: 'v1' }, bad as never]);
        expect.fail('accepted an invalid operation');
      } catch (err) {
        expect(err).to.be.instanceOf(TypeError);
      }
    }
    expect(await db.keys().all()).to.deep.equal([]);
  });

  it("goes through abstract-level's public batch: the database's write event sees every operation, prefixed", async function () {
    const text = db.sublevel<string, string>('u', {});
    const seen: string[] = [];
    db.on('write', (ops: Array<{ type: string; key: string }>) => seen.push(...ops.map((o) => `${o.type} ${o.key}`)));
    await writeBatch(db, [
      { type: 'put', sublevel: text, key: 'k1', value: 'v1' },
      { type: 'del', sublevel: text, key: 'k0' },
    ]);
    expect(seen).to.deep.equal(['put !u!k1', 'del !u!k0']);
  });
});
