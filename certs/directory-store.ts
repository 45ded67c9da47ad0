import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { DIRECTORY_VERSION, memberSchema, signDirectory, verifyDirectory, type Member, type MemberStatus, type VerifiedDirectory } from './directory.ts';
import { PkiError } from './errors.ts';
import { writeFileAtomic } from './fsutil.ts';
import { parsePrivateKey } from './keys.ts';
import { assertHospitalId } from './names.ts';
import { CertificateAuthority } from './pki.ts';
import { parseCrl } from './crl.ts';

/** Files of the operator's directory workspace, inside the PKI directory. */
export const DIRECTORY_FILES = {
  dir: 'directory',
  members: 'members.json',
  signed: 'directory.jws',
  cert: 'directory.crt.pem',
  key: 'directory.key.pem',
} as const;

const workspaceSchema = z.strictObject({
  v: z.literal(DIRECTORY_VERSION),
  /** Sequence of the last signed directory (0: never signed). */
  sequence: z.number().int().min(0),
  members: z.array(memberSchema),
});

type Workspace = z.infer<typeof workspaceSchema>;

/**
 * The operator's member directory: `PKI/directory/members.json` (the working
 * list), the directory signing certificate and key, and `directory.jws`, the
 * last signed directory, which is what the relay distributes. Each `sign`
 * raises the sequence by one.
 */
export class DirectoryStore {
  readonly dir: string;

  private constructor(
    private readonly ca: CertificateAuthority,
    dir: string,
  ) {
    this.dir = dir;
  }

  /** Creates the workspace and has the CA issue the directory signing certificate; refuses when one exists. */
  static init(ca: CertificateAuthority, options: { passphrase?: string; days?: number; now?: Date } = {}): DirectoryStore {
    const dir = join(ca.dir, DIRECTORY_FILES.dir);
    if (existsSync(join(dir, DIRECTORY_FILES.members))) throw new PkiError('ERR_PKI_OUT_EXISTS', `a member directory already exists in ${dir}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    ca.issueDirectory({
      outDir: dir,
      ...(options.passphrase !== undefined ? { passphrase: options.passphrase } : {}),
      ...(options.days !== undefined ? { days: options.days } : {}),
      ...(options.now ? { now: options.now } : {}),
    });
    const store = new DirectoryStore(ca, dir);
    store.write({ v: DIRECTORY_VERSION, sequence: 0, members: [] });
    return store;
  }

  /**
   * Has the CA issue a new directory signing certificate and key (before the old one expires, or after it was
   * revoked), keeping the members and the sequence. The next `sign` uses it.
   */
  rekey(options: { passphrase?: string; days?: number; now?: Date } = {}): { serial: string; notAfter: string } {
    const issued = this.ca.issueDirectory({
      outDir: this.dir,
      force: true,
      ...(options.passphrase !== undefined ? { passphrase: options.passphrase } : {}),
      ...(options.days !== undefined ? { days: options.days } : {}),
      ...(options.now ? { now: options.now } : {}),
    });
    return { serial: issued.serial, notAfter: issued.notAfter };
  }

  /** Opens the workspace of a CA; ERR_PKI_NOT_FOUND when `directory init` was not run. */
  static open(ca: CertificateAuthority): DirectoryStore {
    const dir = join(ca.dir, DIRECTORY_FILES.dir);
    if (!existsSync(join(dir, DIRECTORY_FILES.members))) {
      throw new PkiError('ERR_PKI_NOT_FOUND', `no member directory in ${ca.dir}; run 'hie-certs directory init --dir ${ca.dir}' first`);
    }
    return new DirectoryStore(ca, dir);
  }

  /** Path of the last signed directory (what the relay's `directory.file` names). */
  get signedPath(): string {
    return join(this.dir, DIRECTORY_FILES.signed);
  }

  /** The working list of members. */
  members(): Member[] {
    return this.read().members;
  }

  /**
   * Adds a member. Its id must be one the CA issued an agent certificate for
   * (the directory names members by their certificate ids).
   */
  add(member: Member): Member {
    const m = memberSchema.parse({ ...member, id: assertHospitalId(member.id) });
    if (!this.ca.list().some((c) => c.kind === 'agent' && c.id === m.id)) {
      throw new PkiError('ERR_PKI_NOT_FOUND', `the CA has issued no certificate for '${m.id}'; issue (or sign) its certificate first`);
    }
    const ws = this.read();
    if (ws.members.some((x) => x.id === m.id)) throw new PkiError('ERR_PKI_DUPLICATE_ID', `'${m.id}' is already a member; use set-status to change it`);
    ws.members.push(m);
    this.write(ws);
    return m;
  }

  /** Changes a member's status. */
  setStatus(id: string, status: MemberStatus): Member {
    const ws = this.read();
    const m = ws.members.find((x) => x.id === id);
    if (!m) throw new PkiError('ERR_PKI_NOT_FOUND', `'${id}' is not a member`);
    m.status = memberSchema.shape.status.parse(status);
    this.write(ws);
    return { ...m };
  }

  /** Signs the working list as the next sequence; writes `directory.jws` (and `out` when given). Returns the JWS. */
  async sign(options: { out?: string; now?: Date } = {}): Promise<{ jws: string; sequence: number; path: string }> {
    const ws = this.read();
    const sequence = ws.sequence + 1;
    const keyPem = readFileSync(join(this.dir, DIRECTORY_FILES.key), 'utf8');
    const certPem = readFileSync(join(this.dir, DIRECTORY_FILES.cert), 'utf8');
    const now = options.now ?? new Date();
    const jws = await signDirectory(
      { v: DIRECTORY_VERSION, sequence, issuedAt: now.toISOString(), members: [...ws.members].sort((a, b) => a.id.localeCompare(b.id)) },
      parsePrivateKey(keyPem, undefined, 'the directory key'),
      certPem,
    );
    // What agents will check, checked before it is published.
    await verifyDirectory(jws, { caPem: this.ca.caCertPem(), crl: parseCrl(readFileSync(this.ca.crlPath, 'utf8'), this.ca.caCertPem()), now });
    writeFileAtomic(this.signedPath, `${jws}\n`, 0o644);
    if (options.out) writeFileAtomic(resolve(options.out), `${jws}\n`, 0o644);
    ws.sequence = sequence;
    this.write(ws);
    return { jws, sequence, path: this.signedPath };
  }

  /** Verifies a signed directory file (default: the last one signed here) against this CA and its CRL. */
  async show(file: string = this.signedPath): Promise<VerifiedDirectory> {
    let jws: string;
    try {
      jws = readFileSync(file, 'utf8');
    } catch (err) {
      throw new PkiError('ERR_PKI_NOT_FOUND', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
    }
    const caPem = this.ca.caCertPem();
    return verifyDirectory(jws, { caPem, crl: parseCrl(readFileSync(this.ca.crlPath, 'utf8'), caPem) });
  }

  private read(): Workspace {
    const path = join(this.dir, DIRECTORY_FILES.members);
    try {
      return workspaceSchema.parse(JSON.parse(readFileSync(path, 'utf8')));
    } catch (err) {
      throw new PkiError('ERR_PKI_INDEX_CORRUPT', `${path} is not a member list: ${(err as Error).message.split('\n')[0]}`, { cause: err });
    }
  }

  private write(ws: Workspace): void {
    writeFileAtomic(join(this.dir, DIRECTORY_FILES.members), `${JSON.stringify(ws, null, 2)}\n`, 0o600);
  }
}
