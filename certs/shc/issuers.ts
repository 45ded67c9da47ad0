import { X509Certificate, type KeyObject } from 'node:crypto';
import { CompactSign, compactVerify, decodeProtectedHeader } from 'jose';
import { z } from 'zod';
import type { ParsedCrl } from '../crl.ts';
import { DIRECTORY_SIGNING_EKU, normalizeSerial } from '../x509.ts';
import { hospitalIdFromCertificate, type Identity } from '../identity.ts';
import { jcs } from '../keybundle.ts';
import { HOSPITAL_ID_PATTERN } from '../names.ts';
import { revokedForUseAt, withinCertificateValidity } from '../validity.ts';
import type { VerifiedDirectory } from '../directory.ts';
import { issuerJwkSchema, jwkThumbprint, type IssuerJwk } from './card.ts';
import { ShcError } from './errors.ts';

/**
 * The federation's issuer directory: every card issuer's ES256 keys (from the
 * member directory: hospitals and issuers, with their status), their revoked
 * keys and their SMART Health Card revocation lists, signed by the directory
 * key exactly like the member directory (RS256 JWS, `x5c` = the directory
 * certificate). The relay serves it and each issuer's `jwks.json` and CRLs at
 * well-known URLs; a verifier may carry the signed file offline.
 *
 * A hospital's key reaches it by a key binding: a JWS over the public JWK
 * signed with the hospital's federation certificate key (`x5c` = that
 * certificate), which the operator checks against the CA before listing it.
 */

/** `typ` of the signed issuer directory. */
export const ISSUERS_JWS_TYPE = 'hie-issuers+json';
/** `typ` of a key binding. */
export const KEY_BINDING_JWS_TYPE = 'hie-issuer-key+json';
/** Version of both documents. */
export const ISSUERS_VERSION = 1;
/** Largest signed issuer directory read (bytes). */
export const MAX_ISSUERS_BYTES = 1024 * 1024;
/** Path under the relay's base URL of an issuer: `iss` = `<base>/issuers/<id>`. */
export const ISSUER_PATH = '/issuers/';

const b64url = z.string().regex(/^[A-Za-z0-9_-]+$/);
/** A SMART Health Card revocation list (spec "Revocation": `/.well-known/crl/<kid>.json`). */
export const cardCrlSchema = z.strictObject({
  kid: b64url.length(43),
  method: z.literal('rid'),
  ctr: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  rids: z.array(z.string().regex(/^[A-Za-z0-9_-]{1,24}(\.\d{1,12})?$/)).max(100_000),
});
/** A card revocation list. */
export type CardCrl = z.infer<typeof cardCrlSchema>;

const issuerSchema = z.strictObject({
  id: z.string().regex(HOSPITAL_ID_PATTERN),
  name: z.string().min(1).max(128),
  status: z.enum(['active', 'suspended', 'revoked']),
  iss: z.url().max(256),
  keys: z.array(issuerJwkSchema).max(16),
  /** Keys no longer trusted, with when (ISO time): a card signed at or after it is revoked. */
  revokedKeys: z.array(z.strictObject({ kid: b64url.length(43), revokedAt: z.iso.datetime(), jwk: issuerJwkSchema })).max(64),
  crls: z.array(cardCrlSchema).max(16),
});
/** One issuer as the directory lists it. */
export type Issuer = z.infer<typeof issuerSchema>;

/** The signed issuer directory payload. */
export const issuerDirectorySchema = z.strictObject({
  v: z.literal(ISSUERS_VERSION),
  sequence: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  issuedAt: z.iso.datetime(),
  /** The relay's public base URL (https) the well-known URLs hang from. */
  base: z.url().max(200),
  issuers: z.array(issuerSchema).max(5000),
});
/** An issuer directory document. */
export type IssuerDirectory = z.infer<typeof issuerDirectorySchema>;

/** A directory that passed {@link verifyIssuerDirectory}. */
export interface VerifiedIssuerDirectory {
  directory: IssuerDirectory;
  jws: string;
  signerSerial: string;
  /** Issuers by `iss`. */
  byIss: ReadonlyMap<string, Issuer>;
  /** Issuers by member id. */
  byId: ReadonlyMap<string, Issuer>;
}

/** The `iss` of member `id` under the relay base URL. */
export function issuerUrl(base: string, id: string): string {
  return `${base.replace(/\/+$/, '')}${ISSUER_PATH}${id}`;
}

const invalid = (message: string, cause?: unknown): ShcError => new ShcError('ERR_SHC_ISSUERS_INVALID', message, cause === undefined ? undefined : { cause });

