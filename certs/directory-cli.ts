// One job: the `hie-certs directory ...` subcommands (the operator's member directory).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { joinDashValues } from '../common/args.ts';
import { MEMBER_ROLES, MEMBER_STATUSES, type MemberRole, type MemberStatus } from './directory.ts';
import { DirectoryStore } from './directory-store.ts';
import { PkiError } from './errors.ts';
import { CertificateAuthority } from './pki.ts';

/** Lines of the `hie-certs --help` command list for `directory`. */
export const DIRECTORY_USAGE_LINES = `  directory    init|add|set-status|sign|show|rekey --dir PKI ...
               The signed member directory the relay hands to every agent ('hie-certs directory --help').`;

const USAGE = `Usage: hie-certs directory <command> --dir PKI [options]

The federation's member directory, signed by a CA-issued directory key. The
relay reads PKI/directory/directory.jws (config key directory.file) and hands
it to every agent; agents refuse sends and consents to members that are not
listed, suspended or revoked.

Commands:
  init        --dir PKI [--days N] [--passphrase-env VAR]
              Issue the directory signing certificate and start an empty member list.
  add         --dir PKI --id ID --name NAME --org ORG --role ${MEMBER_ROLES.join('|')} [--status S]
              Add a member (its id must have a certificate from this CA).
  set-status  --dir PKI --id ID --status ${MEMBER_STATUSES.join('|')}
              Change a member's status.
  sign        --dir PKI [--out FILE]
              Sign the member list as the next sequence into PKI/directory/directory.jws (and FILE).
  show        --dir PKI [--file FILE] [--json]
              Verify a signed directory (default the last one signed) and print it.
  rekey       --dir PKI [--days N] [--passphrase-env VAR]
              A new directory signing certificate (before the old one expires, or after
              revoking it); members and sequence stay. Sign again to publish with it.
`;

type OptionSpec = NonNullable<ParseArgsConfig['options']>;

const COMMANDS: Record<string, { options: OptionSpec; usage: string }> = {
  init: {
    usage: 'hie-certs directory init --dir PKI [--days N] [--passphrase-env VAR]',
    options: { dir: { type: 'string' }, days: { type: 'string' }, 'passphrase-env': { type: 'string' } },
  },
  add: {
    usage: `hie-certs directory add --dir PKI --id ID --name NAME --org ORG --role ${MEMBER_ROLES.join('|')} [--status ${MEMBER_STATUSES.join('|')}]`,
    options: {
      dir: { type: 'string' },
      id: { type: 'string' },
      name: { type: 'string' },
      org: { type: 'string' },
      role: { type: 'string' },
      status: { type: 'string' },
    },
  },
  'set-status': {
    usage: `hie-certs directory set-status --dir PKI --id ID --status ${MEMBER_STATUSES.join('|')}`,
    options: { dir: { type: 'string' }, id: { type: 'string' }, status: { type: 'string' } },
  },
  rekey: {
    usage: 'hie-certs directory rekey --dir PKI [--days N] [--passphrase-env VAR]',
    options: { dir: { type: 'string' }, days: { type: 'string' }, 'passphrase-env': { type: 'string' } },
  },
  sign: { usage: 'hie-certs directory sign --dir PKI [--out FILE]', options: { dir: { type: 'string' }, out: { type: 'string' } } },
  show: {
    usage: 'hie-certs directory show --dir PKI [--file FILE] [--json]',
    options: { dir: { type: 'string' }, file: { type: 'string' }, json: { type: 'boolean' } },
  },
};

const usageError = (message: string): PkiError => new PkiError('ERR_PKI_INVALID_ARGUMENT', message);

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.length === 0) throw usageError(`--${name} is required`);
  return v;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], flag: string): T {
  if (!(allowed as readonly string[]).includes(value))
    throw usageError(`--${flag} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value.slice(0, 40))}`);
  return value as T;
}

/** The CA passphrase (from --passphrase-env) and --days of the commands that have the CA sign. */
function signing(values: Record<string, unknown>, env: NodeJS.ProcessEnv): { passphrase?: string; days?: number } {
  const passEnv = values['passphrase-env'] as string | undefined;
  const passphrase = passEnv === undefined ? undefined : env[passEnv];
  if (passEnv !== undefined && !passphrase) throw usageError(`environment variable ${passEnv} (from --passphrase-env) is not set`);
  const d = values['days'] as string | undefined;
  if (d !== undefined && !/^\d+$/.test(d)) throw usageError(`--days must be a positive whole number, got ${JSON.stringify(d)}`);
  return { ...(passphrase ? { passphrase } : {}), ...(d !== undefined ? { days: Number(d) } : {}) };
}

/** Runs `hie-certs directory` with the arguments after `directory`; returns the exit code. */
export async function directoryMain(argv: string[], io: { out: (text: string) => void }, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    io.out(USAGE);
    return command === undefined ? 2 : 0;
  }
  const spec = COMMANDS[command];
  if (!spec) throw usageError(`unknown directory command '${command}' (run 'hie-certs directory --help')`);
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
  const ca = CertificateAuthority.open(required(values, 'dir'));
  switch (command) {
    case 'init': {
      const store = DirectoryStore.init(ca, signing(values, env));
      io.out(`member directory created in ${store.dir} (signing certificate directory.crt.pem); add members, then 'hie-certs directory sign'\n`);
      return 0;
    }
    case 'rekey': {
      const issued = DirectoryStore.open(ca).rekey(signing(values, env));
      io.out(`new directory signing certificate ${issued.serial} (expires ${issued.notAfter}); run 'hie-certs directory sign' to publish with it\n`);
      return 0;
    }
    case 'add': {
      const m = DirectoryStore.open(ca).add({
        id: required(values, 'id'),
        name: required(values, 'name'),
        organisation: required(values, 'org'),
        role: oneOf<MemberRole>(required(values, 'role'), MEMBER_ROLES, 'role'),
        status: oneOf<MemberStatus>((values['status'] as string | undefined) ?? 'active', MEMBER_STATUSES, 'status'),
      });
      io.out(`added ${m.id} (${m.role}, ${m.status}); run 'hie-certs directory sign' to publish\n`);
      return 0;
    }
    case 'set-status': {
      const m = DirectoryStore.open(ca).setStatus(required(values, 'id'), oneOf<MemberStatus>(required(values, 'status'), MEMBER_STATUSES, 'status'));
      io.out(`${m.id} is now ${m.status}; run 'hie-certs directory sign' to publish\n`);
      return 0;
    }
    case 'sign': {
      const out = values['out'] as string | undefined;
      const signed = await DirectoryStore.open(ca).sign(out ? { out } : {});
      io.out(`signed directory sequence ${signed.sequence}: ${signed.path}${out ? ` and ${out}` : ''}\n`);
      return 0;
    }
    case 'show': {
      const file = values['file'] as string | undefined;
      const v = await DirectoryStore.open(ca).show(file);
      if (values['json'] === true) {
        io.out(`${JSON.stringify({ ...v.directory, signer: v.signerSerial }, null, 2)}\n`);
        return 0;
      }
      io.out(`directory sequence ${v.directory.sequence}, issued ${v.directory.issuedAt}, signed by ${v.signerSerial} (signature verified)\n`);
      const table = [['ID', 'ROLE', 'STATUS', 'ORGANISATION', 'NAME'], ...v.directory.members.map((m) => [m.id, m.role, m.status, m.organisation, m.name])];
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
      throw usageError(`unknown directory command '${command}'`);
  }
}
