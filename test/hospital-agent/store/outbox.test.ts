import { createHash, randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { expect } from 'chai';
import { AgentError } from '../../../hospital-agent/errors.ts';
import { Outbox } from '../../../hospital-agent/store/outbox.ts';
import { tempDir } from '../../support/tmp.ts';

describe('Outbox', function () {
  let tmp: ReturnType<typeof tempDir>;
  let outbox: Outbox;

  beforeEach(async function () {
    tmp = tempDir();
    outbox = new Outbox(join(tmp.dir, 'outbox'));
    await outbox.recover(new Set());
  });
  afterEach(() => tmp.cleanup());

  it('stores a streamed body with its size and SHA-256', async function () {
    const id = randomUUID();
    const chunks = [Buffer.alloc(100_000, 1), Buffer.alloc(50_000, 2)];
    const stored = await outbox.write(id, Readable.from(chunks), 1_000_000);
    expect(stored.bytes).to.equal(150_000);
    expect(stored.sha256).to.equal(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'));
    let n = 0;
    for await (const c of outbox.read(id)) n += (c as Buffer).length;
    expect(n).to.equal(150_000);
  });

  it('keeps a small body in memory for reading, and a large one only on disk', async function () {
    const small = Buffer.alloc(10_000, 3);
    const id = randomUUID();
    const stored = await outbox.write(id, Readable.from([small]), 1_000_000);
    expect(stored.content?.equals(small)).to.equal(true);
    const large = await outbox.write(randomUUID(), Readable.from([Buffer.alloc(400_000), Buffer.alloc(400_000)]), 1_000_000);
    expect(large.content).to.equal(undefined);
    let n = 0;
    for await (const c of outbox.read(id)) n += (c as Buffer).length;
    expect(n).to.equal(10_000);
    await outbox.remove(id);
    await outbox.remove(id); // removing twice is harmless
    expect(readdirSync(outbox.dir).filter((f) => f.startsWith(id))).to.deep.equal([]);
  });

  it('copies every stored byte to a mirror, and never ends it', async function () {
    const chunks = [Buffer.alloc(3_000_000, 1), Buffer.alloc(2_000_000, 2)];
    const copied: Buffer[] = [];
    const mirror = new PassThrough();
    mirror.on('data', (c: Buffer) => copied.push(c));
    const stored = await outbox.write(randomUUID(), Readable.from(chunks), 10_000_000, mirror);
    expect(Buffer.concat(copied).equals(Buffer.concat(chunks))).to.equal(true);
    expect(stored.bytes).to.equal(5_000_000);
    expect(mirror.writableEnded).to.equal(false);
  });

  it('drops a mirror that stops taking bytes and stores the whole body anyway', async function () {
    // Never read: after its buffer fills, the mirror takes nothing more (a recipient that hangs).
    const mirror = new PassThrough({ highWaterMark: 1024 });
    const failure = new Promise<Error>((resolve) => mirror.once('error', resolve));
    const chunks = Array.from({ length: 20 }, (_, i) => Buffer.alloc(100_000, i));
    const stored = await outbox.write(randomUUID(), Readable.from(chunks), 10_000_000, mirror, { mirrorStallMs: 200 });
    expect(stored.bytes).to.equal(2_000_000);
    expect(stored.sha256).to.equal(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'));
    expect(((await failure) as Error & { code?: string }).code).to.equal('ERR_LIVE_SEND_STALLED');
    expect(mirror.destroyed).to.equal(true);
  });

  it('a mirror that fails does not fail the upload', async function () {
    const mirror = new PassThrough();
    mirror.on('error', () => undefined);
    mirror.destroy(new Error('relay gone'));
    const stored = await outbox.write(randomUUID(), Readable.from([Buffer.alloc(1000, 7)]), 10_000, mirror);
    expect(stored.bytes).to.equal(1000);
  });

  it('refuses an oversized body and leaves nothing behind', async function () {
    try {
      await outbox.write(randomUUID(), Readable.from([Buffer.alloc(600), Buffer.alloc(600)]), 1000);
      throw new Error('accepted');
    } catch (err) {
      expect((err as AgentError).code).to.equal('ERR_PAYLOAD_TOO_LARGE');
    }
    expect(readdirSync(outbox.dir)).to.deep.equal([]);
  });

  it('drops a body whose upload was cut off, and orphans, on recovery', async function () {
    const keep = randomUUID();
    await outbox.write(keep, Readable.from([Buffer.from('keep')]), 100);
    const orphan = randomUUID();
    await outbox.write(orphan, Readable.from([Buffer.from('orphan')]), 100);
    const broken = new Readable({
      read() {
        this.push(Buffer.from('half'));
        this.destroy(new Error('client went away'));
      },
    });
    try {
      await outbox.write(randomUUID(), broken, 100);
    } catch {
      // expected
    }
    expect(await outbox.recover(new Set([keep]))).to.equal(1);
    expect(readdirSync(outbox.dir)).to.deep.equal([`${keep}.body`]);
  });
});
