/**
 * `hie-agent`: the on-premise hospital agent and the tools hospital IT uses
 * with it. Every task of docs/agent.md has a command;
 * each command (and each group: consent, exchange, inbox, requests) has its
 * own `--help`. Options are parsed by node's util.parseArgs, strictly.
 */
import { createHash } from 'node:crypto';
import { createWriteStream, renameSync, rmSync } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { formatAmount, hexDigest } from '../ledger/index.ts';
import { startAgent } from './agent.ts';
import { checkAgentConfig } from './check-config.ts';
import { AgentConfigError, loadAgentConfig } from './config.ts';
import {
  call,
  CLIENT_HELP,
  CLIENT_OPTIONS,
  defaultIo,
  need,
  one,
  parse,
  patientOf,
  print,
  request,
  target,
  UsageError,
  type CliIo,
  type Options,
} from './cli/client.ts';
import { runSend, SEND_OPTIONS, SEND_USAGE } from './cli/send.ts';
import { RX_COMMANDS, RX_GROUP, RX_SECTION } from './cli/prescriptions.ts';
import { CLAIM_COMMANDS } from './cli/claims.ts';
import { PATIENT_COMMANDS, PATIENT_GROUP, PATIENT_SECTION } from './cli/patients.ts';

export type { CliIo } from './cli/client.ts';

/** One command: its usage line, a one-line summary, more help, its options and what it does. */
interface Command {
  usage: string;
  summary: string;
  help?: string;
  options: Options;
  run: (values: Record<string, unknown>, positionals: string[], io: CliIo, args: string[]) => Promise<number>;
}

interface ConsentView {
  id: string;
  grantees: string[];
  purposes: string[];
  scope?: string[];
  validFrom?: string;
  validUntil: string;
  revokedAt?: string;
  revocationReason?: string;
}
interface InboxItem {
  exchangeId: string;
  from: string;
  contentType: string;
  bytes: number;
  contentSha256: string;
  receivedAt: string;
  ackedAt?: string;
  copiedAt?: string;
  requestId?: string;
}
interface RequestView {
  id: string;
  direction: string;
  peer: string;
  purpose: string;
  scope: string[];
  status: string;
  createdAt: string;
  code?: string;
  consentId?: string;
  patientId?: string;
  exchanges?: string[];
}
interface ExchangeView {
  id: string;
  to: string;
  status: string;
  contentType: string;
  bytes: number;
  contentSha256: string;
  attempts: number;
  createdAt: string;
  nextAttemptAt?: string;
  failure?: { code: string; message: string };
  receipt?: { receivedAt?: string };
  receiptContentSha256?: string;
}

const enc = encodeURIComponent;
const json = (values: Record<string, unknown>): boolean => values['json'] === true;
const consentLine = (c: ConsentView): string =>
  `${c.id}  ${c.grantees.join(',')}  ${c.purposes.join(',')}  until ${c.validUntil}${c.revokedAt ? `  REVOKED ${c.revokedAt}` : ''}\n`;
const inboxLine = (i: InboxItem): string =>
  `${i.exchangeId}  from ${i.from}  ${i.contentType}  ${i.bytes} bytes  ${i.receivedAt}${i.ackedAt ? '  acked' : ''}${i.requestId ? `  answers request ${i.requestId}` : ''}\n`;
const requestLine = (r: RequestView): string =>
  `${r.id}  ${r.direction === 'outgoing' ? `to ${r.peer}` : `from ${r.peer}`}  ${r.status}${r.code ? ` (${r.code})` : ''}  ${r.purpose}  ${r.scope.join(',')}  ${r.createdAt}${r.exchanges?.length ? `  answered by ${r.exchanges.join(', ')}` : ''}\n`;
const exchangeLine = (x: ExchangeView): string =>
  `${x.id}  to ${x.to}  ${x.status}${x.failure ? ` (${x.failure.code})` : ''}  ${x.contentType}  ${x.bytes} bytes  ${x.createdAt}\n`;

