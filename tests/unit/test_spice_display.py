"""The display channel handler on built server messages: surfaces, draws, caches, streams, screenshots."""

from __future__ import annotations

import asyncio
import io
import struct

import pytest
import spice_encoders as enc
import spice_messages as sm
from PIL import Image

from ATPLibrary.errors import SpiceProtocolError, SpiceUnsupportedError, WaitTimeoutError
from ATPLibrary.spice.display import DisplayChannelHandler, SessionCaches
from ATPLibrary.spice.display import messages as m
from ATPLibrary.spice.display.images import IMAGE_GLZ_RGB, IMAGE_LZ_RGB


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []

    async def __call__(self, msg_type: int, payload: bytes) -> None:
        self.messages.append((msg_type, payload))


def rgb_of(bgrx: bytes) -> bytes:
    return b"".join(bytes((bgrx[i + 2], bgrx[i + 1], bgrx[i])) for i in range(0, len(bgrx), 4))


def solid(width: int, height: int, bgr: tuple[int, int, int]) -> bytes:
    return bytes((*bgr, 0)) * (width * height)


def test_start_sends_display_init_with_cache_and_glz_window() -> None:
    sent = Sent()
    handler = DisplayChannelHandler(sent)
    asyncio.run(handler.start())
    assert len(sent.messages) == 1
    msg_type, payload = sent.messages[0]
    assert msg_type == m.MSGC_DISPLAY_INIT
    cache_id, cache_size, glz_id, window = struct.unpack("<BqBi", payload)
    assert (cache_id, glz_id) == (1, 1)
    assert cache_size > 0 and window > 0


def test_surface_draws_and_screenshot() -> None:
    handler = DisplayChannelHandler(Sent())
    w, h = 12, 6
    handler.handle(m.MSG_SURFACE_CREATE, sm.surface_create(0, w, h))
    # LZ image over the whole surface, a cached bitmap at two places, GLZ clipped to a corner
    picture = (
        enc.bgrx_rows(bytes((x * 20 % 256, y * 40 % 256, 7, 0)) for y in range(h) for x in range(w)) if False else b""
    )
    picture = b"".join(bytes((x * 20 % 256, y * 40 % 256, 7, 0)) for y in range(h) for x in range(w))
    lz = sm.sized_image(IMAGE_LZ_RGB, w, h, enc.lz_encode_rgb(picture, w, h))
    handler.handle(m.MSG_DRAW_COPY, sm.draw_copy(0, (0, 0, w, h), lz, (0, 0, w, h)))
    assert handler.screenshot() == (w, h, rgb_of(picture))
    red = solid(3, 2, (0, 0, 255))
    handler.handle(m.MSG_DRAW_COPY, sm.draw_copy(0, (9, 4, 12, 6), sm.bitmap_image(red, 3, 2, 77, True), (0, 0, 3, 2)))
    handler.handle(m.MSG_DRAW_COPY, sm.draw_copy(0, (0, 0, 3, 2), sm.from_cache(77, 3, 2), (0, 0, 3, 2)))
    _, _, shot = handler.screenshot()
    assert shot[:3] == b"\xff\x00\x00" and shot[-3:] == b"\xff\x00\x00"
    green = solid(4, 4, (0, 255, 0))
    glz = sm.sized_image(IMAGE_GLZ_RGB, 4, 4, enc.GlzEncoder().encode(green, 4, 4))
    handler.handle(m.MSG_DRAW_COPY, sm.draw_copy(0, (4, 1, 8, 5), glz, (0, 0, 4, 4), clips=[(4, 1, 6, 3)]))
    _, _, shot = handler.screenshot()

    def px(x: int, y: int) -> bytes:
        return shot[(y * w + x) * 3 : (y * w + x) * 3 + 3]

    assert px(4, 1) == px(5, 2) == b"\x00\xff\x00"
    assert px(6, 3) == rgb_of(picture[(3 * w + 6) * 4 : (3 * w + 6) * 4 + 4])  # outside the clip: unchanged
    assert handler.images.seen["GLZ_RGB"] == 1 and handler.images.seen["FROM_CACHE"] == 1


