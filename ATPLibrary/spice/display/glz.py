"""SPICE GLZ image decoding (image types GLZ_RGB and ZLIB_GLZ_RGB) and the shared GLZ window.

GLZ is LZ with a dictionary that spans images: a reference may point into an earlier image of the
same client's *window* (all display channels of one session share it, under the dictionary id the
client announced in DISPLAY_INIT).  Header (big-endian): ``magic "LZ  "``, ``version``, one byte
``type | top_down << 4``, ``width``, ``height``, ``stride`` (u32 each), the image ``id`` (u64) and
``win_head_dist`` (u32: images older than ``id - win_head_dist`` are no longer referenced).

A reference's control byte holds the length code (``c >> 5``, 7 = more length bytes), a flag for a
long pixel offset (bit 4) and the low 4 offset bits; the next byte adds offset bits 4..11, the one
after holds the image-distance size (2 bits) and either 6 distance bits (short offset) or 5 more
offset bits plus a very-long-offset flag; image-distance bytes (and a 17+ offset byte) follow.  An
image distance of 0 means "this image" (offset biased by 1); otherwise the offset is the pixel index
in that earlier image, in stream order.  Window images are kept as 4-byte pixels in stream order.
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from ATPLibrary.errors import SpiceProtocolError
from ATPLibrary.spice.display.lz import (
    LZ_MAGIC,
    LZ_VERSION,
    MAX_COPY,
    MAX_UNITS_PER_BYTE,
    RGB16,
    RGB24,
    RGB32,
    RGBA,
    TYPE_NAMES,
)
from ATPLibrary.spice.display.pixels import MAX_PIXELS, Pixels, check_size, flip_rows, rgb555_table

_HEADER = struct.Struct(">IIBIIIQI")

#: Window size (pixels) this client announces in DISPLAY_INIT; the server keeps its dictionary within it.
DEFAULT_WINDOW_PIXELS = 4 * 1024 * 1024


@dataclass
class _WindowImage:
    id: int
    pixels: bytearray  # 4-byte pixels in stream order (bottom-up for a bottom-up image)


class GlzWindow:
    """The GLZ dictionary window shared by all display channels of one client session.

    Holds decoded images by id until the server's ``win_head_dist`` says they are out of its window,
    and never more than ``max_pixels`` in total (oldest dropped first): a reference to a dropped or
    never-seen image is a protocol error, never a wait.
    """

    def __init__(self, window_pixels: int = DEFAULT_WINDOW_PIXELS, dictionary_id: int = 1) -> None:
        self.window_pixels = window_pixels
        self.dictionary_id = dictionary_id
        self.max_pixels = max(2 * window_pixels, MAX_PIXELS)
        self._images: OrderedDict[int, _WindowImage] = OrderedDict()
        self._total = 0

    def __len__(self) -> int:
        return len(self._images)

    def clear(self) -> None:
        self._images.clear()
        self._total = 0

    def get(self, image_id: int, what: str) -> bytearray:
        img = self._images.get(image_id)
        if img is None:
            raise SpiceProtocolError(f"{what}: references GLZ image {image_id}, which is not in the window")
        return img.pixels

    def add(self, image_id: int, pixels: bytearray, head_dist: int) -> None:
        old = self._images.pop(image_id, None)
        if old is not None:
            self._total -= len(old.pixels) // 4
        self._images[image_id] = _WindowImage(image_id, pixels)
        self._total += len(pixels) // 4
        oldest = image_id - head_dist
        for key in [k for k in self._images if k < oldest]:
            self._total -= len(self._images.pop(key).pixels) // 4
        while self._total > self.max_pixels and len(self._images) > 1:
            _, dropped = self._images.popitem(last=False)
            self._total -= len(dropped.pixels) // 4


def _decode_stream(
    src: bytes,
    pos: int,
    units: int,
    kind: int,
    image_id: int,
    window: GlzWindow,
    alpha_pass: bool,
    out: bytearray,
    what: str,
) -> int:
    """One GLZ stream into ``out`` (4-byte pixels); for the alpha pass only byte 3 of each pixel is written."""
    if alpha_pass:
        unit_in, bias = 1, 2
    elif kind == RGB16:
        unit_in, bias = 2, 1
    else:
        unit_in, bias = 3, 0
    table = rgb555_table() if kind == RGB16 and not alpha_pass else None
    # The alpha pass works on a 1-byte plane; colour passes on 4-byte pixels.
    size = 1 if alpha_pass else 4
    buf = bytearray(units) if alpha_pass else out
    end = units * size
    op = 0
    n_src = len(src)
    if units > max(64, (n_src - pos) * MAX_UNITS_PER_BYTE):
        raise SpiceProtocolError(f"{what}: {n_src - pos} bytes cannot hold {units} pixels")
    try:
        while op < end:
            ctrl = src[pos]
            pos += 1
            if ctrl >= MAX_COPY:
                length = ctrl >> 5
                long_ofs = (ctrl >> 4) & 1
                pixel_ofs = ctrl & 0x0F
                if length == 7:
                    while True:
                        code = src[pos]
                        pos += 1
                        length += code
                        if code != 255:
                            break
                pixel_ofs += src[pos] << 4
                code = src[pos + 1]
                pos += 2
                dist_bytes = (code >> 6) & 3
                if not long_ofs:
                    image_dist = code & 0x3F
                    for i in range(dist_bytes):
                        image_dist += src[pos] << (6 + 8 * i)
                        pos += 1
                else:
                    very_long = (code >> 5) & 1
                    pixel_ofs += (code & 0x1F) << 12
                    image_dist = 0
                    for i in range(dist_bytes):
                        image_dist += src[pos] << (8 * i)
                        pos += 1
                    if very_long:
                        pixel_ofs += src[pos] << 17
                        pos += 1
                length += bias
                nbytes = length * size
                if op + nbytes > end:
                    raise SpiceProtocolError(f"{what}: reference of {length} pixels runs past the image end")
                if image_dist == 0:
                    dist = (pixel_ofs + 1) * size
                    ref = op - dist
                    if ref < 0:
                        raise SpiceProtocolError(f"{what}: reference before the start of the image")
                    if dist >= nbytes:
                        buf[op : op + nbytes] = buf[ref : ref + nbytes]
                    else:
                        pattern = bytes(buf[ref:op])
                        buf[op : op + nbytes] = (pattern * (nbytes // dist + 1))[:nbytes]
                else:
                    other = window.get(image_id - image_dist, what)
                    start = pixel_ofs * 4
                    if start + length * 4 > len(other):
                        raise SpiceProtocolError(
                            f"{what}: reference to pixels {pixel_ofs}..{pixel_ofs + length} of GLZ image "
                            f"{image_id - image_dist}, which has {len(other) // 4}"
                        )
                    if alpha_pass:
                        buf[op : op + length] = other[start + 3 : start + length * 4 : 4]
                    else:
                        buf[op : op + nbytes] = other[start : start + nbytes]
                op += nbytes
            else:
                n = ctrl + 1
                nin = n * unit_in
                if op + n * size > end or pos + nin > n_src:
                    raise SpiceProtocolError(f"{what}: literal run of {n} pixels does not fit")
                chunk = src[pos : pos + nin]
                pos += nin
                if alpha_pass:
                    buf[op : op + n] = chunk
                elif table is not None:
                    it = iter(chunk)
                    buf[op : op + 4 * n] = b"".join(table[(hi << 8) | lo] for hi, lo in zip(it, it, strict=False))
                else:
                    nout = 4 * n
                    buf[op : op + nout : 4] = chunk[0::3]
                    buf[op + 1 : op + nout : 4] = chunk[1::3]
                    buf[op + 2 : op + nout : 4] = chunk[2::3]
                    buf[op + 3 : op + nout : 4] = bytes(n)
                op += n * size
    except IndexError:
        raise SpiceProtocolError(f"{what}: data ends in the middle of the stream") from None
    if alpha_pass:
        out[3::4] = buf
    return pos


def decode_glz(data: bytes, window: GlzWindow) -> Pixels:
    """Decode a GLZ_RGB payload, add it to ``window``, and return it as top-down :class:`Pixels`."""
    what = "GLZ image"
    if len(data) < _HEADER.size:
        raise SpiceProtocolError(f"{what}: {len(data)} bytes, shorter than its {_HEADER.size}-byte header")
    magic, version, type_byte, width, height, _stride, image_id, head_dist = _HEADER.unpack_from(data, 0)
    if magic != LZ_MAGIC:
        raise SpiceProtocolError(f"{what}: bad magic {magic:#010x}")
    if version != LZ_VERSION:
        raise SpiceProtocolError(f"{what}: unsupported version {version:#x}")
    kind = type_byte & 0x0F
    top_down = bool(type_byte >> 4)
    if kind not in (RGB16, RGB24, RGB32, RGBA):
        name = TYPE_NAMES.get(kind, str(kind))
        raise SpiceProtocolError(f"{what}: unsupported GLZ image type {name}")
    what = f"GLZ {TYPE_NAMES[kind]} image {image_id}"
    n = check_size(width, height, what)
    if n > max(64, (len(data) - _HEADER.size) * MAX_UNITS_PER_BYTE):
        raise SpiceProtocolError(f"{what}: {len(data)} bytes cannot hold {width}x{height} pixels")
    out = bytearray(n * 4)
    pos = _decode_stream(data, _HEADER.size, n, kind, image_id, window, False, out, what)
    if kind == RGBA:
        _decode_stream(data, pos, n, kind, image_id, window, True, out, what + " (alpha)")
    window.add(image_id, out, head_dist)
    pixels = out if top_down else flip_rows(out, width, height)
    return Pixels(width, height, bytearray(pixels), kind == RGBA)


def decode_zlib_glz(data: bytes, glz_size: int, window: GlzWindow) -> Pixels:
    """ZLIB_GLZ_RGB: a zlib stream that inflates to a GLZ payload of ``glz_size`` bytes."""
    if not 0 < glz_size <= MAX_PIXELS * 5:
        raise SpiceProtocolError(f"ZLIB_GLZ image: bad GLZ size {glz_size}")
    inflater = zlib.decompressobj()
    try:
        glz = inflater.decompress(data, glz_size)
    except zlib.error as exc:
        raise SpiceProtocolError(f"ZLIB_GLZ image: bad zlib data ({exc})") from None
    if len(glz) != glz_size:
        raise SpiceProtocolError(f"ZLIB_GLZ image: inflated to {len(glz)} bytes, {glz_size} announced")
    return decode_glz(glz, window)
