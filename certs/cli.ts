import { parseArgs, type ParseArgsConfig } from 'node:util';
import { joinDashValues } from '../common/args.ts';
import { readFileSync } from 'node:fs';
import { CRL_REASONS, isCrlReason } from './crl.ts';
import { MAX_CSR_BYTES } from './csr.ts';
import { installCertificate, requestEnrolment, requestRenewal } from './enrol.ts';
import { DIRECTORY_USAGE_LINES, directoryMain } from './directory-cli.ts';
import { SHC_USAGE_LINES, issuersMain, verifyCardMain } from './shc/cli.ts';
import { PkiError } from './errors.ts';
import { CertificateAuthority, DEFAULT_CA_DAYS, DEFAULT_CA_NAME, DEFAULT_CRL_DAYS, DEFAULT_LEAF_DAYS } from './pki.ts';

const USAGE = `Usage: hie-certs <command> [options]

Federation PKI for the hospital data exchange: one root CA that signs the
relay's and every hospital agent's certificate, with revocation via a CRL.

Enrolment (recommended: the hospital's private key never leaves the hospital):
  request      --id HOSPITAL_ID [--org ORG] --out DIR            (hospital IT)
               Generate DIR/<id>.key.pem (0600) and the request DIR/<id>.csr.pem.
  sign         --csr FILE --ca-dir PKI [--days N] [--renew] [--out FILE]   (operator)
               Check the request and issue <id>.crt.pem (+ ca.crt.pem) next to it; no key involved.
  renew        --id HOSPITAL_ID --dir DIR [--new-key]            (hospital IT)
               A renewal request DIR/<id>.csr.pem with the current subject, same key or a new one.
  install      --id HOSPITAL_ID --dir DIR --cert FILE            (hospital IT)
               Install a signed certificate; the old certificate and key are kept as dated .bak files.

Commands:
  init         --dir PKI [--name NAME] [--days N] [--passphrase-env VAR]
               Create the root CA (${DEFAULT_CA_DAYS} days, "${DEFAULT_CA_NAME}" by default).
  issue-relay  --dir PKI --host NAME_OR_IP [--host ...] --out DIR [--days N] [--force]
               Write DIR/relay.crt.pem, DIR/relay.key.pem, DIR/ca.crt.pem.
  issue-agent  --dir PKI --id HOSPITAL_ID [--org ORG] --out DIR [--days N] [--renew]
               Write DIR/<id>.crt.pem, DIR/<id>.key.pem, DIR/ca.crt.pem (the key is made at the CA:
               prefer request/sign). --renew keeps the subject and backs up the old files.
  revoke       --dir PKI (--id ID | --serial HEX) [--reason R]
               Revoke and republish PKI/crl.pem. Reasons: ${Object.keys(CRL_REASONS).join(', ')}.
  crl          --dir PKI [--out FILE] [--days N]
               Sign a fresh CRL (valid ${DEFAULT_CRL_DAYS} days by default) into PKI/crl.pem and FILE.
  list         --ca-dir PKI [--expiring 30d] [--json]
               Every issued certificate: id, role, serial, not-after, status (ok, revoked, expired);
               --expiring keeps the live ones that expire within the period (d or h).
${DIRECTORY_USAGE_LINES}
${SHC_USAGE_LINES}

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
    usage: 'hie-certs list --ca-dir PKI [--expiring 30d] [--json]',
    options: { dir: { type: 'string' }, 'ca-dir': { type: 'string' }, json: { type: 'boolean' }, expiring: { type: 'string' } },
  },
  request: {
    usage: 'hie-certs request --id HOSPITAL_ID [--org ORG] --out DIR',
    options: { id: { type: 'string' }, org: { type: 'string' }, out: { type: 'string' } },
  },
  sign: {
    usage: 'hie-certs sign --csr FILE --ca-dir PKI [--days N] [--renew] [--out FILE] [--force] [--passphrase-env VAR]',
    options: {
      csr: { type: 'string' },
      'ca-dir': { type: 'string' },
      dir: { type: 'string' },
      days: { type: 'string' },
      renew: { type: 'boolean' },
      out: { type: 'string' },
      force: { type: 'boolean' },
      'passphrase-env': { type: 'string' },
    },
  },
  renew: {
    usage: 'hie-certs renew --id HOSPITAL_ID --dir DIR [--new-key] [--passphrase-env VAR]',
    options: { id: { type: 'string' }, dir: { type: 'string' }, 'new-key': { type: 'boolean' }, 'passphrase-env': { type: 'string' } },
  },
  install: {
    usage: 'hie-certs install --id HOSPITAL_ID --dir DIR --cert FILE [--passphrase-env VAR]',
    options: { id: { type: 'string' }, dir: { type: 'string' }, cert: { type: 'string' }, 'passphrase-env': { type: 'string' } },
  },
};

/** `30d`, `12h` or a bare number of days, in milliseconds. */
function period(value: string): number {
  const m = /^(\d{1,5})([dh]?)$/.exec(value);
  if (!m) throw usageError(`--expiring must be a period like 30d or 12h, got ${JSON.stringify(value.slice(0, 20))}`);
  return Number(m[1]) * (m[2] === 'h' ? 3_600_000 : 86_400_000);
}

/** The CA directory: --ca-dir, or --dir as the older commands call it. */
function caDir(values: Record<string, unknown>): string {
  const v = values['ca-dir'] ?? values['dir'];
  if (typeof v !== 'string' || v.length === 0) throw usageError('--ca-dir is required');
  return v;
}

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
  if (command === 'issuers') return issuersMain(rest, io);
  if (command === 'verify-card') return verifyCardMain(rest, io);
  const spec = COMMANDS[command];
  if (!spec) throw usageError(`unknown command '${command}' (run 'hie-certs --help')`);
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(`Usage: ${spec.usage}\n`);
    return 0;
  }
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args: joinDashValues(rest, spec.options), options: spec.options, strict: true, allowPositionals: false }));
  } catch (err) {
    throw usageError(`${(err as Error).message.split('\n')[0]} (usage: ${spec.usage})`);
  }
  const dir = command === 'request' ? '' : command === 'list' || command === 'sign' ? caDir(values) : required(values, 'dir');

  switch (command) {
    case 'request': {
      const id = required(values, 'id');
      const made = requestEnrolment({ id, outDir: required(values, 'out'), ...(typeof values['org'] === 'string' ? { org: values['org'] } : {}) });
      io.out(
        `created the key and certificate request for ${id}\n  key (keep here, mode 0600): ${made.keyPath}\n  request (send to the operator): ${made.csrPath}\n`,
      );
      return 0;
    }
    case 'sign': {
      const ca = CertificateAuthority.open(dir);
      const csrPath = required(values, 'csr');
      const pass = passphrase(values);
      let csrPem: string;
      try {
        csrPem = readFileSync(csrPath, 'utf8').slice(0, MAX_CSR_BYTES + 1);
      } catch (err) {
        throw new PkiError('ERR_PKI_CSR_INVALID', `cannot read ${csrPath}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
      }
      const out = values['out'] as string | undefined;
      const signed = ca.signCsr({
        csrPem,
        csrPath,
        renew: values['renew'] === true,
        force: values['force'] === true,
        ...(out !== undefined ? { out } : {}),
        ...(days(values) !== undefined ? { days: days(values) as number } : {}),
        ...(pass !== undefined ? { passphrase: pass } : {}),
      });
      io.out(
        `signed agent certificate ${signed.serial} for ${signed.subject} (expires ${signed.notAfter})\n  send back: ${signed.certPath}\n  and:       ${signed.caPath}\n`,
      );
      return 0;
    }
    case 'renew': {
      const id = required(values, 'id');
      const pass = passphrase(values);
      const made = requestRenewal({ id, dir, newKey: values['new-key'] === true, ...(pass !== undefined ? { passphrase: pass } : {}) });
      const subject = [made.subject.organization ? `O=${made.subject.organization}` : '', `CN=${made.subject.commonName}`].filter(Boolean).join(', ');
      io.out(
        `renewal request for ${subject} (${values['new-key'] === true ? 'new key' : 'same key'})\n  request (send to the operator, who signs it with --renew): ${made.csrPath}\n  key: ${made.keyPath}\n`,
      );
      return 0;
    }
    case 'install': {
      const id = required(values, 'id');
      const certPath = required(values, 'cert');
      const pass = passphrase(values);
      let certPem: string;
      try {
        certPem = readFileSync(certPath, 'utf8');
      } catch (err) {
        throw new PkiError('ERR_PKI_CERT_INVALID', `cannot read ${certPath}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
      }
      const done = installCertificate({ id, dir, certPem, ...(pass !== undefined ? { passphrase: pass } : {}) });
      io.out(`installed certificate ${done.serial} for ${id} (expires ${done.notAfter}${done.newKey ? ', new key' : ''})\n  ${done.certPath}\n`);
      for (const b of done.backups) io.out(`  backup: ${b}\n`);
      io.out('A running agent or relay using these files picks the new certificate up without a restart.\n');
      return 0;
    }
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
      for (const b of issued.backups ?? []) io.out(`  backup: ${b}\n`);
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
      const now = Date.now();
      const within = typeof values['expiring'] === 'string' ? period(values['expiring']) : undefined;
      const rows = ca.list(new Date(now)).filter((r) => within === undefined || (r.status === 'valid' && Date.parse(r.notAfter) - now <= within));
      if (values['json'] === true) {
        io.out(`${JSON.stringify(rows, null, 2)}\n`);
        return 0;
      }
      const table = [['ID', 'ROLE', 'SERIAL', 'SUBJECT', 'NOT AFTER', 'STATUS']];
      for (const r of rows) table.push([r.id ?? (r.hosts ?? []).join(','), r.kind, r.serial, r.subject, r.notAfter, r.status === 'valid' ? 'ok' : r.status]);
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
