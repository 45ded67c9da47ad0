// The soak's cluster as real processes: a federation PKI, nats-server (TLS, a user per relay node), two `hie-relay`
// nodes and four `hie-agent`s, each of which can be SIGKILLed and restarted on the same port (nats, relays) or the
// same data directory (agents). Every output line goes to <dir>/logs/<name>.log for a post-mortem.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority } from '../../certs/index.ts';
import { AGENT_NODE_FLAGS, RELAY_NODE_FLAGS } from '../lib/federation.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** How long one process may take to come up before the soak gives up on it. */
const START_TIMEOUT_MS = 60_000;
/** Attempts to rebind a port a SIGKILLed process held. */
const REBIND_ATTEMPTS = 10;

/** What the soak kills. */
export type Kind = 'relay' | 'agent' | 'nats';

/** One restartable process of the cluster. */
export interface Member {
  kind: Kind;
  name: string;
  /** Whether the process runs now. */
  up(): boolean;
  /** Starts the process (same port or data directory as before) and resolves once it serves. */
  start(): Promise<void>;
  /** SIGKILL (or `signal`) and wait for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** The last lines it wrote. */
  tail(): string[];
}

/** An agent member: its id, API port and the token of its API. */
export interface AgentMember extends Member {
  kind: 'agent';
  id: string;
  dataDir: string;
  apiPort(): number;
}

/** The started cluster. */
export interface SoakCluster {
  dir: string;
  token: string;
  nats: Member;
  relays: Member[];
  agents: AgentMember[];
  all(): Member[];
  /** Stops every process (SIGTERM, SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILLs every process now (signal handlers: nothing awaited). */
  killNow(): void;
}

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
}

