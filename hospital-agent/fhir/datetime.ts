/** Strict FHIR `dateTime` / RFC 3339 parsing (common/datetime.ts, shared with the ledger's CLI). */
export { FHIR_DATE_TIME_RULE, parseFhirDateTime, isFhirDateTime, type DateBound } from '../../common/datetime.ts';
