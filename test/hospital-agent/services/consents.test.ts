import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import type { Ledger } from '../../../ledger/index.ts';
import { verifyLedger, levelSource } from '../../../ledger/index.ts';
import { AgentError } from '../../../hospital-agent/errors.ts';
import { patientHash } from '../../../hospital-agent/consent/index.ts';
import { ConsentService } from '../../../hospital-agent/services/consents.ts';
import { dbPath, makeWorld, type LedgerWorld } from '../../ledger/support.ts';
import { tempDir } from '../../support/tmp.ts';

describe('ConsentService', function () {
  let tmp: ReturnType<typeof tempDir>;
  let world: LedgerWorld;
  let ledger: Ledger;
  let service: ConsentService;
  const secret = randomBytes(32);

  before(async function () {
    tmp = tempDir();
    world = await makeWorld(tmp.dir, ['alpha', 'bravo']);
    ledger = await world.open('alpha', dbPath(tmp.dir, 'alpha'));
    service = new ConsentService(ledger, 'alpha', secret);
  });
  after(async function () {
    await ledger.close();
    tmp.cleanup();
  });

  const grant = {
    patientId: 'urn:oid:1.2.3|MRN-4242',
    grantees: ['bravo'],
    purposes: ['TREAT' as const],
    scope: ['Patient', 'Observation'],
    validUntil: new Date(Date.now() + 86_400_000).toISOString(),
  };

  it('records a grant in the ledger with the patient only as a keyed hash', async function () {
    const c = await service.grant(grant);
    expect(c.patientHash).to.equal(patientHash(secret, grant.patientId));
    const entries = await ledger.byConsent(c.id);
    expect(entries).to.have.length(1);
    const raw = entries[0]!.bytes.toString('utf8');
    expect(raw).to.contain(c.patientHash);
    expect(raw).not.to.contain('MRN-4242');
    expect(await service.get(c.id)).to.deep.equal(c);
  });

  it('checks releases against the recorded consent, and revocation takes effect', async function () {
    const c = await service.grant(grant);
    const request = { patientHash: patientHash(secret, grant.patientId), recipient: 'bravo', purpose: 'TREAT' as const, scope: ['Patient'], at: new Date() };
    await service.check(c.id, request);
    const revoked = await service.revoke(c.id);
    expect(revoked.revokedAt).to.be.a('string');
    try {
      await service.check(c.id, { ...request, at: new Date(Date.now() + 1000) });
      throw new Error('released after revocation');
    } catch (err) {
      expect((err as AgentError).code).to.equal('ERR_CONSENT_REVOKED');
    }
    try {
      await service.revoke(c.id);
      throw new Error('revoked twice');
    } catch (err) {
      expect((err as AgentError).code).to.equal('ERR_CONFLICT');
    }
    const listed = await service.list();
    expect(listed.find((x) => x.id === c.id)?.revokedAt).to.equal(revoked.revokedAt);
  });

  it('keeps why a consent was revoked, as revoked and as read back from the ledger by a new service', async function () {
    const c = await service.grant(grant);
    expect((await service.revoke(c.id, 'entered-in-error')).revocationReason).to.equal('entered-in-error');
    expect((await service.get(c.id))?.revocationReason).to.equal('entered-in-error');
    const fresh = new ConsentService(ledger, 'alpha', secret);
    expect(await fresh.get(c.id)).to.include({ revocationReason: 'entered-in-error' });
    expect((await fresh.get(c.id))?.revokedAt).to.be.a('string');
  });

  it('refuses a release from the moment the revocation is queued, before its entry is on disk', async function () {
    const c = await service.grant(grant);
    const request = { patientHash: patientHash(secret, grant.patientId), recipient: 'bravo', purpose: 'TREAT' as const, scope: ['Patient'], at: new Date() };
    // Checked while consent.revoked waits for its write: the engine's release (check, then exchange.sent) in that
    // window would otherwise be logged after the revocation that should have stopped it.
    const append = ledger.append.bind(ledger);
    let checked: Promise<unknown> | undefined;
    ledger.append = ((input: Parameters<Ledger['append']>[0]) => {
      const written = append(input);
      if (input.type === 'consent.revoked')
        checked = service.check(c.id, request).then(
          () => 'released',
          (err: AgentError) => err.code,
        );
      return written;
    }) as Ledger['append'];
    try {
      const revoked = await service.revoke(c.id);
      expect(await checked).to.equal('ERR_CONSENT_REVOKED');
      expect(revoked.revokedAt).to.be.a('string');
    } finally {
      ledger.append = append;
    }
  });

  it('two revocations at once write one entry; the other is refused with ERR_CONFLICT', async function () {
    const c = await service.grant(grant);
    const outcomes = await Promise.allSettled([service.revoke(c.id), service.revoke(c.id)]);
    expect(outcomes.map((o) => o.status).sort()).to.deep.equal(['fulfilled', 'rejected']);
    expect(((outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult).reason as AgentError).code).to.equal('ERR_CONFLICT');
    expect((await ledger.byConsent(c.id)).filter((e) => e.entry.type === 'consent.revoked')).to.have.length(1);
  });

  it('refuses unknown consents and nonsense grants', async function () {
    try {
      await service.check('00000000-0000-4000-8000-000000000000', {
        patientHash: 'a'.repeat(64),
        recipient: 'bravo',
        purpose: 'TREAT',
        scope: ['Patient'],
        at: new Date(),
      });
      throw new Error('accepted');
    } catch (err) {
      expect((err as AgentError).code).to.equal('ERR_CONSENT_MISSING');
    }
    for (const bad of [
      { ...grant, validUntil: new Date(Date.now() - 1000).toISOString() },
      { ...grant, grantees: ['alpha'] },
    ]) {
      try {
        await service.grant(bad);
        throw new Error('accepted');
      } catch (err) {
        expect((err as AgentError).code).to.equal('ERR_BAD_REQUEST');
      }
    }
  });

  it('leaves a ledger that verifies', async function () {
    const result = await verifyLedger(levelSource(ledger._store), { trust: { caPem: world.caPem } });
    expect(result.findings, JSON.stringify(result.findings)).to.deep.equal([]);
  });
});
