"""Tiny test-only LZ and GLZ encoders (SPICE image formats) used to build decoder test vectors.

They are written from the format as the decoders document it: a greedy matcher over whole units
(pixels or bytes) that emits literal runs, short and far back references, long lengths (length
extension bytes) and, for GLZ, references into earlier images of the window.  Not fast, not
optimal: they only need to produce every kind of token.
"""

from __future__ import annotations

import struct

LZ_MAGIC = 0x20205A4C
LZ_VERSION = 0x00010001
RGB16, RGB24, RGB32, RGBA = 6, 7, 8, 9
PLT8 = 5


def _units(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def lz_stream(units: list[bytes], bias: int, max_far: int = 65535 + 8191) -> bytes:
    """LZ tokens for ``units`` (each 1, 2 or 3 bytes). ``bias``: 1 for RGB24/32, 2 for RGB16, 3 for bytes."""
    out = bytearray()
    literals: list[bytes] = []
    last: dict[bytes, int] = {}
    i = 0
    n = len(units)

    def flush() -> None:
        while literals:
            chunk = literals[:32]
            del literals[:32]
            out.append(len(chunk) - 1)
            for u in chunk:
                out.extend(u)

    while i < n:
        best_len, best_dist = 0, 0
        # run of the previous unit (distance 1) or the last place this unit pair was seen
        candidates = []
        if i > 0:
            candidates.append(i - 1)
        key = b"".join(units[i : i + 2])
        if key in last:
            candidates.append(last[key])
        for start in candidates:
            dist = i - start
            if dist < 1 or dist > max_far:
                continue
            length = 0
            while i + length < n and units[start + length] == units[i + length] and length < 2000:
                length += 1
            if length > best_len:
                best_len, best_dist = length, dist
        if best_len >= bias and best_len >= 2:
            flush()
            raw = best_len - bias
            d = best_dist - 1
            far = d >= 8191
            low5 = 31 if far else d >> 8
            if raw < 6:
                out.append(((raw + 1) << 5) | low5)
            else:
                out.append((7 << 5) | low5)
                rem = raw - 6
                while rem >= 255:
                    out.append(255)
                    rem -= 255
                out.append(rem)
            if far:
                f = d - 8191
                out += bytes((255, f >> 8, f & 255))
            else:
                out.append(d & 255)
            for k in range(i, i + best_len):
                last[b"".join(units[k : k + 2])] = k
            i += best_len
        else:
            literals.append(units[i])
            last[key] = i
            i += 1
    flush()
    return bytes(out)


def bgrx_rows(pixels: bytes, width: int, height: int, top_down: bool) -> bytes:
    """The same 4-byte pixels in stream row order (bottom-up when not ``top_down``)."""
    rows = [pixels[y * width * 4 : (y + 1) * width * 4] for y in range(height)]
    return b"".join(rows if top_down else rows[::-1])


def lz_encode_rgb(pixels: bytes, width: int, height: int, kind: int = RGB32, top_down: bool = True) -> bytes:
    """An LZ_RGB payload for top-down B, G, R, X/A ``pixels`` (RGB24, RGB32 or RGBA)."""
    stream = bgrx_rows(pixels, width, height, top_down)
    px = _units(stream, 4)
    bpp = 3 if kind == RGB24 else 4
    header = struct.pack(">7I", LZ_MAGIC, LZ_VERSION, kind, width, height, width * bpp, int(top_down))
    body = lz_stream([p[:3] for p in px], 1)
    if kind == RGBA:
        body += lz_stream([p[3:4] for p in px], 3)
    return header + body


def lz_encode_rgb16(words: list[int], width: int, height: int) -> bytes:
    """An LZ RGB16 payload (top-down) for 555 ``words``."""
    header = struct.pack(">7I", LZ_MAGIC, LZ_VERSION, RGB16, width, height, width * 2, 1)
    return header + lz_stream([struct.pack(">H", w) for w in words], 2)


def lz_encode_plt8(indexes: bytes, width: int, height: int) -> bytes:
    header = struct.pack(">7I", LZ_MAGIC, LZ_VERSION, PLT8, width, height, width, 1)
    return header + lz_stream(_units(indexes, 1), 3)


class GlzEncoder:
    """Encodes a sequence of RGB32 images, each allowed to reference the earlier ones (the window)."""

    def __init__(self) -> None:
        self.images: dict[int, list[bytes]] = {}  # id -> pixels (B, G, R) in stream order
        self.next_id = 0

    def encode(self, pixels: bytes, width: int, height: int, top_down: bool = True, head_dist: int = 0) -> bytes:
        image_id = self.next_id
        self.next_id += 1
        stream = bgrx_rows(pixels, width, height, top_down)
        px = [p[:3] for p in _units(stream, 4)]
        out = bytearray(
            struct.pack(
                ">IIBIIIQI",
                LZ_MAGIC,
                LZ_VERSION,
                RGB32 | (int(top_down) << 4),
                width,
                height,
                width * 4,
                image_id,
                head_dist,
            )
        )
        literals: list[bytes] = []

        def flush() -> None:
            while literals:
                chunk = literals[:32]
                del literals[:32]
                out.append(len(chunk) - 1)
                for u in chunk:
                    out.extend(u)

        def token(length: int, pixel_ofs: int, image_dist: int) -> None:
            flush()
            raw = length  # RGB32: no length bias in GLZ
            long_ofs = pixel_ofs >= 1 << 12
            ctrl_len = raw if raw < 7 else 7
            out.append((ctrl_len << 5) | (int(long_ofs) << 4) | (pixel_ofs & 15))
            if raw >= 7:
                rem = raw - 7
                while rem >= 255:
                    out.append(255)
                    rem -= 255
                out.append(rem)
            out.append((pixel_ofs >> 4) & 255)
            if not long_ofs:
                extra = image_dist >> 6
                nbytes = (extra.bit_length() + 7) // 8
                out.append((nbytes << 6) | (image_dist & 63))
                out.extend(extra.to_bytes(nbytes, "little") if nbytes else b"")
            else:
                very_long = pixel_ofs >= 1 << 17
                nbytes = (image_dist.bit_length() + 7) // 8
                out.append((nbytes << 6) | (int(very_long) << 5) | ((pixel_ofs >> 12) & 31))
                out.extend(image_dist.to_bytes(nbytes, "little") if nbytes else b"")
                if very_long:
                    out.append((pixel_ofs >> 17) & 255)

        n = len(px)
        i = 0
        while i < n:
            best = (0, 0, 0)  # length, pixel_ofs, image_dist
            if i > 0:  # a run inside this image
                length = 0
                while i + length < n and px[i - 1 + length] == px[i + length] and length < 600:
                    length += 1
                best = (length, 0, 0)
            for other_id, other in self.images.items():  # the same position in an earlier image
                if i < len(other):
                    length = 0
                    while i + length < min(n, len(other)) and other[i + length] == px[i + length] and length < 600:
                        length += 1
                    if length > best[0]:
                        best = (length, i, image_id - other_id)
            if best[0] >= 2:
                token(*best)
                i += best[0]
            else:
                literals.append(px[i])
                i += 1
        flush()
        self.images[image_id] = px
        return bytes(out)
