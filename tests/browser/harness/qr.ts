// Reads a QR code off the screen: a screenshot of the element, decoded
// (pngjs for the pixels, jsQR for the code), so a test checks what a phone
// pointed at the page would read.

import type { Locator } from '@playwright/test';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';

/** The text the QR code drawn by `element` holds; fails when none is read. */
export async function readQr(element: Locator): Promise<string> {
  const png = PNG.sync.read(await element.screenshot());
  const code = jsQR(new Uint8ClampedArray(png.data.buffer, png.data.byteOffset, png.data.length), png.width, png.height);
  if (!code) throw new Error('no QR code could be read from the element');
  return code.data;
}
