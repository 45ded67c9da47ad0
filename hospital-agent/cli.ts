import { accessSync, constants, createReadStream, statSync } from 'node:fs';
import { Transform } from 'node:stream';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import cliProgress from 'cli-progress';
import { startAgent } from './agent.ts';
import { roleAllows, roleOf } from './api/auth.ts';
import { AgentConfigError, loadAgentConfig, loadApiTokens, loadPatientSecret } from './config.ts';

const USAGE = `Usage: hie-agent <command> [options]

The on-premise hospital agent and the tools hospital IT uses with it.

Server:
  start --config FILE                 run the agent (SIGTERM/SIGINT stop it; SIGHUP re-reads the CRL)
  check-config --config FILE          validate a config file, the API tokens and the patient secret

Talking to a running agent (--config FILE, or --api URL with HIE_AGENT_TOKEN set):
  send --to ID --patient P --consent C [--purpose TREAT] [--type MEDIA_TYPE] [--idempotency-key K] FILE
                                      send FILE and wait for the receipt; exit 0 when delivered, 3 when failed
                                      (HIE_PATIENT_ID instead of --patient keeps the id out of the process list)
  consent grant --patient P --to ID --until DATE [--purpose CODE]... [--scope TYPE]...
  consent revoke ID [--reason patient-request|expired|superseded|entered-in-error|legal]
  consent list
  inbox [--unacked]                   list received items
  status                              relay connection, ledger feeds, queue
  settlement [--period YYYY-MM]       what this hospital owes and is owed
  verify [--grace SECONDS]            verify the agent's ledger (an exchange counts as unanswered after
                                      --grace; default: as long as the agent retries (24 h) and an hour)
`;

type Options = NonNullable<ParseArgsConfig['options']>;

/** Output sinks, so tests can capture what the CLI prints. */
export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

const defaultIo: CliIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

class UsageError extends Error {
  readonly code = 'ERR_USAGE';
  readonly exitCode = 2;
}

const CLIENT_OPTIONS: Options = { config: { type: 'string' }, api: { type: 'string' }, json: { type: 'boolean' } };

function parse(args: string[], options: Options, usage: string): { values: Record<string, unknown>; positionals: string[] } {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: true }) as { values: Record<string, unknown>; positionals: string[] };
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split('\n')[0]} (usage: ${usage})`);
  }
}

/** The patient id: `--patient`, or HIE_PATIENT_ID (which, unlike argv, other users cannot see in the process list). */
function patientOf(values: Record<string, unknown>): string {
  const v = (values['patient'] as string | undefined) ?? process.env['HIE_PATIENT_ID'];
  if (!v) throw new UsageError('--patient is required (or set HIE_PATIENT_ID, which other users cannot see in the process list)');
  return v;
}

function need(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

/** How to reach a running agent's API. */
interface ApiTarget {
  base: string;
  token: string;
}

function target(values: Record<string, unknown>): ApiTarget {
  if (typeof values['config'] === 'string') {
    const config = loadAgentConfig(values['config']);
    const tokens = process.env['HIE_AGENT_TOKEN'] ? [{ name: 'cli', token: process.env['HIE_AGENT_TOKEN'] }] : loadApiTokens(config);
    const host = config.api.host === '0.0.0.0' ? '127.0.0.1' : config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host;
    // The CLI calls /v1: a token whose role allows it (ehr or admin) rather than, say, the compliance officer's.
    const usable = tokens.find((t) => roleAllows(roleOf(t), 'ehr')) ?? tokens[0];
    return { base: `http://${host}:${config.api.port}`, token: (usable as { token: string }).token };
  }
  if (typeof values['api'] === 'string') {
    const token = process.env['HIE_AGENT_TOKEN'];
    if (!token) throw new UsageError('set HIE_AGENT_TOKEN to an API token of the agent (or use --config FILE)');
    return { base: values['api'].replace(/\/$/, ''), token };
  }
  throw new UsageError('say which agent: --config FILE or --api URL');
}