function exchangeText(x: ExchangeView): string {
  const lines = [
    `exchange ${x.id} to ${x.to}: ${x.status}`,
    `  content    ${x.contentType}, ${x.bytes} bytes, sha-256 ${x.contentSha256}`,
    `  attempts   ${x.attempts}${x.nextAttemptAt && x.status === 'queued' ? `, next at ${x.nextAttemptAt}` : ''}`,
    `  created    ${x.createdAt}`,
  ];
  if (x.receipt) lines.push(`  receipt    signed by ${x.to} at ${x.receipt.receivedAt ?? '?'}, content sha-256 ${x.receiptContentSha256 ?? '?'}`);
  if (x.failure) lines.push(`  failure    ${x.failure.code}: ${x.failure.message}`);
  return `${lines.join('\n')}\n`;
}

async function cancel(values: Record<string, unknown>, positionals: string[], io: CliIo, usage: string): Promise<number> {
  const id = one(positionals, 'exchange id', usage);
  try {
    const x = (await call(target(values), `/v1/exchanges/${enc(id)}`, { method: 'DELETE' })) as ExchangeView;
    print(io, json(values), x, () => `exchange ${x.id} cancelled: it will not be sent (ledger: exchange.cancelled)\n`);
    return 0;
  } catch (err) {
    const detail = (err as { detail?: { status?: string } }).detail;
    if ((err as { code?: string }).code === 'ERR_CONFLICT' && detail?.status)
      throw Object.assign(new Error(`${(err as Error).message} (state: ${detail.status})`), { code: 'ERR_CONFLICT' });
    throw err;
  }
}

const CANCEL_HELP = `Ends an exchange that has not been released to its recipient (queued, or waiting to be retried
while the recipient is unreachable): the agent never sends it, logs exchange.cancelled in the ledger,
and the exchange ends failed with code ERR_EXCHANGE_CANCELLED. An exchange being sent, whose envelope
already reached the relay whole, or that is final is refused (exit 1, ERR_CONFLICT, with its state).`;

