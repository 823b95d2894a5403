"""SPICE LZ image decoding (image type LZ_RGB and LZ_PLT).

Format (re-implemented from the published format of spice-common's LZ codec): a big-endian header
``magic "LZ  ", version 1.1, type, width, height, stride, top_down`` (7 x u32), then one LZ77 stream.
Each control byte ``c`` is either a literal run (``c < 32``: ``c + 1`` pixels follow) or a back
reference: length code ``c >> 5`` (7 = more length bytes follow, each added until one is not 255),
distance ``(c & 31) << 8`` plus the next byte, or, when that is the 31/255 escape, a 16-bit far
distance plus 8191.  Lengths carry a per-type bias (RGB24/32: +1 after the -1; RGB16: +2;
palette/alpha: +3) and distances +1.  RGB pixels travel as B, G, R (RGB16 as a big-endian 555 word);
RGBA is an RGB32 stream followed by a second stream of alpha bytes.
"""

from __future__ import annotations

import struct

from ATPLibrary.errors import SpiceProtocolError
from ATPLibrary.spice.display.pixels import (
    Pixels,
    check_size,
    flip_rows,
    palette_to_bgrx,
    rgb555_table,
)

LZ_MAGIC = 0x20205A4C
LZ_VERSION = 0x00010001

# LzImageType
PLT1_LE, PLT1_BE, PLT4_LE, PLT4_BE, PLT8, RGB16, RGB24, RGB32, RGBA, XXXA, A8 = range(1, 12)
TYPE_NAMES = {
    PLT1_LE: "PLT1_LE",
    PLT1_BE: "PLT1_BE",
    PLT4_LE: "PLT4_LE",
    PLT4_BE: "PLT4_BE",
    PLT8: "PLT8",
    RGB16: "RGB16",
    RGB24: "RGB24",
    RGB32: "RGB32",
    RGBA: "RGBA",
    XXXA: "XXXA",
    A8: "A8",
}
PLT_PIXELS_PER_BYTE = {PLT1_LE: 8, PLT1_BE: 8, PLT4_LE: 2, PLT4_BE: 2, PLT8: 1}
MAX_COPY = 32
MAX_DISTANCE = 8191
#: No LZ/GLZ stream expands one input byte to more units (a length byte adds at most 255): checked
#: before the output buffer is allocated.
MAX_UNITS_PER_BYTE = 256

_HEADER = struct.Struct(">7I")