async function call(t: ApiTarget, path: string, init: RequestInit & { duplex?: 'half' } = {}): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${t.base}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${t.token}`, ...(init.headers as Record<string, string> | undefined) },
    });
  } catch (err) {
    throw new Error(`cannot reach the agent at ${t.base}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`, { cause: err });
  }
  const text = await res.text();
  const body = text ? (JSON.parse(text) as unknown) : undefined;
  if (!res.ok) {
    const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw Object.assign(new Error(e?.message ?? `HTTP ${res.status}`), { code: e?.code ?? `HTTP_${res.status}` });
  }
  return body;
}

function print(io: CliIo, json: boolean, value: unknown, text: () => string): void {
  io.out(json ? `${JSON.stringify(value, null, 2)}\n` : text());
}

async function runStart(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, { config: { type: 'string' } }, 'hie-agent start --config FILE');
  const config = loadAgentConfig(need(values, 'config'));
  const agent = await startAgent(config);
  io.err(`hie-agent ${config.id}: API on ${config.api.host}:${agent.apiPort}, relay ${config.relay.urls.join(', ')}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      process.off('SIGHUP', hup);
      void agent.close().then(resolve, resolve);
    };
    const hup = (): void => {
      agent.reloadCrl();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', hup);
  });
  return 0;
}

async function runSend(args: string[], io: CliIo): Promise<number> {
  const usage = 'hie-agent send --to ID --patient P --consent C [--purpose CODE] [--type MEDIA_TYPE] [--idempotency-key K] [--no-wait] FILE';
  const { values, positionals } = parse(
    args,
    {
      ...CLIENT_OPTIONS,
      to: { type: 'string' },
      patient: { type: 'string' },
      consent: { type: 'string' },
      purpose: { type: 'string' },
      type: { type: 'string' },
      'idempotency-key': { type: 'string' },
      'no-wait': { type: 'boolean' },
      quiet: { type: 'boolean' },
    },
    usage,
  );
  if (positionals.length !== 1) throw new UsageError(`exactly one FILE to send (usage: ${usage})`);
  const file = positionals[0] as string;
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new Error('not a file');
    accessSync(file, constants.R_OK);
    size = st.size;
  } catch {
    throw new UsageError(`cannot read ${file} (a readable file is needed)`);
  }
  const t = target(values);
  // Every flag is checked before the progress bar takes the terminal.
  const to = need(values, 'to');
  const consent = need(values, 'consent');
  const patient = patientOf(values);
  const type =
    (values['type'] as string | undefined) ??
    (/\.json$/i.test(file) ? 'application/fhir+json' : /\.dcm$/i.test(file) ? 'application/dicom' : 'application/octet-stream');
  const bar =
    values['quiet'] === true || values['json'] === true
      ? undefined
      : new cliProgress.SingleBar(
          { format: 'upload |{bar}| {percentage}% {value_mb}/{total_mb} MB {rate} MB/s ETA {eta_formatted}', stream: process.stderr, hideCursor: true },
          cliProgress.Presets.shades_classic,
        );
  const started = Date.now();
  let sent = 0;
  bar?.start(size, 0, { value_mb: '0', total_mb: (size / 1e6).toFixed(1), rate: '0' });
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      sent += chunk.length;
      bar?.update(sent, {
        value_mb: (sent / 1e6).toFixed(1),
        total_mb: (size / 1e6).toFixed(1),
        rate: (sent / 1e6 / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1),
      });
      cb(null, chunk);
    },
  });
  const headers: Record<string, string> = {
    'content-type': type,
    'content-length': String(size),
    'hie-recipient': to,
    'hie-patient-id': patient,
    'hie-consent-id': consent,
    ...(values['purpose'] ? { 'hie-purpose': values['purpose'] as string } : {}),
    ...(values['idempotency-key'] ? { 'idempotency-key': values['idempotency-key'] as string } : {}),
  };
  let exchange: { id: string; status: string };
  try {
    // A read error mid-file fails the upload (the agent stores nothing of an incomplete body), not the process.
    const source = createReadStream(file);
    source.on('error', (err) => counter.destroy(err));
    exchange = (await call(t, '/v1/exchanges', { method: 'POST', headers, body: source.pipe(counter) as unknown as RequestInit['body'], duplex: 'half' })) as {
      id: string;
      status: string;
    };
  } finally {
    bar?.stop();
  }
  if (values['no-wait'] === true) {
    print(io, values['json'] === true, exchange, () => `exchange ${exchange.id} ${exchange.status}\n`);
    return 0;
  }
  // The id first, so an interrupted wait can be picked up with GET /v1/exchanges/ID.
  if (values['json'] !== true && values['quiet'] !== true)
    io.err(`exchange ${exchange.id} accepted; waiting for the receipt (retried while ${to} is unreachable)\n`);
  for (;;) {
    const x = (await call(t, `/v1/exchanges/${exchange.id}`)) as {
      id: string;
      status: string;
      failure?: { code: string; message: string };
      receipt?: { receivedAt?: string; contentHash?: string };
    };
    if (x.status === 'delivered' || x.status === 'failed') {
      print(io, values['json'] === true, x, () =>
        x.status === 'delivered'
          ? `exchange ${x.id} delivered to ${headers['hie-recipient']}; receipt signed by the recipient at ${x.receipt?.receivedAt ?? '?'} (content sha-256 ${x.receipt?.contentHash ?? '?'})\n`
          : `exchange ${x.id} failed: ${x.failure?.code ?? 'unknown'}: ${x.failure?.message ?? ''}\n`,
      );
      return x.status === 'delivered' ? 0 : 3;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function runConsent(args: string[], io: CliIo): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'grant') {
    const { values } = parse(
      rest,
      {
        ...CLIENT_OPTIONS,
        patient: { type: 'string' },
        to: { type: 'string', multiple: true },
        until: { type: 'string' },
        from: { type: 'string' },
        purpose: { type: 'string', multiple: true },
        scope: { type: 'string', multiple: true },
      },
      'hie-agent consent grant --patient P --to ID --until DATE',
    );
    const t = target(values);
    const body = {
      patientId: patientOf(values),
      grantees: (values['to'] as string[] | undefined) ?? [],
      validUntil: need(values, 'until'),
      ...(values['from'] ? { validFrom: values['from'] } : {}),
      ...(values['purpose'] ? { purposes: values['purpose'] } : {}),
      ...(values['scope'] ? { scope: values['scope'] } : {}),
    };
    if (body.grantees.length === 0) throw new UsageError('--to is required');
    const c = (await call(t, '/v1/consents', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })) as {
      id: string;
      validUntil: string;
    };
    print(io, values['json'] === true, c, () => `consent ${c.id} granted to ${body.grantees.join(', ')} until ${c.validUntil}\n`);
    return 0;
  }
  if (sub === 'revoke') {
    const { values, positionals } = parse(rest, { ...CLIENT_OPTIONS, reason: { type: 'string' } }, 'hie-agent consent revoke ID');
    if (positionals.length !== 1) throw new UsageError('give the consent id to revoke');
    const t = target(values);
    const q = values['reason'] ? `?reason=${encodeURIComponent(values['reason'] as string)}` : '';
    const c = (await call(t, `/v1/consents/${encodeURIComponent(positionals[0] as string)}${q}`, { method: 'DELETE' })) as { id: string; revokedAt: string };
    print(io, values['json'] === true, c, () => `consent ${c.id} revoked at ${c.revokedAt}\n`);
    return 0;
  }
  if (sub === 'list') {
    const { values } = parse(rest, CLIENT_OPTIONS, 'hie-agent consent list');
    const r = (await call(target(values), '/v1/consents')) as {
      consents: Array<{ id: string; grantees: string[]; purposes: string[]; validUntil: string; revokedAt?: string }>;
    };
    print(
      io,
      values['json'] === true,
      r,
      () =>
        r.consents
          .map((c) => `${c.id}  ${c.grantees.join(',')}  ${c.purposes.join(',')}  until ${c.validUntil}${c.revokedAt ? `  REVOKED ${c.revokedAt}` : ''}\n`)
          .join('') || 'no consents\n',
    );
    return 0;
  }
  throw new UsageError('consent needs grant, revoke or list');
}

