import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { Duplex } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { expect } from 'chai';
import { WebSocket, WebSocketServer } from 'ws';
import { frameWriter, type SendFrame } from '../../relay/frame-writer.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';
import { until } from './helpers.ts';

const MiB = 1024 * 1024;
const WRITER = pathToFileURL(new URL('../../relay/frame-writer.ts', import.meta.url).pathname).href;

/** A TLS WebSocket server whose connections are handed to `frameWriter`, as the relay's agent listener does. */
async function writerServer(
  fed: TestFederation,
  piece: number,
): Promise<{ server: Server; port: number; next: () => Promise<{ ws: WebSocket; send: SendFrame; socket: Duplex }> }> {
  const server = createServer({ cert: readFileSync(fed.relay.cert), key: readFileSync(fed.relay.key) });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const waiting: Array<(c: { ws: WebSocket; send: SendFrame; socket: Duplex }) => void> = [];
  server.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => waiting.shift()?.({ ws, socket, send: frameWriter(ws, socket, piece) })),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { server, port, next: () => new Promise((resolve) => waiting.push(resolve)) };
}

function client(port: number): WebSocket {
  return new WebSocket(`wss://127.0.0.1:${port}/`, { rejectUnauthorized: false, perMessageDeflate: false });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('relay frame writer: WebSocket frames in pieces that Node TLS does not keep', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;

  before(function () {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, []);
  });
  after(function () {
    tmp?.cleanup();
  });

  it('delivers every length (7-bit, 16-bit and 64-bit headers, pieces and remainders) intact and in order, with pings between frames', async function () {
    const piece = 16 * 1024;
    const { server, port, next } = await writerServer(fed, piece);
    try {
      const accepted = next();
      const ws = client(port);
      const got: Buffer[] = [];
      ws.on('message', (data: Buffer) => got.push(data));
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      const conn = await accepted;
      const sizes = [0, 1, 125, 126, piece - 4, piece - 3, piece, 65_535, 65_536, 70_000, MiB + 6, 3 * MiB + 17];
      const payloads = sizes.map((n) => randomBytes(n));
      const done: number[] = [];
      payloads.forEach((p, i) => {
        conn.send(p, (err) => {
          expect(err).to.equal(undefined);
          done.push(i);
        });
        conn.ws.ping();
      });
      await until(() => got.length === payloads.length, 20_000, 'every frame');
      expect(got.map((b) => b.length)).to.deep.equal(sizes);
      expect(got.map(sha)).to.deep.equal(payloads.map(sha));
      await until(() => done.length === payloads.length, 5_000, 'every write callback');
      expect(done).to.deep.equal(sizes.map((_, i) => i));

      // A closing socket refuses the frame with an error instead of writing after the close frame.
      conn.ws.close(1000, 'done');
      const err = await new Promise<Error | undefined>((resolve) => conn.send(Buffer.from('late'), resolve));
      expect(err?.message).to.match(/not open/);
      ws.terminate();
    } finally {
      server.close();
    }
  });

  it('leaves well under a frame of native memory behind per connection after 4 MiB bursts to 150 connections', async function () {
    // The server runs in a child process so that its RSS is its own. With whole 1 MiB writes each of these
    // connections kept 1-3 MiB (docs/performance.md, "Relay memory at scale"); with 16 KiB pieces (the default) well under 0.1 MiB.
    const N = 150;
    const script = `
      import { readFileSync } from 'node:fs';
      import { createServer } from 'node:https';
      import { WebSocketServer } from 'ws';
      import { frameWriter } from ${JSON.stringify(WRITER)};
      const rss = () => Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096;
      const server = createServer({ cert: readFileSync(process.env.CERT), key: readFileSync(process.env.KEY) });
      const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
      const sends = [];
      let before = 0;
      server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => {
        sends.push(frameWriter(ws, socket, 16 * 1024));
        if (sends.length === ${N}) process.send({ connected: true });
      }));
      server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
      process.on('message', (m) => {
        if (m === 'send') {
          globalThis.gc(); before = rss();
          const payload = Buffer.alloc(${MiB}, 7);
          for (const send of sends) for (let k = 0; k < 4; k++) send(payload, () => {});
        } else if (m === 'measure') {
          globalThis.gc(); process.send({ before, after: rss() });
        }
      });`;
    const child: ChildProcess = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, CERT: fed.relay.cert, KEY: fed.relay.key, MALLOC_ARENA_MAX: '2' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const clients: WebSocket[] = [];
    try {
      const messages: Array<Record<string, number | boolean>> = [];
      child.on('message', (m: Record<string, number | boolean>) => messages.push(m));
      await until(() => messages.some((m) => m.port), 20_000, 'the server child');
      const port = Number(messages.find((m) => m.port)?.port);
      const received: number[] = [];
      for (let i = 0; i < N; i++) {
        const ws = client(port);
        received.push(0);
        ws.on('message', (data: Buffer) => (received[i] = (received[i] ?? 0) + data.length));
        await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
        clients.push(ws);
      }
      await until(() => messages.some((m) => m.connected), 20_000, 'every connection accepted');
      child.send('send');
      await until(() => received.every((n) => n === 4 * MiB), 60_000, 'every burst received');
      child.send('measure');
      await until(() => messages.some((m) => m.after), 20_000, 'the measure');
      const m = messages.find((x) => x.after) as { before: number; after: number };
      const perConnection = (m.after - m.before) / N;
      expect(perConnection, `KiB kept per connection: ${(perConnection / 1024).toFixed(0)}`).to.be.below(512 * 1024);
    } finally {
      for (const ws of clients) ws.terminate();
      child.kill();
    }
  });
});