/** Signs an issuer directory with the federation's directory key and certificate (as `signDirectory` does). */
export async function signIssuerDirectory(doc: IssuerDirectory, key: KeyObject, certPem: string): Promise<string> {
  const parsed = issuerDirectorySchema.parse(doc);
  await checkKids(parsed);
  const cert = new X509Certificate(certPem);
  if (!(cert.keyUsage ?? []).includes(DIRECTORY_SIGNING_EKU)) throw new TypeError('the certificate is not a directory signing certificate');
  if (!cert.checkPrivateKey(key)) throw new TypeError('the directory key does not match its certificate');
  return new CompactSign(jcs(parsed)).setProtectedHeader({ alg: 'RS256', typ: ISSUERS_JWS_TYPE, x5c: [cert.raw.toString('base64')] }).sign(key);
}

async function checkKids(doc: IssuerDirectory): Promise<void> {
  for (const i of doc.issuers)
    for (const k of [...i.keys, ...i.revokedKeys.map((r) => r.jwk)])
      if ((await jwkThumbprint(k)) !== k.kid) throw invalid(`key ${k.kid} of issuer ${i.id}: kid is not its RFC 7638 thumbprint`);
}

/** Options of the verifiers here. */
export interface TrustOptions {
  caPem: string;
  crl?: ParsedCrl | undefined;
  now?: Date;
}

interface Signed {
  payload: unknown;
  cert: X509Certificate;
  serial: string;
}

/** Verifies an RS256 JWS of `typ` carrying its signer in x5c, issued by the CA, valid and unrevoked at `now`. */
async function verifySigned(
  jws: string,
  typ: string,
  opts: TrustOptions,
  eku: string | undefined,
  what: string,
  code: 'ERR_SHC_ISSUERS' | 'ERR_SHC_KEY_BINDING',
): Promise<Signed> {
  const mal = (m: string, c?: unknown) =>
    new ShcError(code === 'ERR_SHC_ISSUERS' ? 'ERR_SHC_ISSUERS_INVALID' : 'ERR_SHC_KEY_BINDING_INVALID', m, c === undefined ? undefined : { cause: c });
  const untrusted = (m: string) => new ShcError(code === 'ERR_SHC_ISSUERS' ? 'ERR_SHC_ISSUERS_UNTRUSTED' : 'ERR_SHC_KEY_BINDING_INVALID', m);
  if (typeof jws !== 'string' || jws.length === 0 || jws.length > MAX_ISSUERS_BYTES) throw mal(`${what} must be 1-${MAX_ISSUERS_BYTES} bytes`);
  const text = jws.trim();
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(text);
  } catch (err) {
    throw mal(`${what} is not a compact JWS`, err);
  }
  if (header.alg !== 'RS256' || header.typ !== typ) throw mal(`${what} must be an RS256 JWS of typ ${typ}`);
  if (header.crit !== undefined) throw mal(`${what} names critical header parameters`);
  const x5c = header.x5c;
  if (!Array.isArray(x5c) || x5c.length !== 1 || typeof x5c[0] !== 'string') throw mal(`${what} must carry exactly its signing certificate in x5c`);
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(Buffer.from(x5c[0], 'base64'));
    ca = new X509Certificate(opts.caPem);
  } catch (err) {
    throw mal(`x5c[0] of ${what} or the CA is not a certificate`, err);
  }
  const serial = normalizeSerial(cert.serialNumber);
  const now = opts.now ?? new Date();
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw untrusted(`the certificate ${serial} of ${what} was not issued by the federation CA`);
  if (eku && !(cert.keyUsage ?? []).includes(eku)) throw untrusted(`certificate ${serial} is not a directory signing certificate`);
  if (!withinCertificateValidity(now.getTime(), new Date(cert.validFrom), new Date(cert.validTo)))
    throw untrusted(`certificate ${serial} of ${what} is not valid at ${now.toISOString()}`);
  const revoked = opts.crl?.revoked.get(serial);
  if (revoked && revokedForUseAt(now.getTime(), revoked.revokedAt))
    throw untrusted(`certificate ${serial} of ${what} was revoked at ${revoked.revokedAt.toISOString()}`);
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(text, cert.publicKey, { algorithms: ['RS256'] }));
  } catch (err) {
    throw new ShcError(
      code === 'ERR_SHC_ISSUERS' ? 'ERR_SHC_ISSUERS_SIGNATURE' : 'ERR_SHC_KEY_BINDING_INVALID',
      `the signature of ${what} does not verify with its certificate`,
      { cause: err },
    );
  }
  try {
    return { payload: JSON.parse(Buffer.from(payload).toString('utf8')), cert, serial };
  } catch (err) {
    throw mal(`the payload of ${what} is not JSON`, err);
  }
}

/** Verifies a signed issuer directory with the federation CA (and CRL); throws ERR_SHC_ISSUERS_*. */
export async function verifyIssuerDirectory(jws: string, opts: TrustOptions): Promise<VerifiedIssuerDirectory> {
  const { payload, serial } = await verifySigned(jws, ISSUERS_JWS_TYPE, opts, DIRECTORY_SIGNING_EKU, 'the issuer directory', 'ERR_SHC_ISSUERS');
  const r = issuerDirectorySchema.safeParse(payload);
  if (!r.success) throw invalid(`the issuer directory is malformed at ${r.error.issues[0]?.path.join('.') ?? ''}: ${r.error.issues[0]?.message ?? ''}`);
  await checkKids(r.data);
  const d = r.data;
  return {
    directory: d,
    jws: jws.trim(),
    signerSerial: serial,
    byIss: new Map(d.issuers.map((i) => [i.iss, i])),
    byId: new Map(d.issuers.map((i) => [i.id, i])),
  };
}

