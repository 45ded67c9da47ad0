import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { DirectoryStore, loadIdentity, verifyDirectory } from '../../../certs/index.ts';
import { parsePrivateKey } from '../../../certs/keys.ts';
import {
  buildIssuerDirectory,
  issuerUrl,
  jwsFromQr,
  readQrPng,
  signIssuerDirectory,
  verifyCard,
  verifyIssuerDirectory,
  verifyKeyBinding,
  type VerifiedIssuerDirectory,
} from '../../../certs/shc/index.ts';
import { buildProof, verifyProof, type Ledger } from '../../../ledger/index.ts';
import { CARD_FILES, CertificateIssuer, loadIssuerKey, writeCardFiles, type IssuerKey } from '../../../hospital-agent/certificates/index.ts';
import { dbPath, makeWorld, type LedgerWorld } from '../../ledger/support.ts';
import { tempDir } from '../../support/tmp.ts';

const BASE = 'https://relay.example.org';
const fhir = {
  resourceType: 'Bundle',
  type: 'collection',
  entry: [
    { fullUrl: 'urn:uuid:p1', resource: { resourceType: 'Patient', id: 'p1', name: [{ family: 'Park', given: ['Jisoo'] }], birthDate: '1985-02-03' } },
    { fullUrl: 'urn:uuid:d1', resource: { resourceType: 'Practitioner', id: 'd1', name: [{ family: 'Choi', given: ['Hana'] }] } },
    {
      fullUrl: 'urn:uuid:c1',
      resource: {
        resourceType: 'Condition',
        id: 'c1',
        code: { coding: [{ system: 'http://snomed.info/sct', code: '6142004' }] },
        subject: { reference: 'urn:uuid:p1' },
      },
    },
  ],
};
const sickLeave = { purpose: 'sick-leave' as const, bundle: fhir, period: { start: '2026-11-30', end: '2026-12-06' } };