/** Every command, by name ("group sub" for a group's subcommands). */
const COMMANDS: Record<string, Command> = {
  start: {
    usage: 'hie-agent start --config FILE',
    summary: 'run the agent (SIGTERM/SIGINT stop it; SIGHUP re-reads the CRL and the certificate files)',
    options: { config: { type: 'string' } },
    run: async (values, _p, io) => {
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
          agent.reloadIdentity();
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
        process.on('SIGHUP', hup);
      });
      return 0;
    },
  },
  'check-config': {
    usage: 'hie-agent check-config --config FILE',
    summary: 'check a config file and everything it names; "config OK" only when all of it holds',
    help: `Checks what start reads, without starting: the config file, the API tokens and the patient secret
(from this environment), and every file it names: the certificate and key (they must match, and the
certificate must name this agent's id and be valid now), the CA (it must have issued and signed the
certificate) and the CRL (signed by the CA, not expired, not listing the certificate). One line per
problem on stderr, exit 1; "config OK: ..." and exit 0 when everything holds.`,
    options: { config: { type: 'string' } },
    run: async (values, _p, io) => {
      const config = loadAgentConfig(need(values, 'config'));
      const { problems, tokens } = checkAgentConfig(config);
      if (problems.length > 0) {
        for (const p of problems) io.err(`hie-agent: config problem: ${p}\n`);
        return 1;
      }
      io.out(
        `config OK: agent ${config.id}, API ${config.api.host}:${config.api.port}, relay ${config.relay.urls.join(', ')}, data ${config.dataDir}, ${tokens} API token(s), patient secret set, certificate matches its key and the CA\n`,
      );
      return 0;
    },
  },
  send: {
    usage: SEND_USAGE,
    summary: 'send FILE and wait for the receipt; exit 0 when delivered, 3 when failed',
    help: `Streams FILE to the agent (a FHIR Bundle for *.json, DICOM for *.dcm, else application/octet-stream;
--type overrides), prints the exchange id, then waits for the recipient's signed receipt. On a terminal
the upload and the wait show progress; Ctrl-C leaves the wait (exit 130) and the exchange goes on.
--no-wait returns the exchange id at once. HIE_PATIENT_ID instead of --patient keeps the id out of the
process list.
  --to ID              the recipient hospital
  --consent C          the consent that covers the release
  --purpose CODE       HL7 PurposeOfUse (default TREAT)
  --idempotency-key K  a retry with the same key gets the same exchange
  --request ID         the incoming records request this answers (the requester pays the release fee)
  --quiet              no progress, only the result`,
    options: SEND_OPTIONS,
    run: (_v, _p, io, args) => runSend(args, io),
  },
  cancel: {
    usage: 'hie-agent cancel ID',
    summary: 'cancel an exchange not yet released (same as exchange cancel)',
    help: CANCEL_HELP,
    options: CLIENT_OPTIONS,
    run: (values, positionals, io) => cancel(values, positionals, io, 'hie-agent cancel ID'),
  },
  'exchange list': {
    usage: 'hie-agent exchange list [--status queued|sending|delivered|failed] [--limit N]',
    summary: 'outgoing exchanges, newest first',
    options: { ...CLIENT_OPTIONS, status: { type: 'string' }, limit: { type: 'string' } },
    run: async (values, _p, io) => {
      const q = new URLSearchParams();
      if (values['status']) q.set('status', values['status'] as string);
      if (values['limit']) {
        if (!/^\d{1,4}$/.test(values['limit'] as string)) throw new UsageError('--limit must be a number (1-1000)');
        q.set('limit', values['limit'] as string);
      }
      const r = (await call(target(values), `/v1/exchanges${q.size ? `?${q}` : ''}`)) as { exchanges: ExchangeView[] };
      print(io, json(values), r, () => r.exchanges.map(exchangeLine).join('') || 'no exchanges\n');
      return 0;
    },
  },
  'exchange status': {
    usage: 'hie-agent exchange status ID',
    summary: 'one exchange: status, attempts, content hash, receipt or failure',
    options: CLIENT_OPTIONS,
    run: async (values, positionals, io) => {
      const id = enc(one(positionals, 'exchange id', 'hie-agent exchange status ID'));
      const x = (await call(target(values), `/v1/exchanges/${id}`)) as ExchangeView;
      print(io, json(values), x, () => exchangeText(x));
      return 0;
    },
  },
  'exchange cancel': {
    usage: 'hie-agent exchange cancel ID',
    summary: 'cancel an exchange not yet released to its recipient',
    help: CANCEL_HELP,
    options: CLIENT_OPTIONS,
    run: (values, positionals, io) => cancel(values, positionals, io, 'hie-agent exchange cancel ID'),
  },
  'consent grant': {
    usage:
      'hie-agent consent grant (--patient P | HIE_PATIENT_ID) --to ID [--to ID]... --until DATE [--from DATE] [--purpose CODE]... [--scope TYPE]... [--category SYSTEM|CODE]... [--label CODE]...',
    summary: "record a patient's consent to release records to hospitals",
    help: `  --to ID        a grantee hospital (repeat for several)
  --until DATE   end of validity (ISO 8601)
  --purpose CODE HL7 PurposeOfUse (repeat; default TREAT)
  --scope TYPE   FHIR resource types, ImagingStudy or Binary (repeat; default everything)
  --category SYSTEM|CODE  a category of data (Consent.provision.class/code) the consent is limited to (repeat)
  --label CODE   a sensitivity label (e.g. PSY, HIV, R) the consent explicitly releases (repeat; see docs/consent.md)`,
    options: {
      ...CLIENT_OPTIONS,
      patient: { type: 'string' },
      to: { type: 'string', multiple: true },
      until: { type: 'string' },
      from: { type: 'string' },
      purpose: { type: 'string', multiple: true },
      scope: { type: 'string', multiple: true },
      category: { type: 'string', multiple: true },
      label: { type: 'string', multiple: true },
    },
    run: async (values, _p, io) => {
      const t = target(values);
      const body = {
        patientId: patientOf(values),
        grantees: (values['to'] as string[] | undefined) ?? [],
        validUntil: need(values, 'until'),
        ...(values['from'] ? { validFrom: values['from'] } : {}),
        ...(values['purpose'] ? { purposes: values['purpose'] } : {}),
        ...(values['scope'] ? { scope: values['scope'] } : {}),
        ...(values['category'] ? { categories: values['category'] } : {}),
        ...(values['label'] ? { labels: values['label'] } : {}),
      };
      if (body.grantees.length === 0) throw new UsageError('--to is required');
      const c = (await call(t, '/v1/consents', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })) as ConsentView;
      print(io, json(values), c, () => `consent ${c.id} granted to ${body.grantees.join(', ')} until ${c.validUntil}\n`);
      return 0;
    },
  },
  'consent revoke': {
    usage: 'hie-agent consent revoke ID [--reason patient-request|expired|superseded|entered-in-error|legal]',
    summary: 'revoke a consent (exchanges not yet released under it are refused)',
    options: { ...CLIENT_OPTIONS, reason: { type: 'string' } },
    run: async (values, positionals, io) => {
      const id = one(positionals, 'consent id to revoke', 'hie-agent consent revoke ID');
      const q = values['reason'] ? `?reason=${enc(values['reason'] as string)}` : '';
      const c = (await call(target(values), `/v1/consents/${enc(id)}${q}`, { method: 'DELETE' })) as ConsentView;
      print(io, json(values), c, () => `consent ${c.id} revoked at ${c.revokedAt}\n`);
      return 0;
    },
  },
  'consent list': {
    usage: 'hie-agent consent list',
    summary: 'every consent of this hospital',
    options: CLIENT_OPTIONS,
    run: async (values, _p, io) => {
      const r = (await call(target(values), '/v1/consents')) as { consents: ConsentView[] };
      print(io, json(values), r, () => r.consents.map(consentLine).join('') || 'no consents\n');
      return 0;
    },
  },
  'consent show': {
    usage: 'hie-agent consent show ID [--fhir]',
    summary: 'one consent (--fhir: as a FHIR R4 Consent)',
    options: { ...CLIENT_OPTIONS, fhir: { type: 'boolean' } },
    run: async (values, positionals, io) => {
      const id = enc(one(positionals, 'consent id', 'hie-agent consent show ID'));
      if (values['fhir'] === true) {
        io.out(`${JSON.stringify(await call(target(values), `/v1/consents/${id}?format=fhir`), null, 2)}\n`);
        return 0;
      }
      const c = (await call(target(values), `/v1/consents/${id}`)) as ConsentView;
      print(
        io,
        json(values),
        c,
        () =>
          `consent ${c.id}\n  grantees   ${c.grantees.join(', ')}\n  purposes   ${c.purposes.join(', ')}\n  scope      ${(c.scope ?? []).join(', ')}\n  valid      ${c.validFrom ?? '?'} .. ${c.validUntil}\n${c.revokedAt ? `  REVOKED    ${c.revokedAt}${c.revocationReason ? ` (${c.revocationReason})` : ''}\n` : ''}`,
      );
      return 0;
    },
  },
  'inbox list': {
    usage: 'hie-agent inbox list [--unacked]   (or: hie-agent inbox [--unacked])',
    summary: 'received items (sender, type, size, time; the records request an item answers)',
    options: { ...CLIENT_OPTIONS, unacked: { type: 'boolean' } },
    run: async (values, _p, io) => {
      const r = (await call(target(values), `/v1/inbox${values['unacked'] ? '?unacked=true' : ''}`)) as { items: InboxItem[] };
      print(io, json(values), r, () => r.items.map(inboxLine).join('') || 'inbox is empty\n');
      return 0;
    },
  },
  'inbox show': {
    usage: 'hie-agent inbox show ID',
    summary: 'one item: sender, type, size, SHA-256 (as sha256sum prints it), how it verified',
    options: CLIENT_OPTIONS,
    run: async (values, positionals, io) => {
      const id = enc(one(positionals, 'inbox item (exchange) id', 'hie-agent inbox show ID'));
      const i = (await call(target(values), `/v1/inbox/${id}`)) as InboxItem;
      print(
        io,
        json(values),
        i,
        () =>
          `inbox item ${i.exchangeId} from ${i.from}\n  content    ${i.contentType}, ${i.bytes} bytes, sha-256 ${i.contentSha256}\n  received   ${i.receivedAt}\n  acked      ${i.ackedAt ?? 'no'}\n${i.copiedAt ? `  copied     ${i.copiedAt} (inbox.directory)\n` : ''}${i.requestId ? `  answers    records request ${i.requestId}\n` : ''}`,
      );
      return 0;
    },
  },
  'inbox content': {
    usage: 'hie-agent inbox content ID --out FILE   (or > FILE)',
    summary: "write an item's content to FILE (checked against its SHA-256 on the way)",
    help: `Writes the item's content to FILE (through FILE.part, renamed when complete and its SHA-256 matches
the item's) or, without --out, to stdout when stdout is not a terminal. Prints the SHA-256 as
sha256sum does.`,
    options: { ...CLIENT_OPTIONS, out: { type: 'string' } },
    run: async (values, positionals, io) => {
      const id = enc(one(positionals, 'inbox item (exchange) id', 'hie-agent inbox content ID --out FILE'));
      const out = values['out'] as string | undefined;
      if (!out && process.stdout.isTTY) throw new UsageError('say where to write the content: --out FILE (or redirect stdout)');
      const t = target(values);
      const meta = (await call(t, `/v1/inbox/${id}`)) as InboxItem;
      const res = await request(t, `/v1/inbox/${id}/content`);
      const digest = createHash('sha256');
      let bytes = 0;
      const tap = new Transform({
        transform(chunk: Buffer, _e, cb) {
          digest.update(chunk);
          bytes += chunk.length;
          cb(null, chunk);
        },
      });
      const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
      const part = out ? `${out}.part` : undefined;
      try {
        await pipeline(body, tap, part ? createWriteStream(part, { mode: 0o640 }) : process.stdout);
      } catch (err) {
        if (part) rmSync(part, { force: true });
        throw err;
      }
      const sum = digest.digest('hex');
      if (sum !== hexDigest(meta.contentSha256)) {
        if (part) rmSync(part, { force: true });
        throw Object.assign(new Error(`the content's SHA-256 is ${sum}, the item's is ${meta.contentSha256}: nothing written`), { code: 'ERR_INTEGRITY' });
      }
      if (part && out) renameSync(part, out);
      io.err(`${sum}  ${out ?? '-'}  (${bytes} bytes from ${meta.from})\n`);
      return 0;
    },
  },
  'inbox ack': {
    usage: 'hie-agent inbox ack ID',
    summary: 'mark an item taken over by the EHR',
    options: CLIENT_OPTIONS,
    run: async (values, positionals, io) => {
      const id = enc(one(positionals, 'inbox item (exchange) id', 'hie-agent inbox ack ID'));
      const i = (await call(target(values), `/v1/inbox/${id}/ack`, {
        method: 'POST',
      })) as InboxItem;
      print(io, json(values), i, () => `inbox item ${i.exchangeId} acked at ${i.ackedAt ?? '?'}\n`);
      return 0;
    },
  },
  'inbox delete': {
    usage: 'hie-agent inbox delete ID',
    summary: 'delete an item (and its copy in inbox.directory)',
    options: CLIENT_OPTIONS,
    run: async (values, positionals, io) => {
      const id = one(positionals, 'inbox item (exchange) id', 'hie-agent inbox delete ID');
      await call(target(values), `/v1/inbox/${enc(id)}`, { method: 'DELETE' });
      print(io, json(values), { deleted: id }, () => `inbox item ${id} deleted\n`);
      return 0;
    },
  },
  'requests list': {
    usage: 'hie-agent requests list [--direction incoming|outgoing]',
    summary: 'records requests sent and received, with their status (sent, accepted, refused, answered)',
    options: { ...CLIENT_OPTIONS, direction: { type: 'string' } },
    run: async (values, _p, io) => {
      const d = values['direction'] as string | undefined;
      if (d !== undefined && d !== 'incoming' && d !== 'outgoing') throw new UsageError('--direction must be incoming or outgoing');
      const r = (await call(target(values), `/v1/requests${d ? `?direction=${d}` : ''}`)) as { requests: RequestView[] };
      print(io, json(values), r, () => r.requests.map(requestLine).join('') || 'no records requests\n');
      return 0;
    },
  },
  'requests create': {
    usage: 'hie-agent requests create --holder ID (--patient P | HIE_PATIENT_ID) [--purpose CODE] [--scope TYPE]...',
    summary: "ask another hospital for a patient's records (it answers with an exchange)",
    options: {
      ...CLIENT_OPTIONS,
      holder: { type: 'string' },
      patient: { type: 'string' },
      purpose: { type: 'string' },
      scope: { type: 'string', multiple: true },
    },
    run: async (values, _p, io) => {
      const t = target(values);
      const body = {
        holder: need(values, 'holder'),
        patientId: patientOf(values),
        ...(values['purpose'] ? { purpose: values['purpose'] } : {}),
        ...(values['scope'] ? { scope: values['scope'] } : {}),
      };
      const r = (await call(t, '/v1/requests', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })) as RequestView;
      print(io, json(values), r, () => `records request ${r.id} sent to ${r.peer}; follow it with: hie-agent requests show ${r.id}\n`);
      return 0;
    },
  },
  'requests show': {
    usage: 'hie-agent requests show ID',
    summary: 'one records request (answered: the exchanges that answered it)',
    options: CLIENT_OPTIONS,
    run: async (values, positionals, io) => {
      const id = enc(one(positionals, 'request id', 'hie-agent requests show ID'));
      const r = (await call(target(values), `/v1/requests/${id}`)) as RequestView;
      print(io, json(values), r, () => requestLine(r));
      return 0;
    },
  },
  status: {
    usage: 'hie-agent status',
    summary: 'relay connection, ledger feeds, queue',
    options: CLIENT_OPTIONS,
    run: async (values, _p, io) => {
      const t = target(values);
      // `outbox`: every exchange not yet delivered or failed (queued, or on its way), counted by the agent.
      const health = (await call(t, '/healthz')) as { agent: string; relay: string; outbox: number };
      const ledger = (await call(t, '/v1/ledger/status')) as { feeds: Array<{ feed: string; seq: number }>; evidence: unknown[] };
      const value = { ...health, feeds: ledger.feeds, evidence: ledger.evidence.length };
      print(
        io,
        json(values),
        value,
        () =>
          `agent ${health.agent}: relay ${health.relay}; ${health.outbox} unfinished (queued or sending); ledger feeds ${ledger.feeds.map((f) => `${f.feed}@${f.seq}`).join(' ')}${ledger.evidence.length ? `; ${ledger.evidence.length} EQUIVOCATION finding(s)` : ''}\n`,
      );
      return 0;
    },
  },
  settlement: {
    usage: 'hie-agent settlement [--period YYYY-MM]',
    summary: 'what this hospital owes and is owed in a month (amounts in currency units)',
    help: 'Amounts are shown in currency units with the currency (e.g. 2.50 EUR); --json gives the API answer, in minor units.',
    options: { ...CLIENT_OPTIONS, period: { type: 'string' } },
    run: async (values, _p, io) => {
      const period = (values['period'] as string | undefined) ?? new Date().toISOString().slice(0, 7);
      if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(period)) throw new UsageError('--period must be YYYY-MM');
      const s = (await call(target(values), `/v1/ledger/settlement?period=${period}`)) as {
        hospital: string;
        lines: Array<{ counterparty: string; currency: string; owes: number; owed: number; charges: number }>;
        totals: Array<{ currency: string; owes: number; owed: number; net: number }>;
        unreplicated: string[];
      };
      print(io, json(values), s, () => {
        const lines = [`settlement for ${s.hospital}, ${period}`];
        for (const l of s.lines)
          lines.push(
            `  ${l.counterparty.padEnd(20)} owes ${formatAmount(l.owes, l.currency)}, owed ${formatAmount(l.owed, l.currency)} (${l.charges} charges)`,
          );
        for (const tot of s.totals)
          lines.push(
            `  total ${tot.currency}: owes ${formatAmount(tot.owes, tot.currency)}, owed ${formatAmount(tot.owed, tot.currency)}, net ${formatAmount(tot.net, tot.currency)}`,
          );
        if (s.lines.length === 0) lines.push('  no charges in this period');
        if (s.unreplicated.length > 0)
          lines.push(
            `  INCOMPLETE: the ledger feeds of ${s.unreplicated.join(', ')} are not replicated here, so the release fees they bill for records they sent in answer to this hospital's requests are missing: add them to \`peers\``,
          );
        return `${lines.join('\n')}\n`;
      });
      return 0;
    },
  },
  verify: {
    usage: 'hie-agent verify [--grace SECONDS]',
    summary: "verify the agent's ledger; exit 1 with one line per finding",
    help: '  --grace SECONDS  an exchange counts as unanswered after this long (default: as long as the agent retries (24 h) and an hour)',
    options: { ...CLIENT_OPTIONS, grace: { type: 'string' } },
    run: async (values, _p, io) => {
      const grace = values['grace'] as string | undefined;
      if (grace !== undefined && !/^\d{1,9}$/.test(grace)) throw new UsageError('--grace must be a whole number of seconds');
      const r = (await call(target(values), `/v1/ledger/verify${grace !== undefined ? `?grace=${grace}` : ''}`)) as {
        ok: boolean;
        findings: Array<{ feed: string | null; seq: number | null; rule: string; detail: string }>;
        stats: { feeds: number; entries: number };
      };
      print(io, json(values), r, () =>
        r.ok
          ? `ledger OK: ${r.stats.feeds} feeds, ${r.stats.entries} entries\n`
          : r.findings.map((f) => `${f.feed ?? '-'}:${f.seq ?? '-'} ${f.rule}: ${f.detail}\n`).join(''),
      );
      return r.ok ? 0 : 1;
    },
  },
  ...RX_COMMANDS,
  ...CLAIM_COMMANDS,
  ...PATIENT_COMMANDS,
  'certificate issue': {
    usage:
      'hie-agent certificate issue --purpose sick-leave|diagnosis|vaccination|lab-result --bundle FILE --out DIR [--start DATE --end DATE] [--valid-days N]',
    summary: 'issue a SMART Health Card: QR code PNG and SVG, printable page (docs/certificates.md)',
    options: {
      ...CLIENT_OPTIONS,
      purpose: { type: 'string' },
      bundle: { type: 'string' },
      out: { type: 'string' },
      start: { type: 'string' },
      end: { type: 'string' },
      'valid-days': { type: 'string' },
    },
    run: async (values, _p, io) => {
      const { readFileSync } = await import('node:fs');
      const { writeCardFiles } = await import('./certificates/index.ts');
      const out = need(values, 'out');
      let fhirBundle: unknown;
      try {
        fhirBundle = JSON.parse(readFileSync(need(values, 'bundle'), 'utf8'));
      } catch (err) {
        throw new UsageError(`--bundle must be a FHIR Bundle JSON file (${(err as Error).message.split('\n')[0]})`);
      }
      const days = values['valid-days'] as string | undefined;
      if (days !== undefined && !/^\d{1,4}$/.test(days)) throw new UsageError('--valid-days must be a whole number of days');
      const body = {
        purpose: need(values, 'purpose'),
        bundle: fhirBundle,
        ...(values['start'] || values['end'] ? { period: { start: need(values, 'start'), end: need(values, 'end') } } : {}),
        ...(days !== undefined ? { validForSeconds: Number(days) * 86_400 } : {}),
      };
      const card = (await call(target(values), '/v1/certificates', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })) as Parameters<typeof writeCardFiles>[1];
      const paths = await writeCardFiles(out, card);
      print(
        io,
        json(values),
        { ...card, files: paths },
        () =>
          `card ${card.hash} issued (rid ${card.rid}, ledger ${card.ledger.feed}:${card.ledger.seq}):\n${card.statements.map((l) => `  ${l}\n`).join('')}${paths.map((p) => `wrote ${p}\n`).join('')}`,
      );
      return 0;
    },
  },
};

