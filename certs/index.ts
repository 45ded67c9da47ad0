/**
 * Federation PKI: the CA and its CLI, CRLs, and the identity helpers the relay
 * and the agents use to build mTLS contexts and name their peers.
 */
export { PkiError, type PkiErrorCode } from './errors.ts';
export { HOSPITAL_ID_PATTERN, AGENT_URI_PREFIX, isHospitalId, assertHospitalId, agentUri, classifyHost } from './names.ts';
export {
  CertificateAuthority,
  PKI_FILES,
  DEFAULT_CA_DAYS,
  DEFAULT_LEAF_DAYS,
  DEFAULT_CRL_DAYS,
  DEFAULT_DIRECTORY_NAME,
  type IndexEntry,
  type ListedCertificate,
  type CertStatus,
  type IssuedFiles,
  type SignedFiles,
} from './pki.ts';
export { createAgentCsr, parseAgentCsr, assertOrganization, MIN_CSR_KEY_BITS, MAX_CSR_BYTES, type AgentCsr } from './csr.ts';
export { requestEnrolment, requestRenewal, installCertificate, agentFiles, PENDING_KEY_SUFFIX } from './enrol.ts';
export { IdentityWatcher, DEFAULT_IDENTITY_POLL_MS, DEFAULT_IDENTITY_DEBOUNCE_MS, type IdentityWatcherEvents, type IdentityWatcherOptions } from './reload.ts';
export { certificateHealth, DEFAULT_CERT_WARN_DAYS, DEFAULT_CRL_WARN_FRACTION, type CertificateHealth, type HealthThresholds } from './health.ts';
export { tlsRefusal, presentedCertificate, refusalStatus, CERTIFICATE_REFUSALS, type CertificateRefusal, type PresentedCertificate } from './refusal.ts';
export { buildCrl, parseCrl, CRL_REASONS, isCrlReason, type CrlReason, type ParsedCrl, type RevokedEntry } from './crl.ts';
export { normalizeSerial, fingerprint256 } from './x509.ts';
export {
  loadIdentity,
  serverTlsOptions,
  clientTlsOptions,
  secureContextOptions,
  splitPemCertificates,
  hospitalIdFromCertificate,
  peerHospitalId,
  CrlWatcher,
  TLS_MIN_VERSION,
  TLS_CIPHERS,
  type Identity,
  type IdentityPaths,
} from './identity.ts';
export { writeFileAtomic, backupFile, backupStamp } from './fsutil.ts';
export {
  X509_TIME_RESOLUTION_MS,
  x509Second,
  lastMsOfSecond,
  lastMsBeforeRevocation,
  signedAfterRevocation,
  revokedForUseAt,
  withinCertificateValidity,
} from './validity.ts';
export {
  createKeyBundle,
  verifyKeyBundle,
  generateAgentKeys,
  publicJwk,
  jwkThumbprint,
  jcs,
  DEFAULT_BUNDLE_DAYS,
  KEY_BUNDLE_VERSION,
  type KeyBundle,
  type VerifiedKeyBundle,
  type VerifyBundleOptions,
  type AgentKeys,
  type OkpPublicJwk,
} from './keybundle.ts';
export {
  DIRECTORY_VERSION,
  DIRECTORY_JWS_TYPE,
  MAX_DIRECTORY_BYTES,
  MAX_DIRECTORY_MEMBERS,
  MEMBER_ROLES,
  MEMBER_STATUSES,
  signDirectory,
  verifyDirectory,
  memberRefusal,
  type Directory,
  type Member,
  type MemberRole,
  type MemberStatus,
  type MemberRefusal,
  type VerifiedDirectory,
  type VerifyDirectoryOptions,
} from './directory.ts';
export { DirectoryStore, DIRECTORY_FILES } from './directory-store.ts';
export { DIRECTORY_SIGNING_EKU } from './x509.ts';
