import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../certs/index.ts';
import {
  cardBundle,
  cardHash,
  cardHtml,
  cardQrPng,
  cardQrSvg,
  cardTypes,
  decodeCard,
  describeCard,
  FHIR_VERSION,
  qrTexts,
  signCard,
  type CardPurpose,
} from '../../certs/shc/index.ts';
import type { Ledger } from '../../ledger/index.ts';
import type { IssuerKey } from './keys.ts';

/** What a hospital asks a card for. */
export interface IssueRequest {
  purpose: CardPurpose;
  /** The FHIR R4 Bundle the card is made from (cardBundle keeps only what the purpose shows). */
  bundle: unknown;
  period?: { start: string; end: string } | undefined;
  /** Seconds the card is valid for; absent: no expiry (as the spec advises for immunizations). */
  validForSeconds?: number | undefined;
}

/** An issued card and its ledger entry. */
export interface IssuedCard {
  jws: string;
  /** SHA-256 of the JWS, hex: what the ledger entry names. */
  hash: string;
  kid: string;
  rid: string;
  iss: string;
  nbf: number;
  /** The `shc:/` QR texts (one unless chunked). */
  qr: string[];
  /** What the card states, line by line. */
  statements: string[];
  ledger: { feed: string; seq: number; hash: string; ts: string };
}

/** Options of {@link CertificateIssuer}. */
export interface CertificateIssuerOptions {
  ledger: Pick<Ledger, 'append'>;
  key: IssuerKey;
  /** The card's `iss`: `<relay base>/issuers/<id>` (the relay serves its JWKS there). */
  iss: string;
  now?: () => Date;
}

/**
 * Issues SMART Health Cards: the purpose's minimised bundle, signed with the
 * hospital's ES256 key under a random revocation id (`rid`, no PHI), then a
 * `certificate.issued` ledger entry (card hash, kid, rid, nbf) so the
 * issuance can be proved later.
 */
export class CertificateIssuer {
  readonly #o: CertificateIssuerOptions;

  constructor(options: CertificateIssuerOptions) {
    this.#o = options;
  }

  /** The issuer URL cards carry. */
  get iss(): string {
    return this.#o.iss;
  }

  /** Issues one card; throws ShcError (ERR_SHC_BUNDLE_INVALID, ERR_SHC_PURPOSE_UNKNOWN) for a bundle the purpose cannot use. */
  async issue(request: IssueRequest): Promise<IssuedCard> {
    const fhirBundle = cardBundle({ purpose: request.purpose, bundle: request.bundle, period: request.period });
    const now = (this.#o.now ?? (() => new Date()))();
    const nbf = Math.floor(now.getTime() / 1000);
    const rid = randomBytes(8).toString('base64url');
    const jws = await signCard(
      {
        iss: this.#o.iss,
        nbf,
        ...(request.validForSeconds ? { exp: nbf + request.validForSeconds } : {}),
        vc: { type: cardTypes(request.purpose), rid, credentialSubject: { fhirVersion: FHIR_VERSION, fhirBundle: fhirBundle as never } },
      },
      this.#o.key.privateKey,
      this.#o.key.jwk.kid,
    );
    const hash = cardHash(jws);
    const entry = await this.#o.ledger.append({
      type: 'certificate.issued',
      body: { card: hash, kid: this.#o.key.jwk.kid, rid, nbf: new Date(nbf * 1000).toISOString() },
    });
    return {
      jws,
      hash,
      kid: this.#o.key.jwk.kid,
      rid,
      iss: this.#o.iss,
      nbf,
      qr: qrTexts(jws),
      statements: describeCard(decodeCard(jws)),
      ledger: { feed: entry.feed, seq: entry.seq, hash: entry.hash, ts: entry.ts },
    };
  }
}

/** The files a card is handed out as. */
export const CARD_FILES = { card: 'card.smart-health-card', png: 'card.png', svg: 'card.svg', html: 'card.html', json: 'card.json' } as const;

/**
 * Writes a card to `dir`: the `.smart-health-card` file (spec "Via File
 * Download": `{"verifiableCredential": [jws]}`), the QR code as PNG and SVG
 * (`card-2.png`... when chunked), a printable HTML page, and `card.json`
 * (hash, kid, rid, ledger entry). Returns the paths.
 */
export async function writeCardFiles(dir: string, card: IssuedCard, verifierUrl?: string): Promise<string[]> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const paths: string[] = [];
  const put = (name: string, data: string | Buffer): void => {
    const p = join(dir, name);
    writeFileAtomic(p, data, 0o600);
    paths.push(p);
  };
  put(CARD_FILES.card, `${JSON.stringify({ verifiableCredential: [card.jws] })}\n`);
  const pngs = await cardQrPng(card.jws);
  const svgs = await cardQrSvg(card.jws);
  pngs.forEach((png, i) => put(i === 0 ? CARD_FILES.png : `card-${i + 1}.png`, png));
  svgs.forEach((svg, i) => put(i === 0 ? CARD_FILES.svg : `card-${i + 1}.svg`, svg));
  put(CARD_FILES.html, await cardHtml(card.jws, card.statements, verifierUrl));
  const { jws: _jws, statements: _s, ...meta } = card;
  put(CARD_FILES.json, `${JSON.stringify(meta, null, 2)}\n`);
  return paths;
}
