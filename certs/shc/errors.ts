/** Error codes of SMART Health Card encoding, issuance and the issuer directory. */
export type ShcErrorCode =
  | 'ERR_SHC_MALFORMED'
  | 'ERR_SHC_TOO_LARGE'
  | 'ERR_SHC_QR_INVALID'
  | 'ERR_SHC_BUNDLE_INVALID'
  | 'ERR_SHC_PURPOSE_UNKNOWN'
  | 'ERR_SHC_ISSUERS_INVALID'
  | 'ERR_SHC_ISSUERS_SIGNATURE'
  | 'ERR_SHC_ISSUERS_UNTRUSTED'
  | 'ERR_SHC_KEY_BINDING_INVALID';

/** Base class for every error of the SMART Health Card part; `code` is stable and documented. */
export class ShcError extends Error {
  readonly code: ShcErrorCode;

  constructor(code: ShcErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = this.constructor.name;
  }
}
