// Shared pieces of the fault-injection tests: the relay as a real process that
// a test can SIGKILL and restart on the same port, agent API calls that work for
// in-process and child-process agents alike, and the checks every scenario ends
// with (exactly-once delivery, no partial inbox file, verified converged ledgers).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { TEST_TOKEN, waitFor } from '../../support/agents.ts';
import type { TestFederation } from '../../support/federation.ts';

const RELAY_BIN = fileURLToPath(new URL('../../../bin/hie-relay.js', import.meta.url));

/** The relay running as its own process. */
export interface RelayProcess {
  child: ChildProcess;
  port: number;
  adminPort: number;
  /** Resident set size of the relay process now (Linux /proc). */
  rss(): number;
  /** SIGKILL (no drain, no goodbye frames) and wait for the exit. */
  kill(): Promise<void>;
}

/** Extra relay settings a scenario needs (e.g. a short write timeout for the slow consumer). */
export type RelayLimits = Partial<{ writeTimeoutMs: number; highWaterMark: number; maxConnections: number }>;

/** Starts `hie-relay` as a child process on `port` (0: any) with the federation's relay certificate. */
export async function spawnRelay(fed: TestFederation, dir: string, port = 0, limits: RelayLimits = {}): Promise<RelayProcess> {
  const file = join(dir, `relay-${port}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      listen: { host: '127.0.0.1', port },
      tls: { ...fed.relay, crl: fed.crlPath },
      admin: { host: '127.0.0.1', port: 0 },
      tariff: { currency: 'EUR', perTransfer: 10, perGiB: 100 },
      ...(Object.keys(limits).length > 0 ? { limits } : {}),
      log: { level: 'info' },
    }),
  );
  const child = spawn(process.execPath, [RELAY_BIN, '--config', file], { env: { ...process.env, HIE_FROM_SOURCE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ports = await new Promise<{ port: number; adminPort: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`relay did not start: ${out.slice(-1000)}`)), 30_000);
    const onData = (d: string): void => {
      if (out.length < 100_000) out += d;
      const line = out.split('\n').find((l) => l.includes('"relay listening"'));
      if (line) {
        clearTimeout(timer);
        const j = JSON.parse(line) as { port: number; adminPort: number };
        resolve({ port: j.port, adminPort: j.adminPort });
      }
    };
    child.stdout?.setEncoding('utf8').on('data', onData);
    child.stderr?.setEncoding('utf8').on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited with ${code}: ${out.slice(-1000)}`));
    });
  });
  child.removeAllListeners('exit');
  return {
    child,
    ...ports,
    rss: () => {
      const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
      return Number(kb ?? 0) * 1024;
    },
    kill: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

/** Reads one counter or gauge (summed over labels) from the relay's /metrics. */
export async function relayMetric(relay: { adminPort: number }, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${relay.adminPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`).exec(line);
    if (m) sum += Number(m[1]);
  }
  return sum;
}

/** An agent as the tests see it: where its API listens now and where its data lives. */
export interface AgentHandle {
  id: string;
  dataDir: string;
  port: () => number;
}

/** Calls an agent's API with the test token and parses the JSON answer. */
export async function call<T = Record<string, unknown>>(
  a: AgentHandle,
  path: string,
  init: RequestInit & { duplex?: 'half' } = {},
): Promise<{ status: number; body: T }> {
  const res = await fetch(`http://127.0.0.1:${a.port()}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(init.headers as Record<string, string> | undefined) },
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
}

/** Grants `to` a consent for `patientId` at `from` (valid one day); returns the consent id. */
export async function grant(from: AgentHandle, to: string, patientId: string): Promise<string> {
  const r = await call<{ id: string }>(from, '/v1/consents', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ patientId, grantee: to, validUntil: new Date(Date.now() + 86_400_000).toISOString() }),
  });
  expect(r.status, JSON.stringify(r.body)).to.equal(201);
  return r.body.id;
}

/** Submits one exchange; returns its id once the API accepted it (202). */
export async function submit(
  from: AgentHandle,
  to: string,
  o: { consent: string; patientId: string; body: Buffer | NodeJS.ReadableStream; contentType: string; length?: number },
): Promise<string> {
  const r = await call<{ id: string }>(from, '/v1/exchanges', {
    method: 'POST',
    headers: {
      'content-type': o.contentType,
      'hie-recipient': to,
      'hie-patient-id': o.patientId,
      'hie-consent-id': o.consent,
      ...(o.length !== undefined ? { 'content-length': String(o.length) } : {}),
    },
    body: o.body as unknown as RequestInit['body'],
    duplex: 'half',
  });
  expect(r.status, JSON.stringify(r.body)).to.equal(202);
  return r.body.id;
}

