import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { joinDashValues } from '../common/args.ts';
import { parseCrl, writeFileAtomic } from '../certs/index.ts';
import { FHIR_DATE_TIME_RULE, parseFhirDateTime, type DateBound } from '../common/datetime.ts';
import { toAuditEvent } from './auditevent.ts';
import { decodeEntry } from './entry.ts';
import { LedgerError } from './errors.ts';
import { Ledger } from './ledger.ts';
import type { Trust } from './keys.ts';
import { buildReport, renderReport } from './report.ts';
import { bundleSource, exportBundle, levelSource, parseBundle, type LedgerSource } from './source.ts';
import { signedHeadSchema, type SignedHead } from './heads.ts';
import { buildProof, parseProofFile, verifyProof } from './proof.ts';
import { Store } from './store.ts';
import { DEFAULT_WITNESS_POLICY, parseWitnessPolicy, type WitnessPolicy } from './policy.ts';
import { DEFAULT_GRACE_SECONDS, verifyLedger, type Finding } from './verify.ts';

const USAGE = `Usage: hie-ledger <command> [options]

Offline tools for the hash-chained hospital ledger. Commands that read a
database (--data) work on a private copy of it, so the original is never
written; stop the agent (or snapshot its disk) first for a consistent copy.

Commands:
  verify  (--data DIR | --bundle FILE) --ca CA.pem [--crl CRL.pem] [--grace SECONDS] [--at ISO] [--json]
          Check every feed: links, signatures against CA-bound keys, seq continuity,
          schemas, evidence, checkpoints and the cross-feed rules. Exit 0 when clean,
          1 with findings, 2 when nothing could be verified (bad argument, unreadable input).
  report  (--data DIR | --bundle FILE) [--from ISO] [--to ISO] [--json]
          Exchanges, consents and charges per hospital for the period.
  export  --data DIR --format bundle|auditevent [--feed ID ...] [--out FILE]
          A portable bundle (exact entry bytes + signed heads) or FHIR R4 AuditEvent NDJSON.
  import  --data DIR --bundle FILE --ca CA.pem [--crl CRL.pem]
          Verify a bundle's feeds and add them to a database (not one an agent has open).
  prove   --data DIR (--exchange ID | --consent ID | --entry FEED:SEQ ...) [--out FILE]
          A self-contained proof file for auditors: the entries of that exchange's story
          (or consent's, or the named entries) with inclusion proofs, the witnessed
          checkpoints they are proven against (with their cosignatures) and key bundles.
  verify-proof FILE --ca CA.pem [--crl CRL.pem] [--policy FILE] [--json]
          Check a proof file offline, its checkpoints against a witness policy (default:
          1 witness other than the author). Exit 0 when proved, 1 when a check failed
          (each named), 2 when nothing could be checked.

Run 'hie-ledger <command> --help' for one command.
`;

type OptionSpec = NonNullable<ParseArgsConfig['options']>;
const source = { data: { type: 'string' }, bundle: { type: 'string' } } as const;
const COMMANDS: Record<string, { usage: string; options: OptionSpec }> = {
  verify: {
    usage: 'hie-ledger verify (--data DIR | --bundle FILE) --ca CA.pem [--crl CRL.pem] [--grace SECONDS] [--at ISO] [--json]',
    options: { ...source, ca: { type: 'string' }, crl: { type: 'string' }, grace: { type: 'string' }, at: { type: 'string' }, json: { type: 'boolean' } },
  },
  report: {
    usage: 'hie-ledger report (--data DIR | --bundle FILE) [--from ISO] [--to ISO] [--json]',
    options: { ...source, from: { type: 'string' }, to: { type: 'string' }, json: { type: 'boolean' } },
  },
  export: {
    usage: 'hie-ledger export --data DIR --format bundle|auditevent [--feed ID ...] [--out FILE]',
    options: { data: { type: 'string' }, format: { type: 'string' }, feed: { type: 'string', multiple: true }, out: { type: 'string' } },
  },
  import: {
    usage: 'hie-ledger import --data DIR --bundle FILE --ca CA.pem [--crl CRL.pem]',
    options: { ...source, ca: { type: 'string' }, crl: { type: 'string' } },
  },
  prove: {
    usage: 'hie-ledger prove --data DIR (--exchange ID | --consent ID | --entry FEED:SEQ ...) [--out FILE]',
    options: {
      data: { type: 'string' },
      exchange: { type: 'string' },
      consent: { type: 'string' },
      entry: { type: 'string', multiple: true },
      out: { type: 'string' },
    },
  },
  'verify-proof': {
    usage: 'hie-ledger verify-proof FILE --ca CA.pem [--crl CRL.pem] [--policy FILE] [--json]',
    options: { ca: { type: 'string' }, crl: { type: 'string' }, policy: { type: 'string' }, json: { type: 'boolean' } },
  },
};

