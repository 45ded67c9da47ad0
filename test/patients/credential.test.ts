import { expect } from 'chai';
import { join } from 'node:path';
import { CompactSign } from 'jose';
import { loadIdentity, type Identity } from '../../certs/index.ts';
import { exportPublic, generateDeviceKeys, signPop } from '../../patient-app/protocol.js';
import { issuePatientCredential, newChannel } from '../../hospital-agent/patients/index.ts';
import { verifyPatientCredential, PatientRefusal } from '../../relay/patients/index.ts';
import { PATIENT_CREDENTIAL_TYPE } from '../../relay/protocol/patient-credential.ts';
import { makeFederation, type TestFederation } from '../support/federation.ts';
import { tempDir } from '../support/tmp.ts';

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(PatientRefusal);
    return (err as PatientRefusal).code;
  }
  throw new Error('not refused');
}

describe('patient channel credential', function () {
  this.timeout(60_000);
  let tmp: ReturnType<typeof tempDir>;
  let fed: TestFederation;
  let alpha: Identity;
  let other: Identity;
  let caPem: string;
  const revoked = new Set<string>();
  const trust = (now?: Date): { caPem: string; isRevoked: (s: string) => boolean; now?: Date } => ({
    caPem,
    isRevoked: (s) => revoked.has(s),
    ...(now ? { now } : {}),
  });

  before(() => {
    tmp = tempDir();
    fed = makeFederation(tmp.dir, ['alpha']);
    alpha = loadIdentity(fed.agents['alpha']!);
    caPem = alpha.caPem;
    const foreign = makeFederation(join(tmp.dir, 'foreign'), ['alpha']);
    other = loadIdentity(foreign.agents['alpha']!);
  });
  after(() => tmp.cleanup());

  it('admits an enrolment credential and learns only the hospital and a random channel', async () => {
    const channel = newChannel();
    const cred = await issuePatientCredential(alpha, { use: 'enrol', channel });
    expect(await verifyPatientCredential(cred, undefined, trust())).to.deep.equal({ hospital: 'alpha', channel, use: 'enrol' });
    const claims = JSON.parse(Buffer.from(cred.split('.')[1] as string, 'base64url').toString());
    expect(Object.keys(claims).sort()).to.deep.equal(['aud', 'ch', 'exp', 'iat', 'iss', 'use']);
  });

  it('admits a session credential only with a fresh proof of possession of its device key', async () => {
    const { sign } = await generateDeviceKeys();
    const stranger = await generateDeviceKeys();
    const device = await exportPublic(sign.publicKey);
    const channel = newChannel();
    const cred = await issuePatientCredential(alpha, { use: 'session', channel, device });
    expect((await verifyPatientCredential(cred, await signPop(sign.privateKey, channel), trust())).use).to.equal('session');
    expect(await refusal(verifyPatientCredential(cred, undefined, trust()))).to.equal('ERR_PATIENT_POP');
    expect(await refusal(verifyPatientCredential(cred, await signPop(stranger.sign.privateKey, channel), trust()))).to.equal('ERR_PATIENT_POP');
    expect(await refusal(verifyPatientCredential(cred, await signPop(sign.privateKey, newChannel()), trust()))).to.equal('ERR_PATIENT_POP');
    const stale = await signPop(sign.privateKey, channel, Date.now() - 10 * 60 * 1000);
    expect(await refusal(verifyPatientCredential(cred, stale, trust()))).to.equal('ERR_PATIENT_POP');
  });

  it('refuses an expired credential, and one not yet valid', async () => {
    const cred = await issuePatientCredential(alpha, { use: 'enrol', channel: newChannel(), lifetimeSeconds: 600 });
    expect(await refusal(verifyPatientCredential(cred, undefined, trust(new Date(Date.now() + 3600_000))))).to.equal('ERR_PATIENT_CREDENTIAL_EXPIRED');
    const future = await issuePatientCredential(alpha, { use: 'enrol', channel: newChannel(), lifetimeSeconds: 600, now: new Date(Date.now() + 3600_000) });
    expect(await refusal(verifyPatientCredential(future, undefined, trust()))).to.equal('ERR_PATIENT_CREDENTIAL_EXPIRED');
  });

  it('refuses a forged credential: altered claims, another CA, another hospital named, a lifetime over the limit', async () => {
    const cred = await issuePatientCredential(alpha, { use: 'enrol', channel: newChannel() });
    const [h, p, s] = cred.split('.') as [string, string, string];
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    const altered = `${h}.${Buffer.from(JSON.stringify({ ...claims, exp: claims.exp + 3600 })).toString('base64url')}.${s}`;
    expect(await refusal(verifyPatientCredential(altered, undefined, trust()))).to.equal('ERR_PATIENT_CREDENTIAL_SIGNATURE');
    const foreign = await issuePatientCredential(other, { use: 'enrol', channel: newChannel() });
    expect(await refusal(verifyPatientCredential(foreign, undefined, trust()))).to.equal('ERR_PATIENT_CREDENTIAL_UNTRUSTED');
    const sign = (c: object): Promise<string> =>
      new CompactSign(Buffer.from(JSON.stringify(c)))
        .setProtectedHeader({ alg: 'RS256', typ: PATIENT_CREDENTIAL_TYPE, x5c: [alpha.certificate.raw.toString('base64')] })
        .sign(alpha.privateKey);
    expect(await refusal(verifyPatientCredential(await sign({ ...claims, iss: 'bravo' }), undefined, trust()))).to.equal('ERR_PATIENT_CREDENTIAL_UNTRUSTED');
    expect(await refusal(verifyPatientCredential(await sign({ ...claims, exp: claims.iat + 30 * 24 * 3600 }), undefined, trust()))).to.equal(
      'ERR_PATIENT_CREDENTIAL_EXPIRED',
    );
    expect(await refusal(verifyPatientCredential(await sign({ ...claims, patient: 'MRN-1' }), undefined, trust()))).to.equal(
      'ERR_PATIENT_CREDENTIAL_MALFORMED',
    );
  });

  it('refuses a credential whose certificate is revoked, and garbage', async () => {
    const cred = await issuePatientCredential(alpha, { use: 'enrol', channel: newChannel() });
    revoked.add(alpha.serial);
    try {
      expect(await refusal(verifyPatientCredential(cred, undefined, trust()))).to.equal('ERR_PATIENT_CREDENTIAL_UNTRUSTED');
    } finally {
      revoked.delete(alpha.serial);
    }
    expect(await refusal(verifyPatientCredential(undefined, undefined, trust()))).to.equal('ERR_PATIENT_CREDENTIAL_MALFORMED');
    expect(await refusal(verifyPatientCredential('a.b.c', undefined, trust()))).to.equal('ERR_PATIENT_CREDENTIAL_MALFORMED');
    expect(await refusal(verifyPatientCredential('x'.repeat(9000), undefined, trust()))).to.equal('ERR_PATIENT_CREDENTIAL_MALFORMED');
  });
});
