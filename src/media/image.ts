/**
 * Recognising images from their bytes: the format (by signature, whatever type the uploader declared), the
 * pixel dimensions and whether they are animated. Workers have no image library, so Axon never decodes or
 * resizes; this is what it needs to decide whether an original can answer a thumbnail request
 * (docs/media.md, "Thumbnails"). Pure functions; only headers and chunk/marker structure are read.
 */

export type ImageType = "image/png" | "image/jpeg" | "image/gif" | "image/webp";

export interface ImageInfo {
  type: ImageType;
  width: number;
  height: number;
  animated: boolean;
}

/** Formats and dimensions of an image, or undefined when the bytes are not a PNG, JPEG, GIF or WebP we can read. */
export function sniffImage(bytes: Uint8Array): ImageInfo | undefined {
  try {
    return png(bytes) ?? gif(bytes) ?? jpeg(bytes) ?? webp(bytes);
  } catch {
    return undefined; // truncated or malformed: not an image we can vouch for
  }
}

function u16be(b: Uint8Array, i: number): number {
  if (i + 2 > b.length) throw new RangeError("truncated");
  return (b[i]! << 8) | b[i + 1]!;
}
function u32be(b: Uint8Array, i: number): number {
  if (i + 4 > b.length) throw new RangeError("truncated");
  return ((b[i]! << 24) >>> 0) + (b[i + 1]! << 16) + (b[i + 2]! << 8) + b[i + 3]!;
}
function u16le(b: Uint8Array, i: number): number {
  if (i + 2 > b.length) throw new RangeError("truncated");
  return b[i]! | (b[i + 1]! << 8);
}
function u24le(b: Uint8Array, i: number): number {
  if (i + 3 > b.length) throw new RangeError("truncated");
  return b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16);
}
function u32le(b: Uint8Array, i: number): number {
  return u24le(b, i) + ((b[i + 3] ?? 0) << 24 >>> 0);
}
function ascii(b: Uint8Array, i: number, n: number): string {
  return String.fromCharCode(...b.subarray(i, i + n));
}
function valid(info: ImageInfo): ImageInfo | undefined {
  return info.width > 0 && info.height > 0 ? info : undefined;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** PNG: IHDR gives the size; an `acTL` chunk before the first `IDAT` makes it an animated PNG (APNG). */
function png(b: Uint8Array): ImageInfo | undefined {
  if (b.length < 33 || PNG_SIGNATURE.some((v, i) => b[i] !== v)) return undefined;
  if (ascii(b, 12, 4) !== "IHDR") return undefined;
  const width = u32be(b, 16);
  const height = u32be(b, 20);
  let animated = false;
  for (let i = 8; i + 8 <= b.length; ) {
    const length = u32be(b, i);
    const type = ascii(b, i + 4, 4);
    if (type === "acTL") animated = true;
    if (type === "IDAT" || type === "IEND") break;
    i += 12 + length;
  }
  return valid({ type: "image/png", width, height, animated });
}

/** GIF: the logical screen gives the size; more than one image descriptor makes it animated. */
function gif(b: Uint8Array): ImageInfo | undefined {
  const sig = ascii(b, 0, 6);
  if (sig !== "GIF87a" && sig !== "GIF89a") return undefined;
  const width = u16le(b, 6);
  const height = u16le(b, 8);
  const flags = b[10]!;
  let i = 13;
  if (flags & 0x80) i += 3 * (1 << ((flags & 7) + 1)); // global colour table
  let frames = 0;
  const skipSubBlocks = () => {
    for (;;) {
      if (i >= b.length) throw new RangeError("truncated");
      const n = b[i++]!;
      if (n === 0) return;
      i += n;
    }
  };
  while (i < b.length && frames < 2) {
    const block = b[i++]!;
    if (block === 0x3b) break; // trailer
    if (block === 0x21) {
      i++; // extension label
      skipSubBlocks();
    } else if (block === 0x2c) {
      frames++;
      const local = b[i + 8]!;
      i += 9;
      if (local & 0x80) i += 3 * (1 << ((local & 7) + 1)); // local colour table
      i++; // LZW minimum code size
      skipSubBlocks();
    } else {
      throw new RangeError("bad GIF block");
    }
  }
  return valid({ type: "image/gif", width, height, animated: frames > 1 });
}

/** JPEG: the size is in the first start-of-frame marker (SOF0–SOF15 but DHT, JPG and DAC). */
function jpeg(b: Uint8Array): ImageInfo | undefined {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return undefined;
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return undefined;
    const marker = b[i + 1]!;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2; // markers without a length
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return undefined; // end of image or start of scan before any frame
    const length = u16be(b, i + 2);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return valid({ type: "image/jpeg", height: u16be(b, i + 5), width: u16be(b, i + 7), animated: false });
    }
    i += 2 + length;
  }
  return undefined;
}

/** WebP: lossy (`VP8 `), lossless (`VP8L`) or extended (`VP8X`, whose flags say whether it is animated). */
function webp(b: Uint8Array): ImageInfo | undefined {
  if (b.length < 30 || ascii(b, 0, 4) !== "RIFF" || ascii(b, 8, 4) !== "WEBP") return undefined;
  const chunk = ascii(b, 12, 4);
  if (chunk === "VP8X") {
    const flags = b[20]!;
    return valid({ type: "image/webp", width: u24le(b, 24) + 1, height: u24le(b, 27) + 1, animated: (flags & 0x02) !== 0 });
  }
  if (chunk === "VP8 ") {
    // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height.
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return undefined;
    return valid({ type: "image/webp", width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff, animated: false });
  }
  if (chunk === "VP8L") {
    if (b[20] !== 0x2f) return undefined;
    const bits = u32le(b, 21);
    return valid({ type: "image/webp", width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, animated: false });
  }
  return undefined;
}
