// One job: the patient channel's formats and crypto, in WebCrypto only, so the browser app and the Node agent run the same code.
// Device keys are ECDSA/ECDH P-256 (non-extractable in the browser); signatures are JWS ES256 (RFC 7515, 7518);
// canonical JSON is RFC 8785 (JCS); key names are RFC 7638 thumbprints; the session is ECDH-ES + HKDF-SHA256 + AES-256-GCM.

/** Protocol version in every hello. */
export const PATIENT_PROTOCOL = 'hie-patient/1';
/** JWS `typ` of a consent (or revocation) signed by the patient. */
export const CONSENT_JWS_TYPE = 'hie-patient-consent+jws';
/** JWS `typ` of the proof of possession a device shows the relay. */
export const POP_JWS_TYPE = 'hie-patient-pop+jws';
/** Bytes of a channel id (random, pseudonymous). */
export const CHANNEL_BYTES = 16;

const subtle = globalThis.crypto.subtle;
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** Base64url without padding (RFC 4648 section 5). */
export function b64u(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Decodes base64url; throws TypeError on anything else. */
export function unb64u(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) throw new TypeError('not base64url');
  const s = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4));
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** RFC 8785 canonical JSON of a JSON value (keys sorted by UTF-16 code units, ECMAScript number form). */
export function jcs(value) {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('JCS cannot represent a non-finite number');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map((v) => jcs(v)).join(',')}]`;
  if (typeof value === 'object') {
    const keys = Object.keys(value)
      .filter((k) => value[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${jcs(value[k])}`).join(',')}}`;
  }
  throw new TypeError(`JCS cannot represent a ${typeof value}`);
}

/** The public members of a P-256 JWK, nothing else (what is sent and thumbprinted). */
export function publicEcJwk(jwk) {
  if (!jwk || jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string') throw new TypeError('not a P-256 public JWK');
  if (unb64u(jwk.x).length !== 32 || unb64u(jwk.y).length !== 32) throw new TypeError('not a P-256 public JWK');
  return { crv: 'P-256', kty: 'EC', x: jwk.x, y: jwk.y };
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of a P-256 public key. */
export async function jwkThumbprint(jwk) {
  const p = publicEcJwk(jwk);
  return b64u(await subtle.digest('SHA-256', enc.encode(`{"crv":"${p.crv}","kty":"${p.kty}","x":"${p.x}","y":"${p.y}"}`)));
}

/** SHA-256 of bytes or a string, base64url. */
export async function sha256b64u(data) {
  return b64u(await subtle.digest('SHA-256', typeof data === 'string' ? enc.encode(data) : data));
}

/** A fresh device key pair set: ECDSA (signing) and ECDH (key agreement), private halves non-extractable. */
export async function generateDeviceKeys() {
  const sign = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  const ecdh = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  return { sign, ecdh };
}

/** Exports the public half of a key as a minimal P-256 JWK. */
export async function exportPublic(publicKey) {
  return publicEcJwk(await subtle.exportKey('jwk', publicKey));
}

async function importVerifyKey(jwk) {
  return subtle.importKey('jwk', { ...publicEcJwk(jwk), ext: true }, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
}

async function importEcdhPublic(jwk) {
  return subtle.importKey('jwk', { ...publicEcJwk(jwk), ext: true }, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
}

function decodeJson(bytes, what) {
  try {
    return JSON.parse(dec.decode(bytes));
  } catch {
    throw new TypeError(`${what} is not JSON`);
  }
}

/** An ES256 compact JWS over `payload` (bytes); `detached` leaves the payload out (RFC 7515 appendix F). */
export async function signJws(privateKey, header, payload, detached = false) {
  const h = b64u(enc.encode(JSON.stringify({ ...header, alg: 'ES256' })));
  const p = b64u(payload);
  const sig = await subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, privateKey, enc.encode(`${h}.${p}`));
  return `${h}.${detached ? '' : p}.${b64u(sig)}`;
}

/**
 * Verifies an ES256 compact JWS with `jwk`; `payload` re-attaches a detached one. Returns { header, payload } or
 * throws TypeError naming what is wrong (never the payload).
 */
export async function verifyJws(jws, jwk, payload) {
  if (typeof jws !== 'string' || jws.length > 65536) throw new TypeError('not a compact JWS');
  const parts = jws.split('.');
  if (parts.length !== 3) throw new TypeError('not a compact JWS');
  const [h, p, s] = parts;
  const header = decodeJson(unb64u(h), 'the JWS header');
  if (header.alg !== 'ES256') throw new TypeError('the JWS is not ES256');
  if (header.crit !== undefined) throw new TypeError('the JWS names critical header parameters');
  const body = payload !== undefined ? b64u(payload) : p;
  if (payload !== undefined && p !== '') throw new TypeError('the JWS is not detached');
  const sig = unb64u(s);
  if (sig.length !== 64) throw new TypeError('the JWS signature is not an ES256 signature');
  const ok = await subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, await importVerifyKey(jwk), sig, enc.encode(`${h}.${body}`));
  if (!ok) throw new TypeError('the JWS signature does not verify');
  return { header, payload: payload ?? unb64u(p) };
}

/**
 * The patient's signature over a FHIR Consent: a detached ES256 JWS over its JCS bytes, the signing key's
 * thumbprint as `kid`. A revocation is the same Consent with status `inactive`, signed the same way.
 */
export async function signConsent(signKey, consent, kid) {
  return signJws(signKey, { typ: CONSENT_JWS_TYPE, kid }, enc.encode(jcs(consent)), true);
}

/** Checks a patient's consent signature against the device key enrolled for that patient; throws TypeError if it fails. */
export async function verifyConsentSignature(jws, jwk, consent) {
  const { header } = await verifyJws(jws, jwk, enc.encode(jcs(consent)));
  if (header.typ !== CONSENT_JWS_TYPE) throw new TypeError('the JWS is not a patient consent signature');
  if (header.kid !== (await jwkThumbprint(jwk))) throw new TypeError('the consent signature names another key');
  return header;
}

/** The proof of possession the relay checks: the channel and a time, signed by the device key the credential names. */
export async function signPop(signKey, channel, now = Date.now()) {
  return signJws(signKey, { typ: POP_JWS_TYPE }, enc.encode(JSON.stringify({ ch: channel, iat: Math.floor(now / 1000) })));
}

/** Checks a proof of possession: returns its `iat` (seconds) once the signature and channel check out. */
export async function verifyPop(pop, jwk, channel) {
  const { header, payload } = await verifyJws(pop, jwk);
  if (header.typ !== POP_JWS_TYPE) throw new TypeError('not a proof of possession');
  const claims = decodeJson(payload, 'the proof of possession');
  if (claims.ch !== channel || !Number.isSafeInteger(claims.iat)) throw new TypeError('the proof of possession is for another channel');
  return claims.iat;
}

async function sessionKey(privateKey, publicJwk, channel, epkJwk) {
  const bits = await subtle.deriveBits({ name: 'ECDH', public: await importEcdhPublic(publicJwk) }, privateKey, 256);
  const ikm = await subtle.importKey('raw', bits, 'HKDF', false, ['deriveKey']);
  const info = enc.encode(`${PATIENT_PROTOCOL} ${channel} ${await jwkThumbprint(epkJwk)}`);
  return subtle.deriveKey({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(32), info }, ikm, { name: 'AES-GCM', length: 256 }, false, [
    'encrypt',
    'decrypt',
  ]);
}

/**
 * One direction-aware end-to-end session: AES-256-GCM with a 12-byte nonce = direction (1 byte) + counter (11 bytes,
 * only the last 4 used); each side refuses a counter that does not increase (replay, reordering), and the channel id is
 * additional data (no splicing between channels).
 */
class Session {
  constructor(key, channel, role) {
    this.key = key;
    this.aad = enc.encode(channel);
    this.out = role === 'patient' ? 0 : 1;
    this.sent = 0;
    this.received = 0;
  }
  async seal(message) {
    const iv = new Uint8Array(12);
    iv[0] = this.out;
    new DataView(iv.buffer).setUint32(8, ++this.sent);
    const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: this.aad }, this.key, enc.encode(JSON.stringify(message))));
    const frame = new Uint8Array(12 + ct.length);
    frame.set(iv);
    frame.set(ct, 12);
    return frame;
  }
  async open(frame) {
    const bytes = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
    if (bytes.length < 28) throw new TypeError('sealed message truncated');
    const iv = bytes.subarray(0, 12);
    const n = new DataView(iv.buffer, iv.byteOffset, 12).getUint32(8);
    if (iv[0] !== 1 - this.out || n <= this.received) throw new TypeError('sealed message replayed or out of order');
    let pt;
    try {
      pt = await subtle.decrypt({ name: 'AES-GCM', iv, additionalData: this.aad }, this.key, bytes.subarray(12));
    } catch {
      throw new TypeError('sealed message does not decrypt');
    }
    this.received = n;
    return decodeJson(new Uint8Array(pt), 'the sealed message');
  }
}

/**
 * The patient opens a session to the agent key pinned at enrolment: an ephemeral ECDH key, the hello to send first
 * (plain JSON bytes: version and ephemeral public key), and the session.
 */
export async function openPatientSession(agentJwk, channel) {
  const eph = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  const epk = await exportPublic(eph.publicKey);
  const key = await sessionKey(eph.privateKey, agentJwk, channel, epk);
  return { hello: enc.encode(JSON.stringify({ v: PATIENT_PROTOCOL, epk })), session: new Session(key, channel, 'patient'), epk };
}

/** The agent accepts a hello with its static ECDH private key; returns the session and the hello's ephemeral key. */
export async function acceptPatientSession(agentPrivateKey, channel, hello) {
  const h = decodeJson(hello instanceof Uint8Array ? hello : new Uint8Array(hello), 'the hello');
  if (h.v !== PATIENT_PROTOCOL) throw new TypeError('the hello speaks another protocol version');
  const epk = publicEcJwk(h.epk);
  const key = await sessionKey(agentPrivateKey, epk, channel, epk);
  return { session: new Session(key, channel, 'agent'), epk };
}

/** What the device signs to authenticate a session: the session's ephemeral key and the channel. */
export async function sessionAuthPayload(channel, epk) {
  return enc.encode(jcs({ ch: channel, epk: await jwkThumbprint(epk), v: PATIENT_PROTOCOL }));
}