const bindingSchema = z.strictObject({
  v: z.literal(ISSUERS_VERSION),
  agent: z.string().regex(HOSPITAL_ID_PATTERN),
  created: z.iso.datetime(),
  jwk: issuerJwkSchema,
});
/** A key binding's payload. */
export type KeyBinding = z.infer<typeof bindingSchema>;

/** Binds an issuer key to the hospital's federation certificate: a JWS by its certificate key, `x5c` = its certificate. */
export async function signKeyBinding(identity: Pick<Identity, 'certificate' | 'privateKey'>, jwk: IssuerJwk, now: Date = new Date()): Promise<string> {
  const agent = hospitalIdFromCertificate(identity.certificate);
  const { crlVersion: _c, x5c: _x, ...bare } = jwk;
  const body: KeyBinding = bindingSchema.parse({ v: ISSUERS_VERSION, agent, created: now.toISOString(), jwk: bare });
  return new CompactSign(jcs(body))
    .setProtectedHeader({ alg: 'RS256', typ: KEY_BINDING_JWS_TYPE, x5c: [identity.certificate.raw.toString('base64')] })
    .sign(identity.privateKey);
}

/** Verifies a key binding against the CA: signed by an agent certificate of the agent it names, kid the key's thumbprint. */
export async function verifyKeyBinding(jws: string, opts: TrustOptions): Promise<KeyBinding & { serial: string }> {
  const { payload, cert, serial } = await verifySigned(jws, KEY_BINDING_JWS_TYPE, opts, undefined, 'the key binding', 'ERR_SHC_KEY_BINDING');
  const r = bindingSchema.safeParse(payload);
  if (!r.success) throw new ShcError('ERR_SHC_KEY_BINDING_INVALID', 'the key binding is malformed');
  let agent: string;
  try {
    agent = hospitalIdFromCertificate(cert);
  } catch (err) {
    throw new ShcError('ERR_SHC_KEY_BINDING_INVALID', 'the key binding is not signed by an agent certificate', { cause: err });
  }
  if (agent !== r.data.agent) throw new ShcError('ERR_SHC_KEY_BINDING_INVALID', `the key binding names ${r.data.agent} but is signed by ${agent}`);
  if ((await jwkThumbprint(r.data.jwk)) !== r.data.jwk.kid)
    throw new ShcError('ERR_SHC_KEY_BINDING_INVALID', "the bound key's kid is not its RFC 7638 thumbprint");
  return { ...r.data, serial };
}

/** What the operator adds to the member directory to make an issuer directory. */
export interface IssuerDirectoryInput {
  members: Pick<VerifiedDirectory, 'directory'>;
  /** Verified key bindings (each names its agent). */
  bindings: readonly KeyBinding[];
  /** Per kid: revoked rids (with optional `.timestamp`) and when the key itself was revoked. */
  revocations?: Readonly<Record<string, { rids?: string[]; ctr?: number; keyRevokedAt?: string }>>;
  base: string;
  sequence: number;
  now?: Date;
}

/** Builds the issuer directory: every hospital or issuer member with a bound key, its status from the member directory. */
export function buildIssuerDirectory(input: IssuerDirectoryInput): IssuerDirectory {
  const rev = input.revocations ?? {};
  const issuers: Issuer[] = [];
  for (const m of input.members.directory.members) {
    if (m.role !== 'hospital' && m.role !== 'issuer') continue;
    const mine = input.bindings.filter((b) => b.agent === m.id);
    if (mine.length === 0) continue;
    const keys: IssuerJwk[] = [];
    const revokedKeys: Issuer['revokedKeys'] = [];
    const crls: CardCrl[] = [];
    for (const b of mine) {
      const r = rev[b.jwk.kid];
      if (r?.keyRevokedAt) {
        revokedKeys.push({ kid: b.jwk.kid, revokedAt: new Date(r.keyRevokedAt).toISOString(), jwk: b.jwk });
        continue;
      }
      const rids = r?.rids ?? [];
      const ctr = r?.ctr ?? (rids.length > 0 ? 1 : undefined);
      keys.push({ ...b.jwk, ...(ctr ? { crlVersion: ctr } : {}) });
      if (ctr) crls.push({ kid: b.jwk.kid, method: 'rid', ctr, rids });
    }
    issuers.push({ id: m.id, name: m.name, status: m.status, iss: issuerUrl(input.base, m.id), keys, revokedKeys, crls });
  }
  return issuerDirectorySchema.parse({
    v: ISSUERS_VERSION,
    sequence: input.sequence,
    issuedAt: (input.now ?? new Date()).toISOString(),
    base: input.base,
    issuers,
  });
}
