import { expect } from 'chai';
import jsQRModule from 'jsqr';
import { PNG } from 'pngjs';
import {
  checkAbort,
  checkAccept,
  checkHeld,
  matchesHash,
  newAccessCode,
  parsePrescriptionToken,
  prescriptionToken,
  sha256Hex,
  TASK_STATES,
  tokenPng,
  type PrescriptionTask,
  type TaskState,
} from '../../../hospital-agent/prescriptions/index.ts';

// jsqr ships CommonJS with a default export the ESM interop wraps once more.
const jsQR = (jsQRModule as unknown as { default: typeof jsQRModule.default }).default ?? jsQRModule;

const task = (status: TaskState, pharmacy?: string): PrescriptionTask => ({
  id: 'rx-00000001',
  status,
  accessCodeHash: sha256Hex('a'.repeat(64)),
  patient: '0'.repeat(64),
  medicationRequest: 'jws',
  medicationRequestHash: 'h',
  createdAt: '2026-12-01T00:00:00.000Z',
  updatedAt: '2026-12-01T00:00:00.000Z',
  ...(pharmacy ? { pharmacy } : {}),
});
const outcome = (r: { code: string } | string): string => (typeof r === 'string' ? r : r.code);

describe('prescription Task state machine', function () {
  it('$accept: 403 for a wrong code before anything else, then 410 cancelled, 409 in progress, 412 completed, ok when ready', function () {
    const expected: Record<TaskState, string> = {
      ready: 'ok',
      'in-progress': 'ERR_RX_IN_PROGRESS',
      completed: 'ERR_RX_WRONG_STATE',
      cancelled: 'ERR_RX_CANCELLED',
    };
    for (const s of TASK_STATES) {
      expect(outcome(checkAccept(task(s, 'p'), { codeMatches: true, holder: false })), s).to.equal(expected[s]);
      expect(outcome(checkAccept(task(s, 'p'), { codeMatches: false, holder: true })), s).to.equal('ERR_RX_FORBIDDEN');
    }
    expect(checkAccept(task('in-progress', 'p'), { codeMatches: true, holder: true })).to.equal('again');
  });

  it('$reject and $close: only in progress, by the holder with its secret', function () {
    const expected: Record<TaskState, string> = {
      ready: 'ERR_RX_WRONG_STATE',
      'in-progress': 'ok',
      completed: 'ERR_RX_WRONG_STATE',
      cancelled: 'ERR_RX_CANCELLED',
    };
    for (const s of TASK_STATES) expect(outcome(checkHeld(task(s, 'p'), { holder: true, secretMatches: true })), s).to.equal(expected[s]);
    expect(outcome(checkHeld(task('in-progress', 'p'), { holder: false, secretMatches: true }))).to.equal('ERR_RX_FORBIDDEN');
    expect(outcome(checkHeld(task('in-progress', 'p'), { holder: true, secretMatches: false }))).to.equal('ERR_RX_FORBIDDEN');
  });

  it('$abort: the prescriber or the patient (with the code) cancels a ready Task only', function () {
    const expected: Record<TaskState, string> = {
      ready: 'ok',
      'in-progress': 'ERR_RX_IN_PROGRESS',
      completed: 'ERR_RX_WRONG_STATE',
      cancelled: 'ERR_RX_CANCELLED',
    };
    for (const s of TASK_STATES) {
      expect(outcome(checkAbort(task(s), 'prescriber', {})), s).to.equal(expected[s]);
      expect(outcome(checkAbort(task(s), 'patient', { codeMatches: true })), s).to.equal(expected[s]);
      expect(outcome(checkAbort(task(s), 'patient', { codeMatches: false })), s).to.equal('ERR_RX_FORBIDDEN');
    }
  });
});

describe('prescription access code and token', function () {
  it('draws 256-bit codes and matches them against their hash only', function () {
    const a = newAccessCode();
    expect(a).to.match(/^[0-9a-f]{64}$/);
    expect(newAccessCode()).not.to.equal(a);
    expect(matchesHash(a, sha256Hex(a))).to.equal(true);
    expect(matchesHash(newAccessCode(), sha256Hex(a))).to.equal(false);
    expect(matchesHash(undefined, sha256Hex(a))).to.equal(false);
  });

  it('reads back the token from its QR code PNG (decoded by jsQR)', async function () {
    const code = newAccessCode();
    const token = prescriptionToken('myongji', '3b2f1c9e-8a7d-4e6f-9b1a-2c3d4e5f6a7b', code);
    const png = PNG.sync.read(await tokenPng(token));
    const read = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
    expect(read?.data).to.equal(token);
    expect(parsePrescriptionToken(read!.data)).to.deep.equal({ prescriber: 'myongji', task: '3b2f1c9e-8a7d-4e6f-9b1a-2c3d4e5f6a7b', accessCode: code });
    expect(parsePrescriptionToken('{"urls":["myongji/Task/x/$accept?ac=zz"]}')).to.equal(undefined);
    expect(parsePrescriptionToken('not json')).to.equal(undefined);
  });
});
