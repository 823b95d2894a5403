"""Uncompressed SPICE bitmaps (image type BITMAP): 1/4/8-bit palette, 16-bit 555, 24-bit, 32-bit, RGBA."""

from __future__ import annotations

from ATPLibrary.errors import SpiceProtocolError
from ATPLibrary.spice.display.lz import PLT1_BE, PLT1_LE, PLT4_BE, PLT4_LE, PLT8, expand_palette
from ATPLibrary.spice.display.pixels import Pixels, check_size, flip_rows, rgb555_table

# SpiceBitmapFmt
FMT_1BIT_LE, FMT_1BIT_BE, FMT_4BIT_LE, FMT_4BIT_BE, FMT_8BIT, FMT_16BIT, FMT_24BIT, FMT_32BIT, FMT_RGBA, FMT_8BIT_A = (
    range(1, 11)
)
FMT_NAMES = {
    FMT_1BIT_LE: "1BIT_LE",
    FMT_1BIT_BE: "1BIT_BE",
    FMT_4BIT_LE: "4BIT_LE",
    FMT_4BIT_BE: "4BIT_BE",
    FMT_8BIT: "8BIT",
    FMT_16BIT: "16BIT",
    FMT_24BIT: "24BIT",
    FMT_32BIT: "32BIT",
    FMT_RGBA: "RGBA",
    FMT_8BIT_A: "8BIT_A",
}
_BITS = {
    FMT_1BIT_LE: 1,
    FMT_1BIT_BE: 1,
    FMT_4BIT_LE: 4,
    FMT_4BIT_BE: 4,
    FMT_8BIT: 8,
    FMT_16BIT: 16,
    FMT_24BIT: 24,
    FMT_32BIT: 32,
    FMT_RGBA: 32,
    FMT_8BIT_A: 8,
}
_PLT_KIND = {FMT_1BIT_LE: PLT1_LE, FMT_1BIT_BE: PLT1_BE, FMT_4BIT_LE: PLT4_LE, FMT_4BIT_BE: PLT4_BE, FMT_8BIT: PLT8}


def bitmap_data_size(fmt: int, width: int, height: int, stride: int) -> int:
    """Bytes of pixel data a bitmap carries (``stride * height``), after checking the stride fits."""
    if fmt not in FMT_NAMES:
        raise SpiceProtocolError(f"bitmap: unknown format {fmt}")
    check_size(width, height, f"{FMT_NAMES[fmt]} bitmap")
    need = (width * _BITS[fmt] + 7) // 8
    if stride < need or stride > need + 64 + need:
        raise SpiceProtocolError(f"{FMT_NAMES[fmt]} bitmap: stride {stride} does not fit width {width}")
    return stride * height


def decode_bitmap(
    fmt: int, width: int, height: int, stride: int, top_down: bool, data: bytes, palette: list[int] | None
) -> Pixels:
    """Rows of ``stride`` bytes (``len(data) == stride * height``) to top-down B, G, R, X/A pixels."""
    size = bitmap_data_size(fmt, width, height, stride)
    name = FMT_NAMES[fmt]
    if len(data) < size:
        raise SpiceProtocolError(f"{name} bitmap: {len(data)} data bytes, {size} needed")
    if fmt in _PLT_KIND:
        out = expand_palette(data, _PLT_KIND[fmt], width, height, stride, palette, f"{name} bitmap")
    elif fmt in (FMT_32BIT, FMT_RGBA):
        row = width * 4
        if stride == row:
            out = bytearray(data[:size])
        else:
            out = bytearray(b"".join(data[y * stride : y * stride + row] for y in range(height)))
    elif fmt == FMT_24BIT:
        out = bytearray(width * height * 4)
        row = width * 4
        for y in range(height):
            src = data[y * stride : y * stride + width * 3]
            base = y * row
            out[base : base + row : 4] = src[0::3]
            out[base + 1 : base + row : 4] = src[1::3]
            out[base + 2 : base + row : 4] = src[2::3]
    elif fmt == FMT_16BIT:
        table = rgb555_table()
        parts = []
        for y in range(height):
            src = data[y * stride : y * stride + width * 2]
            it = iter(src)
            parts.append(b"".join(table[lo | (hi << 8)] for lo, hi in zip(it, it, strict=False)))
        out = bytearray(b"".join(parts))
    else:
        raise SpiceProtocolError(f"{name} bitmap: an alpha-only bitmap is not a colour image")
    if not top_down:
        out = flip_rows(out, width, height)
    return Pixels(width, height, out, fmt == FMT_RGBA)
