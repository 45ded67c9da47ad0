// `npm run bench -- load [--agents 500] [--soak 180] [--inflight 64] [--arenas 2]`: many agents' mTLS
// connections held on one relay (a child process), a soak of concurrent transfers of mixed sizes, each
// acknowledged end to end by the receiving client, and the relay's memory per idle connection and over the
// soak (RSS after 30 s against RSS at the end). The bench raises its own open-file limit (prlimit) to fit
// the connections; `--arenas N` sets MALLOC_ARENA_MAX for the relay (0: glibc's default), `--allocator
// jemalloc` preloads jemalloc into it, `--high-water-mark 256KiB` sets its limits.highWaterMark, `--tls-write-piece 16KiB` its limits.tlsWritePiece, `--semi-space N` its V8 --max-semi-space-size (MiB). The idle cost per connection is printed
// as an average (RSS idle - before, / connections) and marginal (the slope from half to all of them).
import { execFileSync, type ChildProcess } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority, loadIdentity, PKI_FILES, type Identity } from '../../certs/index.ts';
// The CA front door issues one fresh RSA key per certificate; for hundreds of bench agents one shared key
// pair is signed into every certificate instead (RSA keygen would dominate the run).
import { buildCertificate, parseForgeCertificate } from '../../certs/x509.ts';
import { RelayClient, type InboundTransfer } from '../../relay/protocol/index.ts';
import type { BenchTable } from './types.ts';
import { mib, option as textOption, parseSize, percentile, rssOfPid } from './util.ts';
import { spawnChild, stopChild } from '../lib/children.ts';
import { RELAY_NODE_FLAGS } from '../lib/federation.ts';

const BIN = fileURLToPath(new URL('../../bin/hie-relay.js', import.meta.url));
/** Default number of agent connections held on the relay. */
export const DEFAULT_LOAD_AGENTS = 500;
/** Default soak length in seconds. */
export const DEFAULT_SOAK_SECONDS = 180;
/** Default transfers in flight at once across all agents. */
export const DEFAULT_INFLIGHT = 64;
/** Transfer size mix: [bytes, weight]. */
const SIZE_MIX: Array<[number, number]> = [
  [1024, 60],
  [64 * 1024, 30],
  [1024 * 1024, 9],
  [8 * 1024 * 1024, 1],
];
const DRAIN_MS = 60_000;
/** glibc malloc arenas for the relay child unless `--arenas` says otherwise (see docs/performance.md). */
export const DEFAULT_RELAY_ARENAS = 2;
/** Soak second at which the "warm" RSS is taken (the acceptance compares the end with it). */
const WARM_AT_S = 30;
/** Debian's jemalloc (`apt-get install -y libjemalloc2`), preloaded into the relay with `--allocator jemalloc`. */
const JEMALLOC = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2';
/** File descriptors a process needs beyond one per connection (listeners, pipes, libuv, NATS). */
const FD_HEADROOM = 1024;

/** The soft and hard open-file limits of this process, from /proc. */
function fileLimits(): { soft: number; hard: number } {
  const line = /Max open files\s+(\S+)\s+(\S+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  const n = (v: string | undefined): number => (v === undefined || v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v));
  return { soft: n(line?.[1]), hard: n(line?.[2]) };
}

/**
 * Raises this process's open-file limit to `need` (children started afterwards inherit it), with
 * `prlimit` (util-linux): up to the hard limit for anyone, beyond it for root. Throws saying how when it cannot.
 */
export function raiseFileLimit(need: number): number {
  const { soft, hard } = fileLimits();
  if (soft >= need) return soft;
  const target = need;
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${target}:${Math.max(hard, target)}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
    throw new Error(
      `load: ${need} open files needed, limit is ${soft} (hard ${hard}) and prlimit could not raise it (${why}); run as root or raise the hard limit (ulimit -Hn)`,
      { cause: err },
    );
  }
  return fileLimits().soft;
}