/** Groups of subcommands, in the order the help lists them. */
const GROUPS: Record<string, string> = {
  exchange: 'outgoing exchanges: list, status, cancel',
  consent: 'consents: grant, revoke, list, show',
  inbox: 'received items: list, show, content, ack, delete',
  requests: 'records requests: list, create, show',
  rx: RX_GROUP,
  claim: 'insurance claims: submit, status, list, respond, eligibility',
  certificate: 'SMART Health Cards: issue',
  patient: PATIENT_GROUP,
};

const SECTIONS: Array<[string, string[]]> = [
  ['Server', ['start', 'check-config']],
  ['Sending', ['send', 'cancel', 'exchange list', 'exchange status', 'exchange cancel']],
  ['Consents', ['consent grant', 'consent revoke', 'consent list', 'consent show']],
  ['Inbox', ['inbox list', 'inbox show', 'inbox content', 'inbox ack', 'inbox delete']],
  ['Records requests', ['requests list', 'requests create', 'requests show']],
  ['Ledger and money', ['status', 'settlement', 'verify']],
  RX_SECTION,
  ['Insurance claims', ['claim submit', 'claim status', 'claim list', 'claim respond', 'claim eligibility']],
  ['Certificates', ['certificate issue']],
  PATIENT_SECTION,
];

