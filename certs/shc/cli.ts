// One job: the `hie-certs issuers ...` subcommands (the operator's issuer directory) and `hie-certs verify-card`.
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { joinDashValues } from '../../common/args.ts';
import { parseCrl } from '../crl.ts';
import { verifyDirectory } from '../directory.ts';
import { DirectoryStore } from '../directory-store.ts';
import { PkiError } from '../errors.ts';
import { writeFileAtomic } from '../fsutil.ts';
import { parsePrivateKey } from '../keys.ts';
import { CertificateAuthority } from '../pki.ts';
import { ShcError } from './errors.ts';
import { buildIssuerDirectory, verifyIssuerDirectory, verifyKeyBinding, signIssuerDirectory } from './issuers.ts';
import { jwsFromQr } from './qr.ts';
import { readQrPng } from './read.ts';
import { verifyCard } from './verify.ts';

/** Lines of the `hie-certs --help` command list. */
export const SHC_USAGE_LINES = `  issuers      add-key|revoke-card|revoke-key|sign|show --dir PKI ...
               The signed issuer directory of SMART Health Card keys ('hie-certs issuers --help').
  verify-card  FILE|QR.png --directory ISSUERS.jws --ca CA.pem [--proof FILE] [--json]
               Check a SMART Health Card offline: valid, forged, revoked, unknown issuer...`;

const USAGE = `Usage: hie-certs issuers <command> --dir PKI [options]

The federation's issuer directory: each hospital's (and issuer's) SMART Health
Card signing keys, from their key bindings and the member directory, signed by
the directory key into PKI/issuers/issuers.jws. The relay serves it (config
key certificates.issuersFile) at /.well-known/hie-issuers.jws and each
issuer's keys at /issuers/<id>/.well-known/jwks.json.

Commands:
  add-key      --dir PKI --binding FILE
               Check a hospital's key binding (its agent writes keys/issuer-key.jws) against the CA and keep it.
  revoke-card  --dir PKI --kid KID --rid RID [--before UNIX_SECONDS]
               Revoke a card by its rid (SMART Health Cards rid revocation; --before: only cards issued before then).
  revoke-key   --dir PKI --kid KID [--at ISO_TIME]
               Stop trusting a key (stolen, retired): cards it signed at or after then are revoked.
  sign         --dir PKI --base URL [--out FILE]
               Sign the next issuer directory from the last signed member directory; iss = URL/issuers/<id>.
  show         --dir PKI [--file FILE] [--json]
               Verify a signed issuer directory and print it.
`;

type OptionSpec = NonNullable<ParseArgsConfig['options']>;
const COMMANDS: Record<string, { options: OptionSpec; usage: string }> = {
  'add-key': { usage: 'hie-certs issuers add-key --dir PKI --binding FILE', options: { dir: { type: 'string' }, binding: { type: 'string' } } },
  'revoke-card': {
    usage: 'hie-certs issuers revoke-card --dir PKI --kid KID --rid RID [--before UNIX_SECONDS]',
    options: { dir: { type: 'string' }, kid: { type: 'string' }, rid: { type: 'string' }, before: { type: 'string' } },
  },
  'revoke-key': {
    usage: 'hie-certs issuers revoke-key --dir PKI --kid KID [--at ISO_TIME]',
    options: { dir: { type: 'string' }, kid: { type: 'string' }, at: { type: 'string' } },
  },
  sign: {
    usage: 'hie-certs issuers sign --dir PKI --base URL [--out FILE]',
    options: { dir: { type: 'string' }, base: { type: 'string' }, out: { type: 'string' } },
  },
  show: {
    usage: 'hie-certs issuers show --dir PKI [--file FILE] [--json]',
    options: { dir: { type: 'string' }, file: { type: 'string' }, json: { type: 'boolean' } },
  },
};

const usageError = (message: string): PkiError => new PkiError('ERR_PKI_INVALID_ARGUMENT', message);

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v.length === 0) throw usageError(`--${name} is required`);
  return v;
}

function parse(spec: { options: OptionSpec; usage: string }, argv: string[], positionals = false): { values: Record<string, unknown>; positionals: string[] } {
  try {
    return parseArgs({ args: joinDashValues(argv, spec.options), options: spec.options, strict: true, allowPositionals: positionals });
  } catch (err) {
    throw usageError(`${(err as Error).message.split('\n')[0]} (usage: ${spec.usage})`);
  }
}

interface State {
  sequence: number;
  revocations: Record<string, { rids?: string[]; ctr?: number; keyRevokedAt?: string }>;
}

/** Files of the issuer directory under PKI/issuers/. */
export const ISSUERS_FILES = { dir: 'issuers', keys: 'keys', state: 'state.json', signed: 'issuers.jws' } as const;

function issuersDir(pki: string): string {
  const d = join(resolve(pki), ISSUERS_FILES.dir);
  mkdirSync(join(d, ISSUERS_FILES.keys), { recursive: true, mode: 0o700 });
  return d;
}

