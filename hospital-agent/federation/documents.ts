// One job: the CRL and member directory this agent has adopted: checked, never replaced by an older one, kept on disk.
import { EventEmitter } from 'node:events';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCrl, PkiError, verifyDirectory, writeFileAtomic, type ParsedCrl, type VerifiedDirectory } from '../../certs/index.ts';

/** Where adopted documents live, under the data directory. */
export const FEDERATION_DIR = 'federation';
/** File names of the adopted CRL and directory. */
export const FEDERATION_FILES = { crl: 'crl.pem', directory: 'directory.jws' } as const;
/** A CRL whose thisUpdate is this far in the future is still accepted (clock skew between the CA and this host). */
export const CRL_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** The kinds of document an agent adopts. */
export type FederationDocumentType = 'crl' | 'directory';

/** Why a document was not adopted (a metric label and a log field). */
export type RefusalReason = 'invalid' | 'older' | 'expired';

/** What offering a document did. */
export type Offered = { adopted: true } | { adopted: false; reason: RefusalReason | 'same'; message?: string };

/** Events of {@link FederationDocuments}. */
export interface FederationDocumentsEvents {
  crl: [crl: ParsedCrl, source: string];
  directory: [directory: VerifiedDirectory, source: string];
  refused: [info: { type: FederationDocumentType; reason: RefusalReason; source: string; message: string }];
}

/**
 * The CRL and the signed member directory in force at this agent. Each comes
 * from the relay (DOCUMENT frames), the operator's CRL file (`identity.crl`)
 * or this agent's own data directory (what it adopted before a restart), and
 * goes through the same gate: the CA's signature, then a CRL must be within
 * its validity and carry a higher CRL number than the one in force, a
 * directory a higher sequence. An adopted document is written to
 * `dataDir/federation/` before it takes effect.
 */
export class FederationDocuments extends EventEmitter<FederationDocumentsEvents> {
  private currentCrl: ParsedCrl | undefined;
  private currentDirectory: VerifiedDirectory | undefined;
  private readonly dir: string;
  /** Directory offers run one at a time (verification is asynchronous). */
  private directoryQueue: Promise<unknown> = Promise.resolve();

  constructor(
    dataDir: string,
    private readonly caPem: string,
    private readonly now: () => Date = () => new Date(),
  ) {
    super();
    this.dir = join(dataDir, FEDERATION_DIR);
  }

  /** The CRL in force, if any. */
  get crl(): ParsedCrl | undefined {
    return this.currentCrl;
  }

  /** The member directory in force, if any (none until the operator publishes one). */
  get directory(): VerifiedDirectory | undefined {
    return this.currentDirectory;
  }

  /** True when the CRL in force has passed its nextUpdate. */
  crlExpired(at: Date = this.now()): boolean {
    const next = this.currentCrl?.nextUpdate;
    return next !== undefined && next.getTime() <= at.getTime();
  }

  /**
   * Loads what this agent adopted before (kept even when it has expired since: a stale CRL still lists what
   * it lists), then offers `fileCrl`, the operator's file, which wins only when it is newer.
   */
  async open(fileCrl: ParsedCrl | undefined): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const kept = this.read(FEDERATION_FILES.crl);
    if (kept !== undefined) {
      try {
        this.currentCrl = parseCrl(kept, this.caPem);
        this.emit('crl', this.currentCrl, 'data directory');
      } catch (err) {
        this.emit('refused', { type: 'crl', reason: 'invalid', source: 'data directory', message: (err as Error).message });
      }
    }
    // A file older than what the relay brought before is expected, not worth a refusal.
    const held = this.currentCrl?.crlNumber;
    if (fileCrl && !(held !== undefined && fileCrl.crlNumber !== undefined && fileCrl.crlNumber <= held))
      this.offerParsedCrl(fileCrl, 'identity.crl', { ignoreExpiry: true });
    const keptDirectory = this.read(FEDERATION_FILES.directory);
    if (keptDirectory !== undefined) await this.offerDirectory(keptDirectory, 'data directory');
  }

  /** Offers a CRL (PEM). */
  offerCrl(pem: string, source: string): Offered {
    let crl: ParsedCrl;
    try {
      crl = parseCrl(pem, this.caPem);
    } catch (err) {
      return this.refuse('crl', 'invalid', source, (err as Error).message);
    }
    return this.offerParsedCrl(crl, source);
  }

  private offerParsedCrl(crl: ParsedCrl, source: string, options: { ignoreExpiry?: boolean } = {}): Offered {
    const held = this.currentCrl;
    if (held && held.pem === crl.pem) return { adopted: false, reason: 'same' };
    if (crl.crlNumber === undefined) return this.refuse('crl', 'invalid', source, 'the CRL carries no CRL number');
    const now = this.now().getTime();
    if (!options.ignoreExpiry && (crl.thisUpdate.getTime() > now + CRL_CLOCK_SKEW_MS || (crl.nextUpdate && crl.nextUpdate.getTime() <= now))) {
      return this.refuse(
        'crl',
        'expired',
        source,
        `CRL ${crl.crlNumber} is not valid now (${crl.thisUpdate.toISOString()} to ${crl.nextUpdate?.toISOString()})`,
      );
    }
    if (held?.crlNumber !== undefined && crl.crlNumber <= held.crlNumber) {
      return this.refuse('crl', 'older', source, `CRL number ${crl.crlNumber} is not newer than the one in force (${held.crlNumber})`);
    }
    writeFileAtomic(join(this.dir, FEDERATION_FILES.crl), crl.pem, 0o600);
    this.currentCrl = crl;
    this.emit('crl', crl, source);
    return { adopted: true };
  }

  /** Offers a signed directory (compact JWS); checked against the CA and the CRL in force. */
  offerDirectory(jws: string, source: string): Promise<Offered> {
    const run = this.directoryQueue.then(() => this.adoptDirectory(jws, source));
    this.directoryQueue = run.catch(() => undefined);
    return run;
  }

  private async adoptDirectory(jws: string, source: string): Promise<Offered> {
    let next: VerifiedDirectory;
    try {
      next = await verifyDirectory(jws, { caPem: this.caPem, crl: this.currentCrl, now: this.now() });
    } catch (err) {
      return this.refuse('directory', 'invalid', source, err instanceof PkiError ? `${err.code}: ${err.message}` : (err as Error).message);
    }
    const held = this.currentDirectory;
    if (held && held.jws === next.jws) return { adopted: false, reason: 'same' };
    if (held && next.directory.sequence <= held.directory.sequence) {
      return this.refuse(
        'directory',
        'older',
        source,
        `directory sequence ${next.directory.sequence} is not newer than the one in force (${held.directory.sequence})`,
      );
    }
    writeFileAtomic(join(this.dir, FEDERATION_FILES.directory), `${next.jws}\n`, 0o600);
    this.currentDirectory = next;
    this.emit('directory', next, source);
    return { adopted: true };
  }

  private refuse(type: FederationDocumentType, reason: RefusalReason, source: string, message: string): Offered {
    this.emit('refused', { type, reason, source, message });
    return { adopted: false, reason, message };
  }

  private read(name: string): string | undefined {
    try {
      return readFileSync(join(this.dir, name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
}