function globalUsage(): string {
  const out = ['Usage: hie-agent <command> [options]', '', 'The on-premise hospital agent and the tools hospital IT uses with it.', ''];
  for (const [title, names] of SECTIONS) {
    out.push(`${title}:`);
    for (const n of names) out.push(`  ${n.padEnd(18)} ${(COMMANDS[n] as Command).summary}`);
    out.push('');
  }
  out.push(
    'Commands that talk to a running agent take:',
    CLIENT_HELP,
    '',
    "Run 'hie-agent <command> --help' (e.g. 'hie-agent inbox content --help') for one command.",
    '',
  );
  return out.join('\n');
}

function commandHelp(name: string): string {
  const c = COMMANDS[name] as Command;
  const talks = c.options === CLIENT_OPTIONS || 'api' in c.options;
  return `Usage: ${c.usage}\n\n${c.summary[0]?.toUpperCase()}${c.summary.slice(1)}.\n${c.help ? `\n${c.help}\n` : ''}${talks ? `\n${CLIENT_HELP}\n` : ''}`;
}

function groupHelp(group: string): string {
  const subs = Object.keys(COMMANDS).filter((n) => n.startsWith(`${group} `));
  return `Usage: hie-agent ${group} <${subs.map((s) => s.slice(group.length + 1)).join('|')}> [options]\n\n${GROUPS[group]}\n\n${subs
    .map((s) => `  ${s.padEnd(18)} ${(COMMANDS[s] as Command).summary}\n    ${(COMMANDS[s] as Command).usage}`)
    .join('\n')}\n\nRun 'hie-agent ${group} <subcommand> --help' for one of them.\n`;
}

