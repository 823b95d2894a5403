"""Malformed and truncated SPICE display data: a SpiceProtocolError or a result, quickly, nothing else.

Hypothesis mutates valid vectors (from the test-only encoders) and builds random messages; every
example must finish within the deadline and may only succeed or raise SpiceProtocolError.
"""

from __future__ import annotations

import contextlib
import io
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import spice_encoders as enc
import spice_messages as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ATPLibrary.errors import SpiceProtocolError
from ATPLibrary.spice.display import DisplayChannelHandler, GlzWindow, decode_glz, decode_lz, decode_quic
from ATPLibrary.spice.display import messages as m
from ATPLibrary.spice.display.bitmap import decode_bitmap
from ATPLibrary.spice.display.images import IMAGE_GLZ_RGB, IMAGE_LZ_RGB, IMAGE_QUIC

FUZZ = settings(
    max_examples=120, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None
)
W, H = 24, 10
PICTURE = b"".join(bytes(((x * 37) % 256, (y * 53) % 256, (x ^ y) % 256, 0)) for y in range(H) for x in range(W))
LZ = enc.lz_encode_rgb(PICTURE, W, H)
LZA = enc.lz_encode_rgb(PICTURE, W, H, kind=enc.RGBA)
_glz_encoder = enc.GlzEncoder()
GLZ_FIRST = _glz_encoder.encode(PICTURE, W, H)
GLZ_SECOND = _glz_encoder.encode(PICTURE, W, H, head_dist=1)
QUIC_HEADER = struct.pack("<5I", 0x43495551, 0, 4, W, H)
#: a real QUIC payload captured from QEMU's SPICE server (tests/data/spice)
QUIC_REAL = (Path(__file__).resolve().parents[1] / "data" / "spice" / "quic-seabios-720x400.bin").read_bytes()


def only_protocol_errors(fn: Callable[[], Any], limit: float = 2.0) -> None:
    start = time.perf_counter()
    with contextlib.suppress(SpiceProtocolError):
        fn()
    assert time.perf_counter() - start < limit


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6)
cuts = st.one_of(st.none(), st.integers(0, 4096))


@FUZZ
@given(edits, cuts)
def test_lz_mutated(e: list[tuple[int, int]], cut: int | None) -> None:
    only_protocol_errors(lambda: decode_lz(mutate(LZ, e, cut)))
    only_protocol_errors(lambda: decode_lz(mutate(LZA, e, cut)))


@FUZZ
@given(edits, cuts)
def test_glz_mutated(e: list[tuple[int, int]], cut: int | None) -> None:
    window = GlzWindow()
    only_protocol_errors(lambda: decode_glz(mutate(GLZ_FIRST, e, cut), window))
    only_protocol_errors(lambda: decode_glz(mutate(GLZ_SECOND, e, cut), window))


@FUZZ
@given(st.integers(1, 4), st.integers(1, 300), st.integers(1, 40), st.binary(max_size=600))
def test_quic_random_streams(kind_index: int, width: int, height: int, body: bytes) -> None:
    kind = (1, 2, 4, 5)[kind_index - 1]
    header = struct.pack("<5I", 0x43495551, 0, kind, width, height)
    only_protocol_errors(lambda: decode_quic(header + body))


@FUZZ
@given(edits, st.integers(0, 3000))
def test_quic_real_capture_mutated_and_truncated(e: list[tuple[int, int]], cut: int) -> None:
    # truncated (to keep each example short) and mutated: rows decode until the data runs out
    only_protocol_errors(lambda: decode_quic(mutate(QUIC_REAL, e, cut)))


@FUZZ
@given(st.binary(max_size=64), st.integers(0, 64))
def test_quic_headers(body: bytes, cut: int) -> None:
    only_protocol_errors(lambda: decode_quic(QUIC_HEADER[:cut] + body))
    only_protocol_errors(lambda: decode_quic(body))
    # a huge claimed size with little data fails after at most one row, without allocating the image
    only_protocol_errors(lambda: decode_quic(struct.pack("<5I", 0x43495551, 0, 4, 16384, 1024) + body))


