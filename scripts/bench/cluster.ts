// `npm run bench -- cluster [--size 1GiB] [--messages 20000] [--rounds 3]`: two relay nodes (child processes) joined by a
// nats-server (TLS, one user per node); throughput and 1 KiB message rate between agents on the same node and on
// different nodes, measured in the same run. Targets: cross-node throughput >= 0.8 of same-node, messages >= 0.5.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority, loadIdentity, type Identity } from '../../certs/index.ts';
import { RelayClient } from '../../relay/protocol/index.ts';
import { startNats } from '../../test/support/nats.ts';
import type { BenchTable } from './types.ts';
import { cpuSecondsOfPid, mbps, option, parseSize, percentile, profileFlags, relayTransferMs } from './util.ts';
import { spawnChild, stopChildren } from '../lib/children.ts';
import { RELAY_NODE_FLAGS } from '../lib/federation.ts';

const CHUNK = 1024 * 1024;
/** Rounds of the message rates (same node, then cross node); the median round's ratio is reported. */
const DEFAULT_MESSAGE_ROUNDS = 3;
const BIN = fileURLToPath(new URL('../../bin/hie-relay.js', import.meta.url));

async function startNode(
  dir: string,
  node: string,
  pki: { cert: string; key: string; ca: string },
  nats: string,
  env: NodeJS.ProcessEnv,
): Promise<{ port: number; pid: number }> {
  const file = join(dir, `${node}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      tls: pki,
      admin: { enabled: false },
      log: { level: 'info' },
      node: { id: node },
      nats: { servers: [nats], userEnv: 'NATS_USER', passwordEnv: 'NATS_PASSWORD', tls: { ca: pki.ca } },
    }),
  );
  const child = spawnChild(process.execPath, [...profileFlags(node), ...RELAY_NODE_FLAGS, BIN, '--config', file], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      const m = /"port":(\d+),.*"msg":"relay listening"/.exec(buf);
      if (m) resolve(Number(m[1]));
      if (buf.length > 1e5) buf = buf.slice(-1e4);
    });
    child.once('exit', (code) => reject(new Error(`relay ${node} exited (${code})`)));
  });
  return { port, pid: child.pid as number };
}

async function client(port: number, identity: Identity): Promise<RelayClient> {
  const c = new RelayClient({ url: `wss://127.0.0.1:${port}`, servername: 'localhost', identity, reconnect: false });
  await c.connect();
  return c;
}

/** 1 KiB messages a -> b with at most `window` in flight; returns messages per second. */
async function messageRate(a: RelayClient, b: RelayClient, to: string, count: number, window = 256): Promise<number> {
  const body = randomBytes(1024);
  let sent = 0;
  let got = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got} of ${count} messages arrived`)), 120_000);
    const pump = (): void => {
      while (sent < count && sent - got < window) {
        a.sendMessage(to, body);
        sent += 1;
      }
    };
    const onMessage = (): void => {
      got += 1;
      if (got === count) {
        clearTimeout(timer);
        b.off('message', onMessage);
        resolve();
      } else pump();
    };
    b.on('message', onMessage);
    pump();
  });
  return count / ((performance.now() - t0) / 1000);
}

/** Runs the cluster section. */
export async function run(args: string[]): Promise<BenchTable[]> {
  const total = parseSize(option(args, 'size') ?? '1GiB');
  const messages = Number(option(args, 'messages') ?? 20_000);
  if (!Number.isInteger(messages) || messages < 1) throw new Error(`--messages must be a positive whole number, got '${option(args, 'messages')}'`);
  const rounds = Number(option(args, 'rounds') ?? DEFAULT_MESSAGE_ROUNDS);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive whole number, got '${option(args, 'rounds')}'`);
  const dir = mkdtempSync(join(tmpdir(), 'hie-bench-cluster-'));
  const clients: RelayClient[] = [];
  try {
    const ca = CertificateAuthority.init(join(dir, 'pki'), { name: 'Bench CA', keyBits: 2048 });
    const r = ca.issueRelay({ hosts: ['localhost', '127.0.0.1'], outDir: join(dir, 'relay') });
    const pki = { cert: r.certPath, key: r.keyPath, ca: r.caPath };
    const ids: Record<string, Identity> = {};
    for (const id of ['alpha', 'bravo', 'charlie']) {
      const a = ca.issueAgent({ id, outDir: join(dir, 'agents') });
      ids[id] = loadIdentity({ cert: a.certPath, key: a.keyPath, ca: a.caPath });
    }
    const users = [
      { user: 'relay-n1', password: randomBytes(12).toString('hex') },
      { user: 'relay-n2', password: randomBytes(12).toString('hex') },
    ];
    const nats = await startNats({ dir, tls: pki, users, spawn: spawnChild });
    const n1 = await startNode(dir, 'n1', pki, nats.url, { NATS_USER: users[0]!.user, NATS_PASSWORD: users[0]!.password });
    const n2 = await startNode(dir, 'n2', pki, nats.url, { NATS_USER: users[1]!.user, NATS_PASSWORD: users[1]!.password });
    const connect = async (port: number, id: string): Promise<RelayClient> => {
      const c = await client(port, ids[id]!);
      clients.push(c);
      return c;
    };
    const alpha = await connect(n1.port, 'alpha');
    const bravo = await connect(n1.port, 'bravo');
    const charlie = await connect(n2.port, 'charlie');
    // Warm up both paths (JIT, TLS sessions, NATS subscriptions); no more than is measured.
    const warmUp = Math.min(64 * CHUNK, total);
    await relayTransferMs(alpha, bravo, 'bravo', warmUp);
    await relayTransferMs(alpha, charlie, 'charlie', warmUp);
    // CPU-seconds of each process over one transfer: the bench (both agents), node 1, nats-server, node 2.
    const pids = [n1.pid, nats.process.pid as number, n2.pid];
    const cpuNow = (): number[] => [process.cpuUsage(), ...pids].map((x) => (typeof x === 'number' ? cpuSecondsOfPid(x) : (x.user + x.system) / 1e6));
    // What each process spent over one run: [bench, n1, nats-server, n2].
    const withCpu = async <T>(run: () => Promise<T>): Promise<{ value: T; cpu: number[] }> => {
      const c0 = cpuNow();
      const value = await run();
      return { value, cpu: cpuNow().map((c, i) => c - (c0[i] as number)) };
    };
    // Columns of CPU per unit of work of each process, and of all of them.
    const cpuColumns = (cpu: number[], unit: string, perUnit: (seconds: number) => string): Record<string, string> => {
      const names = ['bench (agents)', 'n1', 'nats', 'n2'];
      const cols: Record<string, string> = {};
      names.forEach((name, i) => (cols[`${name} CPU ${unit}`] = perUnit(cpu[i] as number)));
      cols[`all CPU ${unit}`] = perUnit(cpu.reduce((a, b) => a + b, 0));
      return cols;
    };
    const same = await withCpu(() => relayTransferMs(alpha, bravo, 'bravo', total));
    const cross = await withCpu(() => relayTransferMs(alpha, charlie, 'charlie', total));
    const sameMs = same.value;
    const crossMs = cross.value;
    const gib = total / 1024 ** 3;
    const cpuCols = (cpu: number[]): Record<string, string> => cpuColumns(cpu, 's/GiB', (s) => (s / gib).toFixed(2));
    // Message paths warmed the same way, then each rate with the CPU each process spent on it.
    const warmMessages = Math.min(messages, 5_000);
    await messageRate(alpha, bravo, 'bravo', warmMessages);
    await messageRate(alpha, charlie, 'charlie', warmMessages);
    // Rounds of same node then cross node, back to back: one round can land in a slow or a fast spell of a shared
    // machine, so the median round's ratio is the figure.
    const msgRounds: Array<{ same: { value: number; cpu: number[] }; cross: { value: number; cpu: number[] }; ratio: number }> = [];
    for (let i = 0; i < rounds; i += 1) {
      const sameRun = await withCpu(() => messageRate(alpha, bravo, 'bravo', messages));
      const crossRun = await withCpu(() => messageRate(alpha, charlie, 'charlie', messages));
      msgRounds.push({ same: sameRun, cross: crossRun, ratio: crossRun.value / sameRun.value });
    }
    const msgRatios = msgRounds.map((m) => m.ratio);
    const msgRatio = percentile(msgRatios, 50);
    const mid = msgRounds[msgRatios.indexOf(msgRatio)]!;
    const sameRate = mid.same.value;
    const crossRate = mid.cross.value;
    const perMessage = (cpu: number[]): Record<string, string> => cpuColumns(cpu, 'µs/msg', (s) => ((s * 1e6) / messages).toFixed(1));
    const ratio = sameMs / crossMs;
    return [
      {
        title: `cluster: two relay nodes via nats-server (TLS, user per node); ${Math.round(total / CHUNK)} MiB transfer and ${messages} x 1 KiB messages`,
        rows: [
          { path: 'same node (alpha -> n1 -> bravo)', 'MB/s': mbps(total, sameMs), 'messages/s': Math.round(sameRate), ...cpuCols(same.cpu) },
          {
            path: 'cross node (alpha -> n1 -> NATS -> n2 -> charlie)',
            'MB/s': mbps(total, crossMs),
            'messages/s': Math.round(crossRate),
            ...cpuCols(cross.cpu),
          },
        ],
        notes: [
          `cross-node / same-node throughput: ${ratio.toFixed(2)} (target >= 0.8) ${ratio >= 0.8 ? 'MET' : 'NOT MET'}`,
          `cross-node / same-node message rate, median of ${rounds} round(s): ${msgRatio.toFixed(2)} (target >= 0.5) ${msgRatio >= 0.5 ? 'MET' : 'NOT MET'} (rounds: ${msgRatios.map((x) => x.toFixed(2)).join(', ')}); messages/s above are the median round's`,
          `CPU-seconds per GiB of each process over its transfer (from /proc; the bench's from process.cpuUsage). On ${os.cpus().length} cores the cross-node path's extra processes share the cores with the agents.`,
        ],
        summary: [
          { metric: 'cluster cross-node vs same-node throughput', value: ratio.toFixed(2), target: '>= 0.80', met: ratio >= 0.8 },
          { metric: 'cluster cross-node vs same-node messages/s', value: msgRatio.toFixed(2), target: '>= 0.50', met: msgRatio >= 0.5 },
        ],
      },
      {
        title: `cluster: ${rounds} round(s) of ${messages} x 1 KiB messages on each path (at most 256 in flight; ${warmMessages} on each path first, not counted), CPU per message of each process`,
        rows: msgRounds.flatMap((m, i) => [
          { round: String(i + 1), path: 'same node', 'messages/s': Math.round(m.same.value), ratio: '', ...perMessage(m.same.cpu) },
          { round: String(i + 1), path: 'cross node', 'messages/s': Math.round(m.cross.value), ratio: m.ratio.toFixed(2), ...perMessage(m.cross.cpu) },
        ]),
      },
    ];
  } finally {
    for (const c of clients) await c.close().catch(() => undefined);
    // Everything this section started, newest first: the nodes drain through NATS, so it goes last.
    await stopChildren();
    rmSync(dir, { recursive: true, force: true });
  }
}