async function runSimple(command: string, args: string[], io: CliIo): Promise<number> {
  const extra: Options =
    command === 'inbox'
      ? { unacked: { type: 'boolean' } }
      : command === 'settlement'
        ? { period: { type: 'string' } }
        : command === 'verify'
          ? { grace: { type: 'string' } }
          : {};
  const { values } = parse(args, { ...CLIENT_OPTIONS, ...extra }, `hie-agent ${command}`);
  const t = target(values);
  const json = values['json'] === true;
  if (command === 'inbox') {
    const r = (await call(t, `/v1/inbox${values['unacked'] ? '?unacked=true' : ''}`)) as {
      items: Array<{ exchangeId: string; from: string; contentType: string; bytes: number; receivedAt: string; ackedAt?: string }>;
    };
    print(
      io,
      json,
      r,
      () =>
        r.items.map((i) => `${i.exchangeId}  from ${i.from}  ${i.contentType}  ${i.bytes} bytes  ${i.receivedAt}${i.ackedAt ? '  acked' : ''}\n`).join('') ||
        'inbox is empty\n',
    );
    return 0;
  }
  if (command === 'status') {
    // `outbox`: every exchange not yet delivered or failed (queued, or on its way), counted by the agent.
    const health = (await call(t, '/healthz')) as { agent: string; relay: string; outbox: number };
    const ledger = (await call(t, '/v1/ledger/status')) as { feeds: Array<{ feed: string; seq: number }>; evidence: unknown[] };
    const value = { ...health, feeds: ledger.feeds, evidence: ledger.evidence.length };
    print(
      io,
      json,
      value,
      () =>
        `agent ${health.agent}: relay ${health.relay}; ${health.outbox} unfinished (queued or sending); ledger feeds ${ledger.feeds.map((f) => `${f.feed}@${f.seq}`).join(' ')}${ledger.evidence.length ? `; ${ledger.evidence.length} EQUIVOCATION finding(s)` : ''}\n`,
    );
    return 0;
  }
  if (command === 'settlement') {
    const period = (values['period'] as string | undefined) ?? new Date().toISOString().slice(0, 7);
    if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(period)) throw new UsageError('--period must be YYYY-MM');
    const s = (await call(t, `/v1/ledger/settlement?period=${period}`)) as {
      hospital: string;
      lines: Array<{ counterparty: string; currency: string; owes: number; owed: number; charges: number }>;
      totals: Array<{ currency: string; owes: number; owed: number; net: number }>;
      unreplicated: string[];
    };
    print(io, json, s, () => {
      const lines = [`settlement for ${s.hospital}, ${period}`];
      for (const l of s.lines) lines.push(`  ${l.counterparty.padEnd(20)} ${l.currency} owes ${l.owes} owed ${l.owed} (${l.charges} charges)`);
      for (const tot of s.totals) lines.push(`  total ${tot.currency}: owes ${tot.owes}, owed ${tot.owed}, net ${tot.net} (minor units)`);
      if (s.lines.length === 0) lines.push('  no charges in this period');
      if (s.unreplicated.length > 0)
        lines.push(
          `  INCOMPLETE: the ledger feeds of ${s.unreplicated.join(', ')} are not replicated here, so their charges (e.g. release fees they bill) are missing: add them to \`peers\``,
        );
      return `${lines.join('\n')}\n`;
    });
    return 0;
  }
  if (command === 'verify') {
    const grace = values['grace'] as string | undefined;
    if (grace !== undefined && !/^\d{1,9}$/.test(grace)) throw new UsageError('--grace must be a whole number of seconds');
    const r = (await call(t, `/v1/ledger/verify${grace !== undefined ? `?grace=${grace}` : ''}`)) as {
      ok: boolean;
      findings: Array<{ feed: string | null; seq: number | null; rule: string; detail: string }>;
      stats: { feeds: number; entries: number };
    };
    print(io, json, r, () =>
      r.ok
        ? `ledger OK: ${r.stats.feeds} feeds, ${r.stats.entries} entries\n`
        : r.findings.map((f) => `${f.feed ?? '-'}:${f.seq ?? '-'} ${f.rule}: ${f.detail}\n`).join(''),
    );
    return r.ok ? 0 : 1;
  }
  throw new UsageError(`unknown command '${command}'`);
}

/** Runs `hie-agent` with `argv`; returns the exit code. */
export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    io.out(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(USAGE);
    return 0;
  }
  switch (command) {
    case 'start':
      return runStart(rest, io);
    case 'check-config': {
      const { values } = parse(rest, { config: { type: 'string' } }, 'hie-agent check-config --config FILE');
      const config = loadAgentConfig(need(values, 'config'));
      // What start reads besides the file: the API tokens and the patient secret (from this environment).
      const tokens = loadApiTokens(config);
      loadPatientSecret(config);
      io.out(
        `config OK: agent ${config.id}, API ${config.api.host}:${config.api.port}, relay ${config.relay.urls.join(', ')}, data ${config.dataDir}, ${tokens.length} API token(s), patient secret set\n`,
      );
      return 0;
    }
    case 'send':
      return runSend(rest, io);
    case 'consent':
      return runConsent(rest, io);
    case 'inbox':
    case 'status':
    case 'settlement':
    case 'verify':
      return runSimple(command, rest, io);
    default:
      throw new UsageError(`unknown command '${command}' (run 'hie-agent --help')`);
  }
}

export { AgentConfigError };