@FUZZ
@given(st.integers(0, 11), st.integers(0, 3), st.integers(0, 70), st.integers(0, 70), st.integers(0, 300), st.binary())
def test_bitmaps(fmt: int, flags: int, width: int, height: int, stride: int, data: bytes) -> None:
    only_protocol_errors(lambda: decode_bitmap(fmt, width, height, stride, bool(flags & 1), data, [1, 2, 3]))


_MESSAGE_TYPES = sorted(m.MESSAGE_NAMES)


def _handler() -> DisplayChannelHandler:
    async def send(msg_type: int, payload: bytes) -> None:
        return None

    handler = DisplayChannelHandler(send)
    handler.handle(m.MSG_SURFACE_CREATE, sm.surface_create(0, 32, 16))
    return handler


VALID = [
    sm.draw_copy(0, (0, 0, W, H), sm.sized_image(IMAGE_LZ_RGB, W, H, LZ), (0, 0, W, H)),
    sm.draw_copy(
        0, (2, 2, 2 + W, 2 + H), sm.sized_image(IMAGE_GLZ_RGB, W, H, GLZ_FIRST), (0, 0, W, H), clips=[(0, 0, 9, 9)]
    ),
    sm.draw_copy(0, (0, 0, 8, 8), sm.sized_image(IMAGE_QUIC, W, H, QUIC_HEADER + bytes(64)), (0, 0, 8, 8)),
    sm.draw_copy(0, (0, 0, 4, 4), sm.bitmap_image(PICTURE[: 4 * 16], 4, 4, 5, True), (0, 0, 4, 4)),
    sm.draw_fill(0, (1, 1, 30, 15), 0x123456, rop=1 << 6),
    sm.copy_bits(0, (0, 0, 10, 10), 3, 3),
    sm.surface_create(1, 8, 8, primary=False),
    sm.stream_create(1, 1, (0, 0, 8, 8), 8, 8),
]


@settings(max_examples=200, deadline=2000, derandomize=True, database=None)
@given(st.sampled_from(_MESSAGE_TYPES), st.binary(max_size=200))
def test_random_messages(msg_type: int, payload: bytes) -> None:
    handler = _handler()
    only_protocol_errors(lambda: handler.handle(msg_type, payload))


@FUZZ
@given(st.integers(0, len(VALID) - 1), st.sampled_from(_MESSAGE_TYPES), edits, cuts)
def test_mutated_messages(index: int, msg_type: int, e: list[tuple[int, int]], cut: int | None) -> None:
    handler = _handler()
    payload = mutate(VALID[index], e, cut)
    only_protocol_errors(lambda: handler.handle(msg_type, payload))
    only_protocol_errors(lambda: handler.handle(m.MSG_DRAW_COPY, payload))


_JPEG = io.BytesIO()
Image.new("RGB", (8, 8), (10, 200, 30)).save(_JPEG, "JPEG")


@FUZZ
@given(edits, cuts, st.binary(max_size=100))
def test_mjpeg_frames_mutated_truncated_or_random(e: list[tuple[int, int]], cut: int | None, junk: bytes) -> None:
    handler = _handler()
    handler.handle(m.MSG_STREAM_CREATE, sm.stream_create(1, 1, (0, 0, 8, 8), 8, 8))
    only_protocol_errors(lambda: handler.handle(m.MSG_STREAM_DATA, sm.stream_data(1, mutate(_JPEG.getvalue(), e, cut))))
    only_protocol_errors(lambda: handler.handle(m.MSG_STREAM_DATA, sm.stream_data(1, junk)))


def test_valid_messages_are_accepted() -> None:
    handler = _handler()
    for payload, msg_type in zip(VALID, (304, 304, 304, 304, 302, 104, 314, 122), strict=True):
        try:
            handler.handle(msg_type, payload)
        except SpiceProtocolError as exc:  # only the made-up QUIC body may be refused
            assert msg_type == 304 and "QUIC" in str(exc), exc
    assert handler.draws >= 5