def decode_units(
    src: bytes | bytearray | memoryview, pos: int, units: int, unit_in: int, unit_out: int, bias: int, what: str
) -> tuple[bytearray, int]:
    """Decode one LZ stream of ``units`` units starting at ``src[pos]``; return (output, new position).

    A literal unit reads ``unit_in`` bytes and writes ``unit_out`` (3 -> 4 pads B, G, R with a zero byte);
    references count in units.  Any inconsistency raises SpiceProtocolError.
    """
    end = units * unit_out
    n_src = len(src)
    if units > max(64, (n_src - pos) * MAX_UNITS_PER_BYTE):
        raise SpiceProtocolError(f"{what}: {n_src - pos} bytes cannot hold {units} units")
    out = bytearray(end)
    op = 0
    try:
        while op < end:
            ctrl = src[pos]
            pos += 1
            if ctrl >= MAX_COPY:
                length = (ctrl >> 5) - 1
                ofs = (ctrl & 31) << 8
                if length == 6:
                    while True:
                        code = src[pos]
                        pos += 1
                        length += code
                        if code != 255:
                            break
                code = src[pos]
                pos += 1
                ofs += code
                if code == 255 and ofs - code == 31 << 8:
                    ofs = (src[pos] << 8) + src[pos + 1] + MAX_DISTANCE
                    pos += 2
                length = (length + bias) * unit_out
                ofs = (ofs + 1) * unit_out
                ref = op - ofs
                if ref < 0 or op + length > end:
                    raise SpiceProtocolError(
                        f"{what}: reference of {length // unit_out} units at distance {ofs // unit_out} "
                        f"leaves the image (at unit {op // unit_out} of {units})"
                    )
                if ofs >= length:
                    out[op : op + length] = out[ref : ref + length]
                else:
                    pattern = bytes(out[ref:op])
                    out[op : op + length] = (pattern * (length // ofs + 1))[:length]
                op += length
            else:
                n = ctrl + 1
                nin = n * unit_in
                nout = n * unit_out
                if op + nout > end or pos + nin > n_src:
                    raise SpiceProtocolError(
                        f"{what}: literal run of {n} units does not fit (at unit {op // unit_out} of {units}, "
                        f"{n_src - pos} input bytes left)"
                    )
                if unit_in == unit_out:
                    out[op : op + nout] = src[pos : pos + nin]
                else:  # 3 -> 4: B, G, R then a zero pad byte (already zero)
                    chunk = src[pos : pos + nin]
                    out[op : op + nout : 4] = chunk[0::3]
                    out[op + 1 : op + nout : 4] = chunk[1::3]
                    out[op + 2 : op + nout : 4] = chunk[2::3]
                pos += nin
                op += nout
    except IndexError:
        raise SpiceProtocolError(f"{what}: data ends in the middle of the stream") from None
    return out, pos


def rgb16_to_bgrx(words: bytearray | bytes) -> bytearray:
    """Big-endian 555 words (as LZ/GLZ send them) to B, G, R, 0 pixels."""
    table = rgb555_table()
    it = iter(words)
    return bytearray(b"".join(table[(hi << 8) | lo] for hi, lo in zip(it, it, strict=False)))


def expand_palette(
    indexes: bytearray | bytes, kind: int, width: int, height: int, stride: int, palette: list[int] | None, what: str
) -> bytearray:
    """Palette image rows (``stride`` bytes each) to B, G, R, 0 pixels (``width`` per row)."""
    if not palette:
        raise SpiceProtocolError(f"{what}: palette image without a palette")
    pal = palette_to_bgrx(palette)
    pal += [pal[-1]] * (256 - len(pal)) if len(pal) < 256 else []
    out = bytearray()
    for y in range(height):
        row = indexes[y * stride : (y + 1) * stride]
        if kind == PLT8:
            idx: list[int] = list(row[:width])
        elif kind in (PLT4_LE, PLT4_BE):
            idx = []
            for b in row:
                idx += (b & 15, b >> 4) if kind == PLT4_LE else (b >> 4, b & 15)
            idx = idx[:width]
        else:
            idx = []
            for b in row:
                bits = [(b >> i) & 1 for i in range(8)]
                idx += bits if kind == PLT1_LE else bits[::-1]
            idx = idx[:width]
        if len(idx) < width:
            raise SpiceProtocolError(f"{what}: palette row {y} has {len(idx)} pixels, {width} expected")
        out += b"".join(pal[i] for i in idx)
    return out


def decode_lz(data: bytes, palette: list[int] | None = None) -> Pixels:
    """Decode an LZ_RGB or LZ_PLT image payload to :class:`Pixels` (top-down B, G, R, X/A)."""
    what = "LZ image"
    if len(data) < _HEADER.size:
        raise SpiceProtocolError(f"{what}: {len(data)} bytes, shorter than its {_HEADER.size}-byte header")
    magic, version, kind, width, height, stride, top_down = _HEADER.unpack_from(data, 0)
    if magic != LZ_MAGIC:
        raise SpiceProtocolError(f"{what}: bad magic {magic:#010x}")
    if version != LZ_VERSION:
        raise SpiceProtocolError(f"{what}: unsupported version {version:#x}")
    if kind not in TYPE_NAMES:
        raise SpiceProtocolError(f"{what}: unknown LZ image type {kind}")
    what = f"LZ {TYPE_NAMES[kind]} image"
    n = check_size(width, height, what)
    pos = _HEADER.size
    if kind in PLT_PIXELS_PER_BYTE:
        ppb = PLT_PIXELS_PER_BYTE[kind]
        if stride * ppb < width or stride > width // ppb + 2 or stride * height > 4 * n:
            raise SpiceProtocolError(f"{what}: stride {stride} does not fit width {width}")
        idx, pos = decode_units(data, pos, stride * height, 1, 1, 3, what)
        out = expand_palette(idx, kind, width, height, stride, palette, what)
        has_alpha = False
    elif kind == RGB16:
        words, pos = decode_units(data, pos, n, 2, 2, 2, what)
        out = rgb16_to_bgrx(words)
        has_alpha = False
    elif kind in (RGB24, RGB32):
        out, pos = decode_units(data, pos, n, 3, 4, 1, what)
        has_alpha = False
    elif kind == RGBA:
        out, pos = decode_units(data, pos, n, 3, 4, 1, what)
        alpha, pos = decode_units(data, pos, n, 1, 1, 3, what + " (alpha)")
        out[3::4] = alpha
        has_alpha = True
    else:  # XXXA / A8: alpha only, as used for masks; not a drawable colour image
        raise SpiceProtocolError(f"{what}: alpha-only LZ images are not a colour image")
    if not top_down:
        out = flip_rows(out, width, height)
    return Pixels(width, height, out, has_alpha)
