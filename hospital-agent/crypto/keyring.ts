import { X509Certificate } from 'node:crypto';
import { verifyKeyBundle, type KeyBundle, type ParsedCrl, type VerifiedKeyBundle } from '../../certs/index.ts';
import { CryptoError } from './errors.ts';
import type { SenderLookup } from './open.ts';

/** What a key ring checks bundles against. */
export interface KeyRingTrust {
  /** The federation CA certificate, PEM. */
  caPem: string;
  /** The CRL in force now (a function, so a reloaded CRL applies at once). */
  crl?: (() => ParsedCrl | undefined) | undefined;
}

/**
 * Known key bundles per agent. Only bundles that verify (CA, id, validity,
 * revocation) get in, and every lookup verifies again against the current
 * CRL. The newest valid bundle is the one to encrypt to; older ones are kept so
 * signatures and receipts made with them stay verifiable by key id.
 */
export class KeyRing {
  private readonly byAgent = new Map<string, Map<string, KeyBundle>>();

  constructor(private readonly trust: KeyRingTrust) {
    if (typeof trust?.caPem !== 'string') throw new TypeError('trust.caPem must be the CA certificate PEM');
  }

  /** Bundles that verified, with the CRL they were checked against: a lookup re-verifies only when that CRL changed or the time left their validity. */
  private readonly verified = new Map<string, { v: VerifiedKeyBundle; crl: ParsedCrl | undefined; from: number; until: number }>();

  private async verify(bundle: unknown, at: Date): Promise<VerifiedKeyBundle> {
    const crl = this.trust.crl?.();
    const sig = (bundle as { sig?: unknown } | null)?.sig;
    const hit = typeof sig === 'string' ? this.verified.get(sig) : undefined;
    const t = at.getTime();
    if (hit && hit.crl === crl && t >= hit.from && t <= hit.until && hit.v.bundle === bundle) return hit.v;
    const v = await verifyKeyBundle(bundle, { caPem: this.trust.caPem, crl, now: at });
    if (!crl?.revoked.has(v.certSerial)) {
      const cert = new X509Certificate(v.bundle.cert);
      const from = Math.max(v.created.getTime(), Date.parse(cert.validFrom));
      const until = Math.min(v.expires.getTime(), Date.parse(cert.validTo));
      this.verified.set(v.bundle.sig, { v, crl, from, until });
    }
    return v;
  }

  /** Verifies `bundle` at `now` and stores it; throws PkiError `ERR_PKI_BUNDLE_*` and stores nothing if it fails. */
  async add(bundle: unknown, now: Date = new Date()): Promise<VerifiedKeyBundle> {
    const v = await this.verify(bundle, now);
    let m = this.byAgent.get(v.agent);
    if (!m) this.byAgent.set(v.agent, (m = new Map()));
    m.set(v.signingKid, v.bundle);
    return v;
  }

  /** Every stored bundle of `agent` (or of all agents), oldest first, for persistence. */
  bundles(agent?: string): KeyBundle[] {
    const all = agent === undefined ? [...this.byAgent.values()].flatMap((m) => [...m.values()]) : [...(this.byAgent.get(agent)?.values() ?? [])];
    return all.sort((a, b) => a.created.localeCompare(b.created));
  }

  /** The newest bundle of `agent` that verifies at `now`: the one to encrypt to. Throws ERR_KEYRING_NO_KEY. */
  async encryptionBundle(agent: string, now: Date = new Date()): Promise<VerifiedKeyBundle> {
    const reasons: string[] = [];
    let revoked = 0;
    for (const b of this.bundles(agent).reverse()) {
      try {
        return await this.verify(b, now);
      } catch (err) {
        reasons.push((err as Error).message);
        if ((err as { code?: unknown }).code === 'ERR_PKI_BUNDLE_REVOKED') revoked += 1;
      }
    }
    // Every bundle known for the agent has a revoked certificate: it is no longer a member (until it gets a new one).
    if (revoked > 0 && revoked === reasons.length)
      throw new CryptoError('ERR_KEYRING_REVOKED', `every key bundle of '${agent}' has a revoked certificate: ${reasons[0]}`);
    throw new CryptoError('ERR_KEYRING_NO_KEY', `no valid key bundle for '${agent}'${reasons.length ? `: ${reasons[0]}` : ''}`);
  }

  /** {@link encryptionBundle} for each recipient. */
  recipients(agents: readonly string[], now: Date = new Date()): Promise<VerifiedKeyBundle[]> {
    return Promise.all(agents.map((a) => this.encryptionBundle(a, now)));
  }

  /** The bundle of `agent` with signing key `kid`, verified at `at`; undefined when unknown, PkiError when no longer trusted. */
  async signer(agent: string, kid: string, at: Date = new Date()): Promise<VerifiedKeyBundle | undefined> {
    const b = this.byAgent.get(agent)?.get(kid);
    return b ? this.verify(b, at) : undefined;
  }

  /** A {@link SenderLookup} for `openEnvelope` and `verifyReceipt`. */
  signerLookup(): SenderLookup {
    return (agent, kid, at) => this.signer(agent, kid, at);
  }
}
