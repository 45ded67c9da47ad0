import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, type KeyObject } from 'node:crypto';
import { createKeyBundle, generateAgentKeys, loadIdentity, type KeyBundle } from '../../certs/index.ts';
import { Ledger, type LedgerOptions, type SignedHead } from '../../ledger/index.ts';
import { Witness } from '../../ledger/witness.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';

/** One agent's signing material for a ledger. */
export interface AgentKeyMaterial {
  id: string;
  signingKey: KeyObject;
  bundle: KeyBundle;
}

/** A federation plus a fresh key bundle per agent. */
export interface LedgerWorld {
  fed: TestFederation;
  caPem: string;
  agents: Record<string, AgentKeyMaterial>;
  /** A new bundle (and key) for `id`, as for a key rotation. */
  newKeys(id: string, options?: { now?: Date }): Promise<AgentKeyMaterial>;
  open(id: string | undefined, path: string, extra?: Partial<LedgerOptions>): Promise<Ledger>;
}

const worlds = new Map<string, LedgerWorld>();

/** Builds (once per root) a federation with `ids` and their key bundles. */
export async function makeWorld(root: string, ids: string[] = ['alpha', 'bravo', 'charlie']): Promise<LedgerWorld> {
  const cached = worlds.get(root);
  if (cached) return cached;
  const fed = makeFederation(root, ids);
  const caPem = readFileSync(fed.caPath, 'utf8');
  const newKeys = async (id: string, options: { now?: Date } = {}): Promise<AgentKeyMaterial> => {
    const files = fed.agents[id];
    if (!files) throw new Error(`no agent ${id}`);
    const identity = loadIdentity(files);
    const keys = generateAgentKeys();
    const bundle = await createKeyBundle(identity, keys, options.now ? { now: options.now } : {});
    return { id, signingKey: keys.signing.privateKey, bundle };
  };
  const agents: Record<string, AgentKeyMaterial> = {};
  for (const id of ids) agents[id] = await newKeys(id, { now: new Date(Date.now() - 60_000) });
  const world: LedgerWorld = {
    fed,
    caPem,
    agents,
    newKeys,
    open: (id, path, extra = {}) => {
      const a = id === undefined ? undefined : agents[id];
      return Ledger.open({
        path,
        trust: { caPem },
        ...(a ? { author: { feed: a.id, signingKey: a.signingKey, bundle: a.bundle } } : {}),
        ...extra,
      });
    },
  };
  worlds.set(root, world);
  return world;
}

/** A path inside `root` for a database. */
export function dbPath(root: string, name: string): string {
  return join(root, 'db', name);
}

/** A fake HMAC of a patient id (the caller computes real ones with its hospital secret). */
export function patientHmac(n: number): string {
  return createHash('sha256').update(`patient-${n}`).digest('hex');
}

/** A content hash for exchange `n`. */
export function contentHash(n: number): string {
  return createHash('sha256').update(`content-${n}`).digest('hex');
}

/**
 * Writes a consistent two-hospital story into `alpha`'s database: consent,
 * releases with receipts, a failure, charges and a settlement, with bravo's
 * feed (its receptions) replicated in. Returns the database path (closed).
 */
/**
 * Builds alpha's database with three exchanges to bravo (and bravo's feed).
 * With `witnessed`, bravo replicates alpha's feed and cosigns its checkpoint,
 * alpha keeps that cosignature, and alpha cosigns bravo's (witness.ts).
 */
export async function buildStory(world: LedgerWorld, root: string, name = 'story', options: { witnessed?: boolean } = {}): Promise<string> {
  const aPath = dbPath(root, `${name}-alpha`);
  const bPath = dbPath(root, `${name}-bravo`);
  const alpha = await world.open('alpha', aPath);
  const bravo = await world.open('bravo', bPath);
  const t0 = new Date(Date.now() - 3_600_000 * 3).toISOString();
  await alpha.append({
    type: 'consent.granted',
    body: { consent: 'consent-0001', patient: patientHmac(1), grantees: ['bravo'], purposes: ['TREAT'], scope: ['*'], validFrom: t0 },
  });
  for (let i = 1; i <= 3; i++) {
    const exchange = `exchange-000${i}`;
    await alpha.append({
      type: 'exchange.sent',
      body: {
        exchange,
        to: 'bravo',
        consent: 'consent-0001',
        patient: patientHmac(1),
        purpose: 'TREAT',
        contentType: 'application/fhir+json',
        bytes: 1000 * i,
        hash: contentHash(i),
      },
    });
    if (i < 3) {
      await bravo.append({
        type: 'exchange.received',
        body: { exchange, from: 'alpha', contentType: 'application/fhir+json', bytes: 1000 * i, hash: contentHash(i) },
      });
      await alpha.append({ type: 'receipt', body: { exchange, from: 'bravo', disposition: 'delivered', hash: contentHash(i) } });
      await alpha.append({
        type: 'payment.charged',
        body: { charge: `charge-000${i}`, exchange, kind: 'release', payer: 'bravo', payee: 'alpha', amount: 250, currency: 'EUR' },
      });
    } else {
      await alpha.append({ type: 'exchange.failed', body: { exchange, peer: 'bravo', reason: 'timeout' } });
    }
  }
  await alpha.append({
    type: 'payment.settled',
    body: {
      settlement: 'settle-0001',
      payer: 'bravo',
      payee: 'alpha',
      amount: 500,
      currency: 'EUR',
      periodStart: t0,
      periodEnd: new Date(Date.now() + 60_000).toISOString(),
    },
  });
  await alpha.append({ type: 'consent.revoked', body: { consent: 'consent-0001', reason: 'patient-request' } });
  const bHead = bravo.head() as { seq: number };
  await alpha.ingest(
    'bravo',
    await bravo.rawRange('bravo', 0, bHead.seq),
    (await bravo.signedHead()) as SignedHead,
    undefined,
    await bravo.checkpointAt(bHead.seq + 1),
  );
  if (options.witnessed) {
    const wa = new Witness(alpha, { id: 'alpha', signingKey: (world.agents['alpha'] as AgentKeyMaterial).signingKey });
    const wb = new Witness(bravo, { id: 'bravo', signingKey: (world.agents['bravo'] as AgentKeyMaterial).signingKey });
    const aHead = alpha.head() as { seq: number };
    const aNote = await alpha.checkpointAt(aHead.seq + 1);
    await bravo.ingest('alpha', await alpha.rawRange('alpha', 0, aHead.seq), (await alpha.signedHead()) as SignedHead, 'alpha', aNote);
    if ((await wb.observe('alpha', aNote, 'alpha')) !== 'cosigned') throw new Error('bravo did not cosign alpha');
    if ((await wa.observe('alpha', (await wb.cosigned('alpha', aHead.seq + 1)) as string, 'bravo')) !== 'stored')
      throw new Error('alpha did not keep the cosignature');
    if ((await wa.observe('bravo', await bravo.checkpointAt(bHead.seq + 1), 'bravo')) !== 'cosigned') throw new Error('alpha did not cosign bravo');
  }
  await bravo.close();
  await alpha.close();
  return aPath;
}
