"""Surfaces as 4-byte-per-pixel buffers, and the drawing SPICE display messages ask for.

A surface holds ``width * height`` pixels in the server's 32-bit xRGB/ARGB layout (bytes B, G, R, X/A,
top-down rows).  Drawing is clipped to the draw box, the clip rectangles and the surface; raster
operations (the ``ropd`` descriptor) are applied a row at a time with Python integers, and the common
case (``OP_PUT`` without inversions, what QEMU sends) is a plain slice copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from ATPLibrary.errors import SpiceProtocolError
from ATPLibrary.spice.display.pixels import Pixels, check_size

# SpiceRopd flags
ROPD_INVERS_SRC = 1 << 0
ROPD_INVERS_BRUSH = 1 << 1
ROPD_INVERS_DEST = 1 << 2
ROPD_OP_PUT = 1 << 3
ROPD_OP_OR = 1 << 4
ROPD_OP_AND = 1 << 5
ROPD_OP_XOR = 1 << 6
ROPD_OP_BLACKNESS = 1 << 7
ROPD_OP_WHITENESS = 1 << 8
ROPD_OP_INVERS = 1 << 9
ROPD_INVERS_RES = 1 << 10

# SpiceSurfaceFmt values this canvas keeps (32-bit); others are refused by name
SURFACE_FMT_32_XRGB = 32
SURFACE_FMT_32_ARGB = 96
SURFACE_FMT_NAMES = {1: "1_A", 8: "8_A", 16: "16_555", 80: "16_565", 32: "32_xRGB", 96: "32_ARGB"}


@dataclass(frozen=True)
class Rect:
    """A half-open rectangle: ``left <= x < right``, ``top <= y < bottom``."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def empty(self) -> bool:
        return self.right <= self.left or self.bottom <= self.top

    def intersect(self, other: Rect) -> Rect:
        return Rect(
            max(self.left, other.left),
            max(self.top, other.top),
            min(self.right, other.right),
            min(self.bottom, other.bottom),
        )


def apply_rop(
    src: bytes | bytearray, dst: bytes | bytearray, rop: int, src_invert_flag: int = ROPD_INVERS_SRC
) -> bytes:
    """One row of ``rop`` applied to source (or brush) bytes ``src`` and destination bytes ``dst``."""
    n = len(dst)
    ones = (1 << (8 * n)) - 1
    if rop & ROPD_OP_BLACKNESS:
        result = 0
    elif rop & ROPD_OP_WHITENESS:
        result = ones
    elif rop & ROPD_OP_INVERS:
        result = int.from_bytes(dst, "little") ^ ones
    else:
        s = int.from_bytes(src, "little")
        if rop & src_invert_flag:
            s ^= ones
        d = int.from_bytes(dst, "little")
        if rop & ROPD_INVERS_DEST:
            d ^= ones
        if rop & ROPD_OP_OR:
            result = s | d
        elif rop & ROPD_OP_AND:
            result = s & d
        elif rop & ROPD_OP_XOR:
            result = s ^ d
        else:  # OP_PUT (and a descriptor without an operation, which spice treats as a copy)
            result = s
    if rop & ROPD_INVERS_RES:
        result ^= ones
    return result.to_bytes(n, "little")