function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const raw = i >= 0 ? args[i + 1] : args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive whole number, got '${raw}'`);
  return n;
}

function pickSize(): number {
  let r = Math.random() * SIZE_MIX.reduce((s, [, w]) => s + w, 0);
  for (const [size, w] of SIZE_MIX) {
    r -= w;
    if (r < 0) return size;
  }
  return 1024;
}

async function startRelay(
  dir: string,
  ca: CertificateAuthority,
  files: { cert: string; key: string; ca: string },
  agents: number,
  arenas: number,
  preload: string | undefined,
  tuned: { highWaterMark?: number; tlsWritePiece?: number },
  semiSpaceMiB: number | undefined,
): Promise<{ child: ChildProcess; port: number; adminPort: number }> {
  const cfg = join(dir, 'relay.json');
  // Every bench agent connects from 127.0.0.1: the per-address limit must admit them all.
  const limits = { maxConnectionsPerAddress: agents + 16, ...tuned };
  writeFileSync(
    cfg,
    JSON.stringify({
      listen: { host: '127.0.0.1', port: 0 },
      tls: { ...files, crl: ca.crlPath },
      admin: { enabled: true, host: '127.0.0.1', port: 0 },
      limits,
      log: { level: 'info' },
    }),
  );
  const env = { ...process.env, ...(arenas > 0 ? { MALLOC_ARENA_MAX: String(arenas) } : {}), ...(preload ? { LD_PRELOAD: preload } : {}) };
  const v8Flags = semiSpaceMiB ? [`--max-semi-space-size=${semiSpaceMiB}`] : [];
  const child = spawnChild(process.execPath, [...RELAY_NODE_FLAGS, ...v8Flags, BIN, '--config', cfg], { stdio: ['ignore', 'pipe', 'inherit'], env });
  const { port, adminPort } = await new Promise<{ port: number; adminPort: number }>((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString('utf8');
      const line = buf.split('\n').find((l) => l.includes('"relay listening"'));
      if (line) {
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve(JSON.parse(line) as { port: number; adminPort: number });
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`relay exited (${code}) before listening`)));
  });
  return { child, port, adminPort };
}

/** Where the relay's memory is, from its /metrics (V8 heap used, memory outside the heap: Buffers, TLS). */
async function memoryOf(adminPort: number): Promise<{ heap: number; external: number }> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const value = (name: string): number => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
    return { heap: value('hie_relay_nodejs_heap_size_used_bytes'), external: value('hie_relay_nodejs_external_memory_bytes') };
  } catch {
    return { heap: Number.NaN, external: Number.NaN };
  }
}

/** Agent identities for `n` ids, all certificates over one shared key pair, signed by the CA. */
function identities(dir: string, ca: CertificateAuthority, n: number): Identity[] {
  const out = join(dir, 'agents');
  mkdirSync(out, { recursive: true });
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPath = join(out, 'shared.key.pem');
  writeFileSync(keyPath, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  const caPath = join(ca.dir, PKI_FILES.caCert);
  const caPem = readFileSync(caPath, 'utf8');
  const caKey = createPrivateKey(readFileSync(join(ca.dir, PKI_FILES.caKey), 'utf8'));
  const issuer = parseForgeCertificate(caPem);
  const now = Date.now();
  const ids: Identity[] = [];
  for (let i = 0; i < n; i += 1) {
    const id = `load-${i}`;
    const { pem } = buildCertificate({
      kind: 'agent',
      subject: { commonName: id },
      hospitalId: id,
      publicKey: pair.publicKey,
      signingKey: caKey,
      issuer,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 86_400_000),
    });
    const certPath = join(out, `${id}.crt.pem`);
    writeFileSync(certPath, pem);
    ids.push(loadIdentity({ cert: certPath, key: keyPath, ca: caPath }));
  }
  return ids;
}

/** Runs the load bench section. */
export async function run(args: string[]): Promise<BenchTable[]> {
  const nAgents = Math.max(2, option(args, 'agents', DEFAULT_LOAD_AGENTS));
  const soakMs = option(args, 'soak', DEFAULT_SOAK_SECONDS) * 1000;
  const inflight = option(args, 'inflight', DEFAULT_INFLIGHT);
  const arenaArg = textOption(args, 'arenas');
  const arenas = arenaArg === undefined ? DEFAULT_RELAY_ARENAS : Number(arenaArg);
  if (!Number.isInteger(arenas) || arenas < 0) throw new Error(`--arenas must be a whole number >= 0, got '${arenaArg}'`);
  const fileLimit = raiseFileLimit(nAgents + FD_HEADROOM);
  const allocator = textOption(args, 'allocator') ?? 'glibc';
  if (allocator !== 'glibc' && allocator !== 'jemalloc') throw new Error(`--allocator must be glibc or jemalloc, got '${allocator}'`);
  if (allocator === 'jemalloc' && !existsSync(JEMALLOC)) throw new Error(`--allocator jemalloc: ${JEMALLOC} is missing (apt-get install -y libjemalloc2)`);
  const preload = allocator === 'jemalloc' ? JEMALLOC : undefined;
  const hwmText = textOption(args, 'high-water-mark');
  const hwm = hwmText === undefined ? undefined : parseSize(hwmText, { flag: '--high-water-mark' });
  const pieceText = textOption(args, 'tls-write-piece');
  const piece = pieceText === undefined ? undefined : parseSize(pieceText, { flag: '--tls-write-piece' });
  const semiText = textOption(args, 'semi-space');
  const semiSpace = semiText === undefined ? undefined : Number(semiText);
  if (semiSpace !== undefined && !(Number.isInteger(semiSpace) && semiSpace >= 1))
    throw new Error(`--semi-space must be a whole number of MiB >= 1, got '${semiText}'`);
  const dir = mkdtempSync(join(tmpdir(), 'hie-bench-load-'));
  const clients: RelayClient[] = [];
  let relay: { child: ChildProcess; port: number; adminPort: number } | undefined;
  try {
    const ca = CertificateAuthority.init(join(dir, 'pki'), { name: 'Load Bench CA', keyBits: 2048 });
    const r = ca.issueRelay({ hosts: ['localhost', '127.0.0.1'], outDir: join(dir, 'relay') });
    const tCerts = performance.now();
    const ids = identities(dir, ca, nAgents);
    const certMs = performance.now() - tCerts;
    relay = await startRelay(
      dir,
      ca,
      { cert: r.certPath, key: r.keyPath, ca: r.caPath },
      nAgents,
      arenas,
      preload,
      { ...(hwm ? { highWaterMark: hwm } : {}), ...(piece ? { tlsWritePiece: piece } : {}) },
      semiSpace,
    );
    const pid = relay.child.pid as number;
    await new Promise((res) => setTimeout(res, 1000));
    const rssBefore = await rssOfPid(pid);
    const memBefore = await memoryOf(relay.adminPort);

    // Connect in batches so the handshakes do not all land in one event-loop turn.
    const url = `wss://127.0.0.1:${relay.port}`;
    const tConnect = performance.now();
    const half = Math.floor(ids.length / 2 / 50) * 50;
    let rssHalf = 0;
    for (let i = 0; i < ids.length; i += 50) {
      if (i === half) {
        // The marginal cost per connection is the slope between half and all of them: it leaves out what
        // grows once whatever the count (V8's young generation sized up by the handshakes' garbage, TLS contexts).
        await new Promise((res) => setTimeout(res, 2000));
        rssHalf = await rssOfPid(pid);
      }
      const batch = ids.slice(i, i + 50).map((identity) => new RelayClient({ url, identity, reconnect: false }));
      clients.push(...batch);
      await Promise.all(batch.map((c) => c.connect()));
    }
    const connectMs = performance.now() - tConnect;
    await new Promise((res) => setTimeout(res, 2000));
    const rssIdle = await rssOfPid(pid);
    const memIdle = await memoryOf(relay.adminPort);
    const held = clients.filter((c) => c.connected).length;

    // Receivers: read everything, check size, reject repeats, ack end to end with a small message.
    const received = new Map<string, number>();
    let duplicates = 0;
    let corrupt = 0;
    for (const c of clients) {
      c.on('transfer', (t: InboundTransfer) => {
        const [xid, sizeText] = t.meta.toString('utf8').split(' ');
        let bytes = 0;
        t.on('data', (d: Buffer) => {
          bytes += d.length;
        });
        t.on('error', () => undefined);
        t.on('end', () => {
          if (bytes !== Number(sizeText)) corrupt += 1;
          const seen = received.get(xid as string) ?? 0;
          if (seen > 0) duplicates += 1;
          received.set(xid as string, seen + 1);
          try {
            c.sendMessage(t.from, Buffer.from(xid as string));
          } catch {
            // Counted as lost below: the sender never sees its ack.
          }
        });
      });
    }
    const pending = new Map<string, { t0: number; size: number }>();
    const latencies: number[] = [];
    let acked = 0;
    let failed = 0;
    let started = 0;
    let bytesAcked = 0;
    let wake: (() => void) | undefined;
    for (const c of clients) {
      c.on('message', (m) => {
        const p = pending.get(m.body.toString('utf8'));
        if (!p) return;
        pending.delete(m.body.toString('utf8'));
        latencies.push(performance.now() - p.t0);
        acked += 1;
        bytesAcked += p.size;
        wake?.();
      });
    }
    const block = randomBytes(8 * 1024 * 1024);
    const sendOne = async (): Promise<void> => {
      const i = Math.floor(Math.random() * clients.length);
      const from = clients[i] as RelayClient;
      const to = ids[(i + 1) % ids.length]?.hospitalId as string;
      const size = pickSize();
      const xid = randomUUID();
      pending.set(xid, { t0: performance.now(), size });
      started += 1;
      const out = from.openTransfer(to, { meta: Buffer.from(`${xid} ${size}`) });
      try {
        for (let off = 0; off < size; off += 256 * 1024) {
          if (!out.write(block.subarray(off, Math.min(size, off + 256 * 1024)))) await new Promise((res) => out.once('drain', res));
        }
        await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
        await out.usage.catch(() => undefined);
      } catch {
        failed += 1;
        pending.delete(xid);
      }
    };

    const rssSamples: Array<{ s: number; rss: number }> = [];
    const tSoak = performance.now();
    const sampler = setInterval(() => {
      void rssOfPid(pid).then((rss) => rssSamples.push({ s: (performance.now() - tSoak) / 1000, rss }));
    }, 5000);
    let running = 0;
    await new Promise<void>((resolve) => {
      const fill = (): void => {
        while (running < inflight && performance.now() - tSoak < soakMs) {
          running += 1;
          void sendOne().finally(() => {
            running -= 1;
            fill();
            if (running === 0 && performance.now() - tSoak >= soakMs) resolve();
          });
        }
        if (running === 0) resolve();
      };
      fill();
    });
    const soakSec = (performance.now() - tSoak) / 1000;
    // Wait for the last acks (bounded).
    const drainEnd = Date.now() + DRAIN_MS;
    while (pending.size > 0 && Date.now() < drainEnd) await new Promise<void>((res) => ((wake = res), setTimeout(res, 200)));
    clearInterval(sampler);
    const rssEnd = await rssOfPid(pid);
    const memEnd = await memoryOf(relay.adminPort);
    const warm = rssSamples.find((s) => s.s >= Math.min(WARM_AT_S, soakSec / 4)) ?? rssSamples[0];
    const peak = Math.max(rssEnd, ...rssSamples.map((s) => s.rss));
    const lost = pending.size;
    const stillHeld = clients.filter((c) => c.connected).length;
    const perConn = (rssIdle - rssBefore) / 1024 / Math.max(1, held);
    const marginal = (rssIdle - rssHalf) / 1024 / Math.max(1, ids.length - half);
    const growth = warm && warm.rss > 0 ? rssEnd / warm.rss - 1 : Number.NaN;

    return [
      {
        title: `load: ${nAgents} mTLS agent connections on one relay (child process), ${Math.round(soakSec)} s soak, ${inflight} transfers in flight`,
        rows: [
          {
            connections: `${held} held (${stillHeld} after soak)`,
            'exchanges/s': (acked / soakSec).toFixed(1),
            'MB/s acked': (bytesAcked / 1e6 / soakSec).toFixed(1),
            'p50 ms to ack': percentile(latencies, 50).toFixed(1),
            'p99 ms to ack': percentile(latencies, 99).toFixed(1),
            'relay KiB / idle conn (avg / marginal)': `${perConn.toFixed(1)} / ${marginal.toFixed(1)}`,
            'relay RSS MiB idle / warm / end / peak': `${mib(rssIdle)} / ${mib(warm?.rss ?? 0)} / ${mib(rssEnd)} / ${mib(peak)}`,
            lost: lost,
            duplicated: duplicates,
            'size mismatch': corrupt,
          },
        ],
        notes: [
          `Transfers: ${started} started, ${acked} acked end to end, ${failed} refused or aborted at the sender (counted, not retried). Sizes: 60% 1 KiB, 30% 64 KiB, 9% 1 MiB, 1% 8 MiB; sender i -> agent i+1.`,
          "What is measured: RelayClient agents (the agents' relay protocol, mTLS WebSocket, credit flow control) in the bench process, not full hospital agents (no envelope crypto, no ledger);",
          'an exchange counts when the receiving client has read every byte and its application-level ack message has come back to the sender. Lost = started and not acked nor reported failed; duplicated = an id received twice.',
          `Memory growth over the soak: ${mib(rssEnd - (warm?.rss ?? rssIdle))} MiB from ${Math.round(warm?.s ?? 0)} s to the end (${(growth * 100).toFixed(1)} %). ${nAgents} certificates over one shared key pair in ${(certMs / 1000).toFixed(1)} s; connections opened in ${(connectMs / 1000).toFixed(1)} s (batches of 50).`,
          `Relay V8 heap used ${mib(memBefore.heap)} MiB before the connections, ${mib(memIdle.heap)} MiB idle, ${mib(memEnd.heap)} MiB at the end; memory outside the heap (Buffers) ${mib(memIdle.external)} / ${mib(memEnd.external)} MiB.`,
          `Relay limits.highWaterMark: ${hwm === undefined ? 'default' : `${hwm} bytes`}; limits.tlsWritePiece: ${piece === undefined ? 'default' : `${piece} bytes`}; V8 --max-semi-space-size: ${semiSpace === undefined ? 'default (16 MiB)' : `${semiSpace} MiB`}; allocator: ${allocator}; MALLOC_ARENA_MAX=${arenas > 0 ? arenas : "unset (glibc's default)"}; open-file limit ${fileLimit}. RSS sampled every 5 s; "warm" is the sample at ${WARM_AT_S} s (or a quarter of a shorter soak).`,
        ],
        summary: [
          { metric: `load: connections held (of ${nAgents})`, value: String(held), target: String(nAgents), met: held === nAgents && stillHeld === nAgents },
          { metric: 'load: relay KiB RSS per idle connection (RSS idle - before, / held)', value: perConn.toFixed(1), target: '<= 30', met: perConn <= 30 },
          {
            metric: `load: relay KiB RSS per idle connection, marginal (${half} -> ${ids.length})`,
            value: marginal.toFixed(1),
            target: '<= 30',
            met: marginal <= 30,
          },
          {
            metric: `load: relay RSS growth, ${Math.round(warm?.s ?? 0)} s -> end of ${Math.round(soakSec)} s soak`,
            value: `${(growth * 100).toFixed(1)} %`,
            target: '<= 20 %',
            met: growth <= 0.2,
          },
          { metric: 'load: lost / duplicated', value: `${lost} / ${duplicates}`, target: '0 / 0', met: lost === 0 && duplicates === 0 },
        ],
      },
    ];
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    if (relay) await stopChild(relay.child);
    rmSync(dir, { recursive: true, force: true });
  }
}
