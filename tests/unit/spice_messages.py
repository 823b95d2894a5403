"""Test-only builders of SPICE display channel messages (the server side's wire format)."""

from __future__ import annotations

import struct

from ATPLibrary.spice.display import messages as m
from ATPLibrary.spice.display.images import IMAGE_BITMAP, IMAGE_CACHE_ME, IMAGE_FROM_CACHE


def rect(left: int, top: int, right: int, bottom: int) -> bytes:
    return struct.pack("<4i", top, left, bottom, right)


def base(
    surface_id: int, box: tuple[int, int, int, int], clips: list[tuple[int, int, int, int]] | None = None
) -> bytes:
    out = struct.pack("<I", surface_id) + rect(*box)
    if clips is None:
        return out + b"\x00"
    return out + struct.pack("<BI", 1, len(clips)) + b"".join(rect(*c) for c in clips)


def surface_create(surface_id: int, width: int, height: int, primary: bool = True, fmt: int = 32) -> bytes:
    return struct.pack("<5I", surface_id, width, height, fmt, 1 if primary else 0)


def image(kind: int, width: int, height: int, body: bytes, image_id: int = 0, flags: int = 0) -> bytes:
    return struct.pack("<QBBII", image_id, kind, flags, width, height) + body


def bitmap_image(bgrx: bytes, width: int, height: int, image_id: int = 0, cache: bool = False) -> bytes:
    body = struct.pack("<BBIIII", 8, 4, width, height, width * 4, 0) + bgrx  # 32BIT, TOP_DOWN, no palette
    return image(IMAGE_BITMAP, width, height, body, image_id, IMAGE_CACHE_ME if cache else 0)


def sized_image(kind: int, width: int, height: int, data: bytes) -> bytes:
    return image(kind, width, height, struct.pack("<I", len(data)) + data)


def from_cache(image_id: int, width: int, height: int) -> bytes:
    return image(IMAGE_FROM_CACHE, width, height, b"", image_id)


def draw_copy(
    surface_id: int,
    box: tuple[int, int, int, int],
    img: bytes,
    src: tuple[int, int, int, int],
    rop: int = 8,
    clips: list[tuple[int, int, int, int]] | None = None,
) -> bytes:
    head_len = len(base(surface_id, box, clips)) + 4 + 16 + 2 + 1 + 13
    head = base(surface_id, box, clips) + struct.pack("<I", head_len) + rect(*src) + struct.pack("<HB", rop, 0)
    head += struct.pack("<BiiI", 0, 0, 0, 0)  # no mask
    assert len(head) == head_len
    return head + img


def draw_fill(surface_id: int, box: tuple[int, int, int, int], color: int, rop: int = 8) -> bytes:
    return base(surface_id, box) + struct.pack("<BIH", 1, color, rop) + struct.pack("<BiiI", 0, 0, 0, 0)


def copy_bits(surface_id: int, box: tuple[int, int, int, int], src_x: int, src_y: int) -> bytes:
    return base(surface_id, box) + struct.pack("<ii", src_x, src_y)


def stream_create(stream_id: int, codec: int, dest: tuple[int, int, int, int], w: int, h: int) -> bytes:
    return (
        struct.pack("<IIBBQIIII", 0, stream_id, 1, codec, 0, w, h, w, h) + rect(*dest) + b"\x00"  # top-down, no clip
    )


def stream_data(stream_id: int, frame: bytes) -> bytes:
    return struct.pack("<III", stream_id, 0, len(frame)) + frame


MSG = m