describe('certificate issuance in the agent (hospital-agent/certificates)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let world: LedgerWorld;
  let ledger: Ledger;
  let key: IssuerKey;
  let store: DirectoryStore;

  async function issuerDirectory(revocations: Parameters<typeof buildIssuerDirectory>[0]['revocations'] = {}): Promise<VerifiedIssuerDirectory> {
    const members = await verifyDirectory((await store.sign()).jws, { caPem: world.caPem });
    const bindings = [await verifyKeyBinding(key.binding, { caPem: world.caPem })];
    const doc = buildIssuerDirectory({ members, bindings, revocations, base: BASE, sequence: 1 });
    const dirKey = parsePrivateKey(readFileSync(join(store.dir, 'directory.key.pem'), 'utf8'), undefined, 'key');
    return verifyIssuerDirectory(await signIssuerDirectory(doc, dirKey, readFileSync(join(store.dir, 'directory.crt.pem'), 'utf8')), { caPem: world.caPem });
  }

  async function proofOf(seq: number): Promise<Awaited<ReturnType<typeof verifyProof>>> {
    const built = await buildProof(ledger._store, { entries: [{ feed: 'alpha', seq }] });
    // A one-hospital federation has no witness: the auditor's policy here asks for none (the default asks for one).
    const result = await verifyProof(JSON.parse(JSON.stringify(built.file)), { caPem: world.caPem }, { quorum: 0, witnesses: [] });
    expect(result.ok, result.failures.join('; ')).to.equal(true);
    return result;
  }

  before(async function () {
    tmp = tempDir();
    world = await makeWorld(tmp.dir, ['alpha']);
    ledger = await world.open('alpha', dbPath(tmp.dir, 'alpha'));
    const files = world.fed.agents['alpha'];
    if (!files) throw new Error('alpha');
    key = await loadIssuerKey(join(tmp.dir, 'keys'), loadIdentity(files));
    store = DirectoryStore.init(world.fed.ca);
    store.add({ id: 'alpha', name: 'Alpha Hospital', organisation: 'Alpha Health', role: 'hospital', status: 'active' });
  });
  after(async () => {
    await ledger.close();
    tmp.cleanup();
  });

  it('keeps one ES256 key (0600) across loads, bound to the agent certificate', async function () {
    const again = await loadIssuerKey(join(tmp.dir, 'keys'), loadIdentity(world.fed.agents['alpha'] as never));
    expect(again.jwk.kid).to.equal(key.jwk.kid);
    expect(statSync(join(tmp.dir, 'keys', 'issuer-es256.key.pem')).mode & 0o777).to.equal(0o600);
    expect((await verifyKeyBinding(again.binding, { caPem: world.caPem })).agent).to.equal('alpha');
  });

  it('issues a card, logs it in the ledger without PHI, writes PNG/SVG/HTML; the QR read back from the PNG verifies with the issuance proved', async function () {
    const issuer = new CertificateIssuer({ ledger, key, iss: issuerUrl(BASE, 'alpha') });
    const card = await issuer.issue(sickLeave);
    const entry = (await ledger.get('alpha', card.ledger.seq))?.entry;
    expect(entry?.type).to.equal('certificate.issued');
    expect(entry?.body).to.deep.equal({ card: card.hash, kid: key.jwk.kid, rid: card.rid, nbf: new Date(card.nbf * 1000).toISOString() });
    expect(JSON.stringify(entry)).not.to.match(/Park|Jisoo|1985/);
    const dir = join(tmp.dir, 'out');
    const paths = await writeCardFiles(dir, card);
    expect(paths.map((p) => p.slice(dir.length + 1)).sort()).to.deep.equal(
      [CARD_FILES.card, CARD_FILES.html, CARD_FILES.json, CARD_FILES.png, CARD_FILES.svg].sort(),
    );
    expect(readFileSync(join(dir, CARD_FILES.svg), 'utf8')).to.match(/^<svg/);
    expect(readFileSync(join(dir, CARD_FILES.html), 'utf8')).to.contain('unfit for work from 2026-11-30 to 2026-12-06');
    const scanned = jwsFromQr([readQrPng(readFileSync(join(dir, CARD_FILES.png)))]);
    expect(scanned).to.equal(card.jws);
    const proof = await proofOf(card.ledger.seq);
    const check = await verifyCard(scanned, await issuerDirectory(), { proved: proof.proved });
    expect(check.verdict, check.reasons.join('; ')).to.equal('valid');
    expect(check.ledgerTime).to.equal(card.ledger.ts);
  });

  it('flags a backdated card: its nbf is a month before the ledger entry its proof shows', async function () {
    const monthAgo = new Date(Date.now() - 30 * 86_400_000);
    const issuer = new CertificateIssuer({ ledger, key, iss: issuerUrl(BASE, 'alpha'), now: () => monthAgo });
    const card = await issuer.issue(sickLeave);
    const proof = await proofOf(card.ledger.seq);
    const d = await issuerDirectory();
    const check = await verifyCard(card.jws, d, { proved: proof.proved });
    expect(check.verdict).to.equal('backdated');
    expect(check.reasons[0]).to.contain(card.ledger.ts);
    // Without its proof the verifier cannot tell: the signature is good.
    expect((await verifyCard(card.jws, d)).verdict).to.equal('valid');
  });

  it('flags a card signed after its key was revoked even when it claims an earlier nbf; accepts one whose proof shows it came first', async function () {
    const before = await new CertificateIssuer({ ledger, key, iss: issuerUrl(BASE, 'alpha') }).issue(sickLeave);
    // Revoked right after the first card's entry; the stolen card is appended later (ledger time, millisecond resolution).
    const revokedAt = new Date(Date.parse(before.ledger.ts) + 1);
    while (Date.now() <= revokedAt.getTime()) await new Promise((r) => setTimeout(r, 2));
    // The thief signs with the stolen key and claims the card is from before the revocation.
    const claimed = new Date(revokedAt.getTime() - 60_000);
    const stolen = await new CertificateIssuer({ ledger, key, iss: issuerUrl(BASE, 'alpha'), now: () => claimed }).issue(sickLeave);
    const d = await issuerDirectory({ [key.jwk.kid]: { keyRevokedAt: revokedAt.toISOString() } });
    const late = await verifyCard(stolen.jws, d, { proved: (await proofOf(stolen.ledger.seq)).proved, backdateToleranceMs: 5 * 60_000 });
    expect(late.verdict).to.equal('revoked');
    expect(late.reasons[0]).to.match(/after its revocation/);
    expect((await verifyCard(stolen.jws, d)).verdict).to.equal('revoked');
    const early = await verifyCard(before.jws, d, { proved: (await proofOf(before.ledger.seq)).proved });
    expect(early.verdict, early.reasons.join('; ')).to.equal('valid');
  });
});
