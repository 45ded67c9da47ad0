// A local federation of real processes for the demo and the benches: a CA and
// certificates, `hie-relay` and one `hie-agent` per hospital, each a child
// process on 127.0.0.1, talking over real mTLS.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority, DirectoryStore, type MemberRole } from '../../certs/index.ts';
import { spawnChild, stopChild } from './children.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A child process started from one of the package's bins, with its recent output. */
export interface Proc {
  name: string;
  child: ChildProcess;
  log: string[];
}

/** What a started federation offers. */
export interface LocalFederation {
  dir: string;
  ca: CertificateAuthority;
  relay: Proc;
  relayPort: number;
  adminPort: number | undefined;
  procs: Proc[];
  apis: Record<string, string>;
  tokens: Record<string, string>;
  /** Calls a hospital's API with its token; parses JSON answers. */
  api(hospital: string, path: string, init?: RequestInit & { duplex?: 'half' }): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }>;
  /** SIGTERM to every process (SIGKILL after 15 s); resolves when all exited. */
  stop(): Promise<void>;
}

/** Options of {@link startLocalFederation}. */
export interface FederationOptions {
  dir: string;
  hospitals: readonly string[];
  tariff?: { currency: string; perTransfer: number; perGiB: number; releaseFee?: number };
  maxConcurrentSends?: number;
  logLevel?: string;
  /** Called after each process is up (narration). */
  onStarted?: (what: string) => void;
  /** Member roles (id -> role; others are hospitals): given, the CA signs a member directory of every agent and the relay hands it out. */
  roles?: Record<string, MemberRole>;
}

/**
 * Node flags the relay runs with, as bin/'s shebang, the systemd unit and the Dockerfile give them
 * (docs/performance.md): V8's parallel GC helper threads cost more CPU than they save on a small
 * host running busy streams.
 */
export const RELAY_NODE_FLAGS: readonly string[] = ['--single-threaded-gc'];

/**
 * Node flags the agent runs with (same places): the relay's, and a larger initial old space. With
 * V8's small default limit, an agent streaming gigabytes through its buffers ran a full
 * mark-compact again right after each one ended; the relay does not (its buffers die young).
 */
export const AGENT_NODE_FLAGS: readonly string[] = [...RELAY_NODE_FLAGS, '--initial-old-space-size=128'];

/**
 * Starts a process from bin/ and keeps its last 500 output lines. For looking into a bench:
 * `HIE_CPU_PROFILE_DIR` makes each process write a V8 CPU profile there when it exits;
 * `HIE_EXTRA_NODE_FLAGS` adds node flags (e.g. `--trace-gc`); `HIE_PROC_LOG_DIR` copies each
 * process's stdout to `<name>.log` there.
 */
