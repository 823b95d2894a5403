"""Pure-Python PNG/PPM handling: PPM→PNG, a small PNG decoder (8-bit, non-interlaced) and blank detection."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from ATPLibrary.errors import ScreenshotError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MIME = "image/png"
PPM_MIMES = frozenset({"image/x-portable-pixmap", "image/x-portable-anymap", "image/x-ppm"})

_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (8-bit gray, RGB, gray+A, RGBA)


@dataclass(frozen=True)
class RawImage:
    """Unfiltered pixels: ``height`` rows of ``width * channels`` bytes."""

    width: int
    height: int
    channels: int
    pixels: bytes

    def pixel(self, x: int, y: int) -> bytes:
        start = (y * self.width + x) * self.channels
        return self.pixels[start : start + self.channels]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(width: int, height: int, rgb: bytes, *, channels: int = 3) -> bytes:
    """Encode 8-bit RGB (``channels=3``) or RGBA (4) rows as PNG (filter 0 on every row)."""
    colour_type = {3: 2, 4: 6}[channels]
    stride = width * channels
    if len(rgb) != stride * height:
        raise ScreenshotError(
            f"pixel data has {len(rgb)} bytes, expected {stride * height} for {width}x{height}"
        )
    raw = b"".join(b"\x00" + rgb[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def _ppm_tokens(data: bytes, count: int) -> tuple[list[bytes], int]:
    tokens: list[bytes] = []
    pos = 0
    size = len(data)
    while len(tokens) < count:
        while pos < size and data[pos : pos + 1].isspace():
            pos += 1
        if pos < size and data[pos : pos + 1] == b"#":
            while pos < size and data[pos : pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < size and not data[pos : pos + 1].isspace() and data[pos : pos + 1] != b"#":
            pos += 1
        if start == pos:
            raise ScreenshotError("truncated PPM header")
        tokens.append(data[start:pos])
    return tokens, pos + 1  # exactly one whitespace byte ends the header


def decode_ppm(data: bytes) -> RawImage:
    """Decode a binary PPM (P6), maxval up to 65535 (scaled to 8 bits)."""
    if not data.startswith(b"P6"):
        raise ScreenshotError(f"not a binary PPM (P6) image: starts with {data[:2]!r}")
    try:
        tokens, offset = _ppm_tokens(data, 4)
        width, height, maxval = int(tokens[1]), int(tokens[2]), int(tokens[3])
    except ValueError as err:
        raise ScreenshotError(f"bad PPM header: {err}") from err
    if not 0 < maxval < 65536:
        raise ScreenshotError(f"bad PPM maxval {maxval}")
    samples = width * height * 3
    body = data[offset:]
    if maxval < 256:
        if len(body) < samples:
            raise ScreenshotError(f"PPM pixel data truncated: {len(body)} of {samples} bytes")
        pixels = body[:samples]
        if maxval != 255:
            pixels = bytes(min(255, (v * 255 + maxval // 2) // maxval) for v in pixels)
    else:
        if len(body) < samples * 2:
            raise ScreenshotError(f"PPM pixel data truncated: {len(body)} of {samples * 2} bytes")
        values = struct.unpack(f">{samples}H", body[: samples * 2])
        pixels = bytes((v * 255 + maxval // 2) // maxval for v in values)
    return RawImage(width, height, 3, pixels)


def ppm_to_png(data: bytes) -> bytes:
    """Convert a binary PPM (what QEMU's screendump writes) to PNG."""
    image = decode_ppm(data)
    return encode_png(image.width, image.height, image.pixels)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytes:
    stride = width * bpp
    out = bytearray(stride * height)
    prev = bytearray(stride)
    pos = 0
    for y in range(height):
        if pos + 1 + stride > len(raw):
            raise ScreenshotError("PNG image data truncated")
        ftype = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, prev[i], upleft)) & 0xFF
        elif ftype != 0:
            raise ScreenshotError(f"bad PNG filter type {ftype} in row {y}")
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return bytes(out)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ScreenshotError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def decode_png(data: bytes) -> RawImage:
    """Decode an 8-bit, non-interlaced PNG (gray, gray+alpha, RGB or RGBA) into raw pixels."""
    if not data.startswith(PNG_SIGNATURE):
        raise ScreenshotError("not a PNG image (bad signature)")
    pos = len(PNG_SIGNATURE)
    header: tuple[int, ...] | None = None
    idat = bytearray()
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if header is None:
        raise ScreenshotError("PNG has no IHDR chunk")
    width, height, depth, colour, _compression, _filter, interlace = header
    if depth != 8 or colour not in _CHANNELS or interlace != 0:
        raise ScreenshotError(
            f"unsupported PNG: bit depth {depth}, colour type {colour}, interlace {interlace} "
            f"(only 8-bit non-interlaced gray/RGB/RGBA)"
        )
    bpp = _CHANNELS[colour]
    try:
        raw = zlib.decompress(bytes(idat))
    except zlib.error as err:
        raise ScreenshotError(f"corrupt PNG image data: {err}") from err
    return RawImage(width, height, bpp, _unfilter(raw, width, height, bpp))


def is_blank(image: RawImage | bytes) -> bool:
    """True when every pixel has the same colour (``image`` may be PNG bytes)."""
    raw = decode_png(image) if isinstance(image, bytes) else image
    if raw.width == 0 or raw.height == 0:
        return True
    first_row = raw.pixel(0, 0) * raw.width
    stride = raw.width * raw.channels
    pixels = raw.pixels
    return all(pixels[y * stride : (y + 1) * stride] == first_row for y in range(raw.height))


def to_png(data: bytes, mime: str) -> bytes:
    """Return PNG bytes for a screenshot of type ``mime`` (PNG as is, PPM converted)."""
    mime = (mime or "").lower()
    if mime == PNG_MIME or data.startswith(PNG_SIGNATURE):
        return data
    if mime in PPM_MIMES or data.startswith(b"P6"):
        return ppm_to_png(data)
    raise ScreenshotError(f"unsupported screenshot format '{mime}'")
