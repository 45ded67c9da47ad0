import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { CryptoError, FileReplayStore, MemoryReplayStore } from '../../../hospital-agent/crypto/index.ts';
import { tempDir } from '../../support/tmp.ts';

const T0 = new Date('2030-01-01T00:00:00Z');
const at = (ms: number): Date => new Date(T0.getTime() + ms);

describe('replay stores', function () {
  it('MemoryReplayStore refuses a second add until the entry expires, and prunes', async function () {
    const s = new MemoryReplayStore();
    expect(await s.add('alpha/x1', at(1000), T0)).to.equal(true);
    expect(await s.has('alpha/x1', at(999))).to.equal(true);
    expect(await s.add('alpha/x1', at(5000), at(500))).to.equal(false);
    expect(await s.has('alpha/x1', at(1000))).to.equal(false);
    expect(await s.add('alpha/x1', at(5000), at(1000))).to.equal(true);
    expect(await s.prune(at(6000))).to.equal(1);
    expect(s.size).to.equal(0);
  });

  it('MemoryReplayStore lets exactly one of two concurrent adds of one key win (atomic check-and-set)', async function () {
    const s = new MemoryReplayStore();
    const results = await Promise.all([s.add('alpha/x1', at(1000), T0), s.add('alpha/x1', at(1000), T0)]);
    expect(results.sort()).to.deep.equal([false, true]);
  });

  it('FileReplayStore remembers across a restart, survives a torn last line, and prunes atomically', async function () {
    const t = tempDir();
    try {
      const path = join(t.dir, 'seen.jsonl');
      const s = await FileReplayStore.open(path);
      expect(await s.add('alpha/x1', at(10_000), T0)).to.equal(true);
      expect(await s.add('alpha/x2', at(1_000), T0)).to.equal(true);
      expect(await s.add('alpha/x1', at(10_000), T0)).to.equal(false);
      await s.close();
      expect(statSync(path).mode & 0o777).to.equal(0o600);
      appendFileSync(path, '{"k":"alpha/x3","e":');
      const s2 = await FileReplayStore.open(path);
      expect(await s2.has('alpha/x1', at(5)), 'after restart').to.equal(true);
      expect(await s2.has('alpha/x3', at(5))).to.equal(false);
      expect(await s2.add('alpha/x1', at(10_000), at(5))).to.equal(false);
      expect(await s2.prune(at(2_000))).to.equal(1);
      expect(await s2.add('bravo/y', at(10_000), at(2_000))).to.equal(true);
      await s2.close();
      const lines = readFileSync(path, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).k);
      expect(lines).to.deep.equal(['alpha/x1', 'bravo/y']);
    } finally {
      t.cleanup();
    }
  });

  it('FileReplayStore forgets a key durably (across a restart) and only that key', async function () {
    const t = tempDir();
    try {
      const path = join(t.dir, 'seen.jsonl');
      const s = await FileReplayStore.open(path);
      await s.add('alpha/x1', at(10_000), T0);
      await s.add('alpha/x2', at(10_000), T0);
      await s.forget('alpha/x1');
      await s.forget('alpha/never-seen');
      expect(await s.has('alpha/x1', at(5))).to.equal(false);
      await s.close();
      const s2 = await FileReplayStore.open(path);
      expect(await s2.has('alpha/x1', at(5)), 'forgotten after restart').to.equal(false);
      expect(await s2.has('alpha/x2', at(5)), 'kept after restart').to.equal(true);
      // Remembered again after being forgotten: the later line wins.
      expect(await s2.add('alpha/x1', at(10_000), at(5))).to.equal(true);
      await s2.close();
      const s3 = await FileReplayStore.open(path);
      expect(await s3.has('alpha/x1', at(5))).to.equal(true);
      await s3.close();
    } finally {
      t.cleanup();
    }
  });

  it('FileReplayStore refuses a corrupt file instead of forgetting what it saw', async function () {
    const t = tempDir();
    try {
      const path = join(t.dir, 'seen.jsonl');
      writeFileSync(path, 'garbage\n{"k":"a/b","e":1}\n');
      try {
        await FileReplayStore.open(path);
        expect.fail('opened a corrupt store');
      } catch (err) {
        expect((err as CryptoError).code).to.equal('ERR_REPLAY_STORE');
      }
    } finally {
      t.cleanup();
    }
  });
});
