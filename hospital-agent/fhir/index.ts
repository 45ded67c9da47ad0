/** FHIR R4 and DICOM content checks: what the agent reads from and checks in a body before it may leave or be delivered. */
export { validateFhirBundle, BUNDLE_TYPES, DEFAULT_MAX_FHIR_BYTES, type BundleSummary } from './bundle.ts';
export { validateR4, MAX_VALIDATION_ISSUES, type ValidationIssue, type ValidationIssueCode } from './validate.ts';
export { loadR4Definitions, r4DefinitionsLoaded, valueSetCodes, R4_DEFINITION_FILES, R4_TERMINOLOGY_FILE } from './definitions.ts';
export { bundlePatientIssues, type PatientIssue, type PatientIssueCode } from './patients.ts';
export { parseFhirDateTime, isFhirDateTime, FHIR_DATE_TIME_RULE, type DateBound } from './datetime.ts';
export { fhirValidator, DEFAULT_VALIDATION_THREADS, FhirValidationPool, mainThreadValidator, type BundleCheck, type FhirValidator } from './validation-pool.ts';
