import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type { WebSocket } from 'ws';
import { DirectoryStore, loadIdentity, parseCrl } from '../../certs/index.ts';
import type { RunningRelay } from '../../relay/index.ts';
import { decodeFrame, encodeDocument, RelayClient, type DocumentType } from '../../relay/protocol/index.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { rawAgent, startTestRelay, until } from './helpers.ts';

describe('relay: federation documents (DOCUMENT frames)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let relay: RunningRelay;
  let store: DirectoryStore;

  before(async function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['newer', 'oldie', 'rogue']);
    store = DirectoryStore.init(fed.ca);
    store.add({ id: 'newer', name: 'Newer', organisation: 'Newer Org', role: 'hospital', status: 'active' });
    await store.sign();
    relay = await startTestRelay(fed, { directory: { file: join(fed.pkiDir, 'directory', 'directory.jws'), pollMs: 100 } });
  });
  after(async function () {
    await relay?.close(0);
    tmp?.cleanup();
  });

  /** A current client for `id` that records every document from the first frame on. */
  async function listening(id: string): Promise<{ client: RelayClient; seen: Array<{ type: DocumentType; body: string }> }> {
    const files = fed.agents[id]!;
    const client = new RelayClient({
      url: `wss://127.0.0.1:${relay.port}`,
      servername: 'localhost',
      identity: loadIdentity({ ...files, crl: fed.crlPath }),
      reconnect: false,
    });
    const seen: Array<{ type: DocumentType; body: string }> = [];
    client.on('document', (type, body) => seen.push({ type, body: body.toString('utf8') }));
    await client.connect();
    return { client, seen };
  }

  it('hands a current agent the CRL and the directory on connect, and each new one as it is published', async function () {
    const { client, seen } = await listening('newer');
    await until(() => seen.length >= 2, 10_000, 'the documents of the greeting');
    expect(seen[0]).to.deep.equal({ type: 'crl', body: readFileSync(fed.crlPath, 'utf8') });
    expect(seen[1]).to.deep.equal({ type: 'directory', body: readFileSync(store.signedPath, 'utf8').trim() });
    fed.ca.crl();
    await until(() => seen.some((d) => d.type === 'crl' && d.body === readFileSync(fed.crlPath, 'utf8')), 20_000, 'the new CRL');
    store.setStatus('newer', 'suspended');
    const { jws } = await store.sign();
    await until(() => seen.some((d) => d.type === 'directory' && d.body === jws), 20_000, 'the new directory');
    await client.close();
    // What the operator sees the relay hand out.
    const shown = (await (await fetch(`http://127.0.0.1:${relay.adminPort}/v1/federation`)).json()) as {
      crl: { crlNumber: number };
      directory: { sequence: number; members: number };
    };
    expect(shown.directory).to.deep.include({ sequence: 2, members: 1 });
    expect(shown.crl.crlNumber).to.equal(parseCrl(readFileSync(fed.crlPath, 'utf8'), readFileSync(fed.caPath, 'utf8')).crlNumber);
  });

  it('sends an agent of an older revision no DOCUMENT frame, so its connection stays up', async function () {
    const old: WebSocket = await rawAgent(fed, relay, 'oldie');
    const kinds: string[] = [];
    old.on('message', (data: Buffer) => kinds.push(decodeFrame(data).kind));
    let closed = false;
    old.on('close', () => (closed = true));
    await until(() => kinds.includes('notice'), 10_000, 'the ready notice');
    const probe = await listening('newer');
    fed.ca.crl();
    const pem = readFileSync(fed.crlPath, 'utf8');
    await until(() => probe.seen.some((d) => d.body === pem), 20_000, 'the new CRL at the current agent');
    // Whatever the relay sent the old agent in the same round arrives before the answer to a ping sent now.
    await new Promise<void>((resolve) => {
      old.once('pong', () => resolve());
      old.ping();
    });
    await probe.client.close();
    expect(kinds.filter((k) => k === 'document')).to.deep.equal([]);
    expect(closed).to.equal(false);
    old.close();
  });

  it('does not send a document larger than limits.maxFrame, counts it, and keeps the agent connected', async function () {
    const small = await startTestRelay(fed, { limits: { maxFrame: 2048 }, directory: { file: store.signedPath } });
    try {
      const client = new RelayClient({
        url: `wss://127.0.0.1:${small.port}`,
        servername: 'localhost',
        identity: loadIdentity({ ...fed.agents['newer']!, crl: fed.crlPath }),
        reconnect: false,
      });
      const seen: DocumentType[] = [];
      client.on('document', (type) => seen.push(type));
      await client.connect();
      // The signed directory (over 2 KiB with its certificate) does not fit; the CRL does.
      await until(() => seen.includes('crl'), 10_000, 'the CRL');
      const text = (await (await fetch(`http://127.0.0.1:${small.adminPort}/metrics`)).text()).split('\n');
      const refused = text.find((l) => l.startsWith('hie_relay_documents_refused_total{type="directory"} '));
      expect(Number(refused?.split(' ').pop())).to.be.at.least(1);
      expect(seen).to.deep.equal(['crl']);
      expect(client.connected).to.equal(true);
      await client.close();
    } finally {
      await small.close(0);
    }
  });

  it('closes an agent that sends a DOCUMENT frame (only the relay hands them out)', async function () {
    const rogue = await rawAgent(fed, relay, 'rogue');
    const closed = new Promise<number>((resolve) => rogue.once('close', (code: number) => resolve(code)));
    rogue.send(encodeDocument('crl', Buffer.from(readFileSync(fed.crlPath, 'utf8'))));
    expect(await closed).to.equal(1008);
  });
});
