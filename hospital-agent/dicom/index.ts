/** DICOM Part 10 content checks: the patient a file is about, read from its header without buffering the study. */
export { DICOM_HEADER_BYTES, peekDicomPatient, readDicomPatient, type DicomPatient } from './header.ts';
export { checkDicomPatient, dicomPatientName, samePatient, type DicomNaming } from './patient.ts';