/** An exchange as the sender's API shows it. */
export interface ExchangeView {
  id: string;
  to: string;
  status: string;
  attempts: number;
  contentSha256: string;
  failure?: { code?: string; reason?: string; message?: string };
}

/** Waits until every exchange is delivered or failed at its sender; returns the final views. */
export async function settle(from: AgentHandle, ids: string[], ms = 90_000): Promise<ExchangeView[]> {
  const out: ExchangeView[] = [];
  for (const id of ids) {
    out.push(
      await waitFor(
        async () => {
          const r = await call<ExchangeView>(from, `/v1/exchanges/${id}`).catch(() => undefined);
          return r && (r.body.status === 'delivered' || r.body.status === 'failed') ? r.body : undefined;
        },
        ms,
        `exchange ${id} from ${from.id} to finish`,
      ),
    );
  }
  return out;
}

/** A SHA-256 as hex, whether given as hex or base64url (the inbox shows base64url, the outbox hex). */
export function hex(h: string): string {
  return /^[0-9a-f]{64}$/.test(h) ? h : Buffer.from(h, 'base64url').toString('hex');
}

/** Inbox items of an agent (verified, released files only). */
export async function inbox(a: AgentHandle): Promise<Array<{ exchangeId: string; from: string; contentSha256: string; bytes: number }>> {
  return (await call<{ items: Array<{ exchangeId: string; from: string; contentSha256: string; bytes: number }> }>(a, '/v1/inbox')).body.items;
}

/**
 * The promise every fault scenario ends with: each accepted exchange is
 * delivered exactly once (one inbox item, same content hash as submitted) or
 * failed with a reason; no inbox lists an id twice; nothing is left in any
 * quarantine; every ledger verifies with no grace and all ledgers converge.
 */
export async function assertSound(agents: AgentHandle[], sent: Array<{ from: AgentHandle; ids: string[] }>, o: { allowFailed?: boolean } = {}): Promise<void> {
  const byId = new Map(agents.map((a) => [a.id, a]));
  const finals: Array<{ from: AgentHandle; views: ExchangeView[] }> = [];
  for (const { from, ids } of sent) finals.push({ from, views: await settle(from, ids) });
  const inboxes = new Map<string, Awaited<ReturnType<typeof inbox>>>();
  for (const a of agents) {
    const items = await inbox(a);
    const ids = items.map((i) => i.exchangeId);
    expect(new Set(ids).size, `${a.id} inbox lists an exchange twice`).to.equal(ids.length);
    inboxes.set(a.id, items);
  }
  for (const { from, views } of finals) {
    for (const x of views) {
      const items = (inboxes.get(x.to) ?? []).filter((i) => i.exchangeId === x.id);
      if (x.status === 'delivered') {
        expect(items, `exchange ${x.id} delivered once to ${x.to}`).to.have.length(1);
        expect(hex(items[0]!.contentSha256)).to.equal(hex(x.contentSha256));
        expect(items[0]!.from).to.equal(from.id);
      } else {
        expect(o.allowFailed, `exchange ${x.id} failed: ${JSON.stringify(x.failure)}`).to.equal(true);
        expect(x.failure, `exchange ${x.id} failed without a reason`).to.be.an('object');
        expect(items, `failed exchange ${x.id} is in ${x.to}'s inbox`).to.have.length(0);
      }
      expect(byId.has(x.to)).to.equal(true);
    }
  }
  // Receivers may still be finishing a discarded attempt: wait for quarantines to drain, never for them to be listed.
  for (const a of agents) {
    const q = join(a.dataDir, 'inbox', 'quarantine');
    await waitFor(() => !existsSync(q) || readdirSync(q).length === 0, 30_000, `${a.id} quarantine to be empty`);
  }
  await assertLedgers(agents);
}

/** Every ledger converges (same feeds at the same heads) and verifies with grace=0. */
export async function assertLedgers(agents: AgentHandle[], ms = 60_000): Promise<void> {
  let views: string[] = [];
  await waitFor(
    async () => {
      views = await Promise.all(
        agents.map(async (a) =>
          JSON.stringify(
            (await call<{ feeds: Array<{ feed: string; seq: number; hash?: string }> }>(a, '/v1/ledger/status')).body.feeds
              .map((f) => [f.feed, f.seq, f.hash])
              .sort(),
          ),
        ),
      );
      return new Set(views).size === 1;
    },
    ms,
    'ledgers to converge',
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${views.join(' | ')}`);
  });
  for (const a of agents) {
    const v = (await call<{ ok: boolean; findings: unknown[] }>(a, '/v1/ledger/verify?grace=0')).body;
    expect(v.findings, `${a.id}: ${JSON.stringify(v.findings)}`).to.deep.equal([]);
    expect(v.ok, `${a.id} ledger verifies`).to.equal(true);
  }
}
