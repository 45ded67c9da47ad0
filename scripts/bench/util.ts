import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { request, type Agent } from 'node:http';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { InboundTransfer, RelayClient } from '../../relay/protocol/index.ts';
import type { BenchTable } from './types.ts';

const SIZE_UNITS: Record<string, number> = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, kb: 1e3, mb: 1e6, gb: 1e9 };

/** Parses a size such as `2GiB`, `256MiB` or `4096` (bytes unless `defaultUnit` says otherwise). */
export function parseSize(text: string, options: { flag?: string; defaultUnit?: 'B' | 'MiB' } = {}): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)?$/i.exec(text.trim());
  if (!m) throw new Error(`${options.flag ?? '--size'}: '${text}' is not a size like 1GiB, 256MiB or 4096`);
  return Math.round(Number(m[1]) * (SIZE_UNITS[(m[2] ?? options.defaultUnit ?? 'B').toLowerCase()] as number));
}

/** The value of `--name VALUE` or `--name=VALUE` in `args`, if given. */
export function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) return args[i + 1];
  return args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
}

/** `total` bytes in 1 MiB chunks of one constant random block: no generation cost in what is measured. */
export function blockSource(total: number, chunk = 1024 * 1024): Readable {
  const block = randomBytes(chunk);
  let left = total;
  return new Readable({
    highWaterMark: 4 * chunk,
    read() {
      if (left <= 0) return void this.push(null);
      const n = Math.min(chunk, left);
      left -= n;
      this.push(n === chunk ? block : block.subarray(0, n));
    },
  });
}

/** Percentile (0-100) of a numeric sample, nearest-rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] as number;
}

/** Samples a process's RSS (this one by default) and keeps the peak. */
export class PeakRss {
  private peak = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly sample: () => number = () => process.memoryUsage().rss) {}

  start(intervalMs = 50): this {
    this.peak = Math.max(this.peak, this.sample());
    this.timer = setInterval(() => {
      this.peak = Math.max(this.peak, this.sample());
    }, intervalMs);
    this.timer.unref();
    return this;
  }

  stop(): number {
    if (this.timer) clearInterval(this.timer);
    this.peak = Math.max(this.peak, this.sample());
    return this.peak;
  }
}

/** RSS in bytes of another process, read from /proc (Linux). */
export async function rssOfPid(pid: number): Promise<number> {
  const { readFileSync } = await import('node:fs');
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds (user + system) a process has used so far, from /proc; 0 where /proc is unavailable.
 * With `thread`, those of that one thread (the process's own id is its main thread).
 */
export function cpuSecondsOfPid(pid: number, thread?: number): number {
  try {
    const stat = readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at ')'; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Formats bytes/second as MB/s (10^6). */
export function mbps(bytes: number, ms: number): string {
  return (bytes / 1e6 / (ms / 1000)).toFixed(1);
}

/** Formats bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(1);
}

/** One line describing the machine the bench ran on. */
export function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
}

/** One combined table of every section's headline figures. */
export function summaryTable(tables: BenchTable[]): BenchTable | undefined {
  const rows = tables.flatMap((t) => t.summary ?? []);
  if (rows.length === 0) return undefined;
  return {
    title: 'summary: every section, one table',
    rows: rows.map((r) => ({ metric: r.metric, value: r.value, target: r.target, met: r.met === undefined ? '-' : r.met ? 'yes' : 'NO' })),
  };
}

/** Renders tables as aligned text. */
export function renderTables(tables: BenchTable[]): string {
  const out: string[] = [];
  for (const t of tables) {
    out.push(`\n## ${t.title}\n`);
    const cols = [...new Set(t.rows.flatMap((r) => Object.keys(r)))];
    const cells = [cols, ...t.rows.map((r) => cols.map((c) => String(r[c] ?? '')))];
    const widths = cols.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
    const line = (row: string[]): string => `| ${row.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
    out.push(line(cols));
    out.push(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
    for (const row of cells.slice(1)) out.push(line(row));
    for (const n of t.notes ?? []) out.push(`\n${n}`);
  }
  return `${out.join('\n')}\n`;
}

/** Milliseconds to send `total` bytes from client `a` to client `b` (agent id `to`) through the relay, until the last byte arrived. */
export async function relayTransferMs(a: RelayClient, b: RelayClient, to: string, total: number): Promise<number> {
  const t0 = performance.now();
  const incoming = new Promise<InboundTransfer>((r) => b.once('transfer', r));
  const out = a.openTransfer(to);
  const sending = pipeline(blockSource(total), out);
  const inbound = await incoming;
  let received = 0;
  for await (const chunk of inbound) received += (chunk as Buffer).length;
  await sending;
  const ms = performance.now() - t0;
  await out.usage;
  if (received !== total) throw new Error(`received ${received} of ${total} bytes`);
  return ms;
}

/** An answer of {@link httpJson}: status, parsed JSON body ({} when empty) and headers. */
export interface JsonAnswer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * One HTTP request with node:http over `agent` (keep-alive connections, as an EHR's client would hold them),
 * cheaper for the bench process than fetch: the client shares the machine's cores with what it measures.
 * A body is bytes, or a stream of a known length sent as it is read.
 */
export function httpJson(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Buffer | { stream: Readable; length: number } },
  agent: Agent | undefined,
): Promise<JsonAnswer> {
  const body = typeof init.body === 'string' ? Buffer.from(init.body) : init.body;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: init.method ?? 'GET', agent, headers: { ...init.headers, ...(body ? { 'content-length': String(body.length) } : {}) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {}, headers: res.headers });
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (body === undefined || Buffer.isBuffer(body)) req.end(body);
    else pipeline(body.stream, req).catch(reject);
  });
}

/**
 * Node flags for a bench process named `name`: with `HIE_CPU_PROFILE_DIR`, V8 CPU profiles written to
 * `<dir>/<name>/` when it exits (Node's default file names, one per thread: tsx's loader thread has its own).
 */
export function profileFlags(name: string): string[] {
  const dir = process.env['HIE_CPU_PROFILE_DIR'];
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${join(dir, name)}`] : [];
}
