// dcmjs ships no type declarations: the few calls made here are typed below.
// @ts-expect-error -- untyped module
import dcmjs from 'dcmjs';

interface DcmjsData {
  DicomMetaDictionary: { denaturalizeDataset(d: Record<string, unknown>): Record<string, unknown>; uid(): string };
  DicomDict: new (meta: Record<string, unknown>) => { dict: Record<string, unknown>; write(): ArrayBuffer };
}
const { DicomMetaDictionary, DicomDict } = (dcmjs as { data: DcmjsData }).data;
// dcmjs logs every element it writes without a dictionary VR (the private test element) as a warning.
(dcmjs as { log?: { setLevel?: (level: string) => void } }).log?.setLevel?.('error');

/** Secondary Capture Image Storage. */
const SC_IMAGE = '1.2.840.10008.5.1.4.1.1.7';
const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';

/**
 * A DICOM Part 10 file built with dcmjs: a secondary-capture image with the
 * given Patient ID (and Issuer of Patient ID), and `pixelBytes` of pixel
 * data (a square 8-bit image, so a large study can be made);
 * `bytesBeforePatient` of an earlier element push the Patient ID that far in.
 */
export function dicomFile(o: { patientId?: string; issuer?: string; pixelBytes?: number; bytesBeforePatient?: number } = {}): Buffer {
  const uid = DicomMetaDictionary.uid();
  const side = Math.max(2, Math.ceil(Math.sqrt(o.pixelBytes ?? 64)));
  const meta = new DicomDict(
    DicomMetaDictionary.denaturalizeDataset({
      FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
      MediaStorageSOPClassUID: SC_IMAGE,
      MediaStorageSOPInstanceUID: uid,
      TransferSyntaxUID: EXPLICIT_VR_LITTLE_ENDIAN,
      ImplementationClassUID: '2.25.1',
    }),
  );
  meta.dict = DicomMetaDictionary.denaturalizeDataset({
    SOPClassUID: SC_IMAGE,
    SOPInstanceUID: uid,
    PatientName: 'Synthetic^Test',
    ...(o.patientId !== undefined ? { PatientID: o.patientId } : {}),
    ...(o.issuer !== undefined ? { IssuerOfPatientID: o.issuer } : {}),
    Modality: 'OT',
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    Rows: side,
    Columns: side,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    _vrMap: { PixelData: 'OB' },
    PixelData: [new Uint8Array(side * side).fill(0x5a).buffer],
  });
  if (o.bytesBeforePatient) {
    // A private element (0009,1010, OB) before the patient module pushes Patient ID that far into the file.
    meta.dict['00090010'] = { vr: 'LO', Value: ['HIE TEST'] };
    meta.dict['00091010'] = { vr: 'OB', Value: [new Uint8Array(o.bytesBeforePatient).buffer] };
  }
  return Buffer.from(meta.write());
}
