/**
 * `hie-agent send`: streams a file to the agent (an upload bar on a
 * terminal), prints the exchange id at once, then waits for the receipt,
 * showing on a terminal what the exchange is doing (status, attempts, next
 * retry). `--no-wait` returns with the id at once; Ctrl-C leaves the wait
 * (exit 130) and the exchange goes on: `hie-agent exchange status ID`
 * follows it, `hie-agent cancel ID` ends it before it is released.
 */
import { accessSync, constants, createReadStream, statSync } from 'node:fs';
import { Transform } from 'node:stream';
import cliProgress from 'cli-progress';
import { hexDigest } from '../../ledger/index.ts';
import { call, CLIENT_OPTIONS, need, parse, patientOf, print, target, UsageError, type CliIo, type Options } from './client.ts';

/** How often the wait asks the agent for the exchange's status. */
export const SEND_POLL_MS = 250;

export const SEND_USAGE =
  'hie-agent send --to ID --consent C (--patient P | HIE_PATIENT_ID) [--purpose CODE] [--type MEDIA_TYPE] [--idempotency-key K] [--request ID] [--no-wait] [--quiet] FILE';

export const SEND_OPTIONS: Options = {
  ...CLIENT_OPTIONS,
  to: { type: 'string' },
  patient: { type: 'string' },
  consent: { type: 'string' },
  purpose: { type: 'string' },
  type: { type: 'string' },
  'idempotency-key': { type: 'string' },
  request: { type: 'string' },
  'no-wait': { type: 'boolean' },
  quiet: { type: 'boolean' },
};

interface ExchangeView {
  id: string;
  status: string;
  attempts?: number;
  nextAttemptAt?: string;
  contentSha256?: string;
  failure?: { code: string; message: string };
  receipt?: { receivedAt?: string; contentHash?: string };
  receiptContentSha256?: string;
}

/** Runs `hie-agent send`; exit 0 delivered (or accepted with --no-wait), 3 failed, 130 left with Ctrl-C. */
export async function runSend(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, SEND_OPTIONS, SEND_USAGE);
  if (positionals.length !== 1) throw new UsageError(`exactly one FILE to send (usage: ${SEND_USAGE})`);
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
  const json = values['json'] === true;
  const quiet = values['quiet'] === true || json;
  const type =
    (values['type'] as string | undefined) ??
    (/\.json$/i.test(file) ? 'application/fhir+json' : /\.dcm$/i.test(file) ? 'application/dicom' : 'application/octet-stream');
  const bar =
    quiet || !io.tty
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
    ...(values['request'] ? { 'hie-request-id': values['request'] as string } : {}),
  };
  let exchange: ExchangeView;
  try {
    // A read error mid-file fails the upload (the agent stores nothing of an incomplete body), not the process.
    const source = createReadStream(file);
    source.on('error', (err) => counter.destroy(err));
    exchange = (await call(t, '/v1/exchanges', {
      method: 'POST',
      headers,
      body: source.pipe(counter) as unknown as RequestInit['body'],
      duplex: 'half',
    })) as ExchangeView;
  } finally {
    bar?.stop();
  }
  if (values['no-wait'] === true) {
    print(
      io,
      json,
      exchange,
      () => `exchange ${exchange.id} ${exchange.status} (sha-256 ${exchange.contentSha256 ?? '?'}); follow it with: hie-agent exchange status ${exchange.id}\n`,
    );
    return 0;
  }
  // The id first, so an interrupted wait can be picked up with `hie-agent exchange status ID`.
  const announce = quiet
    ? undefined
    : `exchange ${exchange.id} accepted; waiting for the receipt (retried while ${to} is unreachable; Ctrl-C leaves, the exchange goes on)\n`;
  const waited = await waitForReceipt(t, exchange.id, io, !quiet && io.tty === true, announce);
  if (waited === 'left') {
    io.err(
      `left the wait; exchange ${exchange.id} goes on: 'hie-agent exchange status ${exchange.id}' follows it, 'hie-agent cancel ${exchange.id}' ends it\n`,
    );
    return 130;
  }
  const x = waited;
  print(io, json, x, () =>
    x.status === 'delivered'
      ? `exchange ${x.id} delivered to ${to}; receipt signed by the recipient at ${x.receipt?.receivedAt ?? '?'} (content sha-256 ${x.receiptContentSha256 ?? (x.receipt?.contentHash ? hexDigest(x.receipt.contentHash) : '?')})\n`
      : `exchange ${x.id} failed: ${x.failure?.code ?? 'unknown'}: ${x.failure?.message ?? ''}\n`,
  );
  return x.status === 'delivered' ? 0 : 3;
}

/**
 * Polls the exchange until it is final, or until SIGINT ('left'); draws one status line on a terminal.
 * `announce` is printed once Ctrl-C is caught, so a Ctrl-C right after it still leaves the wait cleanly.
 */
async function waitForReceipt(
  t: Parameters<typeof call>[0],
  id: string,
  io: CliIo,
  draw: boolean,
  announce: string | undefined,
): Promise<ExchangeView | 'left'> {
  let left = false;
  let wake: (() => void) | undefined;
  const onInt = (): void => {
    left = true;
    wake?.();
  };
  process.once('SIGINT', onInt);
  if (announce) io.err(announce);
  let shown = '';
  try {
    for (;;) {
      const x = (await call(t, `/v1/exchanges/${id}`)) as ExchangeView;
      if (x.status === 'delivered' || x.status === 'failed') return x;
      if (left) return 'left';
      if (draw) {
        const next = x.nextAttemptAt ? `, next try ${x.nextAttemptAt.slice(11, 19)} UTC` : '';
        const line = `  ${x.status}${x.attempts ? `, ${x.attempts} attempt(s)` : ''}${next}`;
        if (line !== shown) io.err(`\r\x1b[2K${line}`);
        shown = line;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, SEND_POLL_MS);
      });
      if (left) return 'left';
    }
  } finally {
    process.off('SIGINT', onInt);
    if (draw && shown) io.err('\r\x1b[2K');
  }
}
