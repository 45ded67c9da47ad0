import { expect } from 'chai';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { parsePatientId } from '../../../hospital-agent/consent/patient.ts';
import { checkDicomPatient, DICOM_HEADER_BYTES, dicomPatientName, peekDicomPatient, readDicomPatient } from '../../../hospital-agent/dicom/index.ts';
import { AgentError } from '../../../hospital-agent/errors.ts';
import { dicomFile } from '../../support/dicom.ts';

const MRN = 'urn:oid:1.2.3';

/** A stream of `bytes` in chunks of `size`, counting how many bytes were read from it. */
function chunked(bytes: Buffer, size = 64 * 1024): Readable & { pulled: () => number } {
  let at = 0;
  const s = new Readable({
    highWaterMark: size,
    read() {
      if (at >= bytes.length) return void this.push(null);
      this.push(bytes.subarray(at, at + size));
      at += size;
    },
  }) as Readable & { pulled: () => number };
  s.pulled = () => Math.min(at, bytes.length);
  return s;
}

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as AgentError).code;
  }
  return undefined;
};

describe('DICOM patient', function () {
  this.timeout(30_000);

  describe('readDicomPatient', function () {
    it('reads Patient ID and Issuer of Patient ID from a Part 10 file dcmjs wrote', function () {
      expect(readDicomPatient(dicomFile({ patientId: 'MRN-1', issuer: 'HOSP' }), true)).to.deep.equal({ id: 'MRN-1', issuer: 'HOSP' });
      expect(readDicomPatient(dicomFile({ patientId: 'MRN-2' }), true)).to.deep.equal({ id: 'MRN-2' });
    });

    it('refuses a body that is not Part 10, and a file without Patient ID, with ERR_DICOM_INVALID', function () {
      expect(code(() => readDicomPatient(Buffer.from('{"resourceType":"Bundle"}'), true))).to.equal('ERR_DICOM_INVALID');
      expect(code(() => readDicomPatient(dicomFile({}), true))).to.equal('ERR_DICOM_INVALID');
    });

    it('refuses a file whose Patient ID is not within the first DICOM_HEADER_BYTES, saying so', function () {
      const far = dicomFile({ patientId: 'MRN-1', bytesBeforePatient: DICOM_HEADER_BYTES + 1024 });
      let err: AgentError | undefined;
      try {
        readDicomPatient(far.subarray(0, DICOM_HEADER_BYTES), false);
      } catch (e) {
        err = e as AgentError;
      }
      expect(err?.code).to.equal('ERR_DICOM_INVALID');
      expect(err?.message).to.contain(`first ${DICOM_HEADER_BYTES} bytes`);
      // Whole in memory (a small body stored inline) it is read no further: the limit is the same.
      expect(code(() => readDicomPatient(far, true))).to.equal('ERR_DICOM_INVALID');
      const near = dicomFile({ patientId: 'MRN-1', bytesBeforePatient: DICOM_HEADER_BYTES - 4096 });
      expect(readDicomPatient(near.subarray(0, DICOM_HEADER_BYTES), false).id).to.equal('MRN-1');
    });
  });

  describe('peekDicomPatient', function () {
    it('reads no more than the header prefix of a large study, and hands back every byte in order', async function () {
      const study = dicomFile({ patientId: 'MRN-1', pixelBytes: 4 * DICOM_HEADER_BYTES });
      const body = chunked(study);
      const { patient, body: again } = await peekDicomPatient(body);
      expect(patient.id).to.equal('MRN-1');
      expect(body.pulled()).to.be.at.most(DICOM_HEADER_BYTES + 2 * 64 * 1024);
      expect(Buffer.from(await text(again), 'latin1').length).to.be.greaterThan(0);
    });

    it('passes the whole body through unchanged', async function () {
      const study = dicomFile({ patientId: 'MRN-1', pixelBytes: 3 * DICOM_HEADER_BYTES });
      const { body } = await peekDicomPatient(chunked(study));
      const parts: Buffer[] = [];
      for await (const c of body) parts.push(c as Buffer);
      expect(Buffer.concat(parts).equals(study)).to.equal(true);
      const small = dicomFile({ patientId: 'MRN-1' });
      const out: Buffer[] = [];
      for await (const c of (await peekDicomPatient(chunked(small, 100))).body) out.push(c as Buffer);
      expect(Buffer.concat(out).equals(small)).to.equal(true);
    });
  });

  describe('the canonical patient of a DICOM header', function () {
    const naming = { identifierSystem: MRN, dicomIssuer: 'MYONGJI' };

    it('reads no issuer, or the hospital own, as a value of patients.identifierSystem; an OID issuer as urn:oid', function () {
      expect(dicomPatientName({ id: 'MRN-1' }, naming)).to.deep.equal({ system: MRN, value: 'MRN-1' });
      expect(dicomPatientName({ id: 'MRN-1', issuer: 'MYONGJI' }, naming)).to.deep.equal({ system: MRN, value: 'MRN-1' });
      expect(dicomPatientName({ id: 'MRN-1', issuer: '1.2.840.99' }, naming)).to.deep.equal({ system: 'urn:oid:1.2.840.99', value: 'MRN-1' });
      expect(dicomPatientName({ id: 'MRN-1', issuer: 'OTHER' }, naming)).to.deep.equal({ system: 'OTHER', value: 'MRN-1' });
    });

    it('accepts the consented patient and refuses another with ERR_DICOM_PATIENT_MISMATCH, naming no value', function () {
      const consented = parsePatientId('MRN-1', MRN);
      expect(code(() => checkDicomPatient({ id: 'MRN-1' }, consented, naming))).to.equal(undefined);
      expect(code(() => checkDicomPatient({ id: 'MRN-1' }, parsePatientId(`${MRN}|MRN-1`, MRN), naming))).to.equal(undefined);
      for (const other of [{ id: 'MRN-2' }, { id: 'MRN-1', issuer: 'OTHER' }, { id: 'MRN-1', issuer: '1.2.840.99' }]) {
        let err: AgentError | undefined;
        try {
          checkDicomPatient(other, consented, naming);
        } catch (e) {
          err = e as AgentError;
        }
        expect([err?.code, err?.status], JSON.stringify(other)).to.deep.equal(['ERR_DICOM_PATIENT_MISMATCH', 422]);
        expect(err?.message).not.to.match(/MRN|OTHER|1\.2\.840/);
      }
    });
  });
});
