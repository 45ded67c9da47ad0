import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startRelay, type RelayConfigInput, type RunningRelay } from '../../relay/index.ts';
import { parseAgentConfig, type AgentConfig } from '../../hospital-agent/config.ts';
import { startAgent, type RunningAgent } from '../../hospital-agent/agent.ts';
import { makeFederation, type TestFederation } from './federation.ts';

/** API token every test agent accepts. */
export const TEST_TOKEN = 'test-token-0123456789abcdef0123456789abcdef';
/** What an agent's config can name (`inbox.webhook.tokenEnv: TEST_WEBHOOK_TOKEN`) as the bearer token of its EHR webhook. */
export const TEST_WEBHOOK_TOKEN = 'webhook-token-fedcba9876543210';

/** A relay and agents, all in this process, on loopback. */
export interface TestNetwork {
  fed: TestFederation;
  relay: RunningRelay;
  agents: Record<string, RunningAgent>;
  secrets: Record<string, string>;
  configs: Record<string, AgentConfig>;
  /** Calls an agent's API with the test token. */
  api(id: string, path: string, init?: RequestInit): Promise<Response>;
  startAgent(id: string): Promise<RunningAgent>;
  /** Stops the relay abruptly (no grace) and starts a new one on the same port. */
  restartRelay(options?: { downMs?: number }): Promise<RunningRelay>;
  /** Every line the relay logged (JSON), when `captureRelayLog` was set. */
  relayLog: string[];
  /** Every line each agent logged (JSON), when `captureAgentLog` was set. */
  agentLog: Record<string, string[]>;
  close(): Promise<void>;
}

/** Starts a relay (tariff: 10 minor units per transfer + 100 per GiB, release fee 250, EUR) and one agent per id. */
export async function startNetwork(
  root: string,
  ids: string[],
  options: {
    agentStart?: boolean;
    captureRelayLog?: boolean;
    captureAgentLog?: boolean;
    /** Extra top-level relay config sections (e.g. `directory`), merged over the defaults section by section. */
    relay?: Record<string, Record<string, unknown>>;
    /** False: agents get no `identity.crl` (only what the relay hands them). */
    agentCrl?: boolean;
    /** `name[@role]:token` entries every agent accepts besides the test token. */
    extraTokens?: string;
    /** Every line the agents log, at debug level (JSON), is pushed here. */
    agentLog?: string[];
    /** The agents' `replication.mode` (default: the agent's default, `private`). */
    replicationMode?: 'private' | 'full';
  } = {},
): Promise<TestNetwork> {
  const fed = makeFederation(root, ids);
  const relayLog: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      relayLog.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const relayLogger = options.captureRelayLog ? pino({ level: 'debug' }, sink) : pino({ level: process.env['HIE_TEST_LOG'] ?? 'silent' });
  const base = (port: number): Record<string, Record<string, unknown>> => ({
    listen: { host: '127.0.0.1', port },
    tls: { cert: fed.relay.cert, key: fed.relay.key, ca: fed.relay.ca, crl: fed.crlPath },
    admin: { host: '127.0.0.1', port: 0 },
    tariff: { currency: 'EUR', perTransfer: 10, perGiB: 100, releaseFee: 250 },
    log: { level: 'silent' as const },
  });
  const relayConfig = (port: number): RelayConfigInput => {
    const c = base(port);
    for (const [k, v] of Object.entries(options.relay ?? {})) c[k] = { ...c[k], ...v };
    // Checked by startRelay's parser.
    return c as unknown as RelayConfigInput;
  };
  let relay = await startRelay(relayConfig(0), { logger: relayLogger });
  const secrets: Record<string, string> = {};
  const configs: Record<string, AgentConfig> = {};
  for (const id of ids) {
    secrets[id] = randomBytes(32).toString('hex');
    const files = fed.agents[id]!;
    configs[id] = parseAgentConfig({
      id,
      identity: { cert: files.cert, key: files.key, ca: files.ca, ...(options.agentCrl === false ? {} : { crl: fed.crlPath }) },
      relay: { urls: [`wss://localhost:${relay.port}`] },
      peers: ids.filter((p) => p !== id),
      dataDir: join(root, 'data', id),
      api: { host: '127.0.0.1', port: 0 },
      log: { level: 'silent' },
      ...(options.replicationMode ? { replication: { mode: options.replicationMode } } : {}),
    });
  }
  const agents: Record<string, RunningAgent> = {};
  const agentLog: Record<string, string[]> = {};
  const agentLogger = (id: string): pino.Logger => {
    if (!options.captureAgentLog) return pino({ level: process.env['HIE_TEST_LOG'] ?? 'silent', base: { agent: id } });
    const lines = (agentLog[id] ??= []);
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        cb();
      },
    });
    return pino({ level: 'debug', base: { agent: id } }, out);
  };
  const start = async (id: string): Promise<RunningAgent> => {
    const tokens = options.extraTokens ? `test:${TEST_TOKEN},${options.extraTokens}` : `test:${TEST_TOKEN}`;
    const agentLog = options.agentLog;
    const logger = agentLog
      ? pino(
          { level: 'debug', base: { agent: id } },
          new Writable({
            write(chunk: Buffer, _enc, cb) {
              agentLog.push(...chunk.toString('utf8').split('\n').filter(Boolean));
              cb();
            },
          }),
        )
      : pino({ level: process.env['HIE_TEST_LOG'] ?? 'silent', base: { agent: id } });
    const a = await startAgent(configs[id]!, {
      env: { HIE_AGENT_API_TOKENS: tokens, HIE_AGENT_PATIENT_SECRET: secrets[id], TEST_WEBHOOK_TOKEN: TEST_WEBHOOK_TOKEN },
      logger: agentLog ? logger : agentLogger(id),
    });
    agents[id] = a;
    return a;
  };
  if (options.agentStart !== false) for (const id of ids) await start(id);
  const net: TestNetwork = {
    fed,
    relay,
    agents,
    secrets,
    configs,
    startAgent: start,
    relayLog,
    agentLog,
    restartRelay: async ({ downMs = 0 } = {}) => {
      const port = relay.port;
      await relay.close(0);
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      relay = await startRelay(relayConfig(port), { logger: relayLogger });
      net.relay = relay;
      return relay;
    },
    api: (id, path, init = {}) => {
      const a = agents[id];
      if (!a) throw new Error(`agent ${id} is not running`);
      return fetch(`http://127.0.0.1:${a.apiPort}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(init.headers as Record<string, string> | undefined) },
      }).catch((err: unknown) => {
        // Name the request: a bare undici "terminated" says nothing about which call lost its connection.
        throw new Error(`${init.method ?? 'GET'} ${path} on ${id}: ${(err as Error).message}`, { cause: err });
      });
    },
    close: async () => {
      for (const a of Object.values(agents)) await a.close().catch(() => undefined);
      await relay.close(0);
    },
  };
  return net;
}

/** Waits until `fn` returns a truthy value (polling), or throws after `ms`. */
export async function waitFor<T>(fn: () => Promise<T> | T, ms = 20_000, what = 'condition'): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Grants a consent at `from` for `patientId` to `to` (valid for a day); returns its id, or throws with the API's answer. */
export async function grantConsent(net: TestNetwork, from: string, to: string, patientId: string, scope: string[] = ['*']): Promise<string> {
  const res = await net.api(from, '/v1/consents', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ patientId, grantee: to, purposes: ['TREAT'], scope, validUntil: new Date(Date.now() + 86_400_000).toISOString() }),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`consent grant at ${from} answered ${res.status}: ${text}`);
  return (JSON.parse(text) as { id: string }).id;
}