function readState(dir: string): State {
  const p = join(dir, ISSUERS_FILES.state);
  if (!existsSync(p)) return { sequence: 0, revocations: {} };
  return JSON.parse(readFileSync(p, 'utf8')) as State;
}

function writeState(dir: string, s: State): void {
  writeFileAtomic(join(dir, ISSUERS_FILES.state), `${JSON.stringify(s, null, 2)}\n`, 0o600);
}

const KID = /^[A-Za-z0-9_-]{43}$/;

/** `hie-certs issuers ...`. */
export async function issuersMain(argv: string[], io: { out: (text: string) => void }): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h') {
    io.out(USAGE);
    return command === undefined ? 2 : 0;
  }
  const spec = COMMANDS[command];
  if (!spec) throw usageError(`unknown command 'issuers ${command}' (run 'hie-certs issuers --help')`);
  if (rest.includes('--help')) {
    io.out(`Usage: ${spec.usage}\n`);
    return 0;
  }
  const { values } = parse(spec, rest);
  const pki = required(values, 'dir');
  const ca = CertificateAuthority.open(pki);
  const caPem = ca.caCertPem();
  const crl = parseCrl(readFileSync(ca.crlPath, 'utf8'), caPem);
  const dir = issuersDir(pki);
  const state = readState(dir);
  switch (command) {
    case 'add-key': {
      const b = await verifyKeyBinding(readFileSync(required(values, 'binding'), 'utf8'), { caPem, crl });
      writeFileAtomic(join(dir, ISSUERS_FILES.keys, `${b.jwk.kid}.jws`), readFileSync(required(values, 'binding'), 'utf8'), 0o644);
      io.out(`key ${b.jwk.kid} of ${b.agent} added; run 'hie-certs issuers sign' to publish\n`);
      return 0;
    }
    case 'revoke-card': {
      const kid = required(values, 'kid');
      const rid = required(values, 'rid');
      if (!KID.test(kid)) throw usageError('--kid must be a key thumbprint (43 base64url characters)');
      if (!/^[A-Za-z0-9_-]{1,24}$/.test(rid)) throw usageError('--rid must be 1-24 base64url characters');
      const before = values['before'];
      if (before !== undefined && !/^\d{1,12}$/.test(before as string)) throw usageError('--before must be a Unix time in seconds');
      const r = (state.revocations[kid] ??= {});
      r.rids = [...(r.rids ?? []), before === undefined ? rid : `${rid}.${String(before)}`];
      r.ctr = (r.ctr ?? 0) + 1;
      writeState(dir, state);
      io.out(`card ${rid} of key ${kid} revoked (list version ${r.ctr}); run 'hie-certs issuers sign' to publish\n`);
      return 0;
    }
    case 'revoke-key': {
      const kid = required(values, 'kid');
      if (!KID.test(kid)) throw usageError('--kid must be a key thumbprint (43 base64url characters)');
      const at = values['at'] === undefined ? new Date() : new Date(values['at'] as string);
      if (Number.isNaN(at.getTime())) throw usageError('--at must be an ISO time');
      (state.revocations[kid] ??= {}).keyRevokedAt = at.toISOString();
      writeState(dir, state);
      io.out(`key ${kid} revoked at ${at.toISOString()}; run 'hie-certs issuers sign' to publish\n`);
      return 0;
    }
    case 'sign': {
      const base = required(values, 'base');
      if (!/^https:\/\/[^/\s]+(\/[^\s]*)?$/.test(base)) throw usageError('--base must be the https URL the relay serves the issuers at');
      const store = DirectoryStore.open(ca);
      const members = await verifyDirectory(readFileSync(store.signedPath, 'utf8'), { caPem, crl });
      const bindings = [];
      for (const f of readdirSync(join(dir, ISSUERS_FILES.keys))
        .filter((n) => n.endsWith('.jws'))
        .sort())
        bindings.push(await verifyKeyBinding(readFileSync(join(dir, ISSUERS_FILES.keys, f), 'utf8'), { caPem, crl }));
      const sequence = state.sequence + 1;
      const doc = buildIssuerDirectory({ members, bindings, revocations: state.revocations, base, sequence });
      const jws = await signIssuerDirectory(
        doc,
        parsePrivateKey(readFileSync(join(store.dir, 'directory.key.pem'), 'utf8'), undefined, 'the directory key'),
        readFileSync(join(store.dir, 'directory.crt.pem'), 'utf8'),
      );
      await verifyIssuerDirectory(jws, { caPem, crl });
      writeFileAtomic(join(dir, ISSUERS_FILES.signed), `${jws}\n`, 0o644);
      if (values['out']) writeFileAtomic(resolve(values['out'] as string), `${jws}\n`, 0o644);
      state.sequence = sequence;
      writeState(dir, state);
      io.out(`issuer directory ${sequence} signed: ${doc.issuers.length} issuers, written to ${join(dir, ISSUERS_FILES.signed)}\n`);
      return 0;
    }
    case 'show': {
      const file = (values['file'] as string | undefined) ?? join(dir, ISSUERS_FILES.signed);
      const v = await verifyIssuerDirectory(readFileSync(file, 'utf8'), { caPem, crl });
      if (values['json']) io.out(`${JSON.stringify(v.directory, null, 2)}\n`);
      else {
        io.out(`issuer directory ${v.directory.sequence} of ${v.directory.issuedAt}, signed by ${v.signerSerial}\n`);
        for (const i of v.directory.issuers)
          io.out(`${i.id}\t${i.status}\t${i.iss}\tkeys ${i.keys.map((k) => k.kid).join(',') || '-'}\trevoked keys ${i.revokedKeys.length}\n`);
      }
      return 0;
    }
  }
  return 2;
}

