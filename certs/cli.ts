import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CRL_REASONS, isCrlReason } from './crl.ts';
import { DIRECTORY_USAGE_LINES, directoryMain } from './directory-cli.ts';
import { PkiError } from './errors.ts';
import { CertificateAuthority, DEFAULT_CA_DAYS, DEFAULT_CA_NAME, DEFAULT_CRL_DAYS, DEFAULT_LEAF_DAYS } from './pki.ts';

const USAGE = `Usage: hie-certs <command> [options]

Federation PKI for the hospital data exchange: one root CA that signs the
relay's and every hospital agent's certificate, with revocation via a CRL.

Commands:
  init         --dir PKI [--name NAME] [--days N] [--passphrase-env VAR]
               Create the root CA (${DEFAULT_CA_DAYS} days, "${DEFAULT_CA_NAME}" by default).
  issue-relay  --dir PKI --host NAME_OR_IP [--host ...] --out DIR [--days N] [--force]
               Write DIR/relay.crt.pem, DIR/relay.key.pem, DIR/ca.crt.pem.
  issue-agent  --dir PKI --id HOSPITAL_ID [--org ORG] --out DIR [--days N] [--renew]
               Write DIR/<id>.crt.pem, DIR/<id>.key.pem, DIR/ca.crt.pem.
  revoke       --dir PKI (--id ID | --serial HEX) [--reason R]
               Revoke and republish PKI/crl.pem. Reasons: ${Object.keys(CRL_REASONS).join(', ')}.
  crl          --dir PKI [--out FILE] [--days N]
               Sign a fresh CRL (valid ${DEFAULT_CRL_DAYS} days by default) into PKI/crl.pem and FILE.
  list         --dir PKI [--json]
               Every issued certificate: serial, subject, kind, not-after, status.
${DIRECTORY_USAGE_LINES}

Options for commands that sign:
  --passphrase-env VAR   read the CA key passphrase from environment variable VAR

Certificates default to ${DEFAULT_LEAF_DAYS} days. Run 'hie-certs <command> --help' for one command.
`;

type OptionSpec = NonNullable<ParseArgsConfig['options']>;

const COMMANDS: Record<string, { options: OptionSpec; usage: string }> = {
  init: {
    usage: 'hie-certs init --dir PKI [--name NAME] [--days N] [--passphrase-env VAR]',
    options: { dir: { type: 'string' }, name: { type: 'string' }, days: { type: 'string' }, 'passphrase-env': { type: 'string' } },
  },
  'issue-relay': {
    usage: 'hie-certs issue-relay --dir PKI --host NAME_OR_IP [--host ...] --out DIR [--days N] [--force] [--passphrase-env VAR]',
    options: {
      dir: { type: 'string' },
      host: { type: 'string', multiple: true },
      out: { type: 'string' },
      days: { type: 'string' },
      force: { type: 'boolean' },
      'passphrase-env': { type: 'string' },
    },
  },
  'issue-agent': {
    usage: 'hie-certs issue-agent --dir PKI --id HOSPITAL_ID [--org ORG] --out DIR [--days N] [--renew] [--passphrase-env VAR]',
    options: {
      dir: { type: 'string' },
      id: { type: 'string' },
      org: { type: 'string' },
      out: { type: 'string' },
      days: { type: 'string' },
      renew: { type: 'boolean' },
      'passphrase-env': { type: 'string' },
    },
  },
  revoke: {
    usage: `hie-certs revoke --dir PKI (--id ID | --serial HEX) [--reason ${Object.keys(CRL_REASONS).join('|')}] [--passphrase-env VAR]`,
    options: { dir: { type: 'string' }, id: { type: 'string' }, serial: { type: 'string' }, reason: { type: 'string' }, 'passphrase-env': { type: 'string' } },
  },
  crl: {
    usage: 'hie-certs crl --dir PKI [--out FILE] [--days N] [--passphrase-env VAR]',
    options: { dir: { type: 'string' }, out: { type: 'string' }, days: { type: 'string' }, 'passphrase-env': { type: 'string' } },
  },
  list: {
    usage: 'hie-certs list --dir PKI [--json]',
    options: { dir: { type: 'string' }, json: { type: 'boolean' } },
  },
};

/** Output sink, so tests can capture what the CLI prints. */
export interface CliIo {
  out: (text: string) => void;
}

const defaultIo: CliIo = { out: (text) => process.stdout.write(text) };

function usageError(message: string): PkiError {
  return new PkiError('ERR_PKI_INVALID_ARGUMENT', message);
}

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.length === 0) throw usageError(`--${name} is required`);
  return v;
}

function days(values: Record<string, unknown>): number | undefined {
  const v = values['days'];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw usageError(`--days must be a positive whole number, got ${JSON.stringify(v)}`);
  return Number(v);
}

function passphrase(values: Record<string, unknown>): string | undefined {
  const name = values['passphrase-env'];
  if (name === undefined) return undefined;
  const value = process.env[name as string];
  if (value === undefined || value.length === 0) throw usageError(`environment variable ${String(name)} (from --passphrase-env) is not set`);
  return value;
}

