import { generateKeyPairSync } from 'node:crypto';
import { expect } from 'chai';
import { CompactSign } from 'jose';
import { loadIdentity } from '../../../certs/index.ts';
import { jcs } from '../../../certs/keybundle.ts';
import {
  cardBundle,
  cardTypes,
  issuerJwk,
  issuerUrl,
  ShcError,
  signCard,
  signKeyBinding,
  verifyCard,
  verifyIssuerDirectory,
  verifyKeyBinding,
} from '../../../certs/shc/index.ts';
import { tempDir } from '../../support/tmp.ts';
import { BASE, makeCardWorld, type CardWorld } from './support.ts';

const bundle = {
  resourceType: 'Bundle',
  type: 'collection',
  entry: [
    {
      fullUrl: 'urn:uuid:p1',
      resource: {
        resourceType: 'Patient',
        id: 'p1',
        name: [{ family: 'Kim', given: ['Minji'], text: 'Kim Minji' }],
        birthDate: '1990-04-01',
        gender: 'female',
      },
    },
    {
      fullUrl: 'urn:uuid:d1',
      resource: { resourceType: 'Practitioner', id: 'd1', name: [{ family: 'Lee', given: ['Jun'] }], telecom: [{ system: 'phone', value: '010' }] },
    },
    {
      fullUrl: 'urn:uuid:c1',
      resource: {
        resourceType: 'Condition',
        id: 'c1',
        text: { status: 'generated', div: '<div>flu</div>' },
        code: { coding: [{ system: 'http://snomed.info/sct', code: '6142004', display: 'Influenza' }], text: 'Influenza' },
        subject: { reference: 'urn:uuid:p1' },
        onsetDateTime: '2026-11-28',
      },
    },
  ],
};

async function card(
  world: CardWorld,
  id: string,
  options: { nbf?: number; rid?: string; purpose?: 'sick-leave' | 'diagnosis'; key?: ReturnType<typeof generateKeyPairSync> } = {},
): Promise<string> {
  const purpose = options.purpose ?? 'sick-leave';
  const fhirBundle = cardBundle({ purpose, bundle, period: { start: '2026-11-28', end: '2026-12-04' } });
  const payload = {
    iss: issuerUrl(BASE, id),
    nbf: options.nbf ?? Math.floor(Date.now() / 1000),
    vc: { type: cardTypes(purpose), rid: options.rid ?? 'rid0000001', credentialSubject: { fhirVersion: '4.0.1', fhirBundle: fhirBundle as never } },
  };
  if (options.key) return signCard(payload, options.key.privateKey, (await issuerJwk(options.key.publicKey)).kid);
  const k = world.keys[id];
  if (!k) throw new Error(id);
  return signCard(payload, k.privateKey, k.jwk.kid);
}