const VERIFY_SPEC = {
  usage: 'hie-certs verify-card FILE|QR.png [FILE...] --directory ISSUERS.jws --ca CA.pem [--crl CRL.pem] [--proof PROOF.json [--policy POLICY.json]] [--json]',
  options: {
    directory: { type: 'string' },
    ca: { type: 'string' },
    crl: { type: 'string' },
    proof: { type: 'string' },
    policy: { type: 'string' },
    json: { type: 'boolean' },
  } as OptionSpec,
};

/** The card's JWS from a file: `.smart-health-card` JSON, a bare JWS, `shc:/` text, or QR PNG images (chunks in any order). */
export function cardFromFiles(paths: readonly string[]): string {
  const texts: string[] = [];
  for (const p of paths) {
    const bytes = readFileSync(p);
    if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
      texts.push(readQrPng(bytes));
      continue;
    }
    const text = bytes.toString('utf8').trim();
    if (text.startsWith('{')) {
      let vc: unknown;
      try {
        vc = (JSON.parse(text) as { verifiableCredential?: unknown }).verifiableCredential;
      } catch (err) {
        throw new ShcError('ERR_SHC_MALFORMED', `${p} is not a .smart-health-card file`, { cause: err });
      }
      if (!Array.isArray(vc) || typeof vc[0] !== 'string') throw new ShcError('ERR_SHC_MALFORMED', `${p} has no verifiableCredential`);
      return vc[0];
    }
    texts.push(...text.split(/\s+/));
  }
  return texts.every((t) => t.startsWith('shc:/')) ? jwsFromQr(texts) : (texts[0] ?? '');
}

/** `hie-certs verify-card`: exit 0 for a valid card, 1 for any other verdict. */
export async function verifyCardMain(argv: string[], io: { out: (text: string) => void }): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.out(`Usage: ${VERIFY_SPEC.usage}\n`);
    return 0;
  }
  const { values, positionals } = parse(VERIFY_SPEC, argv, true);
  if (positionals.length === 0) throw usageError(`a card file or QR image is required (usage: ${VERIFY_SPEC.usage})`);
  const caPem = readFileSync(required(values, 'ca'), 'utf8');
  const crl = values['crl'] ? parseCrl(readFileSync(values['crl'] as string, 'utf8'), caPem) : undefined;
  const directory = await verifyIssuerDirectory(readFileSync(required(values, 'directory'), 'utf8'), { caPem, crl });
  let proved;
  if (values['proof']) {
    // Loaded here only: the ledger depends on certs, and the proof is optional.
    const { parseProofFile, verifyProof, parseWitnessPolicy, DEFAULT_WITNESS_POLICY } = await import('../../ledger/index.ts');
    // The witness policy is the verifier's, never the proof file's (as for hie-ledger verify-proof).
    const policy = values['policy'] ? parseWitnessPolicy(JSON.parse(readFileSync(values['policy'] as string, 'utf8'))) : DEFAULT_WITNESS_POLICY;
    const result = await verifyProof(parseProofFile(readFileSync(values['proof'] as string, 'utf8')), { caPem, crl }, policy);
    if (!result.ok) throw new ShcError('ERR_SHC_MALFORMED', `the ledger proof does not verify: ${result.failures[0] ?? 'no entry'}`);
    proved = result.proved;
  }
  const check = await verifyCard(cardFromFiles(positionals), directory, { proved });
  if (values['json']) {
    const { card: _card, ...rest } = check;
    io.out(`${JSON.stringify({ ...rest, payload: check.card?.payload }, null, 2)}\n`);
  } else {
    io.out(`${check.verdict.toUpperCase()}${check.issuer ? ` (issuer ${check.issuer.name}, ${check.issuer.iss})` : ''}\n`);
    for (const r of check.reasons) io.out(`- ${r}\n`);
    if (check.statements.length > 0) io.out(`The card states:\n${check.statements.map((s) => `  ${s}`).join('\n')}\n`);
  }
  return check.verdict === 'valid' ? 0 : 1;
}
