"""Decoded images and the limits every decoder checks before it allocates.

Decoders produce :class:`Pixels`: ``width`` x ``height`` pixels, top-down rows, 4 bytes per pixel in
SPICE's little-endian xRGB/ARGB order (bytes B, G, R, X/A).  That is also the canvas's surface
format, so drawing is row slicing, and a screenshot is one Pillow ``BGRX`` conversion.
"""

from __future__ import annotations

from dataclasses import dataclass

from ATPLibrary.errors import SpiceProtocolError

#: Largest side of an image or surface we accept (SPICE servers use far less; QXL's limit is 16384).
MAX_DIMENSION = 16384
#: Largest image/surface in pixels (64 MiB as 32-bit pixels): checked before any buffer is allocated.
MAX_PIXELS = 16 * 1024 * 1024


def check_size(width: int, height: int, what: str) -> int:
    """``width * height`` after checking both against the limits; raises SpiceProtocolError otherwise."""
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise SpiceProtocolError(f"{what}: bad size {width}x{height} (1..{MAX_DIMENSION} per side)")
    n = width * height
    if n > MAX_PIXELS:
        raise SpiceProtocolError(f"{what}: {width}x{height} is larger than the {MAX_PIXELS}-pixel limit")
    return n


@dataclass
class Pixels:
    """A decoded image: top-down rows of 4-byte B, G, R, X/A pixels."""

    width: int
    height: int
    data: bytearray
    has_alpha: bool = False

    def row(self, y: int, x0: int = 0, x1: int | None = None) -> bytearray:
        end = self.width if x1 is None else x1
        base = y * self.width * 4
        return self.data[base + x0 * 4 : base + end * 4]


def flip_rows(data: bytearray, width: int, height: int) -> bytearray:
    """The same pixels with the row order reversed (bottom-up to top-down)."""
    stride = width * 4
    out = bytearray(len(data))
    for y in range(height):
        src = (height - 1 - y) * stride
        out[y * stride : (y + 1) * stride] = data[src : src + stride]
    return out


def palette_to_bgrx(entries: list[int]) -> list[bytes]:
    """SPICE palette entries (32-bit xRGB) as 4-byte B, G, R, 0 pixels."""
    return [(e & 0xFFFFFF).to_bytes(4, "little") for e in entries]


_RGB16: list[bytes] | None = None


def rgb555_table() -> list[bytes]:
    """For every 16-bit x555 value, its 4-byte B, G, R, 0 pixel (5-bit channels widened as SPICE does)."""
    global _RGB16
    if _RGB16 is None:
        table = []
        for v in range(65536):
            r, g, b = (v >> 10) & 31, (v >> 5) & 31, v & 31
            table.append(bytes(((b << 3) | (b >> 2), (g << 3) | (g >> 2), (r << 3) | (r >> 2), 0)))
        _RGB16 = table
    return _RGB16