describe('issuer directory and card verdicts (certs/shc)', function () {
  this.timeout(120_000);
  let tmp: ReturnType<typeof tempDir>;
  let world: CardWorld;

  before(async function () {
    tmp = tempDir();
    world = await makeCardWorld(tmp.dir, [
      { id: 'myongji', role: 'hospital' },
      { id: 'clinic', role: 'issuer', status: 'suspended' },
      { id: 'insurer', role: 'insurer' },
    ]);
  });
  after(() => tmp.cleanup());

  it('lists every hospital and issuer with a bound key, at iss = <base>/issuers/<id>, with its member status; no insurer', async function () {
    const d = await world.directory();
    expect([...d.byId.keys()].sort()).to.deep.equal(['clinic', 'myongji']);
    expect(d.byId.get('myongji')?.iss).to.equal('https://relay.example.org/issuers/myongji');
    expect(d.byId.get('clinic')?.status).to.equal('suspended');
    expect(d.byId.get('myongji')?.keys[0]?.kid).to.equal(world.keys['myongji']?.jwk.kid);
  });

  it('issue -> verify: a sick-leave card is valid and shows the dates, never the diagnosis', async function () {
    const d = await world.directory();
    const check = await verifyCard(await card(world, 'myongji'), d);
    expect(check.verdict, check.reasons.join('; ')).to.equal('valid');
    const text = check.statements.join('\n');
    expect(text).to.contain('unfit for work from 2026-11-28 to 2026-12-04');
    expect(text).to.contain('patient: Minji Kim, born 1990-04-01');
    expect(JSON.stringify(check.card?.payload)).not.to.match(/6142004|Influenza|female|010/);
    const diag = await verifyCard(await card(world, 'myongji', { purpose: 'diagnosis' }), d);
    expect(diag.verdict).to.equal('valid');
    expect(diag.statements.join('\n')).to.contain('diagnosis http://snomed.info/sct|6142004 since 2026-11-28');
    expect(JSON.stringify(diag.card?.payload)).not.to.match(/Influenza|<div>/);
  });

  it("says forged for a card re-signed with a key outside the directory under a listed issuer's name, unknown-issuer for an unlisted iss", async function () {
    const d = await world.directory();
    const outsider = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const forged = await verifyCard(await card(world, 'myongji', { key: outsider }), d);
    expect(forged.verdict).to.equal('forged');
    expect(forged.reasons[0]).to.match(/has no key/);
    expect((await verifyCard(await card(world, 'nobody', { key: outsider }), d)).verdict).to.equal('unknown-issuer');
  });

  it('says issuer-suspended for a card of a suspended issuer, however well signed', async function () {
    const d = await world.directory();
    expect((await verifyCard(await card(world, 'clinic'), d)).verdict).to.equal('issuer-suspended');
  });

  it('says revoked for a card whose rid the issuer revoked, and for any card of a revoked key', async function () {
    const kid = world.keys['myongji']?.jwk.kid as string;
    const d = await world.directory({ [kid]: { rids: ['ridRevoked1'] } }, 2);
    expect(d.byId.get('myongji')?.keys[0]?.crlVersion).to.equal(1);
    expect((await verifyCard(await card(world, 'myongji', { rid: 'ridRevoked1' }), d)).verdict).to.equal('revoked');
    expect((await verifyCard(await card(world, 'myongji', { rid: 'ridKept0001' }), d)).verdict).to.equal('valid');
    const gone = await world.directory({ [kid]: { keyRevokedAt: new Date(Date.now() - 60_000).toISOString() } }, 3);
    const r = await verifyCard(await card(world, 'myongji'), gone);
    expect(r.verdict).to.equal('revoked');
    expect(r.reasons[0]).to.match(/was revoked at/);
  });

  it('refuses an issuer directory changed after signing, or signed by an agent instead of the directory key', async function () {
    const d = await world.directory();
    const [h, p, s] = d.jws.split('.') as [string, string, string];
    const doc = JSON.parse(Buffer.from(p, 'base64url').toString());
    doc.issuers[0].status = 'active';
    doc.issuers[1].status = 'active';
    const changed = `${h}.${Buffer.from(JSON.stringify(doc)).toString('base64url')}.${s}`;
    try {
      await verifyIssuerDirectory(changed, { caPem: world.caPem });
      expect.fail('accepted');
    } catch (err) {
      expect((err as ShcError).code).to.equal('ERR_SHC_ISSUERS_SIGNATURE');
    }
    const agent = loadIdentity({ cert: `${tmp.dir}/agents/myongji.crt.pem`, key: `${tmp.dir}/agents/myongji.key.pem`, ca: world.ca.caCertPath });
    const byAgent = await new CompactSign(jcs(doc))
      .setProtectedHeader({ alg: 'RS256', typ: 'hie-issuers+json', x5c: [agent.certificate.raw.toString('base64')] })
      .sign(agent.privateKey);
    try {
      await verifyIssuerDirectory(byAgent, { caPem: world.caPem });
      expect.fail('accepted');
    } catch (err) {
      expect((err as ShcError).code).to.equal('ERR_SHC_ISSUERS_UNTRUSTED');
    }
  });

  it('accepts a key binding only from the certificate of the agent it names', async function () {
    const b = await verifyKeyBinding(world.keys['myongji']?.binding as string, { caPem: world.caPem });
    expect(b.agent).to.equal('myongji');
    const agent = loadIdentity({ cert: `${tmp.dir}/agents/clinic.crt.pem`, key: `${tmp.dir}/agents/clinic.key.pem`, ca: world.ca.caCertPath });
    const jws = await signKeyBinding(agent, world.keys['myongji']?.jwk as never);
    const [h, p, s] = jws.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    claims.agent = 'myongji';
    const lie = await new CompactSign(jcs(claims)).setProtectedHeader(JSON.parse(Buffer.from(h, 'base64url').toString())).sign(agent.privateKey);
    expect(s).to.be.a('string');
    try {
      await verifyKeyBinding(lie, { caPem: world.caPem });
      expect.fail('accepted');
    } catch (err) {
      expect((err as Error).message).to.match(/names myongji but is signed by clinic/);
    }
  });
});
