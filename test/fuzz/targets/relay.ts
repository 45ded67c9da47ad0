import { createHash, randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { clientTlsOptions, loadIdentity } from '../../../certs/index.ts';
import { startRelay, type RunningRelay } from '../../../relay/index.ts';
import { FRAME_PREFIX, PROTOCOL_VERSION, RelayClient, type InboundTransfer } from '../../../relay/protocol/index.ts';
import { makeFederation, type TestFederation } from '../../support/federation.ts';
import { settleRuns, tracked, type FuzzTarget } from '../support/harness.ts';
import { mutate, mutationArb } from '../support/mutate.ts';
import { garbageArb, validFrameArb } from './frame.ts';

/** Close codes the relay may answer a hostile connection with (malformed, policy, too big). */
export const HOSTILE_CLOSE_CODES = new Set([1002, 1008, 1009]);
/** How long a hostile connection may stay open after its last frame. */
const CLOSE_WAIT_MS = 5_000;

interface RelayCtx {
  fed: TestFederation;
  relay: RunningRelay;
  alpha: RelayClient;
  bravo: RelayClient;
  disconnects: number;
  seq: number;
  runs: Set<Promise<unknown>>;
}

/** A frame that can never decode: an unknown kind. Sent last so every hostile connection ends in a protocol close. */
const POISON = Buffer.from([PROTOCOL_VERSION, 0xee, 0, 0, 0, 1]);

async function hostile(ctx: RelayCtx, frames: Buffer[]): Promise<{ code: number; opened: boolean }> {
  const ws = new WebSocket(`wss://127.0.0.1:${ctx.relay.port}/v1/agent`, {
    ...clientTlsOptions(loadIdentity(ctx.fed.agents['mallory']!)),
    perMessageDeflate: false,
    maxPayload: 4 * 1024 * 1024,
  });
  return new Promise((resolve, reject) => {
    let opened = false;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`hostile connection still open ${CLOSE_WAIT_MS} ms after its frames`));
    }, CLOSE_WAIT_MS + 5_000);
    ws.on('error', () => undefined);
    ws.on('message', () => undefined);
    ws.once('open', () => {
      opened = true;
      for (const f of [...frames, POISON]) if (ws.readyState === WebSocket.OPEN) ws.send(f, { binary: true });
    });
    ws.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, opened });
    });
  });
}

/** Alpha sends bravo a message and a transfer; resolves when both arrived intact. */
async function healthyExchange(ctx: RelayCtx): Promise<void> {
  const n = ctx.seq++;
  const note = Buffer.from(`fuzz-note-${n}-${randomBytes(8).toString('hex')}`);
  const payload = randomBytes(96 * 1024 + n);
  const digest = createHash('sha256').update(payload).digest('hex');
  const meta = Buffer.from(`fuzz-transfer-${n}`);
  const gotMessage = new Promise<void>((resolve) => {
    const on = (m: { from: string; body: Buffer }) => {
      if (m.from === 'alpha' && m.body.equals(note)) {
        ctx.bravo.off('message', on);
        resolve();
      }
    };
    ctx.bravo.on('message', on);
  });
  const gotTransfer = new Promise<void>((resolve, reject) => {
    const on = (t: InboundTransfer) => {
      if (t.from !== 'alpha' || !t.meta.equals(meta)) return;
      ctx.bravo.off('transfer', on);
      const h = createHash('sha256');
      t.on('data', (c: Buffer) => h.update(c));
      t.once('error', reject);
      t.once('end', () => (h.digest('hex') === digest ? resolve() : reject(new Error('transfer arrived altered'))));
    };
    ctx.bravo.on('transfer', on);
  });
  ctx.alpha.sendMessage('bravo', note);
  await pipeline(Readable.from([payload]), ctx.alpha.openTransfer('bravo', { meta }));
  await Promise.all([gotMessage, gotTransfer]);
}

const hostileFramesArb = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: fc.tuple(validFrameArb, mutationArb(1, 3)).map(([f, m]) => mutate([f], m)) },
    { weight: 2, arbitrary: garbageArb },
    { weight: 1, arbitrary: validFrameArb },
    { weight: 1, arbitrary: fc.constantFrom(Buffer.alloc(0), Buffer.alloc(FRAME_PREFIX - 1, 1), Buffer.alloc(1024 * 1024 + FRAME_PREFIX + 1, 0x01)) },
  ),
  { minLength: 1, maxLength: 6 },
);

/** A live relay: hostile frames close only the sender's connection; another pair keeps exchanging; the relay stays up. */
export const relayTarget: FuzzTarget<RelayCtx> = {
  name: 'relay-live',
  async setup(dir) {
    const fed = makeFederation(dir, ['alpha', 'bravo', 'mallory']);
    const relay = await startRelay(
      {
        listen: { host: '127.0.0.1', port: 0 },
        tls: { cert: fed.relay.cert, key: fed.relay.key, ca: fed.caPath, crl: fed.crlPath },
        admin: { host: '127.0.0.1', port: 0 },
        log: { level: 'silent' },
      },
      { logger: pino({ level: 'silent' }) },
    );
    const client = async (id: string) => {
      const c = new RelayClient({
        url: `wss://127.0.0.1:${relay.port}`,
        servername: 'localhost',
        identity: loadIdentity({ ...fed.agents[id]!, crl: fed.crlPath }),
        reconnect: false,
      });
      await c.connect();
      return c;
    };
    const ctx: RelayCtx = { fed, relay, alpha: await client('alpha'), bravo: await client('bravo'), disconnects: 0, seq: 0, runs: new Set() };
    for (const c of [ctx.alpha, ctx.bravo]) {
      c.on('disconnected', () => void ctx.disconnects++);
      // Mallory may open transfers or send messages to them: drain and ignore those.
      c.on('transfer', (t) => {
        t.on('error', () => undefined);
        if (t.from !== 'alpha') t.resume();
      });
    }
    return ctx;
  },
  async teardown(ctx) {
    await settleRuns(ctx.runs);
    await ctx.alpha.close();
    await ctx.bravo.close();
    await ctx.relay.close(0);
  },
  properties: {
    'a connection sending garbage or mutated frames is closed with a protocol close code; alpha and bravo keep exchanging; the relay stays up': {
      quickRuns: 12,
      build: (ctx) =>
        fc.asyncProperty(hostileFramesArb, (frames) =>
          tracked(ctx.runs, async () => {
            const [closed] = await Promise.all([hostile(ctx, frames), healthyExchange(ctx)]);
            if (!closed.opened) throw new Error(`the hostile agent could not connect (close ${closed.code})`);
            if (!HOSTILE_CLOSE_CODES.has(closed.code)) throw new Error(`hostile connection closed with ${closed.code}, not a protocol close code`);
            if (ctx.disconnects > 0) throw new Error('a healthy agent was disconnected');
            await healthyExchange(ctx);
            const health = await fetch(`http://127.0.0.1:${ctx.relay.adminPort}/healthz`);
            if (health.status !== 200) throw new Error(`relay /healthz answered ${health.status}`);
            const agents = ((await (await fetch(`http://127.0.0.1:${ctx.relay.adminPort}/v1/agents`)).json()) as { agents: Array<{ id: string }> }).agents.map(
              (a) => a.id,
            );
            if (!agents.includes('alpha') || !agents.includes('bravo')) throw new Error(`relay lost healthy agents: ${agents.join(', ')}`);
          }),
        ),
    },
  },
};