/** Output sink, so tests can capture what the CLI prints. */
export interface CliIo {
  out: (text: string) => void;
}
const defaultIo: CliIo = { out: (text) => process.stdout.write(text) };

const usageError = (message: string): LedgerError => new LedgerError('ERR_LEDGER_INVALID_ARGUMENT', message);

function str(values: Record<string, unknown>, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function required(values: Record<string, unknown>, name: string): string {
  const v = str(values, name);
  if (v === undefined) throw usageError(`--${name} is required`);
  return v;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw usageError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** A date option, strictly (common/datetime.ts): a partial date stands for its first (`start`) or last (`end`) millisecond. */
function date(values: Record<string, unknown>, name: string, bound: DateBound = 'start'): Date | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const d = parseFhirDateTime(v, bound);
  if (!d) throw usageError(`--${name} ${FHIR_DATE_TIME_RULE}, got ${JSON.stringify(v.slice(0, 64))}`);
  return d;
}

function trustFrom(values: Record<string, unknown>): Trust {
  const caPem = readText(required(values, 'ca'), 'CA certificate');
  const crlPath = str(values, 'crl');
  return { caPem, ...(crlPath ? { crl: parseCrl(readText(crlPath, 'CRL'), caPem) } : {}) };
}

/**
 * Copies a database directory to a private temporary one (without LevelDB's
 * LOCK file) and opens the copy, so reading never writes or locks the original.
 */
async function withSource<T>(values: Record<string, unknown>, fn: (src: LedgerSource) => Promise<T>): Promise<T> {
  const data = str(values, 'data');
  const bundle = str(values, 'bundle');
  if ((data === undefined) === (bundle === undefined)) throw usageError('give exactly one of --data DIR or --bundle FILE');
  if (bundle !== undefined) return fn(bundleSource(parseBundle(readText(bundle, 'bundle'))));
  return withStoreCopy(data as string, (store) => fn(levelSource(store)));
}

/** Opens a private copy of the database at `dir` (see withSource). */
async function withStoreCopy<T>(dir: string, fn: (store: Store) => Promise<T>): Promise<T> {
  if (!existsSync(join(dir, 'CURRENT')) || !statSync(dir).isDirectory()) throw usageError(`--data ${dir} is not a ledger database (no CURRENT file)`);
  const tmp = mkdtempSync(join(tmpdir(), 'hie-ledger-copy-'));
  try {
    const copy = join(tmp, 'db');
    cpSync(dir, copy, { recursive: true, filter: (src) => basename(src) !== 'LOCK' });
    const store = await Store.open(copy, { createIfMissing: false });
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function renderFindings(findings: Finding[], omitted: number, stats: { feeds: number; entries: number; sealed?: number; ms: number }): string {
  const lines = findings.map((f) => `${f.feed ?? '-'}\t${f.seq ?? '-'}\t${f.rule}\t${f.detail}`);
  // Private replication: other hospitals' entries that do not concern this one are held sealed (docs/replication.md).
  const sealed = stats.sealed ? ` (${stats.sealed} of them sealed: other hospitals' entries this one is not party to, checked by hash only)` : '';
  const head =
    findings.length === 0
      ? `OK: ${stats.entries} entries in ${stats.feeds} feeds verified in ${stats.ms} ms, no findings${sealed}`
      : `FAILED: ${findings.length + omitted} findings in ${stats.entries} entries of ${stats.feeds} feeds (feed, seq, rule, detail):`;
  return `${[head, ...lines, ...(omitted > 0 ? [`... and ${omitted} more`] : [])].join('\n')}\n`;
}

/** Exit code of a command that could not run (a bad argument, an unreadable database, bundle, CA or CRL), as opposed to 1: findings. */
export const EXIT_CANNOT_RUN = 2;

/** Runs `hie-ledger` with `argv` (without node and script); returns the exit code (errors carry theirs). */
export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  try {
    return await dispatch(argv, io);
  } catch (err) {
    // A script must tell "the ledger has findings" (1) from "nothing was verified" (2).
    if (err instanceof LedgerError) Object.assign(err, { exitCode: EXIT_CANNOT_RUN });
    throw err;
  }
}

async function dispatch(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    io.out(USAGE);
    return command === undefined ? 2 : 0;
  }
  const spec = COMMANDS[command];
  if (!spec) throw usageError(`unknown command '${command}' (run 'hie-ledger --help')`);
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(`Usage: ${spec.usage}\n`);
    return 0;
  }
  let values: Record<string, unknown>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: joinDashValues(rest, spec.options),
      options: spec.options,
      strict: true,
      allowPositionals: command === 'verify-proof',
    }));
  } catch (err) {
    throw usageError(`${(err as Error).message.split('\n')[0]} (usage: ${spec.usage})`);
  }

  switch (command) {
    case 'verify': {
      const trust = trustFrom(values);
      const graceText = str(values, 'grace');
      if (graceText !== undefined && !/^\d+$/.test(graceText)) throw usageError(`--grace must be a whole number of seconds, got ${JSON.stringify(graceText)}`);
      const at = date(values, 'at');
      const result = await withSource(values, (src) =>
        verifyLedger(src, { trust, graceSeconds: graceText === undefined ? DEFAULT_GRACE_SECONDS : Number(graceText), ...(at ? { now: at } : {}) }),
      );
      io.out(values['json'] ? `${JSON.stringify(result, null, 2)}\n` : renderFindings(result.findings, result.omitted, result.stats));
      return result.ok ? 0 : 1;
    }
    case 'report': {
      const from = date(values, 'from');
      const to = date(values, 'to');
      const report = await withSource(values, (src) => buildReport(src, { ...(from ? { from } : {}), ...(to ? { to } : {}) }));
      io.out(values['json'] ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));
      return 0;
    }
    case 'export': {
      const format = required(values, 'format');
      if (format !== 'bundle' && format !== 'auditevent') throw usageError(`--format must be bundle or auditevent, got ${JSON.stringify(format)}`);
      const feeds = values['feed'] as string[] | undefined;
      const text = await withSource({ data: required(values, 'data') }, async (src) => {
        if (format === 'bundle') return `${JSON.stringify(await exportBundle(src, feeds ? { feeds } : {}))}\n`;
        const lines: string[] = [];
        for (const feed of feeds ?? (await src.feeds())) {
          for await (const { bytes } of src.entries(feed)) {
            try {
              lines.push(JSON.stringify(toAuditEvent(decodeEntry(bytes))));
            } catch {
              // Undecodable entries are verify's business; an audit export carries only well-formed events.
            }
          }
        }
        return lines.length > 0 ? `${lines.join('\n')}\n` : '';
      });
      const out = str(values, 'out');
      if (out) {
        writeFileAtomic(out, text, 0o640);
        io.out(`wrote ${out}\n`);
      } else io.out(text);
      return 0;
    }
    case 'import': {
      const trust = trustFrom(values);
      const bundle = parseBundle(readText(required(values, 'bundle'), 'bundle'));
      const ledger = await Ledger.open({ path: required(values, 'data'), trust });
      const lines: string[] = [];
      try {
        for (const f of bundle.feeds) lines.push(await importFeed(ledger, f));
        for (const cp of bundle.checkpoints) await ledger.addCheckpoint(cp as never, 'import');
      } finally {
        await ledger.close();
      }
      io.out(`${lines.join('\n')}\n`);
      return 0;
    }
    case 'prove': {
      const exchange = str(values, 'exchange');
      const consent = str(values, 'consent');
      const refs = (values['entry'] as string[] | undefined) ?? [];
      if ([exchange !== undefined, consent !== undefined, refs.length > 0].filter(Boolean).length !== 1)
        throw usageError('give exactly one of --exchange ID, --consent ID or --entry FEED:SEQ (repeatable)');
      const entries = refs.map((r) => {
        const m = /^([a-z0-9-]{2,63}):(0|[1-9][0-9]{0,15})$/.exec(r);
        if (!m) throw usageError(`--entry must be FEED:SEQ, got ${JSON.stringify(r)}`);
        return { feed: m[1] as string, seq: Number(m[2]) };
      });
      const subject = exchange !== undefined ? { exchange } : consent !== undefined ? { consent } : { entries };
      const built = await withStoreCopy(required(values, 'data'), (store) => buildProof(store, subject));
      if (built.file.entries.length === 0)
        throw new LedgerError('ERR_LEDGER_NOT_COVERED', `no signed checkpoint covers any of the entries (${built.unproved.join(', ')}); nothing to prove`);
      const text = `${JSON.stringify(built.file, null, 2)}\n`;
      const out = str(values, 'out');
      const note = built.unproved.length > 0 ? `not proved (no checkpoint of their feed covers them): ${built.unproved.join(', ')}\n` : '';
      if (out) {
        writeFileAtomic(out, text, 0o640);
        io.out(
          `wrote ${out}: ${built.file.entries.length} entries, ${built.file.checkpoints.length} checkpoints, ${built.file.bundles.length} key bundles\n${note}`,
        );
      } else io.out(text + note);
      return 0;
    }
    case 'verify-proof': {
      if (positionals.length !== 1) throw usageError(`give exactly one proof FILE (usage: ${spec.usage})`);
      const trust = trustFrom(values);
      const policyPath = str(values, 'policy');
      // The policy comes from the auditor, never from the proof file.
      const policy = policyPath === undefined ? DEFAULT_WITNESS_POLICY : parseWitnessPolicy(readText(policyPath, 'witness policy'));
      const file = parseProofFile(readText(positionals[0] as string, 'proof file'));
      const result = await verifyProof(file, trust, policy);
      if (values['json'])
        io.out(`${JSON.stringify({ ok: result.ok, failures: result.failures, statements: result.statements, checkpoints: result.checkpoints }, null, 2)}\n`);
      else if (result.ok)
        io.out(
          `PROVED: ${result.proved.length} entries, each in its author's signed log, at checkpoints witnessed as the policy requires (${describePolicy(policy)})\n${result.statements.join('\n')}\n`,
        );
      else if (result.empty) io.out('NOTHING CHECKED: the proof file carries no entry\n');
      else io.out(`FAILED: ${result.failures.length} checks failed:\n${result.failures.map((f) => `- ${f}`).join('\n')}\n`);
      return result.ok ? 0 : result.empty ? EXIT_CANNOT_RUN : 1;
    }
    default:
      throw usageError(`unknown command '${command}'`);
  }
}

