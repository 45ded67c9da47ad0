import { pino } from 'pino';
import { startRelay, type RelayConfigInput, type RunningRelay } from '../../relay/index.ts';
import type { TestFederation } from '../support/federation.ts';
import { startNats, type NatsServer } from '../support/nats.ts';

/** A nats-server (TLS, one user per relay node) and relay nodes n1..nN on loopback. */
export interface TestCluster {
  nats: NatsServer;
  relays: RunningRelay[];
  /** Env holding every node's NATS user and password. */
  env: NodeJS.ProcessEnv;
  /** `wss://localhost:<port>` of the i-th node started in this process. */
  url(i: number): string;
  /** The relay config of node i (port 0 unless given). */
  config(i: number, port?: number): RelayConfigInput;
  close(): Promise<void>;
}

/**
 * Starts nats-server with TLS (the relay certificate) and a user per node, then
 * relay nodes using it: all `count`, or only the node indexes in `only`.
 */
export async function startCluster(
  fed: TestFederation,
  dir: string,
  count = 3,
  overrides: Partial<RelayConfigInput> = {},
  only?: number[],
): Promise<TestCluster> {
  const users = Array.from({ length: count }, (_, i) => ({ user: `relay-n${i + 1}`, password: `pw-${i + 1}-${Math.random().toString(36).slice(2)}` }));
  const nats = await startNats({ dir, tls: { cert: fed.relay.cert, key: fed.relay.key, ca: fed.caPath }, users });
  const env: NodeJS.ProcessEnv = {};
  users.forEach((u, i) => {
    env[`NATS_USER_N${i + 1}`] = u.user;
    env[`NATS_PASSWORD_N${i + 1}`] = u.password;
  });
  const config = (i: number, port = 0): RelayConfigInput =>
    ({
      listen: { host: '127.0.0.1', port },
      tls: { cert: fed.relay.cert, key: fed.relay.key, ca: fed.caPath, crl: fed.crlPath },
      admin: { host: '127.0.0.1', port: 0 },
      tariff: { currency: 'EUR', perTransfer: 5, perGiB: 100 },
      log: { level: 'silent' },
      node: { id: `n${i + 1}` },
      nats: {
        servers: [nats.url],
        userEnv: `NATS_USER_N${i + 1}`,
        passwordEnv: `NATS_PASSWORD_N${i + 1}`,
        tls: { ca: fed.caPath },
        nodeCheckMs: 500,
        requestTimeoutMs: 1000,
      },
      ...overrides,
    }) as RelayConfigInput;
  const logger = pino({ level: process.env['HIE_TEST_LOG'] ?? 'silent' });
  const relays: RunningRelay[] = [];
  for (const i of only ?? Array.from({ length: count }, (_, k) => k)) relays.push(await startRelay(config(i), { logger, env }));
  return {
    nats,
    relays,
    env,
    url: (i) => `wss://localhost:${relays[i]?.port}`,
    config,
    close: async () => {
      for (const r of relays) await r.close(0).catch(() => undefined);
      await nats.stop();
    },
  };
}

/** The value of a Prometheus sample (summed over label sets matching `labels`). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries(
      (m[3] ?? '')
        .split(',')
        .filter(Boolean)
        .map((kv) => kv.split('=').map((x) => x.replace(/"/g, '')) as [string, string]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[4]);
  }
  return sum;
}
