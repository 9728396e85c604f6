#!/usr/bin/env python3
"""Images and Pillow's / torchvision's pixels for the bit-exact parity test of seqgan's decoders
and resampling (tests/test_pil_parity.cpp). The reference is Debian 12's python3-pil (9.4) and
python3-torchvision (0.14):

    /usr/bin/python3 tools/pil_fixtures.py OUTDIR

Writes into OUTDIR (everything generated from numpy's RandomState(20240229), so two runs write the
same bytes):
  images/               JPEG (4:4:4, 4:2:2, 4:2:0, progressive, grey, CMYK with and without the
                        Adobe marker, EXIF orientation 6, odd sizes), PNG (1/2/4/8/16-bit grey,
                        8/16-bit RGB, RGBA, grey+alpha, palettes with and without tRNS, Adam7
                        interlacing, gAMA and tRNS colour keys; the 16-bit, sub-byte and
                        interlaced ones written by hand below, since Pillow cannot write them)
                        and WebP (lossy, lossless, both with alpha);
  expected.safetensors  U8 arrays [H, W, C]:
                          decode/<file>/rgb, decode/<file>/l   Image.open(f).convert("RGB" / "L")
                          resize_src/<name>                     the sources of the resize cases
                          resize/<name>/<filter>/<W>x<H>        img.resize((W, H), filter)
                          tv/<file>/<filter>/<res>              Resize(res, filter) + CenterCrop(res)
                          adm_src/<name>, adm/<name>/<res>      guided-diffusion's center_crop_arr
  cases.json            every case with its tensor names, so the test iterates them without
                        knowing any name, plus "facts": what Pillow was seen to do (also printed).
Each fact is checked against the pixels; the script fails when Pillow behaves otherwise.
"""
import json
import os
import struct
import sys
import time
import warnings
import zlib

import numpy as np
from PIL import Image, features

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weights_io import write_safetensors  # noqa: E402

