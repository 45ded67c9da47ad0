import QRCode from 'qrcode';
import { qrTexts } from './qr.ts';

/**
 * QR rendering of a card with `qrcode`: the `shc:/` prefix as a byte segment,
 * the digits as a numeric segment, error correction L (spec "Encoding Chunks
 * as QR codes"), as PNG and SVG, and a printable HTML page.
 */

function segments(text: string): QRCode.QRCodeSegment[] {
  const head = /^shc:\/(?:\d+\/\d+\/)?/.exec(text)?.[0] ?? '';
  return [
    { data: Buffer.from(head, 'latin1'), mode: 'byte' },
    { data: text.slice(head.length), mode: 'numeric' },
  ];
}

/** PNG images of a card's QR codes (one unless the card needs chunks). */
export async function cardQrPng(jws: string): Promise<Buffer[]> {
  return Promise.all(qrTexts(jws).map((t) => QRCode.toBuffer(segments(t), { errorCorrectionLevel: 'L', type: 'png', margin: 4, scale: 4 })));
}

/** SVG images of a card's QR codes. */
export async function cardQrSvg(jws: string): Promise<string[]> {
  return Promise.all(qrTexts(jws).map((t) => QRCode.toString(segments(t), { errorCorrectionLevel: 'L', type: 'svg', margin: 4 })));
}

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A printable HTML page: the QR code(s), what the card states, and how to check it. */
export async function cardHtml(jws: string, statements: readonly string[], verifierUrl?: string): Promise<string> {
  const svgs = await cardQrSvg(jws);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SMART Health Card</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}figure{margin:0}figure svg{width:20em;height:20em}@media print{.hint{font-size:small}}</style></head>
<body><h1>SMART Health Card</h1>
${svgs.map((s, i) => `<figure>${s}<figcaption>QR ${i + 1} of ${svgs.length}</figcaption></figure>`).join('\n')}
<ul>${statements.map((s) => `<li>${esc(s)}</li>`).join('')}</ul>
<p class="hint">Check this certificate by scanning the QR code with any SMART Health Card verifier${verifierUrl ? `, or at ${esc(verifierUrl)}` : ''}.</p>
</body></html>
`;
}
