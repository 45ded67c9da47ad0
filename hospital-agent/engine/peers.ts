import type { KeyBundle, VerifiedKeyBundle } from '../../certs/index.ts';
import type { Ledger } from '../../ledger/index.ts';
import { CryptoError, KeyRing, type SenderLookup } from '../crypto/index.ts';
import { AgentError } from '../errors.ts';
import type { WireMessage } from './wire.ts';

/** How long to wait for a peer to answer `bundle.get`. */
export const DEFAULT_BUNDLE_TIMEOUT_MS = 10_000;

/** Thrown when a peer's key bundle cannot be had (offline, or it never answered). */
export class PeerKeyUnavailableError extends CryptoError {
  constructor(readonly agent: string) {
    super('ERR_PEER_KEY_UNAVAILABLE', `no valid key bundle for '${agent}' (not in the ledger yet and the peer did not answer)`);
  }
}

/** Thrown when every certificate known for the recipient is revoked: it is no longer a hospital of the federation. */
export class RecipientRevokedError extends AgentError {
  constructor(readonly agent: string) {
    super('ERR_UNKNOWN_RECIPIENT', `'${agent}' is not a hospital of the federation any more: its certificate is revoked`);
  }
}

/**
 * Where the agent finds its peers' key bundles: the replicated ledger
 * (genesis and key.rotated entries) and, for a peer not seen there yet, a
 * `bundle.get` message answered by the peer itself. Every bundle goes
 * through the CA-checking key ring, so the relay cannot substitute one.
 */
export class PeerDirectory {
  private readonly waiters = new Map<string, Array<() => void>>();
  /** Throws for a recipient the federation's member directory refuses (set by the agent; absent: no directory check). */
  membership: ((agent: string) => void) | undefined;

  constructor(
    readonly keyring: KeyRing,
    private readonly ownBundle: () => KeyBundle,
    private readonly send: (to: string, message: WireMessage) => void,
    private readonly timeoutMs = DEFAULT_BUNDLE_TIMEOUT_MS,
  ) {}

  /** Adds every bundle found in the ledger's feeds; returns how many verified. */
  async learnFromLedger(ledger: Ledger): Promise<number> {
    let n = 0;
    for (const type of ['genesis', 'key.rotated'] as const) {
      for (const { entry } of await ledger.byType(type)) {
        try {
          await this.keyring.add((entry.body as { bundle: unknown }).bundle, new Date(entry.ts));
          n += 1;
        } catch {
          // An expired or revoked historic bundle is simply not usable for new exchanges.
        }
      }
    }
    return n;
  }

  /** Handles a `bundle` or `bundle.get` message from `from`. */
  async onMessage(from: string, message: WireMessage): Promise<void> {
    if (message.t === 'bundle.get') {
      this.send(from, { t: 'bundle', bundle: this.ownBundle() as unknown as Record<string, unknown> });
      return;
    }
    if (message.t === 'bundle') {
      try {
        await this.keyring.add(message.bundle);
      } catch {
        return;
      }
      const agent = (message.bundle as { agent?: unknown }).agent;
      if (typeof agent === 'string') {
        for (const wake of this.waiters.get(agent) ?? []) wake();
        this.waiters.delete(agent);
      }
    }
  }

  /** The relay could not deliver a message to `agent` (not connected): a `bundle.get` waiting for it ends now. */
  onUndeliverable(agent: string): void {
    for (const wake of this.waiters.get(agent) ?? []) wake();
    this.waiters.delete(agent);
  }

  /** Whether `agent` is known only by revoked certificates (no fetch: for refusing a submission at once). */
  async isRevoked(agent: string): Promise<boolean> {
    try {
      await this.keyring.encryptionBundle(agent);
      return false;
    } catch (err) {
      return (err as { code?: unknown }).code === 'ERR_KEYRING_REVOKED';
    }
  }

  private async fetch(agent: string): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.timeoutMs);
      const list = this.waiters.get(agent) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve();
      });
      this.waiters.set(agent, list);
      this.send(agent, { t: 'bundle.get' });
    });
  }

  /** The bundle to encrypt to for `agent`, asking the peer when none is known. */
  async encryptionBundle(agent: string): Promise<VerifiedKeyBundle> {
    this.membership?.(agent);
    try {
      return await this.keyring.encryptionBundle(agent);
    } catch {
      // A hospital whose certificate was renewed after a revocation answers with its new bundle.
      await this.fetch(agent);
      try {
        return await this.keyring.encryptionBundle(agent);
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ERR_KEYRING_REVOKED') throw new RecipientRevokedError(agent);
        throw new PeerKeyUnavailableError(agent);
      }
    }
  }

  /** A signer lookup that asks the peer for a bundle with an unknown key id once. */
  signerLookup(): SenderLookup {
    return async (agent, kid, at) => {
      const known = await this.keyring.signer(agent, kid, at);
      if (known) return known;
      await this.fetch(agent);
      return this.keyring.signer(agent, kid, at);
    };
  }
}