SEED = 20240229
FILTERS = {"box": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


# ----------------------------------------------------------------------------------- test images

def pattern(rng, width, height):
    """RGB uint8 [H, W, 3]: smooth gradients and a sinusoid, Gaussian noise, and sharp edges (a
    saturated block, a one-pixel diagonal, a 2x2 checkerboard) so that chroma subsampling, the
    IDCT and every filter's ringing show up in the pixels."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u = x / max(width - 1, 1)
    v = y / max(height - 1, 1)
    img = np.stack([255.0 * u, 255.0 * v, 127.5 + 120.0 * np.sin(2.0 * np.pi * (1.5 * u + v))], axis=-1)
    img += rng.normal(0.0, 12.0, size=img.shape)
    img[height // 4:(3 * height) // 5, width // 6:width // 2] = (235.0, 25.0, 40.0)
    img[np.abs(x * (height / width) - y) < 0.6] = (15.0, 35.0, 245.0)
    corner = (y >= (2 * height) // 3) & (x >= (2 * width) // 3)
    cells = ((x // 2 + y // 2) % 2) * 255.0
    img[corner] = cells[corner][:, None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def grey_pattern(rng, width, height):
    """uint8 [H, W]: a weighted sum of pattern()'s channels (not Pillow's luma, on purpose)."""
    rgb = pattern(rng, width, height).astype(np.float64)
    return np.clip(np.rint(rgb @ np.array([0.45, 0.35, 0.2])), 0, 255).astype(np.uint8)


def alpha_pattern(rng, width, height, low=0):
    """uint8 [H, W]: a horizontal ramp with noise, a fully transparent block (unless low > 0) and an
    opaque one; values in [low, 255]."""
    y, x = np.mgrid[0:height, 0:width]
    a = 255.0 * x / max(width - 1, 1) + rng.normal(0.0, 20.0, size=(height, width))
    a[: height // 3, : width // 4] = 0.0
    a[(2 * height) // 3:, (3 * width) // 4:] = 255.0
    return np.clip(np.rint(a), low, 255).astype(np.uint8)


def luma(rgb):
    """Pillow's RGB -> L: ITU-R 601 in 16-bit fixed point, rounded."""
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    return ((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16).astype(np.uint8)


# ---------------------------------------------------------------------------- PNG written by hand

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(row, bit_depth):
    """One scanline [W, C] of samples -> bytes (big-endian 16-bit samples, sub-byte samples packed
    from the most significant bit, the last byte padded with zero bits)."""
    flat = row.reshape(-1)
    if bit_depth == 16:
        return flat.astype(">u2").tobytes()
    if bit_depth == 8:
        return flat.astype(np.uint8).tobytes()
    per_byte = 8 // bit_depth
    padded = np.zeros(-(-flat.size // per_byte) * per_byte, dtype=np.int64)
    padded[: flat.size] = flat
    groups = padded.reshape(-1, per_byte)
    shifts = 8 - bit_depth * (np.arange(per_byte) + 1)
    return (groups << shifts).sum(axis=1).astype(np.uint8).tobytes()


def filter_scanline(kind, row, prev, bpp):
    """PNG filter `kind` (0 none, 1 sub, 2 up, 3 average, 4 Paeth) of one packed scanline."""
    out = bytearray(len(row))
    for i in range(len(row)):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if kind == 0:
            p = 0
        elif kind == 1:
            p = a
        elif kind == 2:
            p = b
        elif kind == 3:
            p = (a + b) // 2
        else:
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out[i] = (row[i] - p) & 0xFF
    return bytes([kind]) + bytes(out)


def png_bytes(samples, bit_depth, color_type, interlace=False, chunks=()):
    """A PNG of samples [H, W, C] (values below 2**bit_depth), with the (type, data) `chunks` between
    IHDR and IDAT. The scanlines cycle through all five filter types and the compressed data is
    split over several IDAT chunks, so a decoder is tested on more than the easy path."""
    height, width, channels = samples.shape
    assert channels == CHANNELS[color_type]
    bpp = max(1, channels * bit_depth // 8)
    raw = bytearray()
    line = 0
    for x0, y0, dx, dy in (ADAM7 if interlace else [(0, 0, 1, 1)]):
        sub = samples[y0::dy, x0::dx]
        if sub.size == 0:
            continue  # passes without pixels have no scanlines at all
        prev = bytes(len(pack_row(sub[0], bit_depth)))
        for row in sub:
            packed = pack_row(row, bit_depth)
            raw += filter_scanline(line % 5, packed, prev, bpp)
            prev = packed
            line += 1
    data = zlib.compress(bytes(raw), 9)
    idat = b"".join(png_chunk(b"IDAT", data[i:i + 1500]) for i in range(0, len(data), 1500))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    extra = b"".join(png_chunk(kind, data) for kind, data in chunks)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + idat + png_chunk(b"IEND", b"")


def png_header(path):
    """(bit depth, colour type, interlace) from a PNG's IHDR."""
    with open(path, "rb") as f:
        head = f.read(33)
    return head[24], head[25], head[28]


# ------------------------------------------------------------------------------- JPEG structure

def jpeg_segments(data):
    """[(marker, start, end)] of the segments before the first SOS (SOI excluded)."""
    assert data[:2] == b"\xff\xd8"
    out, pos = [], 2
    while True:
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        out.append((marker, pos, pos + 2 + length))
        if marker == 0xDA:
            return out
        pos += 2 + length


def strip_adobe_marker(data):
    """The JPEG without its APP14 "Adobe" segment: libjpeg then takes 4 components as plain CMYK."""
    for marker, start, end in jpeg_segments(data):
        if marker == 0xEE and data[start + 4:start + 9] == b"Adobe":
            return data[:start] + data[end:]
    raise AssertionError("no Adobe segment to remove")


def has_adobe_marker(data):
    return any(m == 0xEE and data[s + 4:s + 9] == b"Adobe" for m, s, _ in jpeg_segments(data))


# ---------------------------------------------------------------------------------- references

def center_crop_arr(pil_image, image_size, sizes=None):
    """guided-diffusion's ADM preprocessing, from its description: halve with BOX while the short
    side is at least 2 * image_size, BICUBIC so the short side is image_size (each side scaled and
    rounded with Python's round()), then the central square (offsets rounded down). The sizes the
    image passes through are appended to `sizes` when given."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(s // 2 for s in pil_image.size), resample=Image.BOX)
        if sizes is not None:
            sizes.append(pil_image.size)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(s * scale) for s in pil_image.size), resample=Image.BICUBIC)
    if sizes is not None:
        sizes.append(pil_image.size)
    arr = np.array(pil_image)
    top = (arr.shape[0] - image_size) // 2
    left = (arr.shape[1] - image_size) // 2
    return arr[top:top + image_size, left:left + image_size]


def hwc(a):
    a = np.asarray(a, dtype=np.uint8)
    return a.reshape(a.shape[0], a.shape[1], -1)


class Fixtures:
    def __init__(self, out):
        self.out = out
        self.images = os.path.join(out, "images")
        os.makedirs(self.images, exist_ok=True)
        self.tensors = {}
        self.cases = {"decode": [], "resize": [], "torchvision": [], "adm": []}
        self.facts = []

    def path(self, name):
        return os.path.join(self.images, name)

    def fact(self, text, ok=True):
        if not ok:
            raise AssertionError("self-check failed: " + text)
        self.facts.append(text)

    def add_decode(self, name, what):
        with Image.open(self.path(name)) as im:
            mode, size = im.mode, im.size
            rgb = hwc(im.convert("RGB"))
        with Image.open(self.path(name)) as im:
            grey = hwc(im.convert("L"))
        assert rgb.shape[:2] == grey.shape[:2] == (size[1], size[0])
        self.tensors[f"decode/{name}/rgb"] = rgb
        self.tensors[f"decode/{name}/l"] = grey
        self.cases["decode"].append({"file": f"images/{name}", "rgb": f"decode/{name}/rgb", "l": f"decode/{name}/l",
                                     "what": what, "pil_mode": mode, "width": size[0], "height": size[1]})
        return mode, rgb, grey

    def write(self, name, data):
        with open(self.path(name), "wb") as f:
            f.write(data)


# --------------------------------------------------------------------------------------- JPEG

def make_jpegs(fx, rng):
    rgb = pattern(rng, 67, 45)
    for name, what, size, options in [
            ("jpeg_444.jpg", "baseline 4:4:4 JPEG, q90", (67, 45), {"subsampling": 0}),
            ("jpeg_422.jpg", "baseline 4:2:2 JPEG, q90", (67, 45), {"subsampling": 1}),
            ("jpeg_420.jpg", "baseline 4:2:0 JPEG, q90", (67, 45), {"subsampling": 2}),
            ("jpeg_420_tall.jpg", "baseline 4:2:0 JPEG, q90, portrait 45x67", (45, 67), {"subsampling": 2}),
            ("jpeg_420_odd.jpg", "baseline 4:2:0 JPEG, q90, 33x17 (partial MCUs on both axes)", (33, 17),
             {"subsampling": 2}),
            ("jpeg_progressive_420.jpg", "progressive 4:2:0 JPEG, q90", (67, 45),
             {"subsampling": 2, "progressive": True}),
            ("jpeg_progressive_444.jpg", "progressive 4:4:4 JPEG, q90", (67, 45),
             {"subsampling": 0, "progressive": True}),
            ("jpeg_q50_optimized.jpg", "4:2:0 JPEG, q50, optimised Huffman tables", (67, 45),
             {"subsampling": 2, "optimize": True}),
    ]:
        src = rgb if size == (67, 45) else pattern(rng, *size)
        quality = 50 if "q50" in name else 90
        Image.fromarray(src, "RGB").save(fx.path(name), "JPEG", quality=quality, **options)
        mode, out, grey = fx.add_decode(name, what)
        if mode != "RGB" or not np.array_equal(grey[..., 0], luma(out)):
            fx.fact(f"{name} opens as RGB and its L is the luma of its RGB", False)
    with Image.open(fx.path("jpeg_444.jpg")) as im:
        im.draft("YCbCr", im.size)
        y_channel = hwc(im)[..., 0]
    with Image.open(fx.path("jpeg_444.jpg")) as im:
        grey = hwc(im.convert("L"))[..., 0]
    fx.fact(f"colour JPEGs open as RGB; convert('L') is Pillow's luma of the decoded RGB "
            f"((19595 R + 38470 G + 7471 B + 2^15) >> 16), not the JPEG's Y channel (which differs at "
            f"{int((y_channel != grey).sum())} of {grey.size} pixels of jpeg_444.jpg, by up to "
            f"{int(np.abs(y_channel.astype(int) - grey).max())})", not np.array_equal(y_channel, grey))

    grey = grey_pattern(rng, 67, 45)
    Image.fromarray(grey, "L").save(fx.path("jpeg_grey.jpg"), "JPEG", quality=90)
    mode, out, l = fx.add_decode("jpeg_grey.jpg", "greyscale JPEG, q90")
    fx.fact("greyscale JPEG: opened as L; convert('RGB') repeats the grey value",
            mode == "L" and all(np.array_equal(out[..., k], l[..., 0]) for k in range(3)))

    # CMYK: Pillow writes an Adobe APP14 segment and inverted samples, and inverts them back when
    # it reads a file with that segment. Without the segment the samples are taken as they are.
    y, x = np.mgrid[0:45, 0:67]
    cmyk = np.stack([255 - rgb[..., 0], 255 - rgb[..., 1], 255 - rgb[..., 2],
                     np.clip(3 * x + rng.randint(0, 30, size=x.shape), 0, 255)], axis=-1).astype(np.uint8)
    cmyk[..., :3] = np.clip(cmyk[..., :3].astype(np.int64) - cmyk[..., 3:] // 2, 0, 255)
    Image.fromarray(cmyk, "CMYK").save(fx.path("jpeg_cmyk_adobe.jpg"), "JPEG", quality=90)
    with open(fx.path("jpeg_cmyk_adobe.jpg"), "rb") as f:
        adobe = f.read()
    fx.fact("Pillow writes CMYK JPEGs with an Adobe APP14 segment", has_adobe_marker(adobe))
    fx.write("jpeg_cmyk_plain.jpg", strip_adobe_marker(adobe))
    decoded = []
    for name, what in [("jpeg_cmyk_adobe.jpg", "CMYK JPEG with an Adobe segment (inverted samples)"),
                       ("jpeg_cmyk_plain.jpg", "the same CMYK JPEG without its Adobe segment")]:
        mode, out, l = fx.add_decode(name, what)
        with Image.open(fx.path(name)) as im:
            raw = hwc(im).astype(np.int64)
        c, m, yy, k = (raw[..., i] for i in range(4))
        nk = 255 - k

        def muldiv255(a, b):
            t = a * b + 128
            return ((t >> 8) + t) >> 8

        subtractive = np.stack([np.clip(255 - (ch + k), 0, 255) for ch in (c, m, yy)], axis=-1)
        multiplicative = np.stack([nk - muldiv255(ch, nk) for ch in (c, m, yy)], axis=-1)
        if np.array_equal(out, multiplicative):
            formula = "R = (255 - K) - MULDIV255(C, 255 - K) (MULDIV255(a, b) = (t + (t >> 8)) >> 8, t = a b + 128)"
        elif np.array_equal(out, subtractive):
            formula = "R = clip(255 - (C + K))"
        else:
            fx.fact(f"{name}: CMYK -> RGB matches a known formula", False)
        if mode != "CMYK" or not np.array_equal(l[..., 0], luma(out)):
            fx.fact(f"{name} opens as CMYK and its L is the luma of its RGB", False)
        decoded.append((raw, out))
    (raw, out), (raw_plain, out_plain) = decoded
    fx.fact(f"CMYK JPEGs: Pillow always inverts the samples libjpeg returns (it assumes Adobe polarity), with or "
            f"without the Adobe segment: both files give the same pixels, whose CMYK is within "
            f"{np.abs(raw - cmyk).mean():.1f} (mean) of the source; CMYK -> RGB is {formula}; "
            f"CMYK -> L is the luma of that RGB", np.array_equal(raw, raw_plain) and np.array_equal(out, out_plain))

    # EXIF orientation 6 (rotate 90 degrees clockwise to display): Image.open ignores it.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb, "RGB").save(fx.path("jpeg_exif_orientation6.jpg"), "JPEG", quality=90, exif=exif)
    mode, out, _ = fx.add_decode("jpeg_exif_orientation6.jpg", "4:2:0 JPEG with EXIF Orientation = 6")
    with Image.open(fx.path("jpeg_exif_orientation6.jpg")) as im:
        orientation = im.getexif().get(0x0112)
    with Image.open(fx.path("jpeg_420.jpg")) as im:
        plain = hwc(im.convert("RGB"))
    fx.fact("EXIF Orientation 6 is stored and ignored: 67x45 stays 67x45, pixels equal the same JPEG without EXIF",
            orientation == 6 and out.shape == (45, 67, 3) and np.array_equal(out, plain))


# ---------------------------------------------------------------------------------------- PNG

def make_pngs(fx, rng):
    w, h = 67, 45
    y, x = np.mgrid[0:h, 0:w]
    rgb = pattern(rng, w, h)
    grey = grey_pattern(rng, w, h)

    Image.fromarray(grey, "L").save(fx.path("png_grey8.png"))
    mode, out, l = fx.add_decode("png_grey8.png", "8-bit grey PNG")
    fx.fact("8-bit grey PNG: L -> RGB repeats the value", np.array_equal(l[..., 0], grey)
            and all(np.array_equal(out[..., k], grey) for k in range(3)))

    Image.fromarray(grey, "L").convert("1", dither=Image.Dither.NONE).save(fx.path("png_1bit.png"))
    mode, out, l = fx.add_decode("png_1bit.png", "1-bit grey PNG (mode 1)")
    fx.fact(f"1-bit PNG: opened as {mode}, bit depth {png_header(fx.path('png_1bit.png'))[0]}, pixels 0 or 255",
            set(np.unique(l).tolist()) == {0, 255} and np.array_equal(l[..., 0], np.where(grey >= 128, 255, 0)))

    for depth in (2, 4):
        levels = (grey.astype(np.int64) * ((1 << depth) - 1) + 127) // 255
        name = f"png_grey{depth}.png"
        fx.write(name, png_bytes(levels[..., None], depth, 0))
        mode, out, l = fx.add_decode(name, f"{depth}-bit grey PNG")
        scale = 255 // ((1 << depth) - 1)
        fx.fact(f"{depth}-bit grey PNG: opened as {mode}, level v -> {scale} v",
                np.array_equal(l[..., 0], levels * scale))

    # 16-bit grey: the upper half holds values below 296 (some survive the clip), the lower half
    # spans the whole 16-bit range.
    v16 = np.where(y < h // 2, grey.astype(np.int64) + rng.randint(0, 41, size=(h, w)),
                   grey.astype(np.int64) * 257 + rng.randint(0, 256, size=(h, w)))
    v16 = np.clip(v16, 0, 65535).astype(np.uint16)
    Image.fromarray(v16).save(fx.path("png_grey16.png"))
    mode, out, l = fx.add_decode("png_grey16.png", "16-bit grey PNG (Pillow: mode I, clipped to 255)")
    clipped = np.minimum(v16, 255).astype(np.uint8)
    fx.fact(f"16-bit grey PNG: opened as {mode}; convert('L') and convert('RGB') clip the 16-bit value to 255 "
            f"(not the high byte): {int((v16 > 255).sum())} of {v16.size} pixels come out 255",
            png_header(fx.path("png_grey16.png"))[:2] == (16, 0) and np.array_equal(l[..., 0], clipped)
            and all(np.array_equal(out[..., k], clipped) for k in range(3)))

    Image.fromarray(rgb, "RGB").save(fx.path("png_rgb8.png"))
    mode, out, l = fx.add_decode("png_rgb8.png", "8-bit RGB PNG")
    fx.fact("8-bit RGB PNG: exact, L is Pillow's luma",
            np.array_equal(out, rgb) and np.array_equal(l[..., 0], luma(rgb)))

    # 16-bit colour: random low bytes, so taking the high byte and rounding v * 255 / 65535 differ.
    rgb16 = rgb.astype(np.int64) * 256 + rng.randint(0, 256, size=rgb.shape)
    alpha16 = alpha_pattern(rng, w, h).astype(np.int64) * 256 + rng.randint(0, 256, size=(h, w))
    grey16 = grey.astype(np.int64) * 256 + rng.randint(0, 256, size=(h, w))
    rounded_differs = int((np.rint(rgb16 * 255.0 / 65535.0) != rgb16 >> 8).sum())
    for name, what, samples, ctype in [
            ("png_rgb16.png", "16-bit RGB PNG (written by hand)", rgb16, 2),
            ("png_rgba16.png", "16-bit RGBA PNG (written by hand)", np.dstack([rgb16, alpha16]), 6),
            ("png_la16.png", "16-bit grey+alpha PNG (written by hand)", np.dstack([grey16, alpha16]), 4)]:
        fx.write(name, png_bytes(samples, 16, ctype))
        mode, out, l = fx.add_decode(name, what)
        high = (samples >> 8).astype(np.uint8)
        if ctype == 4:
            ok = np.array_equal(l[..., 0], high[..., 0]) and all(
                np.array_equal(out[..., k], high[..., 0]) for k in range(3))
        else:
            ok = np.array_equal(out, high[..., :3]) and np.array_equal(l[..., 0], luma(high[..., :3]))
        fx.fact(f"{name}: opened as {mode}; every sample is its high byte (v >> 8; rounding v * 255 / 65535 "
                f"would differ at {rounded_differs} of {rgb16.size} RGB samples here)"
                + ("" if ctype == 2 else ", alpha dropped")
                + ("; Pillow 9.4 opens 16-bit grey+alpha as RGBA with R = G = B = grey" if ctype == 4 else ""), ok)

    # Palettes: 256 colours (8-bit indices), 16 colours (Pillow writes 4-bit indices), and
    # 256 colours with a tRNS chunk of per-entry alpha.
    palette = rng.randint(0, 256, size=(256, 3)).astype(np.uint8)
    index = ((grey // 16) * 16 + rng.randint(0, 16, size=(h, w))).astype(np.uint8)
    small_palette = rng.randint(0, 256, size=(16, 3)).astype(np.uint8)
    small_index = (grey // 16).astype(np.uint8)
    trns = rng.randint(0, 256, size=256).astype(np.uint8)
    trns[:8] = 0
    for name, what, idx, pal, extra in [
            ("png_palette8.png", "palette PNG, 256 colours, 8-bit indices", index, palette, {}),
            ("png_palette4.png", "palette PNG, 16 colours, 4-bit indices", small_index, small_palette, {}),
            ("png_palette_trns.png", "palette PNG with a tRNS chunk (per-entry alpha)", index, palette,
             {"transparency": trns.tobytes()})]:
        im = Image.fromarray(idx, "P")
        im.putpalette(pal.reshape(-1).tolist())
        im.save(fx.path(name), **extra)
        with warnings.catch_warnings():
            # "Palette images with Transparency expressed in bytes should be converted to RGBA
            # images": the conversion to RGB / L ignores the tRNS alpha, which is what is recorded.
            warnings.simplefilter("ignore", UserWarning)
            mode, out, l = fx.add_decode(name, what)
        looked_up = pal[idx]
        fx.fact(f"{name}: bit depth {png_header(fx.path(name))[0]}, opened as {mode}; RGB is the palette entry"
                f"{', alpha ignored' if extra else ''}; L is Pillow's luma of the entry",
                np.array_equal(out, looked_up) and np.array_equal(l[..., 0], luma(looked_up)))

    alpha = alpha_pattern(rng, w, h)
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(fx.path("png_la8.png"))
    mode, out, l = fx.add_decode("png_la8.png", "8-bit grey+alpha PNG")
    fx.fact(f"8-bit grey+alpha PNG: opened as {mode}; alpha dropped (not composited) for L and RGB",
            np.array_equal(l[..., 0], grey) and all(np.array_equal(out[..., k], grey) for k in range(3)))

    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(fx.path("png_rgba8.png"))
    mode, out, l = fx.add_decode("png_rgba8.png", "8-bit RGBA PNG")
    fx.fact(f"8-bit RGBA PNG: opened as {mode}; RGBA -> RGB drops alpha (no compositing), RGBA -> L is the luma "
            f"of RGB", np.array_equal(out, rgb) and np.array_equal(l[..., 0], luma(rgb)))

    # Ancillary chunks Pillow does not apply to the pixels: a gAMA of 1.0 (a decoder correcting
    # gamma would brighten every mid-tone) and a tRNS colour key (alpha, dropped on conversion).
    fx.write("png_rgb8_gama.png", png_bytes(rgb, 8, 2, chunks=[(b"gAMA", struct.pack(">I", 100000))]))
    mode, out, _ = fx.add_decode("png_rgb8_gama.png", "8-bit RGB PNG with a gAMA chunk of 1.0 (written by hand)")
    fx.fact(f"RGB PNG with gAMA 1.0: opened as {mode}; the gamma is not applied", np.array_equal(out, rgb))
    key = int(grey[h // 2, w // 2])
    fx.write("png_grey8_trns.png", png_bytes(grey[..., None], 8, 0, chunks=[(b"tRNS", struct.pack(">H", key))]))
    mode, out, l = fx.add_decode("png_grey8_trns.png", "8-bit grey PNG with a tRNS colour key (written by hand)")
    fx.fact(f"grey PNG with a tRNS key ({int((grey == key).sum())} transparent pixels): opened as {mode}; "
            f"the key is ignored", np.array_equal(l[..., 0], grey) and np.array_equal(out[..., 1], grey))

    fx.write("png_interlaced_rgb8.png", png_bytes(rgb, 8, 2, interlace=True))
    mode, out, _ = fx.add_decode("png_interlaced_rgb8.png", "Adam7-interlaced 8-bit RGB PNG (written by hand)")
    fx.fact("Adam7-interlaced RGB PNG decodes to the source pixels", np.array_equal(out, rgb))
    levels = (grey.astype(np.int64) * 3 + 127) // 255
    fx.write("png_interlaced_grey2.png", png_bytes(levels[..., None], 2, 0, interlace=True))
    mode, _, l = fx.add_decode("png_interlaced_grey2.png", "Adam7-interlaced 2-bit grey PNG (written by hand)")
    fx.fact("Adam7-interlaced 2-bit grey PNG decodes to 85 x level", np.array_equal(l[..., 0], levels * 85))


# --------------------------------------------------------------------------------------- WebP

def make_webps(fx, rng):
    if not features.check("webp"):
        raise SystemExit("this Pillow has no WebP support (Debian: apt-get install python3-pil with libwebp)")
    w, h = 67, 45
    rgb = pattern(rng, w, h)
    Image.fromarray(rgb, "RGB").save(fx.path("webp_lossy.webp"), "WEBP", quality=80)
    mode, out, l = fx.add_decode("webp_lossy.webp", "lossy WebP, q80")
    fx.fact(f"lossy WebP: opened as {mode} (mean |error| {np.abs(out.astype(int) - rgb).mean():.1f}); "
            f"L is Pillow's luma", mode == "RGB" and np.array_equal(l[..., 0], luma(out)))

    Image.fromarray(rgb, "RGB").save(fx.path("webp_lossless.webp"), "WEBP", lossless=True)
    mode, out, _ = fx.add_decode("webp_lossless.webp", "lossless WebP")
    fx.fact(f"lossless WebP: opened as {mode}, exact", np.array_equal(out, rgb))

    alpha = alpha_pattern(rng, w, h)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(fx.path("webp_lossy_alpha.webp"), "WEBP", quality=80)
    mode, out, _ = fx.add_decode("webp_lossy_alpha.webp", "lossy WebP with alpha, q80")
    # Premultiplied output would keep the red block's R below its alpha where alpha is small.
    faint = (alpha > 0) & (alpha < 40) & (rgb[..., 0] > 200)
    fx.fact(f"lossy WebP with alpha: opened as {mode}; RGB is not premultiplied by alpha "
            f"(mean R {out[..., 0][faint].mean():.0f} where alpha < 40 and the source R > 200)",
            mode == "RGBA" and faint.any() and out[..., 0][faint].mean() > 150)

    alpha = alpha_pattern(rng, w, h, low=16)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(fx.path("webp_lossless_alpha.webp"), "WEBP", lossless=True)
    mode, out, _ = fx.add_decode("webp_lossless_alpha.webp", "lossless WebP with alpha (alpha 16..255)")
    fx.fact(f"lossless WebP with alpha: opened as {mode}; RGB equals the source exactly (straight, not "
            f"premultiplied, alpha dropped)", mode == "RGBA" and np.array_equal(out, rgb))


# ------------------------------------------------------------------------------- resampling

def make_resizes(fx, rng):
    def jpeg_rgb(name):
        with Image.open(fx.path(name)) as im:
            return hwc(im.convert("RGB"))

    with Image.open(fx.path("png_grey8.png")) as im:
        grey = hwc(im.convert("L"))
    sources = [
        ("jpeg_444", jpeg_rgb("jpeg_444.jpg"),
         [(16, 11), (50, 33), (150, 101), (67, 20), (20, 45), (67, 45), (1, 1)]),
        ("jpeg_420_tall", jpeg_rgb("jpeg_420_tall.jpg"),
         [(11, 16), (33, 50), (101, 150), (45, 20), (20, 67), (45, 67), (1, 1)]),
        ("png_grey8", grey, [(16, 11), (50, 33), (150, 101), (67, 20), (20, 45), (67, 45), (1, 1)]),
        ("tiny_rgb", rng.randint(0, 256, size=(5, 7, 3)).astype(np.uint8),
         [(1, 1), (3, 2), (40, 29), (7, 30), (2, 5), (7, 5)]),
    ]
    for name, src, sizes in sources:
        fx.tensors[f"resize_src/{name}"] = src
        im = Image.fromarray(src[..., 0] if src.shape[2] == 1 else src, "L" if src.shape[2] == 1 else "RGB")
        for filt, pil_filter in FILTERS.items():
            for width, height in sizes:
                key = f"resize/{name}/{filt}/{width}x{height}"
                fx.tensors[key] = hwc(im.resize((width, height), pil_filter))
                fx.cases["resize"].append({"src": f"resize_src/{name}", "filter": filt, "width": width,
                                           "height": height, "expected": key})
    fx.fact("Image.resize to the image's own size returns the pixels unchanged, for every filter",
            all(np.array_equal(fx.tensors[f"resize/jpeg_444/{f}/67x45"], sources[0][1]) for f in FILTERS))


def make_torchvision(fx, rng):
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    modes = {"box": InterpolationMode.BOX, "bilinear": InterpolationMode.BILINEAR,
             "bicubic": InterpolationMode.BICUBIC, "lanczos": InterpolationMode.LANCZOS}
    Image.fromarray(pattern(rng, 500, 375), "RGB").save(fx.path("big.jpg"), "JPEG", quality=90)
    fx.add_decode("big.jpg", "500x375 4:2:0 JPEG, q90 (torchvision and ADM pipelines)")
    Image.fromarray(pattern(rng, 220, 333), "RGB").save(fx.path("big_tall.jpg"), "JPEG", quality=90)
    fx.add_decode("big_tall.jpg", "220x333 4:2:0 JPEG, q90 (torchvision and ADM pipelines)")

    # The long side after Resize(res) minus res, d, picks CenterCrop's offset round(d / 2), half to
    # even: these resolutions give d = 0, 1 and 3 mod 4 on each axis (d = 1 mod 4 rounds down,
    # 3 mod 4 up; round-half-up and floor each fail one of them).
    runs = [("big.jpg", "rgb", [(64, FILTERS), (70, FILTERS), (97, FILTERS)]),
            ("big_tall.jpg", "rgb", [(64, FILTERS), (70, FILTERS), (97, FILTERS)]),
            ("png_grey8.png", "l", [(32, FILTERS), (45, ["bilinear"])])]  # 45: no resize, crop only
    residues = set()
    for name, kind, plan in runs:
        with Image.open(fx.path(name)) as im:
            img = im.convert("RGB" if kind == "rgb" else "L")
        for res, filters in plan:
            short, long_side = min(img.size), max(img.size)
            residues.add((img.size[0] > img.size[1], (int(res * long_side / short) - res) % 4))
            for filt in filters:
                pipeline = transforms.Compose([transforms.Resize(res, interpolation=modes[filt]),
                                               transforms.CenterCrop(res)])
                key = f"tv/{name}/{filt}/{res}"
                fx.tensors[key] = hwc(pipeline(img))
                assert fx.tensors[key].shape[:2] == (res, res)
                resized = transforms.Resize(res, interpolation=modes[filt])(img).size
                fx.cases["torchvision"].append({"src_file": f"images/{name}", "src": f"decode/{name}/{kind}",
                                                "filter": filt, "resolution": res, "expected": key,
                                                "resized": list(resized)})
    fx.fact("the torchvision cases crop with offsets round(d / 2) for d = 1 and 3 mod 4 on both axes",
            all((wide, r) in residues for wide in (True, False) for r in (1, 3)))


def make_adm(fx, rng):
    # The 2 * size boundary: 80x64 at size 16 halves twice (64 -> 32 -> 16), the second time with the
    # short side exactly 2 * size, and the BICUBIC step is then the identity. Half-way sides: at size
    # 10, 20x16 and 28x16 scale by 0.625 to 12.5 and 17.5, which round() takes to 12 and 18.
    for name, (w, h) in [("halving_exact", (80, 64)), ("half_even_20x16", (20, 16)), ("half_even_28x16", (28, 16))]:
        fx.tensors[f"adm_src/{name}"] = pattern(rng, w, h)
    runs = [("decode/big.jpg/rgb", "images/big.jpg", "big.jpg", [64, 100, 256]),
            ("decode/big_tall.jpg/rgb", "images/big_tall.jpg", "big_tall.jpg", [64, 100]),
            ("decode/png_grey8.png/l", "images/png_grey8.png", "png_grey8.png", [16]),
            ("adm_src/halving_exact", None, "halving_exact", [16]),
            ("adm_src/half_even_20x16", None, "half_even_20x16", [10]),
            ("adm_src/half_even_28x16", None, "half_even_28x16", [10])]
    for src, src_file, name, sizes in runs:
        arr = fx.tensors[src]
        img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, "L" if arr.shape[2] == 1 else "RGB")
        for size in sizes:
            key = f"adm/{name}/{size}"
            steps = []
            fx.tensors[key] = hwc(center_crop_arr(img, size, steps))
            assert fx.tensors[key].shape[:2] == (size, size)
            case = {"src": src, "resolution": size, "expected": key, "sizes": [list(s) for s in steps]}
            if src_file:
                case["src_file"] = src_file
            fx.cases["adm"].append(case)
    steps = {c["expected"]: c["sizes"] for c in fx.cases["adm"]}
    fx.fact("ADM: 80x64 at 16 goes 40x32 -> 20x16 -> 20x16 (halved at exactly 2 * size, then an identity "
            "BICUBIC); at 10, 20x16 -> 12x10 and 28x16 -> 18x10 (round() halves to even); sizes per case: "
            + "; ".join(f"{k[4:]}: " + " -> ".join(f"{w}x{h}" for w, h in v) for k, v in steps.items()),
            steps["adm/halving_exact/16"] == [[40, 32], [20, 16], [20, 16]]
            and steps["adm/half_even_20x16/10"] == [[12, 10]] and steps["adm/half_even_28x16/10"] == [[18, 10]])


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    start = time.time()
    fx = Fixtures(sys.argv[1])
    rng = np.random.RandomState(SEED)
    make_jpegs(fx, rng)
    make_pngs(fx, rng)
    make_webps(fx, rng)
    make_resizes(fx, rng)
    make_torchvision(fx, rng)
    make_adm(fx, rng)
    import PIL
    import torchvision
    versions = {"pillow": PIL.__version__, "torchvision": torchvision.__version__,
                "libjpeg": str(features.version("jpg")), "zlib": str(features.version("zlib")),
                "libwebp": str(features.version("webp"))}
    fx.cases["versions"] = versions
    fx.cases["facts"] = fx.facts
    with open(os.path.join(fx.out, "cases.json"), "w") as f:
        json.dump(fx.cases, f, indent=1, sort_keys=True)
        f.write("\n")
    write_safetensors(os.path.join(fx.out, "expected.safetensors"), fx.tensors,
                      metadata={k: v for k, v in versions.items()})
    size = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(fx.out) for n in names)
    print(", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"{len(fx.cases['decode'])} decode, {len(fx.cases['resize'])} resize, "
          f"{len(fx.cases['torchvision'])} torchvision and {len(fx.cases['adm'])} ADM cases; "
          f"{size / 1e6:.2f} MB in {time.time() - start:.1f} s")
    print("What Pillow does (checked):")
    for text in fx.facts:
        print("  - " + text)


if __name__ == "__main__":
    main()
