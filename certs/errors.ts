/** Error codes raised by the federation PKI and identity helpers. */
export type PkiErrorCode =
  | 'ERR_PKI_INVALID_ID'
  | 'ERR_PKI_INVALID_HOST'
  | 'ERR_PKI_INVALID_ARGUMENT'
  | 'ERR_PKI_NO_CA'
  | 'ERR_PKI_CA_EXISTS'
  | 'ERR_PKI_DUPLICATE_ID'
  | 'ERR_PKI_OUT_EXISTS'
  | 'ERR_PKI_NOT_FOUND'
  | 'ERR_PKI_ALREADY_REVOKED'
  | 'ERR_PKI_KEY_UNREADABLE'
  | 'ERR_PKI_BAD_PASSPHRASE'
  | 'ERR_PKI_PASSPHRASE_REQUIRED'
  | 'ERR_PKI_INDEX_CORRUPT'
  | 'ERR_PKI_LOCKED'
  | 'ERR_PKI_CERT_INVALID'
  | 'ERR_PKI_CRL_INVALID'
  | 'ERR_PKI_PEER_UNAUTHORIZED'
  | 'ERR_PKI_PEER_NOT_AGENT'
  | 'ERR_PKI_BUNDLE_INVALID'
  | 'ERR_PKI_BUNDLE_SIGNATURE'
  | 'ERR_PKI_BUNDLE_UNTRUSTED'
  | 'ERR_PKI_BUNDLE_ID_MISMATCH'
  | 'ERR_PKI_BUNDLE_EXPIRED'
  | 'ERR_PKI_BUNDLE_REVOKED'
  | 'ERR_PKI_CSR_INVALID'
  | 'ERR_PKI_CERT_MISMATCH'
  | 'ERR_PKI_DIRECTORY_INVALID'
  | 'ERR_PKI_DIRECTORY_SIGNATURE'
  | 'ERR_PKI_DIRECTORY_UNTRUSTED';

/** Base class for every error of the certs part; `code` is stable and documented. */
export class PkiError extends Error {
  readonly code: PkiErrorCode;

  constructor(code: PkiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = this.constructor.name;
  }
}
