/**
 * SMART Health Cards (framework 1.x): the card format, the `shc:/` QR
 * encoding, the per-purpose FHIR templates, the federation's signed issuer
 * directory, and verification. Shared by the agent (issuance), `hie-certs
 * verify-card` and the relay (well-known URLs).
 */
export { ShcError, type ShcErrorCode } from './errors.ts';
export {
  HEALTH_CARD_TYPE,
  FHIR_VERSION,
  MAX_SINGLE_QR_JWS,
  MAX_CARD_JWS_BYTES,
  MAX_INFLATED_BYTES,
  issuerJwkSchema,
  cardPayloadSchema,
  issuerJwk,
  jwkThumbprint,
  signCard,
  decodeCard,
  cardSignatureValid,
  type IssuerJwk,
  type CardPayload,
  type DecodedCard,
} from './card.ts';
export { MAX_CHUNK_JWS, chunkJws, toNumeric, qrTexts, jwsFromQr } from './qr.ts';
export {
  CARD_PURPOSES,
  CERTIFICATE_CODE_SYSTEM,
  PURPOSE_TYPE_PREFIX,
  PURPOSE_SHOWS,
  cardBundle,
  cardTypes,
  type CardPurpose,
  type CardBundleInput,
} from './purposes.ts';
export {
  ISSUERS_JWS_TYPE,
  KEY_BINDING_JWS_TYPE,
  ISSUERS_VERSION,
  MAX_ISSUERS_BYTES,
  ISSUER_PATH,
  cardCrlSchema,
  issuerDirectorySchema,
  issuerUrl,
  signIssuerDirectory,
  verifyIssuerDirectory,
  signKeyBinding,
  verifyKeyBinding,
  buildIssuerDirectory,
  type CardCrl,
  type Issuer,
  type IssuerDirectory,
  type VerifiedIssuerDirectory,
  type KeyBinding,
  type IssuerDirectoryInput,
  type TrustOptions,
} from './issuers.ts';
export {
  CARD_VERDICTS,
  DEFAULT_BACKDATE_TOLERANCE_MS,
  cardHash,
  verifyCard,
  describeCard,
  type CardVerdict,
  type CardCheck,
  type VerifyCardOptions,
  type ProvedIssuance,
} from './verify.ts';
export { cardQrPng, cardQrSvg, cardHtml } from './render.ts';
export { readQrPng, MAX_QR_IMAGE_BYTES } from './read.ts';