/** A child process whose output goes to a log file and a ring of recent lines, resolving `ready` from a line matcher. */
function launch<T>(
  name: string,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  log: WriteStream,
  ring: string[],
  ready: (line: string) => T | undefined,
): { running: Running; ready: Promise<T> } {
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let found = false;
  let partial = '';
  let resolveReady!: (v: T) => void;
  let rejectReady!: (e: Error) => void;
  const readyP = new Promise<T>((res, rej) => {
    resolveReady = res;
    rejectReady = rej;
  });
  const timer = setTimeout(
    () => rejectReady(new Error(`${name} did not start within ${START_TIMEOUT_MS} ms: ${ring.slice(-5).join(' | ')}`)),
    START_TIMEOUT_MS,
  );
  const onData = (d: Buffer): void => {
    log.write(d);
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      ring.push(line);
      if (!found) {
        const v = ready(line);
        if (v !== undefined) {
          found = true;
          clearTimeout(timer);
          resolveReady(v);
        }
      }
    }
    if (ring.length > 300) ring.splice(0, ring.length - 300);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  child.once('error', (err) => rejectReady(new Error(`${name}: ${err.message}`)));
  void exited.then(() => {
    clearTimeout(timer);
    if (!found) rejectReady(new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before it served: ${ring.slice(-5).join(' | ')}`));
  });
  return { running: { child, exited }, ready: readyP };
}

function member<T>(
  kind: Kind,
  name: string,
  logDir: string,
  spawnIt: (log: WriteStream, ring: string[]) => { running: Running; ready: Promise<T> },
  onReady: (v: T) => void,
): Member {
  const log = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' });
  const ring: string[] = [];
  let current: Running | undefined;
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    const r = current;
    if (!r) return;
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill(signal);
    await r.exited;
    if (current === r) current = undefined;
  };
  return {
    kind,
    name,
    up: () => current !== undefined && current.child.exitCode === null && current.child.signalCode === null,
    tail: () => ring.slice(-20),
    kill,
    start: async () => {
      for (let attempt = 1; ; attempt += 1) {
        log.write(`\n--- soak: starting ${name} (attempt ${attempt}) at ${new Date().toISOString()}\n`);
        const { running, ready } = spawnIt(log, ring);
        current = running;
        try {
          onReady(await ready);
          return;
        } catch (err) {
          await kill();
          // A SIGKILLed process's port can take a moment to be free again.
          if (attempt >= REBIND_ATTEMPTS || !/EADDRINUSE|address already in use/i.test(ring.slice(-10).join('\n'))) throw err;
          await new Promise((r) => setTimeout(r, 300 * attempt));
        }
      }
    },
  };
}

/** Creates the PKI under `dir`, starts nats-server, two relay nodes and four agents (alpha, bravo on n1 first; charlie, delta on n2 first). */
export async function startCluster(dir: string, agentIds: readonly string[] = ['alpha', 'bravo', 'charlie', 'delta']): Promise<SoakCluster> {
  const logDir = join(dir, 'logs');
  mkdirSync(logDir, { recursive: true });
  const ca = CertificateAuthority.init(join(dir, 'pki'), { name: 'Soak Federation CA', keyBits: 2048 });
  const r = ca.issueRelay({ hosts: ['localhost', '127.0.0.1'], outDir: join(dir, 'relay') });
  const pki = { cert: r.certPath, key: r.keyPath, ca: r.caPath };
  const token = randomBytes(24).toString('hex');
  const users = ['n1', 'n2'].map((n) => ({ node: n, user: `relay-${n}`, password: randomBytes(12).toString('hex') }));

  // nats-server: the first start picks a port; restarts reuse it so the relays' reconnects find it.
  let natsPort = -1;
  const natsConf = (): string => {
    const file = join(dir, 'nats.conf');
    const u = users.map((x) => `{ user: ${JSON.stringify(x.user)}, password: ${JSON.stringify(x.password)} }`).join(', ');
    writeFileSync(
      file,
      [
        `listen: "127.0.0.1:${natsPort}"`,
        'max_payload: 1048576',
        'no_sys_acc: true',
        `tls { cert_file: ${JSON.stringify(pki.cert)}, key_file: ${JSON.stringify(pki.key)}, ca_file: ${JSON.stringify(pki.ca)}, timeout: 5 }`,
        `authorization { users: [ ${u} ] }`,
        '',
      ].join('\n'),
    );
    return file;
  };
  const nats = member(
    'nats',
    'nats',
    logDir,
    (log, ring) =>
      launch('nats', 'nats-server', ['-c', natsConf()], {}, log, ring, (l) => {
        const m = /Listening for client connections on 127\.0\.0\.1:(\d+)/.exec(l);
        return m ? Number(m[1]) : undefined;
      }),
    (port) => {
      natsPort = port;
    },
  );
  await nats.start();

  const relayPorts: Record<string, number> = {};
  const relays = users.map((u) =>
    member(
      'relay',
      `relay-${u.node}`,
      logDir,
      (log, ring) => {
        const file = join(dir, `relay-${u.node}.json`);
        writeFileSync(
          file,
          JSON.stringify({
            listen: { host: '127.0.0.1', port: relayPorts[u.node] ?? 0 },
            tls: { ...pki, crl: ca.crlPath },
            admin: { host: '127.0.0.1', port: 0 },
            tariff: { currency: 'EUR', perTransfer: 10, perGiB: 100 },
            log: { level: 'info' },
            node: { id: u.node },
            nats: { servers: [`tls://127.0.0.1:${natsPort}`], userEnv: 'NATS_USER', passwordEnv: 'NATS_PASSWORD', tls: { ca: pki.ca } },
          }),
        );
        return launch(
          `relay-${u.node}`,
          process.execPath,
          [...RELAY_NODE_FLAGS, join(ROOT, 'bin', 'hie-relay.js'), '--config', file],
          { NATS_USER: u.user, NATS_PASSWORD: u.password },
          log,
          ring,
          (l) => (l.includes('"relay listening"') ? (JSON.parse(l) as { port: number }).port : undefined),
        );
      },
      (port) => {
        relayPorts[u.node] = port;
      },
    ),
  );
  try {
    for (const relay of relays) await relay.start();
  } catch (err) {
    for (const x of [...relays, nats]) void x.kill('SIGKILL');
    throw err;
  }

  const urls = [`wss://localhost:${relayPorts['n1']}`, `wss://localhost:${relayPorts['n2']}`];
  const agents: AgentMember[] = agentIds.map((id, i) => {
    ca.issueAgent({ id, org: `${id} hospital`, outDir: join(dir, id, 'certs') });
    const secret = randomBytes(32).toString('hex');
    const dataDir = join(dir, id, 'data');
    const file = join(dir, id, 'agent.json');
    writeFileSync(
      file,
      JSON.stringify(
        {
          id,
          identity: { cert: `certs/${id}.crt.pem`, key: `certs/${id}.key.pem`, ca: 'certs/ca.crt.pem', crl: ca.crlPath },
          // Half the agents prefer n1, half n2: exchanges cross NATS, and a node's death moves its agents to the other.
          relay: { urls: i % 2 === 0 ? urls : [...urls].reverse() },
          peers: agentIds.filter((p) => p !== id),
          dataDir,
          api: { host: '127.0.0.1', port: 0 },
          log: { level: 'info' },
        },
        null,
        2,
      ),
    );
    let port = 0;
    const m = member(
      'agent',
      id,
      logDir,
      (log, ring) =>
        launch(
          id,
          process.execPath,
          [...AGENT_NODE_FLAGS, join(ROOT, 'bin', 'hie-agent.js'), 'start', '--config', file],
          { HIE_AGENT_API_TOKENS: `soak:${token}`, HIE_AGENT_PATIENT_SECRET: secret },
          log,
          ring,
          (l) => {
            const x = /API on [^\s]+:(\d+),/.exec(l);
            return x ? Number(x[1]) : undefined;
          },
        ),
      (p) => {
        port = p;
      },
    );
    return { ...m, kind: 'agent' as const, id, dataDir, apiPort: () => port };
  });
  const all = (): Member[] => [...agents, ...relays, nats];
  const cluster: SoakCluster = {
    dir,
    token,
    nats,
    relays,
    agents,
    all,
    stop: async (graceMs = 10_000) => {
      // Agents first (they drain), then relays, then NATS.
      for (const group of [agents as Member[], relays, [nats]]) {
        await Promise.all(
          group.map(async (x) => {
            const timer = setTimeout(() => void x.kill('SIGKILL'), graceMs);
            await x.kill('SIGTERM');
            clearTimeout(timer);
          }),
        );
      }
    },
    killNow: () => {
      for (const x of all()) void x.kill('SIGKILL');
    },
  };
  try {
    for (const a of agents) await a.start();
  } catch (err) {
    cluster.killNow();
    throw err;
  }
  return cluster;
}
