import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { FileReplayStore } from '../../../hospital-agent/crypto/index.ts';
import { openQuarantine } from '../../../hospital-agent/crypto/sink.ts';
import { isNoSpace } from '../../../hospital-agent/errors.ts';
import { tempDir } from '../../support/tmp.ts';
import { fill, mountTmpfs, tmpfsUnavailable, unmountTmpfs } from '../../support/tmpfs.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * A disk that fills up takes the part of a write that fits and reports no
 * error for it (a short write); the next write fails. When space comes back
 * between the two, a writer that does not finish its short write leaves a
 * file with bytes missing from its middle: a received exchange whose content
 * no longer matches its verified hash, or a replay store with a torn line in
 * its middle that the next start refuses as corrupt. Each store here runs on
 * a small tmpfs of its own.
 */
describe('writes on a disk that fills up and frees again (short writes)', function () {
  this.timeout(30_000);
  let tmp: ReturnType<typeof tempDir>;
  let dir: string;

  before(function () {
    tmp = tempDir();
    const why = tmpfsUnavailable(join(tmp.dir, 'probe'));
    if (why) {
      console.log(`    (skipped: ${why})`);
      this.skip();
    }
  });
  beforeEach(function () {
    dir = join(tmp.dir, randomBytes(4).toString('hex'));
    mountTmpfs(dir, 8);
  });
  afterEach(function () {
    if (dir) unmountTmpfs(dir);
  });
  after(function () {
    tmp?.cleanup();
  });

  it('a quarantine file ends whole or in a disk-full error, never with bytes missing once space is back', async function () {
    const path = join(dir, 'content');
    const filler = fill(dir, 512 * KiB);
    const first = randomBytes(MiB);
    const second = randomBytes(MiB);
    const q = await openQuarantine({ path });
    let failure: unknown;
    try {
      // A batch of 1 MiB starts its write at once; only about half of it fits.
      await q.write(first);
      const t0 = Date.now();
      while (statSync(path).size === 0 && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 5));
      await new Promise((r) => setTimeout(r, 100));
      rmSync(filler);
      await q.write(second);
      await q.commit();
    } catch (err) {
      failure = err;
      await q.discard(err as Error);
    }
    if (failure) expect(isNoSpace(failure), String(failure)).to.equal(true);
    else expect(readFileSync(path).equals(Buffer.concat([first, second])), 'the file holds every byte written, in order').to.equal(true);
  });

  it('a replay store keeps no torn line between whole ones, and opens again after the disk was full', async function () {
    const path = join(dir, 'replay.jsonl');
    const store = await FileReplayStore.open(path);
    const now = new Date('2030-01-01T00:00:00Z');
    const until = new Date('2030-01-02T00:00:00Z');
    await store.add('before-fill', until, now);
    const filler = fill(dir, 0);
    const added: string[] = [];
    let refused: string | undefined;
    // The file's last page still takes some lines; the line that crosses into a page the disk has not got fails.
    for (let i = 0; i < 5_000 && !refused; i += 1) {
      const key = `key-${i}-${'x'.repeat(40)}`;
      try {
        await store.add(key, until, now);
        added.push(key);
      } catch (err) {
        expect(isNoSpace(err), String(err)).to.equal(true);
        refused = key;
      }
    }
    expect(refused, 'an add failed once the disk was full').to.be.a('string');
    rmSync(filler);
    await store.add('after-space', until, now);
    await store.close();
    const again = await FileReplayStore.open(path);
    try {
      for (const key of ['before-fill', ...added, 'after-space']) expect(await again.has(key, now), key).to.equal(true);
      expect(await again.has(refused!, now), 'the add that failed is not remembered').to.equal(false);
      for (const line of readFileSync(path, 'utf8').trimEnd().split('\n')) expect(() => JSON.parse(line), line).to.not.throw();
    } finally {
      await again.close();
    }
  });
});