class Surface:
    """One SPICE surface: pixels plus its id, format and whether it is the primary (the screen)."""

    def __init__(self, surface_id: int, width: int, height: int, fmt: int, primary: bool) -> None:
        if fmt not in (SURFACE_FMT_32_XRGB, SURFACE_FMT_32_ARGB):
            name = SURFACE_FMT_NAMES.get(fmt, str(fmt))
            raise SpiceProtocolError(f"SURFACE_CREATE: surface {surface_id} has format {name}; only 32-bit is kept")
        check_size(width, height, f"surface {surface_id}")
        self.id = surface_id
        self.width = width
        self.height = height
        self.format = fmt
        self.primary = primary
        self.data = bytearray(width * height * 4)

    @property
    def bounds(self) -> Rect:
        return Rect(0, 0, self.width, self.height)

    def snapshot(self) -> Pixels:
        return Pixels(self.width, self.height, bytearray(self.data), self.format == SURFACE_FMT_32_ARGB)

    def rgb(self) -> bytes:
        """The surface as packed RGB bytes (what a screenshot is)."""
        img = Image.frombuffer("RGB", (self.width, self.height), bytes(self.data), "raw", "BGRX", 0, 1)
        return img.tobytes()

    # -- drawing -------------------------------------------------------------------------------
    def _areas(self, box: Rect, clips: list[Rect] | None) -> list[Rect]:
        area = box.intersect(self.bounds)
        if area.empty:
            return []
        if clips is None:
            return [area]
        out = [area.intersect(c) for c in clips]
        return [r for r in out if not r.empty]

    def blit(self, box: Rect, clips: list[Rect] | None, image: Pixels, src: Rect, rop: int, nearest: bool) -> None:
        """Draw ``src`` of ``image`` into ``box`` (scaled when the sizes differ), clipped, with ``rop``."""
        whole = Rect(0, 0, image.width, image.height)
        if src.empty or box.empty:
            return
        if src.intersect(whole) != src:
            raise SpiceProtocolError(f"draw: source area {src} is not inside the {image.width}x{image.height} image")
        if (src.width, src.height) != (box.width, box.height):
            check_size(box.width, box.height, "scaled draw")
            pil = Image.frombuffer("RGBX", (image.width, image.height), bytes(image.data), "raw", "RGBX", 0, 1)
            pil = pil.crop((src.left, src.top, src.right, src.bottom)).resize(
                (box.width, box.height), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
            )
            image = Pixels(box.width, box.height, bytearray(pil.tobytes()), image.has_alpha)
            src = Rect(0, 0, box.width, box.height)
        dx = src.left - box.left
        dy = src.top - box.top
        iw = image.width * 4
        sw = self.width * 4
        plain = rop in (ROPD_OP_PUT, 0)
        for area in self._areas(box, clips):
            n = area.width * 4
            for y in range(area.top, area.bottom):
                s = (y + dy) * iw + (area.left + dx) * 4
                d = y * sw + area.left * 4
                if plain:
                    self.data[d : d + n] = image.data[s : s + n]
                else:
                    self.data[d : d + n] = apply_rop(image.data[s : s + n], self.data[d : d + n], rop)

    def fill(self, box: Rect, clips: list[Rect] | None, color: int, rop: int) -> None:
        """Fill ``box`` with a solid 32-bit xRGB ``color`` under ``rop`` (brush inversion: INVERS_BRUSH)."""
        pixel = (color & 0xFFFFFFFF).to_bytes(4, "little")
        sw = self.width * 4
        for area in self._areas(box, clips):
            n = area.width * 4
            row = pixel * area.width
            for y in range(area.top, area.bottom):
                d = y * sw + area.left * 4
                if rop == ROPD_OP_PUT:
                    self.data[d : d + n] = row
                else:
                    self.data[d : d + n] = apply_rop(row, self.data[d : d + n], rop, ROPD_INVERS_BRUSH)

    def fill_pattern(
        self, box: Rect, clips: list[Rect] | None, pattern: Pixels, pos: tuple[int, int], rop: int
    ) -> None:
        """Fill ``box`` with ``pattern`` tiled from surface origin offset ``pos``, under ``rop``."""
        pw, ph = pattern.width, pattern.height
        sw = self.width * 4
        for area in self._areas(box, clips):
            n = area.width * 4
            for y in range(area.top, area.bottom):
                prow = bytes(pattern.row((y - pos[1]) % ph))
                start = (area.left - pos[0]) % pw
                reps = (start + area.width) // pw + 2
                row = (prow * reps)[start * 4 : start * 4 + n]
                d = y * sw + area.left * 4
                self.data[d : d + n] = apply_rop(row, self.data[d : d + n], rop, ROPD_INVERS_BRUSH)

    def copy_bits(self, box: Rect, clips: list[Rect] | None, src_x: int, src_y: int) -> None:
        """COPY_BITS: move the area at (src_x, src_y) of this surface to ``box`` (overlap-safe)."""
        src = Rect(src_x, src_y, src_x + box.width, src_y + box.height)
        if src.intersect(self.bounds) != src:
            raise SpiceProtocolError(f"COPY_BITS: source {src} is not inside the {self.width}x{self.height} surface")
        self.blit(box, clips, self.snapshot(), src, ROPD_OP_PUT, True)
