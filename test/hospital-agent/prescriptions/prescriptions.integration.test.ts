import { expect } from 'chai';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import jsQRModule from 'jsqr';
import { PNG } from 'pngjs';
import { main, type CliIo } from '../../../hospital-agent/cli.ts';
import { PrescriptionStore } from '../../../hospital-agent/prescriptions/index.ts';
import { StateDb } from '../../../hospital-agent/store/state-db.ts';
import { TEST_TOKEN, waitFor, type TestNetwork } from '../../support/agents.ts';
import { issuePrescription, medicationDispense, medicationRequest, post, startRoleNetwork } from '../../support/pharmacy.ts';
import { tempDir } from '../../support/tmp.ts';

// jsqr ships CommonJS with a default export the ESM interop wraps once more.
const jsQR = (jsQRModule as unknown as { default: typeof jsQRModule.default }).default ?? jsQRModule;
const BIN = fileURLToPath(new URL('../../../bin/hie-agent.js', import.meta.url));

/** Runs bin/hie-agent.js as a user does (its token from HIE_AGENT_TOKEN), without blocking the agents in this process. */
function hieAgent(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, HIE_AGENT_TOKEN: TEST_TOKEN, HIE_DEBUG: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (c) => resolve({ code: c, stdout, stderr }));
  });
}

const code = (r: { body: Record<string, unknown> }): unknown => (r.body['error'] as { code?: string } | undefined)?.code;

