import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { expect } from 'chai';
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { clientTlsOptions, loadIdentity } from '../../certs/index.ts';
import { ConfigError, startRelay, type RelayConfigInput, type RunningRelay } from '../../relay/index.ts';
import { RelayClient, type RelayClientOptions } from '../../relay/protocol/index.ts';
import type { TestFederation } from '../support/federation.ts';

/** Starts an in-process relay on loopback port 0 with the federation's relay certificate. */
export async function startTestRelay(fed: TestFederation, overrides: Partial<{ [K in keyof RelayConfigInput]: object }> = {}): Promise<RunningRelay> {
  const config: RelayConfigInput = {
    listen: { host: '127.0.0.1', port: 0 },
    tls: { cert: fed.relay.cert, key: fed.relay.key, ca: fed.caPath, crl: fed.crlPath, crlPollMs: 100 },
    admin: { host: '127.0.0.1', port: 0 },
    tariff: { currency: 'EUR', perTransfer: 5, perGiB: 100 },
    log: { level: 'silent' },
    ...overrides,
  } as RelayConfigInput;
  return startRelay(config, { logger: pino({ level: process.env.HIE_TEST_LOG ?? 'silent' }) });
}

/** A connected relay client for agent `id`. */
export async function connectAgent(fed: TestFederation, relay: RunningRelay, id: string, options: Partial<RelayClientOptions> = {}): Promise<RelayClient> {
  const files = fed.agents[id];
  if (!files) throw new Error(`no agent ${id}`);
  const client = new RelayClient({
    url: `wss://127.0.0.1:${relay.port}`,
    servername: 'localhost',
    identity: loadIdentity({ ...files, crl: fed.crlPath }),
    reconnect: false,
    ...options,
  });
  await client.connect();
  return client;
}

/** A raw WebSocket to the relay with an agent's certificate (for sending hand-made frames). */
export async function rawAgent(fed: TestFederation, relay: RunningRelay, id: string): Promise<WebSocket> {
  const files = fed.agents[id];
  if (!files) throw new Error(`no agent ${id}`);
  const ws = new WebSocket(`wss://127.0.0.1:${relay.port}/v1/agent`, { ...clientTlsOptions(loadIdentity(files)), perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return ws;
}

/** A deterministic pseudo-random byte stream of `total` bytes, and the SHA-256 of what it produced. */
export function patternStream(total: number, chunk = 256 * 1024): { stream: Readable; digest: () => string } {
  const block = randomBytes(chunk);
  const hash = createHash('sha256');
  let sent = 0;
  let n = 0;
  const stream = new Readable({
    highWaterMark: chunk,
    read() {
      if (sent >= total) return void this.push(null);
      const size = Math.min(chunk, total - sent);
      const buf = Buffer.allocUnsafe(size);
      block.copy(buf, 0, 0, size);
      buf.writeUInt32BE(n++ >>> 0, 0);
      sent += size;
      hash.update(buf);
      this.push(buf);
    },
  });
  return { stream, digest: () => hash.digest('hex') };
}

/** SHA-256 and length of everything a readable yields. */
export async function hashOf(stream: AsyncIterable<Buffer>): Promise<{ hex: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { hex: hash.digest('hex'), bytes };
}

/** Resolves when `cond` is true, polling; rejects after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** GET a path on the relay's admin listener. */
export async function admin(relay: RunningRelay, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${relay.adminPort}${path}`);
  return { status: res.status, text: await res.text() };
}

/** The ConfigError `fn` throws (fails the test when it throws something else or nothing). */
export function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}
