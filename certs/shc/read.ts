import jsqrModule from 'jsqr';
import { PNG } from 'pngjs';
import { ShcError } from './errors.ts';

/** Largest PNG read for a QR code (bytes). */
export const MAX_QR_IMAGE_BYTES = 8 * 1024 * 1024;

// jsqr is CommonJS with `exports.default`: under NodeNext the default import is the module object.
type JsQr = (data: Uint8ClampedArray, width: number, height: number) => { data: string } | null;
const jsQR: JsQr = ((jsqrModule as unknown as { default?: JsQr }).default ?? jsqrModule) as JsQr;

/** The text of the QR code in a PNG image (read with jsQR), or ERR_SHC_QR_INVALID. */
export function readQrPng(png: Buffer): string {
  if (png.length > MAX_QR_IMAGE_BYTES) throw new ShcError('ERR_SHC_QR_INVALID', `a QR image may be at most ${MAX_QR_IMAGE_BYTES} bytes`);
  let img: PNG;
  try {
    img = PNG.sync.read(png);
  } catch (err) {
    throw new ShcError('ERR_SHC_QR_INVALID', 'the image is not a PNG', { cause: err });
  }
  const found = jsQR(new Uint8ClampedArray(img.data.buffer, img.data.byteOffset, img.data.length), img.width, img.height);
  if (!found) throw new ShcError('ERR_SHC_QR_INVALID', 'no QR code found in the image');
  return found.data;
}