def test_fill_copy_bits_and_rops() -> None:
    handler = DisplayChannelHandler(Sent())
    handler.handle(m.MSG_SURFACE_CREATE, sm.surface_create(0, 8, 4))
    handler.handle(m.MSG_DRAW_FILL, sm.draw_fill(0, (0, 0, 4, 4), 0x00FF0000))
    handler.handle(m.MSG_COPY_BITS, sm.copy_bits(0, (4, 0, 8, 4), 0, 0))
    _, _, shot = handler.screenshot()
    assert shot == b"\xff\x00\x00" * 32
    handler.handle(m.MSG_DRAW_FILL, sm.draw_fill(0, (0, 0, 8, 1), 0x000000FF, rop=1 << 4))  # OP_OR
    _, _, shot = handler.screenshot()
    assert shot[:3] == b"\xff\x00\xff" and shot[24:27] == b"\xff\x00\x00"
    handler.handle(m.MSG_DRAW_INVERS, sm.base(0, (0, 3, 8, 4)) + struct.pack("<BiiI", 0, 0, 0, 0))
    _, _, shot = handler.screenshot()
    assert shot[-3:] == b"\x00\xff\xff"


def test_wait_for_surface_needs_primary_and_mark() -> None:
    async def scenario() -> None:
        handler = DisplayChannelHandler(Sent())
        with pytest.raises(WaitTimeoutError, match="no primary surface"):
            await handler.wait_for_surface(0.05)
        waiter = asyncio.create_task(handler.wait_for_surface(5))
        await handler.on_message(m.MSG_SURFACE_CREATE, sm.surface_create(0, 4, 4))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await handler.on_message(m.MSG_MARK, b"")
        await asyncio.wait_for(waiter, 1)

    asyncio.run(scenario())


def test_mjpeg_stream_is_drawn_other_codecs_fail_by_name() -> None:
    handler = DisplayChannelHandler(Sent())
    handler.handle(m.MSG_SURFACE_CREATE, sm.surface_create(0, 16, 16))
    handler.handle(m.MSG_STREAM_CREATE, sm.stream_create(3, 1, (0, 0, 16, 16), 16, 16))
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (250, 250, 250)).save(buf, "JPEG", quality=95)
    handler.handle(m.MSG_STREAM_DATA, sm.stream_data(3, buf.getvalue()))
    _, _, shot = handler.screenshot()
    assert min(shot) > 240
    with pytest.raises(SpiceUnsupportedError, match="unsupported codec H264"):
        handler.handle(m.MSG_STREAM_CREATE, sm.stream_create(4, 3, (0, 0, 16, 16), 16, 16))


def test_a_protocol_error_is_remembered_for_screenshots() -> None:
    handler = DisplayChannelHandler(Sent())
    with pytest.raises(SpiceProtocolError, match="surface 5 does not exist"):
        handler.handle(m.MSG_DRAW_FILL, sm.draw_fill(5, (0, 0, 1, 1), 0))
    with pytest.raises(SpiceProtocolError):
        handler.screenshot()


def test_session_caches_are_shared_between_channels() -> None:
    caches = SessionCaches()
    a = DisplayChannelHandler(Sent(), caches)
    b = DisplayChannelHandler(Sent(), caches)
    for h in (a, b):
        h.handle(m.MSG_SURFACE_CREATE, sm.surface_create(0, 2, 2))
    a.handle(
        m.MSG_DRAW_COPY,
        sm.draw_copy(0, (0, 0, 2, 2), sm.bitmap_image(solid(2, 2, (1, 2, 3)), 2, 2, 9, True), (0, 0, 2, 2)),
    )
    b.handle(m.MSG_DRAW_COPY, sm.draw_copy(0, (0, 0, 2, 2), sm.from_cache(9, 2, 2), (0, 0, 2, 2)))
    assert b.screenshot()[2] == b"\x03\x02\x01" * 4