/** Runs `hie-certs` with `argv` (without node and script); returns the exit code. */
export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    io.out(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === 'directory') return directoryMain(rest, io);
  const spec = COMMANDS[command];
  if (!spec) throw usageError(`unknown command '${command}' (run 'hie-certs --help')`);
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(`Usage: ${spec.usage}\n`);
    return 0;
  }
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args: rest, options: spec.options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw usageError(`${(err as Error).message.split('\n')[0]} (usage: ${spec.usage})`);
  }
  const dir = required(values, 'dir');

  switch (command) {
    case 'init': {
      const pass = passphrase(values);
      const ca = CertificateAuthority.init(dir, {
        ...(typeof values['name'] === 'string' ? { name: values['name'] } : {}),
        ...(days(values) !== undefined ? { days: days(values) as number } : {}),
        ...(pass !== undefined ? { passphrase: pass } : {}),
      });
      io.out(`created CA in ${ca.dir}${pass !== undefined ? ' (key encrypted)' : ''}\n  certificate: ${ca.caCertPath}\n  CRL:         ${ca.crlPath}\n`);
      return 0;
    }
    case 'issue-relay': {
      const ca = CertificateAuthority.open(dir);
      const hosts = (values['host'] as string[] | undefined) ?? [];
      if (hosts.length === 0) throw usageError('--host is required (repeat it for each name or IP)');
      const pass = passphrase(values);
      const issued = ca.issueRelay({
        hosts,
        outDir: required(values, 'out'),
        force: values['force'] === true,
        ...(days(values) !== undefined ? { days: days(values) as number } : {}),
        ...(pass !== undefined ? { passphrase: pass } : {}),
      });
      io.out(
        `issued relay certificate ${issued.serial} for ${hosts.join(', ')} (expires ${issued.notAfter})\n  ${issued.certPath}\n  ${issued.keyPath}\n  ${issued.caPath}\n`,
      );
      return 0;
    }
    case 'issue-agent': {
      const ca = CertificateAuthority.open(dir);
      const pass = passphrase(values);
      const issued = ca.issueAgent({
        id: required(values, 'id'),
        outDir: required(values, 'out'),
        renew: values['renew'] === true,
        ...(typeof values['org'] === 'string' ? { org: values['org'] } : {}),
        ...(days(values) !== undefined ? { days: days(values) as number } : {}),
        ...(pass !== undefined ? { passphrase: pass } : {}),
      });
      io.out(
        `issued agent certificate ${issued.serial} for ${String(values['id'])} (expires ${issued.notAfter})\n  ${issued.certPath}\n  ${issued.keyPath}\n  ${issued.caPath}\n`,
      );
      return 0;
    }
    case 'revoke': {
      const ca = CertificateAuthority.open(dir);
      const id = values['id'] as string | undefined;
      const serial = values['serial'] as string | undefined;
      if ((id === undefined) === (serial === undefined)) throw usageError('give exactly one of --id or --serial');
      const reason = values['reason'] as string | undefined;
      if (reason !== undefined && !isCrlReason(reason)) {
        throw usageError(`--reason must be one of ${Object.keys(CRL_REASONS).join(', ')}`);
      }
      const pass = passphrase(values);
      const revoked = ca.revoke({
        ...(id !== undefined ? { id } : { serial: serial as string }),
        ...(reason !== undefined ? { reason } : {}),
        ...(pass !== undefined ? { passphrase: pass } : {}),
      });
      for (const r of revoked) io.out(`revoked ${r.serial} (${r.subject}, reason ${r.reason ?? 'unspecified'})\n`);
      io.out(`CRL updated: ${ca.crlPath}\n`);
      return 0;
    }
    case 'crl': {
      const ca = CertificateAuthority.open(dir);
      const pass = passphrase(values);
      const out = values['out'] as string | undefined;
      ca.crl({
        ...(out !== undefined ? { out } : {}),
        ...(days(values) !== undefined ? { days: days(values) as number } : {}),
        ...(pass !== undefined ? { passphrase: pass } : {}),
      });
      io.out(`CRL written: ${ca.crlPath}${out ? ` and ${out}` : ''}\n`);
      return 0;
    }
    case 'list': {
      const ca = CertificateAuthority.open(dir);
      const rows = ca.list();
      if (values['json'] === true) {
        io.out(`${JSON.stringify(rows, null, 2)}\n`);
        return 0;
      }
      const table = [['SERIAL', 'KIND', 'SUBJECT', 'NOT AFTER', 'STATUS']];
      for (const r of rows) table.push([r.serial, r.kind, r.subject, r.notAfter, r.status]);
      const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => (row[i] ?? '').length)));
      for (const row of table)
        io.out(
          `${row
            .map((c, i) => c.padEnd(widths[i] ?? 0))
            .join('  ')
            .trimEnd()}\n`,
        );
      return 0;
    }
    default:
      throw usageError(`unknown command '${command}'`);
  }
}