function describePolicy(p: WitnessPolicy): string {
  if (p.quorum === 0) return 'no witness required';
  const who = p.witnesses.length > 0 ? ` of ${p.witnesses.map((w) => (w.includes('+') ? w.split('+')[0] : w)).join(', ')}` : ' other than the author';
  return `${p.quorum} witness${p.quorum === 1 ? '' : 'es'}${who}`;
}

/** Ingests one bundle feed in runs that each end at a signed head (entries past the last head are not covered and are skipped). */
async function importFeed(ledger: Ledger, f: { feed: string; from: number; entries: string[]; signedHeads: unknown[] }): Promise<string> {
  const heads = f.signedHeads
    .map((h) => signedHeadSchema.safeParse(h))
    .filter((r) => r.success)
    .map((r) => r.data as SignedHead)
    .sort((a, b) => a.seq - b.seq);
  let stored = 0;
  for (const head of heads) {
    const have = ledger.head(f.feed)?.seq ?? -1;
    if (head.seq <= have) continue;
    const start = have + 1 - f.from;
    const end = head.seq - f.from;
    if (start < 0 || end >= f.entries.length)
      throw new LedgerError('ERR_LEDGER_BUNDLE_INVALID', `bundle feed ${f.feed} does not hold entries ${have + 1}..${head.seq}`);
    const r = await ledger.ingest(
      f.feed,
      f.entries.slice(start, end + 1).map((b) => Buffer.from(b, 'base64')),
      head,
      'import',
    );
    stored += r.stored;
  }
  const top = ledger.head(f.feed);
  return `${f.feed}: ${stored} entries imported, head ${top ? top.seq : 'none'}`;
}
