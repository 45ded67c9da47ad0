import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { AgentError } from '../../../hospital-agent/errors.ts';
import { validateFhirBundle } from '../../../hospital-agent/fhir/bundle.ts';
import { Inbox } from '../../../hospital-agent/store/inbox.ts';
import { tempDir } from '../../support/tmp.ts';

describe('Inbox', function () {
  let tmp: ReturnType<typeof tempDir>;
  let inbox: Inbox;

  beforeEach(async function () {
    tmp = tempDir();
    inbox = new Inbox(join(tmp.dir, 'inbox'));
    await inbox.recover();
  });
  afterEach(() => tmp.cleanup());

  async function receive(id: string, data: string): Promise<void> {
    const q = await inbox.quarantine(id);
    const ws = q.writeStream();
    ws.end(data);
    await once(ws, 'finish');
    await q.release({ from: 'myongji', contentType: 'text/plain', bytes: data.length, contentSha256: 'x'.repeat(64) });
  }

  it('lists nothing while an item is in quarantine, and the item once released', async function () {
    const id = randomUUID();
    const q = await inbox.quarantine(id);
    const ws = q.writeStream();
    ws.end('partial bytes');
    await once(ws, 'finish');
    expect(await inbox.list()).to.deep.equal([]);
    expect(await inbox.get(id)).to.equal(undefined);
    await q.release({ from: 'myongji', contentType: 'text/plain', bytes: 13, contentSha256: 'a'.repeat(64) });
    const items = await inbox.list();
    expect(items.map((i) => i.exchangeId)).to.deep.equal([id]);
    const stream = await inbox.openContent(id);
    let text = '';
    for await (const chunk of stream) text += String(chunk);
    expect(text).to.equal('partial bytes');
  });

  it('releases a burst of items concurrently (they share directory fsyncs), each complete', async function () {
    const ids = Array.from({ length: 25 }, () => randomUUID());
    await Promise.all(ids.map((id, i) => receive(id, `item ${i}`)));
    expect((await inbox.list()).map((m) => m.exchangeId)).to.have.members(ids);
    for (const [i, id] of ids.entries()) {
      let text = '';
      for await (const chunk of await inbox.openContent(id)) text += String(chunk);
      expect(text).to.equal(`item ${i}`);
    }
  });

  it('discards quarantined bytes and recovers leftovers after a crash', async function () {
    const a = await inbox.quarantine(randomUUID());
    await a.discard();
    const b = await inbox.quarantine(randomUUID());
    const ws = b.writeStream();
    ws.end('half a file');
    await once(ws, 'finish');
    // A new process finds b's directory: it must never become visible.
    const restarted = new Inbox(join(tmp.dir, 'inbox'));
    expect(await restarted.recover()).to.equal(1);
    expect(readdirSync(restarted.quarantineDir)).to.deep.equal([]);
    expect(await restarted.list()).to.deep.equal([]);
  });

  it('refuses a second delivery of the same exchange', async function () {
    const id = randomUUID();
    await receive(id, 'once');
    try {
      await inbox.quarantine(id);
      throw new Error('expected a conflict');
    } catch (err) {
      expect((err as AgentError).code).to.equal('ERR_CONFLICT');
    }
  });

  it('acknowledges and deletes items', async function () {
    const id = randomUUID();
    await receive(id, 'x');
    expect((await inbox.ack(id)).ackedAt).to.be.a('string');
    await inbox.remove(id);
    expect(await inbox.list()).to.deep.equal([]);
    try {
      await inbox.remove(id);
      throw new Error('expected not found');
    } catch (err) {
      expect((err as AgentError).code).to.equal('ERR_NOT_FOUND');
    }
  });

  it('never turns an id into a path outside the inbox', async function () {
    for (const bad of ['../../../etc/passwd', '..', 'a/b/c/d/e/f', 'short', '', 'x'.repeat(200), 'abc.defgh']) {
      try {
        await inbox.quarantine(bad);
        throw new Error(`accepted ${bad}`);
      } catch (err) {
        expect((err as AgentError).code, bad).to.equal('ERR_BAD_REQUEST');
      }
      try {
        await inbox.get(bad);
        throw new Error(`accepted ${bad}`);
      } catch (err) {
        expect((err as AgentError).code, bad).to.equal('ERR_BAD_REQUEST');
      }
    }
  });
});

describe('validateFhirBundle', function () {
  const fixture = readFileSync(fileURLToPath(new URL('../../../scripts/fixtures/patient-bundle.json', import.meta.url)));

  it('accepts the shipped synthetic bundle', function () {
    const s = validateFhirBundle(fixture);
    expect(s.type).to.equal('collection');
    expect(s.entries).to.equal(5);
    expect(s.resourceTypes).to.include('Patient');
  });

  it('refuses non-bundles without echoing their content', function () {
    const cases: Array<[string, RegExp]> = [
      ['{"resourceType":"Patient","name":"SECRET"}', /resourceType must be 'Bundle'/],
      ['not json SECRET', /not valid JSON/],
      ['[1,2]', /not a JSON object/],
      ['{"resourceType":"Bundle","type":"nonsense"}', /type must be/],
      ['{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"name":"SECRET"}}]}', /entry\[0\].resource.resourceType/],
      ['{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Patient"}}]}', /Composition/],
    ];
    for (const [body, pattern] of cases) {
      try {
        validateFhirBundle(Buffer.from(body));
        throw new Error('accepted');
      } catch (err) {
        expect((err as AgentError).code).to.equal('ERR_INVALID_FHIR');
        expect((err as Error).message).to.match(pattern);
        expect((err as Error).message).not.to.contain('SECRET');
      }
    }
  });
});
