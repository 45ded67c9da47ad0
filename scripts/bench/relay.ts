// `npm run bench -- relay [--size 2GiB] [--rounds 2] [--messages 40000] [--senders 16]`: sender -> middle ->
// receiver, each in its own process, through three middles measured in the same run on the same bytes: nginx's
// stream proxy (TLS both legs, one worker; when installed), a Node TLS socket pipe, and the relay; throughput
// and each process's CPU-seconds per GiB; relay peak RSS; the small-message rate with one-way latency.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { CertificateAuthority, clientTlsOptions, loadIdentity, serverTlsOptions, type Identity } from '../../certs/index.ts';
import { RelayClient, type InboundTransfer } from '../../relay/protocol/index.ts';
import type { BenchTable, SummaryRow } from './types.ts';
import { blockSource, mbps, mib, option, parseSize, percentile, profileFlags } from './util.ts';
import { spawnChild, stopChild } from '../lib/children.ts';
import { AGENT_NODE_FLAGS, RELAY_NODE_FLAGS } from '../lib/federation.ts';

const SELF = fileURLToPath(import.meta.url);
const BIN = fileURLToPath(new URL('../../bin/hie-relay.js', import.meta.url));

function rssNow(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Samples a child's RSS from /proc and keeps the peak. */
function peakRss(pid: number): { stop: () => number } {
  let peak = rssNow(pid);
  const t = setInterval(() => {
    peak = Math.max(peak, rssNow(pid));
  }, 20);
  return {
    stop: () => {
      clearInterval(t);
      return Math.max(peak, rssNow(pid));
    },
  };
}

/** Every JSON line a child prints on stdout, kept until asked for, so no line is lost between two waits. */
class Lines {
  private readonly seen: Array<Record<string, unknown>> = [];
  private readonly waiters: Array<{ match: string; resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }> = [];
  private exited: string | undefined;

  constructor(child: ChildProcess) {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.startsWith('{')) continue;
        try {
          this.seen.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          continue;
        }
        this.settle();
      }
    });
    child.once('exit', (code) => {
      this.exited = `child exited (${code})`;
      for (const w of this.waiters.splice(0)) w.reject(new Error(`${this.exited} before '${w.match}'`));
    });
  }

  private settle(): void {
    for (let w = 0; w < this.waiters.length;) {
      const waiter = this.waiters[w] as (typeof this.waiters)[number];
      const at = this.seen.findIndex((l) => l.msg === waiter.match);
      if (at < 0) {
        w += 1;
        continue;
      }
      const [line] = this.seen.splice(at, 1);
      this.waiters.splice(w, 1);
      waiter.resolve(line as Record<string, unknown>);
    }
  }

  /** The next line whose `msg` is `match` (taken off the queue). */
  next(match: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      if (this.exited) return reject(new Error(`${this.exited} before '${match}'`));
      this.waiters.push({ match, resolve, reject });
      this.settle();
    });
  }
}

