import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CertificateAuthority, DirectoryStore, loadIdentity, verifyDirectory } from '../../../certs/index.ts';
import { parsePrivateKey } from '../../../certs/keys.ts';
import {
  buildIssuerDirectory,
  issuerJwk,
  signIssuerDirectory,
  signKeyBinding,
  verifyIssuerDirectory,
  verifyKeyBinding,
  type IssuerDirectoryInput,
  type IssuerJwk,
  type VerifiedIssuerDirectory,
} from '../../../certs/shc/index.ts';

/** The relay base URL the tests' issuer directories hang from. */
export const BASE = 'https://relay.example.org';

/** A federation with a member directory and per-hospital ES256 issuer keys bound to their certificates. */
export interface CardWorld {
  root: string;
  ca: CertificateAuthority;
  caPem: string;
  store: DirectoryStore;
  dirKey: KeyObject;
  dirCert: string;
  keys: Record<string, { privateKey: KeyObject; jwk: IssuerJwk; binding: string }>;
  /** Signs and verifies an issuer directory from the current member list with `revocations`. */
  directory(revocations?: IssuerDirectoryInput['revocations'], sequence?: number): Promise<VerifiedIssuerDirectory>;
}

/** Builds a CA, agents `ids` (members with `roles`), the directory key, and one issuer key per agent. */
export async function makeCardWorld(
  root: string,
  members: Array<{ id: string; role: 'hospital' | 'issuer' | 'insurer'; status?: 'active' | 'suspended' | 'revoked' }>,
): Promise<CardWorld> {
  const ca = CertificateAuthority.init(join(root, 'pki'), { keyBits: 2048 });
  const caPem = ca.caCertPem();
  const store = DirectoryStore.init(ca);
  const keys: CardWorld['keys'] = {};
  for (const m of members) {
    const a = ca.issueAgent({ id: m.id, outDir: join(root, 'agents') });
    store.add({ id: m.id, name: `${m.id} Hospital`, organisation: `${m.id} Health`, role: m.role, status: m.status ?? 'active' });
    const identity = loadIdentity({ cert: a.certPath, key: a.keyPath, ca: a.caPath });
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = await issuerJwk(pair.publicKey);
    keys[m.id] = { privateKey: pair.privateKey, jwk, binding: await signKeyBinding(identity, jwk) };
  }
  const dirKey = parsePrivateKey(readFileSync(join(store.dir, 'directory.key.pem'), 'utf8'), undefined, 'key');
  const dirCert = readFileSync(join(store.dir, 'directory.crt.pem'), 'utf8');
  const world: CardWorld = {
    root,
    ca,
    caPem,
    store,
    dirKey,
    dirCert,
    keys,
    directory: async (revocations = {}, sequence = 1) => {
      const signed = await store.sign();
      const members = await verifyDirectory(signed.jws, { caPem });
      const bindings = await Promise.all(Object.values(keys).map((k) => verifyKeyBinding(k.binding, { caPem })));
      const doc = buildIssuerDirectory({ members, bindings, revocations, base: BASE, sequence });
      return verifyIssuerDirectory(await signIssuerDirectory(doc, dirKey, dirCert), { caPem });
    },
  };
  return world;
}