describe('e-prescriptions between a prescriber and pharmacies', function () {
  this.timeout(180_000);
  let tmp: ReturnType<typeof tempDir>;
  let net: TestNetwork;

  before(async function () {
    tmp = tempDir();
    net = await startRoleNetwork(tmp.dir, { myongji: 'hospital', 'pharm-a': 'pharmacy', 'pharm-b': 'pharmacy', severance: 'hospital' });
  });
  after(async () => {
    await net?.close();
    tmp?.cleanup();
  });

  const accept = (pharmacy: string, rx: { id: string; accessCode: string }, accessCode = rx.accessCode) =>
    post(net, pharmacy, '/v1/dispensing', { prescriber: 'myongji', id: rx.id, accessCode });
  const close = (pharmacy: string, id: string) => post(net, pharmacy, `/v1/dispensing/myongji/${id}/close`, { medicationDispense: medicationDispense() });
  const entries = async (type: string, id: string) =>
    (await net.agents['myongji']!.ledger.byType(type as 'prescription.issued', 'myongji')).filter(
      (e) => (e.entry.body as { prescription?: string }).prescription === id,
    );

  it('issues, accepts with the token, dispenses with a verifiable signed receipt, and refuses a second dispense', async function () {
    const rx = await issuePrescription(net, 'myongji');
    expect(rx.accessCode).to.match(/^[0-9a-f]{64}$/);
    const status = await net.api('myongji', `/v1/prescriptions/${rx.id}`);
    const shown = (await status.json()) as Record<string, unknown>;
    expect(shown['status']).to.equal('ready');
    expect(JSON.stringify(shown)).not.to.contain(rx.accessCode);
    const accepted = await post(net, 'pharm-a', '/v1/dispensing', { token: rx.token });
    expect(accepted.status).to.equal(200);
    expect(accepted.body).to.include({ status: 'in-progress', prescriber: 'myongji', id: rx.id });
    expect((accepted.body['medicationRequest'] as Record<string, unknown>)['resourceType']).to.equal('MedicationRequest');
    expect(accepted.body).not.to.have.property('secret');
    const closed = await close('pharm-a', rx.id);
    expect(closed.status).to.equal(200);
    expect(closed.body['status']).to.equal('completed');
    // The receipt is the prescriber's Ed25519 JWS: verified here with the key its ledger genesis names, independently of the agent.
    const receipt = closed.body['receipt'] as string;
    const kid = decodeProtectedHeader(receipt).kid!;
    const key = await waitFor(
      () => {
        const keys = net.agents['pharm-a']!.ledger.feeds().includes('myongji') ? net.agents['pharm-a']!.ledger.feedKeys('myongji') : [];
        return keys.length > 0 ? keys : undefined;
      },
      20_000,
      'the prescriber feed at the pharmacy',
    );
    const verified = await Promise.any(key.map((k) => compactVerify(receipt, k)));
    const body = JSON.parse(Buffer.from(verified.payload).toString('utf8')) as Record<string, unknown>;
    expect(body).to.include({ prescription: rx.id, prescriber: 'myongji', pharmacy: 'pharm-a' });
    expect(kid).to.be.a('string');
    const owner = (await (await net.api('myongji', `/v1/prescriptions/${rx.id}`)).json()) as Record<string, unknown>;
    expect(owner).to.include({ status: 'completed', pharmacy: 'pharm-a', receipt });
    // A second dispense: by the same pharmacy (nothing held in progress any more), or accepted again by another.
    expect(code(await close('pharm-a', rx.id))).to.equal('ERR_RX_WRONG_STATE');
    const again = await accept('pharm-b', rx);
    expect([again.status, code(again)]).to.deep.equal([412, 'ERR_RX_WRONG_STATE']);
    for (const t of ['prescription.issued', 'prescription.accepted', 'prescription.completed']) expect(await entries(t, rx.id), t).to.have.length(1);
    const written: string[] = [];
    for await (const e of net.agents['myongji']!.ledger.entries('myongji')) written.push(e.bytes.toString('utf8'));
    expect(written.join('\n')).not.to.contain(rx.accessCode);
  });

  it('a prescription raced by two pharmacies, round after round, is accepted by one and dispensed exactly once', async function () {
    const rounds = 25;
    const outcomes = await Promise.all(
      Array.from({ length: rounds }, async () => {
        const rx = await issuePrescription(net, 'myongji');
        const [a, b] = await Promise.all([accept('pharm-a', rx), accept('pharm-b', rx)]);
        const winners = [a, b].filter((r) => r.status === 200);
        const losers = [a, b].filter((r) => r.status !== 200);
        expect(winners, `round ${rx.id}`).to.have.length(1);
        expect(losers.map((l) => [l.status, code(l)])).to.deep.equal([[409, 'ERR_RX_IN_PROGRESS']]);
        const winner = a.status === 200 ? 'pharm-a' : 'pharm-b';
        const loser = winner === 'pharm-a' ? 'pharm-b' : 'pharm-a';
        const [w, l] = await Promise.all([close(winner, rx.id), close(loser, rx.id)]);
        expect(w.status).to.equal(200);
        expect(code(l)).to.equal('ERR_NOT_FOUND');
        return rx.id;
      }),
    );
    for (const id of outcomes) {
      expect(await entries('prescription.accepted', id)).to.have.length(1);
      expect(await entries('prescription.completed', id)).to.have.length(1);
    }
  });

  it('answers every wrong-state transition with its code', async function () {
    const rx = await issuePrescription(net, 'myongji');
    expect(code(await accept('pharm-a', rx, 'ab'.repeat(32)))).to.equal('ERR_RX_FORBIDDEN');
    const wrong = await accept('pharm-a', rx, 'ab'.repeat(32));
    expect(wrong.status).to.equal(403);
    // A member the directory lists as a hospital is no pharmacy.
    const notPharmacy = await post(net, 'severance', '/v1/dispensing', { prescriber: 'myongji', id: rx.id, accessCode: rx.accessCode });
    expect([notPharmacy.status, code(notPharmacy)]).to.deep.equal([403, 'ERR_RX_NOT_PHARMACY']);
    expect((await accept('pharm-a', rx)).status).to.equal(200);
    // Accepted again by the holder (its answer lost): the same state, no second ledger entry.
    expect((await accept('pharm-a', rx)).status).to.equal(200);
    expect(await entries('prescription.accepted', rx.id)).to.have.length(1);
    const taken = await accept('pharm-b', rx);
    expect([taken.status, code(taken)]).to.deep.equal([409, 'ERR_RX_IN_PROGRESS']);
    const abortBusy = await post(net, 'myongji', `/v1/prescriptions/${rx.id}/abort`);
    expect([abortBusy.status, code(abortBusy)]).to.deep.equal([409, 'ERR_RX_IN_PROGRESS']);
    // $reject hands it back: ready again, and another pharmacy may take it; the first one's secret is dead.
    expect((await post(net, 'pharm-a', `/v1/dispensing/myongji/${rx.id}/reject`)).body['status']).to.equal('rejected');
    expect(((await (await net.api('myongji', `/v1/prescriptions/${rx.id}`)).json()) as { status: string }).status).to.equal('ready');
    expect(code(await close('pharm-a', rx.id))).to.equal('ERR_RX_WRONG_STATE');
    expect((await accept('pharm-b', rx)).status).to.equal(200);
    expect((await close('pharm-b', rx.id)).status).to.equal(200);
    const abortDone = await post(net, 'myongji', `/v1/prescriptions/${rx.id}/abort`);
    expect([abortDone.status, code(abortDone)]).to.deep.equal([412, 'ERR_RX_WRONG_STATE']);
    expect(await entries('prescription.rejected', rx.id)).to.have.length(1);
    const unknown = await post(net, 'pharm-a', '/v1/dispensing', {
      prescriber: 'myongji',
      id: '00000000-0000-4000-8000-000000000000',
      accessCode: rx.accessCode,
    });
    expect([unknown.status, code(unknown)]).to.deep.equal([404, 'ERR_NOT_FOUND']);
  });

  it('a cancelled prescription cannot be accepted (410), whether the prescriber or the patient cancelled it', async function () {
    const byPrescriber = await issuePrescription(net, 'myongji');
    const aborted = await post(net, 'myongji', `/v1/prescriptions/${byPrescriber.id}/abort`);
    expect(aborted.body).to.include({ status: 'cancelled', cancelledBy: 'prescriber' });
    const refused = await accept('pharm-a', byPrescriber);
    expect([refused.status, code(refused)]).to.deep.equal([410, 'ERR_RX_CANCELLED']);
    const again = await post(net, 'myongji', `/v1/prescriptions/${byPrescriber.id}/abort`);
    expect([again.status, code(again)]).to.deep.equal([410, 'ERR_RX_CANCELLED']);

    const byPatient = await issuePrescription(net, 'myongji');
    const wrong = await post(net, 'myongji', `/v1/prescriptions/${byPatient.id}/abort`, { accessCode: 'cd'.repeat(32) });
    expect([wrong.status, code(wrong)]).to.deep.equal([403, 'ERR_RX_FORBIDDEN']);
    expect((await post(net, 'myongji', `/v1/prescriptions/${byPatient.id}/abort`, { accessCode: byPatient.accessCode })).body).to.include({
      status: 'cancelled',
      cancelledBy: 'patient',
    });
    expect(code(await accept('pharm-b', byPatient))).to.equal('ERR_RX_CANCELLED');
    const cancelled = await entries('prescription.cancelled', byPatient.id);
    expect(cancelled.map((e) => e.entry.body)).to.deep.equal([{ prescription: byPatient.id, by: 'patient' }]);
  });

  it('refuses a MedicationRequest that is not FHIR R4, and a dispense that is not a MedicationDispense', async function () {
    const bad = await post(net, 'myongji', '/v1/prescriptions', {
      patientId: 'p-1',
      medicationRequest: { resourceType: 'MedicationRequest', status: 'bogus' },
    });
    expect(bad.status).to.equal(422);
    const rx = await issuePrescription(net, 'myongji');
    expect((await accept('pharm-a', rx)).status).to.equal(200);
    const notDispense = await post(net, 'pharm-a', `/v1/dispensing/myongji/${rx.id}/close`, { medicationDispense: { resourceType: 'Patient' } });
    expect([notDispense.status, code(notDispense)]).to.deep.equal([400, 'ERR_INVALID_FHIR']);
    expect(((await (await net.api('myongji', `/v1/prescriptions/${rx.id}`)).json()) as { status: string }).status).to.equal('in-progress');
  });

  it('loses nothing when both agents restart between accept and close', async function () {
    const rx = await issuePrescription(net, 'myongji');
    expect((await accept('pharm-a', rx)).status).to.equal(200);
    await net.agents['myongji']!.close();
    await net.agents['pharm-a']!.close();
    await net.startAgent('myongji');
    await net.startAgent('pharm-a');
    const held = (await (await net.api('pharm-a', `/v1/dispensing/myongji/${rx.id}`)).json()) as Record<string, unknown>;
    expect(held).to.include({ status: 'in-progress' });
    expect(held).not.to.have.property('secret');
    expect(((await (await net.api('myongji', `/v1/prescriptions/${rx.id}`)).json()) as { status: string }).status).to.equal('in-progress');
    const closed = await close('pharm-a', rx.id);
    expect([closed.status, closed.body['status']]).to.deep.equal([200, 'completed']);
    expect(await entries('prescription.completed', rx.id)).to.have.length(1);
  });

  it('appends at the next start the ledger entry of a transition a crash kept from the ledger', async function () {
    const rx = await issuePrescription(net, 'myongji');
    await net.agents['myongji']!.close();
    // What an abort writes to the state db, as if the agent died before its ledger append.
    const db = new StateDb(join(net.configs['myongji']!.dataDir, 'state'));
    await db.open();
    await new PrescriptionStore(db).update(rx.id, (t) => ({
      next: {
        ...t,
        status: 'cancelled',
        cancelledBy: 'prescriber',
        transitions: 2,
        last: { type: 'prescription.cancelled', body: { prescription: rx.id, by: 'prescriber' } },
      },
      result: undefined,
    }));
    await db.close();
    await (
      await net.startAgent('myongji')
    ).recovered;
    await waitFor(async () => (await entries('prescription.cancelled', rx.id)).length === 1, 20_000, 'the restored entry');
    expect(code(await accept('pharm-a', rx))).to.equal('ERR_RX_CANCELLED');
    // Nothing is appended twice on the start after that.
    await net.agents['myongji']!.close();
    await (
      await net.startAgent('myongji')
    ).recovered;
    await post(net, 'myongji', `/v1/prescriptions/${rx.id}/abort`);
    expect(await entries('prescription.cancelled', rx.id)).to.have.length(1);
    expect(await entries('prescription.issued', rx.id)).to.have.length(1);
  });

  it('hie-agent rx: issue with a QR code, accept from the scanned token, close, and a second close refused (exit 1, ERR_RX_WRONG_STATE)', async function () {
    const saved = process.env['HIE_AGENT_TOKEN'];
    process.env['HIE_AGENT_TOKEN'] = TEST_TOKEN;
    const cli = async (id: string, args: string[]): Promise<{ code: number; out: string; err: string }> => {
      let out = '';
      let err = '';
      const io: CliIo = { out: (t) => void (out += t), err: (t) => void (err += t), tty: false };
      const [group, sub, ...rest] = args;
      const code = await main([group!, sub!, '--api', `http://127.0.0.1:${net.agents[id]!.apiPort}`, ...rest], io).catch((e: Error & { code?: string }) => {
        err += `${e.code ?? ''} ${e.message}`;
        return 1;
      });
      return { code, out, err };
    };
    try {
      writeFileSync(join(tmp.dir, 'mr.json'), JSON.stringify(medicationRequest()));
      writeFileSync(join(tmp.dir, 'md.json'), JSON.stringify(medicationDispense()));
      const png = join(tmp.dir, 'rx.png');
      const issued = await cli('myongji', ['rx', 'issue', '--request', join(tmp.dir, 'mr.json'), '--patient', 'p-1', '--qr', png, '--json']);
      expect(issued.code, issued.err).to.equal(0);
      const t = JSON.parse(issued.out) as { id: string; token: string };
      const image = PNG.sync.read(readFileSync(png));
      const scanned = jsQR(new Uint8ClampedArray(image.data), image.width, image.height)!.data;
      expect(scanned).to.equal(t.token);
      const accepted = await cli('pharm-b', ['rx', 'accept', '--token', scanned]);
      expect(accepted.code, accepted.err).to.equal(0);
      expect(accepted.out).to.contain(`myongji/${t.id} in progress`);
      expect((await cli('myongji', ['rx', 'status', t.id])).out).to.contain('in-progress  at pharm-b');
      const closed = await cli('pharm-b', ['rx', 'close', 'myongji', t.id, '--dispense', join(tmp.dir, 'md.json')]);
      expect(closed.code, closed.err).to.equal(0);
      expect(closed.out).to.contain('dispensed at');
      const again = await cli('pharm-b', ['rx', 'close', 'myongji', t.id, '--dispense', join(tmp.dir, 'md.json')]);
      expect(again.code).to.equal(1);
      expect(again.err).to.contain('ERR_RX_WRONG_STATE');
      expect((await cli('myongji', ['rx', 'list', '--status', 'completed'])).out).to.contain(t.id);
      expect((await cli('pharm-b', ['rx', 'held'])).out).to.contain(`myongji/${t.id}  completed`);
    } finally {
      if (saved === undefined) delete process.env['HIE_AGENT_TOKEN'];
      else process.env['HIE_AGENT_TOKEN'] = saved;
    }
  });

  it('hie-agent rx reject (bin): the pharmacy hands it back, exit 0; ready again, another pharmacy accepts it, and the first can neither reject again nor close', async function () {
    const api = (id: string): string => `http://127.0.0.1:${net.agents[id]!.apiPort}`;
    const rx = await issuePrescription(net, 'myongji');
    expect((await accept('pharm-a', rx)).status).to.equal(200);
    const status = async (): Promise<{ status: string; pharmacy?: string }> =>
      (await (await net.api('myongji', `/v1/prescriptions/${rx.id}`)).json()) as { status: string; pharmacy?: string };
    expect(await status()).to.include({ status: 'in-progress', pharmacy: 'pharm-a' });

    const rejected = await hieAgent(['rx', 'reject', 'myongji', rx.id, '--api', api('pharm-a')]);
    expect(rejected.code, rejected.stderr).to.equal(0);
    expect(rejected.stdout).to.equal(`prescription myongji/${rx.id} handed back\n`);
    expect((await status()).status).to.equal('ready');
    expect(await entries('prescription.rejected', rx.id)).to.have.length(1);
    const held = await hieAgent(['rx', 'held', '--api', api('pharm-a')]);
    expect(held.stdout).to.contain(`myongji/${rx.id}  rejected`);

    const again = await hieAgent(['rx', 'reject', 'myongji', rx.id, '--api', api('pharm-a')]);
    expect(again.code).to.equal(1);
    expect(again.stderr.trim().split('\n')).to.have.length(1);
    expect(again.stderr).to.contain('[ERR_RX_WRONG_STATE]');
    expect(code(await close('pharm-a', rx.id))).to.equal('ERR_RX_WRONG_STATE');
    expect((await accept('pharm-b', rx)).status).to.equal(200);
    expect(await status()).to.include({ status: 'in-progress', pharmacy: 'pharm-b' });
    expect(await entries('prescription.rejected', rx.id)).to.have.length(1);

    const usage = await hieAgent(['rx', 'reject', rx.id, '--api', api('pharm-a')]);
    expect(usage.code).to.equal(2);
    expect(usage.stderr).to.contain('usage: hie-agent rx reject PRESCRIBER ID');
  });

  it('hie-agent rx abort (bin): the prescriber cancels a ready prescription, and so does the patient with the access code (a wrong one refused, exit 1); a pharmacy then gets 410; one in progress is not cancelled', async function () {
    const api = `http://127.0.0.1:${net.agents['myongji']!.apiPort}`;
    const view = async (id: string): Promise<{ status: string; cancelledBy?: string }> =>
      (await (await net.api('myongji', `/v1/prescriptions/${id}`)).json()) as { status: string; cancelledBy?: string };

    const byPrescriber = await issuePrescription(net, 'myongji');
    const aborted = await hieAgent(['rx', 'abort', byPrescriber.id, '--api', api]);
    expect(aborted.code, aborted.stderr).to.equal(0);
    expect(aborted.stdout).to.equal(`prescription ${byPrescriber.id} cancelled by the prescriber\n`);
    expect(await view(byPrescriber.id)).to.include({ status: 'cancelled', cancelledBy: 'prescriber' });
    expect((await entries('prescription.cancelled', byPrescriber.id)).map((e) => e.entry.body)).to.deep.equal([
      { prescription: byPrescriber.id, by: 'prescriber' },
    ]);
    const refused = await accept('pharm-a', byPrescriber);
    expect([refused.status, code(refused)]).to.deep.equal([410, 'ERR_RX_CANCELLED']);

    const byPatient = await issuePrescription(net, 'myongji');
    const wrong = await hieAgent(['rx', 'abort', byPatient.id, '--api', api, '--access-code', 'cd'.repeat(32)]);
    expect(wrong.code).to.equal(1);
    expect(wrong.stderr.trim().split('\n')).to.have.length(1);
    expect(wrong.stderr).to.contain('ERR_RX_FORBIDDEN');
    expect((await view(byPatient.id)).status).to.equal('ready');
    const forPatient = await hieAgent(['rx', 'abort', byPatient.id, '--api', api, '--access-code', byPatient.accessCode, '--json']);
    expect(forPatient.code, forPatient.stderr).to.equal(0);
    expect(JSON.parse(forPatient.stdout)).to.include({ id: byPatient.id, status: 'cancelled', cancelledBy: 'patient' });
    expect(await view(byPatient.id)).to.include({ status: 'cancelled', cancelledBy: 'patient' });
    expect(code(await accept('pharm-b', byPatient))).to.equal('ERR_RX_CANCELLED');

    // In progress at a pharmacy, it is the pharmacy's to hand back: the prescriber's abort is refused and changes nothing.
    const taken = await issuePrescription(net, 'myongji');
    expect((await accept('pharm-a', taken)).status).to.equal(200);
    const busy = await hieAgent(['rx', 'abort', taken.id, '--api', api]);
    expect(busy.code).to.equal(1);
    expect(busy.stderr).to.contain('ERR_RX_IN_PROGRESS');
    expect((await view(taken.id)).status).to.equal('in-progress');
    expect(await entries('prescription.cancelled', taken.id)).to.deep.equal([]);
  });

  it('keeps every ledger verifiable, with no access code or patient id in any entry', async function () {
    for (const id of ['myongji', 'pharm-a', 'pharm-b']) {
      const v = (await (await net.api(id, '/v1/ledger/verify?grace=0')).json()) as { ok: boolean; findings: unknown[] };
      expect(v.findings, id).to.deep.equal([]);
      expect(v.ok, id).to.equal(true);
    }
    const all: string[] = [];
    for await (const e of net.agents['myongji']!.ledger.entries('myongji')) all.push(e.bytes.toString('utf8'));
    const text = all.join('\n');
    expect(text).to.contain('prescription.completed');
    expect(text).not.to.contain('p-1');
    // The audit API shows each transition as a FHIR AuditEvent naming the prescription and the pharmacy.
    const audit = (await (await net.api('myongji', '/fhir/AuditEvent?subtype=prescription.completed&_count=1000')).json()) as {
      entry?: Array<{ resource: { agent: Array<{ who: { identifier: { value: string } } }>; entity: Array<{ what: { identifier: { system: string } } }> } }>;
    };
    expect(audit.entry?.length).to.be.greaterThan(25);
    const first = audit.entry![0]!.resource;
    expect(first.agent.map((a) => a.who.identifier.value)).to.include.oneOf(['pharm-a', 'pharm-b']);
    expect(first.entity.map((x) => x.what.identifier.system)).to.include('urn:hie:prescription');
    const list = (await (await net.api('myongji', '/v1/prescriptions?status=completed')).json()) as { prescriptions: unknown[] };
    expect(list.prescriptions.length).to.be.greaterThan(25);
  });
});