export function startProc(name: string, bin: string, args: string[], env: Record<string, string>): Proc {
  const profileDir = process.env['HIE_CPU_PROFILE_DIR'];
  const nodeArgs = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
  const extra = (process.env['HIE_EXTRA_NODE_FLAGS'] ?? '').split(' ').filter(Boolean);
  const child = spawnChild(
    process.execPath,
    [...nodeArgs, ...(bin === 'hie-agent.js' ? AGENT_NODE_FLAGS : RELAY_NODE_FLAGS), ...extra, join(ROOT, 'bin', bin), ...args],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const log: string[] = [];
  const keep = (d: Buffer): void => {
    log.push(...d.toString('utf8').split('\n').filter(Boolean));
    if (log.length > 500) log.splice(0, log.length - 500);
  };
  if (process.env['HIE_PROC_LOG_DIR']) child.stdout?.pipe(createWriteStream(join(process.env['HIE_PROC_LOG_DIR'], `${name}.log`)));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { name, child, log };
}

/** Polls `fn` until it returns a value; errors are retried and shown if time runs out. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ` (${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stops processes with SIGTERM (SIGKILL after 15 s). */
export async function stopProcs(procs: Proc[]): Promise<void> {
  await Promise.all([...procs].reverse().map((p) => stopChild(p.child, 15_000)));
}

/** Creates the PKI under `dir` and starts the relay and one agent per hospital. */
export async function startLocalFederation(o: FederationOptions): Promise<LocalFederation> {
  const { dir, hospitals } = o;
  const note = o.onStarted ?? (() => undefined);
  mkdirSync(dir, { recursive: true });
  const ca = CertificateAuthority.init(join(dir, 'pki'), { name: 'Local Federation Root CA' });
  ca.issueRelay({ hosts: ['localhost', '127.0.0.1'], outDir: join(dir, 'relay') });
  for (const h of hospitals) ca.issueAgent({ id: h, org: `${h} hospital`, outDir: join(dir, h, 'certs') });
  note(`root CA, a relay certificate for localhost, and certificates for ${hospitals.join(', ')}`);
  let directoryFile: string | undefined;
  if (o.roles) {
    const directory = DirectoryStore.init(ca);
    for (const h of hospitals) directory.add({ id: h, name: h, organisation: `${h} org`, role: o.roles[h] ?? 'hospital', status: 'active' });
    directoryFile = (await directory.sign()).path;
    note(`signed member directory: ${hospitals.map((h) => `${h} (${o.roles?.[h] ?? 'hospital'})`).join(', ')}`);
  }

  const procs: Proc[] = [];
  try {
    const relayConfig = join(dir, 'relay', 'relay.json');
    writeFileSync(
      relayConfig,
      JSON.stringify(
        {
          listen: { host: '127.0.0.1', port: 0 },
          tls: { cert: 'relay.crt.pem', key: 'relay.key.pem', ca: 'ca.crt.pem', crl: ca.crlPath },
          admin: { host: '127.0.0.1', port: 0 },
          tariff: o.tariff ?? { currency: 'EUR', perTransfer: 25, perGiB: 200, releaseFee: 300 },
          ...(directoryFile ? { directory: { file: directoryFile } } : {}),
          // The 'relay listening' line (info) tells us the port.
          log: { level: 'info' },
        },
        null,
        2,
      ),
    );
    const relay = startProc('relay', 'hie-relay.js', ['--config', relayConfig], {});
    procs.push(relay);
    const listening = await waitFor('the relay to listen', async () => {
      const line = relay.log.find((l) => l.includes('relay listening'));
      return line ? (JSON.parse(line) as { port: number; adminPort?: number }) : undefined;
    });
    note(`relay listening on 127.0.0.1:${listening.port} (mTLS WebSocket)${listening.adminPort ? `, admin on 127.0.0.1:${listening.adminPort}` : ''}`);

    const tokens: Record<string, string> = {};
    const apis: Record<string, string> = {};
    for (const h of hospitals) {
      tokens[h] = randomBytes(24).toString('hex');
      const config = join(dir, h, 'agent.json');
      writeFileSync(
        config,
        JSON.stringify(
          {
            id: h,
            identity: { cert: `certs/${h}.crt.pem`, key: `certs/${h}.key.pem`, ca: 'certs/ca.crt.pem', crl: ca.crlPath },
            relay: { urls: [`wss://localhost:${listening.port}`] },
            peers: hospitals.filter((p) => p !== h),
            dataDir: 'data',
            api: { host: '127.0.0.1', port: 0 },
            limits: { maxConcurrentSends: o.maxConcurrentSends ?? 4 },
            log: { level: o.logLevel ?? 'info' },
          },
          null,
          2,
        ),
      );
      const agent = startProc(h, 'hie-agent.js', ['start', '--config', config], {
        HIE_AGENT_API_TOKENS: `local:${tokens[h]}`,
        HIE_AGENT_PATIENT_SECRET: randomBytes(32).toString('hex'),
      });
      procs.push(agent);
      const port = await waitFor(`agent ${h} to start`, async () => {
        const m = agent.log.map((l) => /API on [^\s]+:(\d+),/.exec(l)).find(Boolean);
        return m ? Number(m[1]) : undefined;
      });
      apis[h] = `http://127.0.0.1:${port}`;
    }
    const api: LocalFederation['api'] = async (h, path, init = {}) => {
      const res = await fetch(`${apis[h]}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${tokens[h]}`, ...(init.headers as Record<string, string> | undefined) },
      });
      const text = await res.text();
      return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: res.headers };
    };
    for (const h of hospitals) {
      await waitFor(`agent ${h} to reach the relay`, async () => ((await api(h, '/healthz')).body['relay'] === 'connected' ? true : undefined));
      note(`agent ${h}: local API ${apis[h]}, connected to the relay`);
    }
    return { dir, ca, relay, relayPort: listening.port, adminPort: listening.adminPort, procs, apis, tokens, api, stop: () => stopProcs(procs) };
  } catch (err) {
    await stopProcs(procs);
    throw Object.assign(err as Error, { procs });
  }
}