const isHelp = (a: string | undefined): boolean => a === '--help' || a === '-h';

/** Runs `hie-agent` with `argv`; returns the exit code. */
export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const [command, ...args] = argv;
  let rest = args;
  if (command === undefined || isHelp(command)) {
    io.out(globalUsage());
    return command === undefined ? 2 : 0;
  }
  if (command === 'help') {
    const [a, b] = rest;
    if (a === undefined) io.out(globalUsage());
    else if (b !== undefined && COMMANDS[`${a} ${b}`]) io.out(commandHelp(`${a} ${b}`));
    else if (GROUPS[a]) io.out(groupHelp(a));
    else if (COMMANDS[a]) io.out(commandHelp(a));
    else throw new UsageError(`unknown command '${[a, b].filter(Boolean).join(' ')}' (run 'hie-agent --help')`);
    return 0;
  }
  let name = command;
  if (GROUPS[command]) {
    const sub = rest[0];
    // `hie-agent inbox [--unacked]` lists, as before the group had subcommands.
    if (command === 'inbox' && (sub === undefined || (sub.startsWith('-') && !isHelp(sub)))) name = 'inbox list';
    else if (sub === undefined || isHelp(sub)) {
      io.out(groupHelp(command));
      return sub === undefined ? 2 : 0;
    } else if (COMMANDS[`${command} ${sub}`]) {
      name = `${command} ${sub}`;
      rest = rest.slice(1);
    } else throw new UsageError(`unknown command '${command} ${sub}' (run 'hie-agent ${command} --help')`);
  }
  const cmd = COMMANDS[name];
  if (!cmd || name.includes(' ') !== (GROUPS[command] !== undefined)) throw new UsageError(`unknown command '${command}' (run 'hie-agent --help')`);
  if (rest.some(isHelp)) {
    io.out(commandHelp(name));
    return 0;
  }
  const { values, positionals } = parse(rest, cmd.options, cmd.usage);
  return cmd.run(values, positionals, io, rest);
}

export { AgentConfigError };
