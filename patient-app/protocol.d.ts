// Types of protocol.js (the patient channel's formats and crypto, shared by the browser app and the agent).
export interface EcPublicJwk {
  crv: 'P-256';
  kty: 'EC';
  x: string;
  y: string;
}
export interface JwsHeader {
  alg: 'ES256';
  typ?: string;
  kid?: string;
  [k: string]: unknown;
}
export declare const PATIENT_PROTOCOL: string;
export declare const CONSENT_JWS_TYPE: string;
export declare const POP_JWS_TYPE: string;
export declare const CHANNEL_BYTES: number;
export declare function b64u(bytes: Uint8Array | ArrayBuffer): string;
export declare function unb64u(text: string): Uint8Array;
export declare function jcs(value: unknown): string;
export declare function publicEcJwk(jwk: unknown): EcPublicJwk;
export declare function jwkThumbprint(jwk: unknown): Promise<string>;
export declare function sha256b64u(data: string | Uint8Array): Promise<string>;
export declare function generateDeviceKeys(): Promise<{ sign: CryptoKeyPair; ecdh: CryptoKeyPair }>;
export declare function exportPublic(publicKey: CryptoKey): Promise<EcPublicJwk>;
export declare function signJws(privateKey: CryptoKey, header: Record<string, unknown>, payload: Uint8Array, detached?: boolean): Promise<string>;
export declare function verifyJws(jws: string, jwk: unknown, payload?: Uint8Array): Promise<{ header: JwsHeader; payload: Uint8Array }>;
export declare function signConsent(signKey: CryptoKey, consent: unknown, kid: string): Promise<string>;
export declare function verifyConsentSignature(jws: string, jwk: unknown, consent: unknown): Promise<JwsHeader>;
export declare function signPop(signKey: CryptoKey, channel: string, now?: number): Promise<string>;
export declare function verifyPop(pop: string, jwk: unknown, channel: string): Promise<number>;
export interface PatientSession {
  seal(message: unknown): Promise<Uint8Array>;
  open(frame: Uint8Array | ArrayBuffer): Promise<unknown>;
}
export declare function openPatientSession(agentJwk: unknown, channel: string): Promise<{ hello: Uint8Array; session: PatientSession; epk: EcPublicJwk }>;
export declare function acceptPatientSession(
  agentPrivateKey: CryptoKey,
  channel: string,
  hello: Uint8Array | ArrayBuffer,
): Promise<{ session: PatientSession; epk: EcPublicJwk }>;
export declare function sessionAuthPayload(channel: string, epk: EcPublicJwk): Promise<Uint8Array>;
