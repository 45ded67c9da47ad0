/**
 * Issuance of SMART Health Cards by the agent: the hospital's ES256 key bound
 * to its federation certificate, the issuer, and the files a card is handed
 * out as (docs/certificates.md).
 */
export { loadIssuerKey, ISSUER_KEY_FILES, type IssuerKey } from './keys.ts';
export { CertificateIssuer, writeCardFiles, CARD_FILES, type IssueRequest, type IssuedCard, type CertificateIssuerOptions } from './issuer.ts';