function say(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Files of one identity, as the children load them. */
export interface IdFiles {
  cert: string;
  key: string;
  ca: string;
}

/** Configuration handed to a bench child in HIE_BENCH_CHILD. */
type ChildConfig =
  | { role: 'proxy'; relay: IdFiles; target: number }
  | { role: 'tls-recv'; id: IdFiles }
  | { role: 'tls-send'; id: IdFiles; port: number; total: number }
  | { role: 'relay-recv'; id: IdFiles; url: string }
  | { role: 'relay-send'; id: IdFiles; url: string; to: string; total: number };

/** The bench's child processes: the Node TLS pipe proxy, and the sending and receiving ends of either path. */
async function benchChild(cfg: ChildConfig): Promise<void> {
  const id = loadIdentity(cfg.role === 'proxy' ? cfg.relay : cfg.id);
  switch (cfg.role) {
    case 'proxy': {
      // TLS server (mTLS) piping each connection to a TLS connection to the receiver.
      const server = tls.createServer(serverTlsOptions(id), (inbound) => {
        const upstream = tls.connect({ host: '127.0.0.1', port: cfg.target, ca: id.caPem, checkServerIdentity: () => undefined });
        inbound.pipe(upstream);
        upstream.pipe(inbound);
        inbound.on('error', () => upstream.destroy());
        upstream.on('error', () => inbound.destroy());
      });
      server.listen(0, '127.0.0.1', () => say({ msg: 'ready', port: (server.address() as AddressInfo).port }));
      return;
    }
    case 'tls-recv': {
      // The receiving end of the two plain-TLS paths: counts each connection's bytes and says so when it ends.
      const server = tls.createServer({ ...serverTlsOptions(id), requestCert: false, rejectUnauthorized: false }, (s) => {
        let bytes = 0;
        s.on('data', (d: Buffer) => {
          bytes += d.length;
        });
        s.on('error', () => undefined);
        s.on('end', () => {
          say({ msg: 'done', bytes });
          s.end();
        });
      });
      server.listen(0, '127.0.0.1', () => say({ msg: 'ready', port: (server.address() as AddressInfo).port }));
      return;
    }
    case 'tls-send': {
      const sock = tls.connect({ host: '127.0.0.1', port: cfg.port, ...clientTlsOptions(id), servername: 'localhost' });
      await new Promise<void>((r, j) => sock.once('secureConnect', () => r()).once('error', j));
      say({ msg: 'start' });
      await pipeline(blockSource(cfg.total), sock);
      say({ msg: 'sent' });
      return;
    }
    case 'relay-recv': {
      const c = new RelayClient({ url: cfg.url, identity: id, reconnect: false });
      c.on('transfer', (t: InboundTransfer) => {
        let bytes = 0;
        t.on('data', (d: Buffer) => {
          bytes += d.length;
        });
        t.on('error', (err: Error) => say({ msg: 'done', bytes, error: err.message }));
        t.on('end', () => say({ msg: 'done', bytes }));
      });
      await c.connect();
      say({ msg: 'ready' });
      return;
    }
    case 'relay-send': {
      const c = new RelayClient({ url: cfg.url, identity: id, reconnect: false });
      await c.connect();
      say({ msg: 'start' });
      const out = c.openTransfer(cfg.to);
      await pipeline(blockSource(cfg.total), out);
      await out.usage;
      say({ msg: 'sent' });
      await c.close();
      return;
    }
  }
}

/** A long-running child (a middle process or a receiver) and its output lines. */
interface Running {
  child: ChildProcess;
  lines: Lines;
  pid: number;
}

function startBenchChild(cfg: ChildConfig, extraEnv: Record<string, string> = {}): Running {
  // Every sender and receiver runs with the agent's production flags (`hie-agent` runs a RelayClient with them).
  const child = spawnChild(process.execPath, [...profileFlags(cfg.role), ...AGENT_NODE_FLAGS, '--import', 'tsx', SELF], {
    env: { ...process.env, ...extraEnv, HIE_BENCH_CHILD: JSON.stringify(cfg) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return { child, lines: new Lines(child), pid: child.pid as number };
}

/**
 * A raw transfer of `total` bytes from `from` to `to` (agent ids, with their
 * files) through the relay at `url`, each RelayClient in its own process with
 * the agent's node flags, as the relay path of this bench runs them: the
 * time from the sender's first byte to the receiver's last, and the
 * CPU-seconds of each client process over that time.
 */
export async function rawTransfer(
  url: string,
  from: { id: string; files: IdFiles },
  to: { id: string; files: IdFiles },
  total: number,
): Promise<{ ms: number; sender: number; receiver: number }> {
  const receiver = startBenchChild({ role: 'relay-recv', id: to.files, url });
  try {
    await receiver.lines.next('ready');
    const { ms, sender, receiver: received } = await timedSend(receiver, { role: 'relay-send', id: from.files, url, to: to.id, total }, total);
    return { ms, sender, receiver: received };
  } finally {
    await stopChild(receiver.child, 1_000);
  }
}

/** Where Debian's nginx and its stream module live. */
const NGINX_BIN = '/usr/sbin/nginx';
const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';
/** The one line printed when nginx cannot be measured. */
export const NGINX_INSTALL_HINT = 'nginx not measured: install it with `apt-get install -y nginx-light libnginx-mod-stream` (Debian) and run the bench again';

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}) before listening`);
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nginx did not listen on ${port} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * nginx's stream proxy, TLS on both legs (client certificates checked against the CA on the inbound
 * leg, as the relay does), one process (`master_process off`: the process measured is the one worker).
 */
async function startNginx(dir: string, relay: IdFiles, target: number): Promise<Running | undefined> {
  if (!existsSync(NGINX_BIN) || !existsSync(NGINX_STREAM_MODULE)) return undefined;
  const port = await freePort();
  const prefix = join(dir, 'nginx');
  mkdirSync(prefix, { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    [
      `load_module ${NGINX_STREAM_MODULE};`,
      'daemon off;',
      'master_process off;',
      'worker_processes 1;',
      `pid ${join(prefix, 'nginx.pid')};`,
      'error_log stderr error;',
      'events { worker_connections 1024; }',
      'stream {',
      '  server {',
      `    listen 127.0.0.1:${port} ssl;`,
      `    ssl_certificate ${relay.cert};`,
      `    ssl_certificate_key ${relay.key};`,
      `    ssl_client_certificate ${relay.ca};`,
      '    ssl_verify_client on;',
      '    ssl_protocols TLSv1.3;',
      `    proxy_pass 127.0.0.1:${target};`,
      '    proxy_ssl on;',
      '    proxy_ssl_protocols TLSv1.3;',
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  const child = spawnChild(NGINX_BIN, ['-p', prefix, '-c', conf, '-e', 'stderr'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await waitForPort(port, child);
  return { child, lines: new Lines(child), pid: child.pid as number, port } as Running & { port: number };
}

/** One measured round of one path: a fresh sender child pushes `total` bytes through the middle to the receiver. */
interface Round {
  ms: number;
  /** CPU seconds of the middle process, the sender and the receiver. */
  middle: number;
  sender: number;
  receiver: number;
  rss: number;
}

/**
 * Starts a sender child and times its transfer to `receiver`, from its first byte to the receiver's last: the
 * CPU-seconds of the sender, the receiver and the middle process (when given) over that time, and the middle's peak
 * RSS. The sender is stopped after.
 */
async function timedSend(receiver: Running, senderCfg: ChildConfig, total: number, middlePid?: number): Promise<Round> {
  const sender = startBenchChild(senderCfg);
  try {
    await sender.lines.next('start');
    const rss = middlePid === undefined ? undefined : peakRss(middlePid);
    const pids = [sender.pid, receiver.pid, ...(middlePid === undefined ? [] : [middlePid])];
    const cpu0 = pids.map(cpuSeconds);
    const t0 = performance.now();
    const done = await receiver.lines.next('done');
    const ms = performance.now() - t0;
    const cpu = pids.map((pid, i) => cpuSeconds(pid) - (cpu0[i] as number));
    if (done.bytes !== total) throw new Error(`received ${String(done.bytes)} of ${total} bytes${done.error ? `: ${String(done.error)}` : ''}`);
    await sender.lines.next('sent');
    return { ms, sender: cpu[0] as number, receiver: cpu[1] as number, middle: cpu[2] ?? 0, rss: rss?.stop() ?? 0 };
  } finally {
    await stopChild(sender.child, 1_000);
  }
}

async function smallMessages(port: number, senders: Identity[], sink: Identity, count: number): Promise<{ ms: number; lat: number[] }> {
  const url = `wss://127.0.0.1:${port}`;
  const s = new RelayClient({ url, identity: sink, reconnect: false });
  const clients = senders.map((identity) => new RelayClient({ url, identity, reconnect: false }));
  await Promise.all([s.connect(), ...clients.map((c) => c.connect())]);
  const perSender = Math.ceil(count / clients.length);
  const inFlight = 32;
  const outstanding = new Map<string, number>();
  const sent = new Map<string, number>();
  const lat: number[] = [];
  const body = randomBytes(1024);
  let got = 0;
  const total = perSender * clients.length;
  let done!: () => void;
  const finished = new Promise<void>((r) => {
    done = r;
  });
  const pump = (c: RelayClient): void => {
    const id = c.agentId as string;
    while ((outstanding.get(id) ?? 0) < inFlight && (sent.get(id) ?? 0) < perSender) {
      body.writeDoubleBE(performance.now(), 0);
      c.sendMessage('sink', body);
      outstanding.set(id, (outstanding.get(id) ?? 0) + 1);
      sent.set(id, (sent.get(id) ?? 0) + 1);
    }
  };
  const byId = new Map(clients.map((c) => [c.agentId as string, c]));
  s.on('message', (m) => {
    lat.push(performance.now() - m.body.readDoubleBE(0));
    outstanding.set(m.from, (outstanding.get(m.from) ?? 1) - 1);
    got += 1;
    if (got === total) done();
    else pump(byId.get(m.from) as RelayClient);
  });
  const t0 = performance.now();
  for (const c of clients) pump(c);
  await finished;
  const ms = performance.now() - t0;
  await Promise.all([s.close(), ...clients.map((c) => c.close())]);
  return { ms, lat };
}

const GIB = 1024 ** 3;

/** Runs the relay bench section. */
export async function run(args: string[]): Promise<BenchTable[]> {
  const total = parseSize(option(args, 'size') ?? '2GiB');
  const messages = Number(option(args, 'messages') ?? 40_000);
  const nSenders = Number(option(args, 'senders') ?? 16);
  const rounds = Number(option(args, 'rounds') ?? 2);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be at least 1');
  const dir = mkdtempSync(join(tmpdir(), 'hie-bench-relay-'));
  const started: ChildProcess[] = [];
  try {
    const ca = CertificateAuthority.init(join(dir, 'pki'), { name: 'Bench CA', keyBits: 2048 });
    const r = ca.issueRelay({ hosts: ['localhost', '127.0.0.1'], outDir: join(dir, 'relay') });
    const agentFiles = (id: string): IdFiles => {
      const f = ca.issueAgent({ id, outDir: join(dir, 'agents') });
      return { cert: f.certPath, key: f.keyPath, ca: f.caPath };
    };
    const alpha = agentFiles('alpha');
    const bravo = agentFiles('bravo');
    const sink = loadIdentity(agentFiles('sink'));
    const senders = Array.from({ length: nSenders }, (_, i) => loadIdentity(agentFiles(`sender-${i}`)));
    const relayFiles = { cert: r.certPath, key: r.keyPath, ca: r.caPath };

    const cfg = join(dir, 'relay.json');
    writeFileSync(
      cfg,
      JSON.stringify({ listen: { host: '127.0.0.1', port: 0 }, tls: { ...relayFiles, crl: ca.crlPath }, admin: { enabled: false }, log: { level: 'info' } }),
    );
    const relayChild = spawnChild(process.execPath, [...profileFlags('relay'), ...RELAY_NODE_FLAGS, BIN, '--config', cfg], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    started.push(relayChild);
    const relayLines = new Lines(relayChild);
    const { port } = (await relayLines.next('relay listening')) as { port: number };
    const relayPid = relayChild.pid as number;
    const idleRss = rssNow(relayPid);
    const url = `wss://127.0.0.1:${port}`;

    // The receivers stay up for every round; each round starts a fresh sender process.
    const tlsRecv = startBenchChild({ role: 'tls-recv', id: bravo });
    started.push(tlsRecv.child);
    const { port: recvPort } = (await tlsRecv.lines.next('ready')) as { port: number };
    const relayRecv = startBenchChild({ role: 'relay-recv', id: bravo, url });
    started.push(relayRecv.child);
    await relayRecv.lines.next('ready');
    const pipe = startBenchChild({ role: 'proxy', relay: relayFiles, target: recvPort });
    started.push(pipe.child);
    const { port: pipePort } = (await pipe.lines.next('ready')) as { port: number };
    const nginx = (await startNginx(dir, relayFiles, recvPort)) as (Running & { port: number }) | undefined;
    if (nginx) started.push(nginx.child);

    type PathName = 'nginx' | 'pipe' | 'relay';
    const best = new Map<PathName, Round>();
    let relayPeak = 0;
    const keep = (name: PathName, x: Round): void => {
      const b = best.get(name);
      if (!b || x.ms < b.ms) best.set(name, x);
    };
    // Rounds alternate between the paths and the best of each is kept: the machine may be shared, and
    // interleaving exposes every path to the same background load.
    for (let i = 0; i < rounds; i += 1) {
      if (nginx) keep('nginx', await timedSend(tlsRecv, { role: 'tls-send', id: alpha, port: nginx.port, total }, total, nginx.pid));
      keep('pipe', await timedSend(tlsRecv, { role: 'tls-send', id: alpha, port: pipePort, total }, total, pipe.pid));
      const x = await timedSend(relayRecv, { role: 'relay-send', id: alpha, url, to: 'bravo', total }, total, relayPid);
      relayPeak = Math.max(relayPeak, x.rss);
      keep('relay', x);
    }
    const small = await smallMessages(port, senders, sink, messages);

    const gib = total / GIB;
    const row = (path: string, x: Round): Record<string, string> => ({
      path,
      'MB/s': mbps(total, x.ms),
      seconds: (x.ms / 1000).toFixed(2),
      'middle CPU s/GiB': (x.middle / gib).toFixed(2),
      'sender CPU s/GiB': (x.sender / gib).toFixed(2),
      'receiver CPU s/GiB': (x.receiver / gib).toFixed(2),
      'middle peak RSS MiB': mib(x.rss),
    });
    const relay = best.get('relay') as Round;
    const pipeBest = best.get('pipe') as Round;
    const ngx = best.get('nginx');
    const rows = [
      ...(ngx ? [row('nginx 1.22 stream proxy (TLS both legs, one worker)', ngx)] : []),
      row('Node TLS socket pipe (mTLS in, TLS out)', pipeBest),
      row('hie-relay (mTLS WebSocket, credit flow control)', { ...relay, rss: relayPeak }),
    ];
    const vsPipe = pipeBest.ms / relay.ms;
    const summary: SummaryRow[] = [];
    const notes = [
      `Best of ${rounds} alternating rounds per path; relay peak RSS is over all rounds (idle ${mib(idleRss)} MiB). CPU from /proc (user + system) of each process, over the round.`,
      'Sender and receiver each run in their own process (a fresh sender per round); nginx and the Node pipe share one TLS receiver, the relay path has a RelayClient receiver.',
    ];
    if (ngx) {
      const tput = ngx.ms / relay.ms;
      const cpu = relay.middle / Math.max(1e-9, ngx.middle);
      notes.unshift(
        `relay vs nginx: throughput ${tput.toFixed(2)} (target >= 0.80), middle CPU per GiB ${cpu.toFixed(2)} x nginx's (target <= 1.30). Relay vs Node pipe: ${vsPipe.toFixed(2)}.`,
      );
      summary.push(
        { metric: `relay throughput vs nginx (${mib(total)} MiB)`, value: tput.toFixed(2), target: '>= 0.80', met: tput >= 0.8 },
        { metric: 'relay CPU s/GiB vs nginx', value: cpu.toFixed(2), target: '<= 1.30', met: cpu <= 1.3 },
      );
    } else {
      notes.unshift(NGINX_INSTALL_HINT, `Relay vs Node pipe: ${vsPipe.toFixed(2)}.`);
    }
    summary.push(
      { metric: `relay throughput vs Node TLS pipe (${mib(total)} MiB)`, value: vsPipe.toFixed(2), target: '-' },
      { metric: 'relay peak RSS, MiB', value: mib(relayPeak), target: '< 150', met: relayPeak < 150 * 1048576 },
    );
    return [
      { title: `relay: ${mib(total)} MiB, sender -> middle -> receiver, each its own process`, rows, notes, summary },
      {
        title: `relay: small messages (1 KiB, ${nSenders} concurrent senders -> 1 receiver, 32 in flight each)`,
        rows: [
          {
            messages: small.lat.length,
            'msg/s': Math.round(small.lat.length / (small.ms / 1000)),
            'p50 ms': percentile(small.lat, 50).toFixed(2),
            'p99 ms': percentile(small.lat, 99).toFixed(2),
          },
        ],
        notes: ['Latency is one-way sender -> relay -> receiver, timed on the one clock of the bench process (these clients run in it).'],
        summary: [{ metric: 'relay small messages/s (1 KiB)', value: String(Math.round(small.lat.length / (small.ms / 1000))), target: '-' }],
      },
    ];
  } finally {
    for (const c of started.reverse()) await stopChild(c, 2_000);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.env.HIE_BENCH_CHILD) {
  // Stopped with SIGTERM: exit normally so that a CPU profile (HIE_CPU_PROFILE_DIR) is written.
  process.once('SIGTERM', () => process.exit(0));
  benchChild(JSON.parse(process.env.HIE_BENCH_CHILD) as ChildConfig).catch((err: unknown) => {
    process.stderr.write(`bench child: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
