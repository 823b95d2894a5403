"""The display channel: keeps every surface (the primary one is the screen) from the server's messages."""

from __future__ import annotations

import asyncio
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ATPLibrary.errors import SpiceError, SpiceProtocolError, SpiceUnsupportedError, WaitTimeoutError
from ATPLibrary.spice.display import messages as m
from ATPLibrary.spice.display.canvas import (
    ROPD_OP_BLACKNESS,
    ROPD_OP_INVERS,
    ROPD_OP_PUT,
    ROPD_OP_WHITENESS,
    Rect,
    Surface,
)
from ATPLibrary.spice.display.images import ImageReader, SessionCaches, decode_jpeg
from ATPLibrary.spice.display.pixels import Pixels, check_size, flip_rows
from ATPLibrary.spice.display.reader import Reader

SendFn = Callable[[int, bytes], Awaitable[None]]
MAX_STREAMS = 64


@dataclass
class _Stream:
    surface_id: int
    codec: int
    flags: int
    src_width: int
    src_height: int
    dest: Rect
    clip: list[Rect] | None


class DisplayChannelHandler:
    """Client side of one SPICE display channel.

    ``send(msg_type, payload)`` sends a message on the channel.  The channel loop calls
    :meth:`on_message` for every display-specific message (types above 100); common messages (SET_ACK,
    PING, NOTIFY, ...) are the channel's own business.  ``caches`` is the session's pixmap cache and GLZ
    window: pass the same object to every display channel of one session (the protocol shares them).
    """

    def __init__(self, send: SendFn, caches: SessionCaches | None = None) -> None:
        self._send = send
        self.caches = caches if caches is not None else SessionCaches()
        self.surfaces: dict[int, Surface] = {}
        self.primary_id: int | None = None
        self.marked = False
        self.streams: dict[int, _Stream] = {}
        self.images = ImageReader(self.caches, self._surface_pixels)
        #: the protocol error that stopped this channel, if any (screenshots then fail with it)
        self.error: SpiceError | None = None
        #: messages handled, by name
        self.received: Counter[str] = Counter()
        self.draws = 0
        self._changed: asyncio.Event | None = None
        self._handlers: dict[int, Callable[[Reader], None]] = {
            m.MSG_MODE: self._ignore,
            m.MSG_MARK: self._mark,
            m.MSG_RESET: self._reset,
            m.MSG_COPY_BITS: self._copy_bits,
            m.MSG_INVAL_LIST: self._inval_list,
            m.MSG_INVAL_ALL_PIXMAPS: self._inval_all_pixmaps,
            m.MSG_INVAL_PALETTE: self._inval_palette,
            m.MSG_INVAL_ALL_PALETTES: self._inval_all_palettes,
            m.MSG_STREAM_CREATE: self._stream_create,
            m.MSG_STREAM_DATA: self._stream_data,
            m.MSG_STREAM_DATA_SIZED: self._stream_data_sized,
            m.MSG_STREAM_CLIP: self._stream_clip,
            m.MSG_STREAM_DESTROY: self._stream_destroy,
            m.MSG_STREAM_DESTROY_ALL: self._stream_destroy_all,
            m.MSG_DRAW_FILL: self._draw_fill,
            m.MSG_DRAW_OPAQUE: self._draw_opaque,
            m.MSG_DRAW_COPY: self._draw_copy,
            m.MSG_DRAW_BLEND: self._draw_copy,
            m.MSG_DRAW_BLACKNESS: self._draw_blackness,
            m.MSG_DRAW_WHITENESS: self._draw_whiteness,
            m.MSG_DRAW_INVERS: self._draw_invers,
            m.MSG_SURFACE_CREATE: self._surface_create,
            m.MSG_SURFACE_DESTROY: self._surface_destroy,
            m.MSG_MONITORS_CONFIG: self._ignore,
            m.MSG_STREAM_ACTIVATE_REPORT: self._ignore,
            m.MSG_QUALITY_INDICATOR: self._ignore,
        }

    # -- interface for the channel -----------------------------------------------------------
    async def start(self) -> None:
        """Send DISPLAY_INIT: our pixmap cache and GLZ dictionary (ids and sizes in pixels)."""
        pix, glz = self.caches.pixmaps, self.caches.glz
        payload = struct.pack("<BqBi", pix.cache_id, pix.max_pixels, glz.dictionary_id, glz.window_pixels)
        await self._send(m.MSGC_DISPLAY_INIT, payload)

    async def on_message(self, msg_type: int, payload: bytes) -> None:
        """Handle one display message; a malformed one raises SpiceProtocolError (and is remembered)."""
        self.handle(msg_type, payload)

    def handle(self, msg_type: int, payload: bytes) -> None:
        """Synchronous core of :meth:`on_message`."""
        name = m.MESSAGE_NAMES.get(msg_type, f"message {msg_type}")
        self.received[name] += 1
        handler = self._handlers.get(msg_type)
        try:
            if handler is None:
                if msg_type in m.MESSAGE_NAMES:
                    raise SpiceUnsupportedError(f"display {name}: this client does not draw it")
                return  # an unknown (newer) message: ignored, as SPICE clients do
            handler(Reader(payload, 0, f"display {name}"))
        except SpiceError as exc:
            self.error = exc
            raise
        except (MemoryError, RecursionError, ValueError, OverflowError) as exc:
            # a last line of defence: any other failure on server input is a protocol error
            err = SpiceProtocolError(f"display {name}: cannot handle the message ({type(exc).__name__}: {exc})")
            self.error = err
            raise err from None
        finally:
            if self._changed is not None:
                self._changed.set()

    async def wait_for_surface(self, timeout: float) -> None:
        """Wait until the primary surface exists and the server marked it complete (MARK)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        deadline = time.monotonic() + timeout
        while True:
            if self.error is not None:
                raise self.error
            if self.primary_id is not None and self.marked:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                state = "no primary surface" if self.primary_id is None else "primary surface not marked ready"
                raise WaitTimeoutError(f"SPICE display: {state} after {timeout:g} s")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue

    def screenshot(self) -> tuple[int, int, bytes]:
        """Width, height and packed RGB bytes of the primary surface, as the SPICE client shows it."""
        if self.error is not None:
            raise self.error
        if self.primary_id is None:
            raise SpiceError("SPICE display: the server has not created the primary surface (yet)")
        surface = self.surfaces[self.primary_id]
        return surface.width, surface.height, surface.rgb()

    # -- helpers -----------------------------------------------------------------------------
    def _surface(self, surface_id: int, what: str) -> Surface:
        surface = self.surfaces.get(surface_id)
        if surface is None:
            raise SpiceProtocolError(f"{what}: surface {surface_id} does not exist")
        return surface

    def _surface_pixels(self, surface_id: int) -> Pixels:
        return self._surface(surface_id, "image SURFACE").snapshot()

    def _ignore(self, r: Reader) -> None:
        return None

    def _no_mask(self, r: Reader) -> None:
        mask = m.read_mask(r)
        if mask.bitmap:
            raise SpiceUnsupportedError(f"{r.what}: masked drawing is not supported")

    # -- surfaces ----------------------------------------------------------------------------
    def _surface_create(self, r: Reader) -> None:
        surface_id = r.u32("surface id")
        width = r.u32("width")
        height = r.u32("height")
        fmt = r.u32("format")
        flags = r.u32("flags")
        if surface_id not in self.surfaces and len(self.surfaces) >= 1024:
            raise SpiceProtocolError("SURFACE_CREATE: more than 1024 surfaces")
        primary = bool(flags & m.SURFACE_FLAG_PRIMARY)
        self.surfaces[surface_id] = Surface(surface_id, width, height, fmt, primary)
        if primary:
            self.primary_id = surface_id
            self.marked = False

    def _surface_destroy(self, r: Reader) -> None:
        surface_id = r.u32("surface id")
        self.surfaces.pop(surface_id, None)
        if surface_id == self.primary_id:
            self.primary_id = None
            self.marked = False

    def _mark(self, r: Reader) -> None:
        self.marked = True

    def _reset(self, r: Reader) -> None:
        self.surfaces.clear()
        self.primary_id = None
        self.marked = False
        self.streams.clear()
        self.images.palettes.clear()

    # -- caches ------------------------------------------------------------------------------
    def _inval_list(self, r: Reader) -> None:
        count = r.u16("resource count")
        r.need(count * 9, f"{count} resources")
        for _ in range(count):
            r.u8("resource type")
            self.caches.pixmaps.remove(r.u64("resource id"))

    def _inval_all_pixmaps(self, r: Reader) -> None:
        count = r.u8("wait count")
        r.need(count * 10, "wait list")
        self.caches.pixmaps.clear()

    def _inval_palette(self, r: Reader) -> None:
        self.images.palettes.pop(r.u64("palette id"), None)

    def _inval_all_palettes(self, r: Reader) -> None:
        self.images.palettes.clear()

    # -- drawing -----------------------------------------------------------------------------
    def _draw_copy(self, r: Reader) -> None:
        base = m.read_base(r)
        ptr = r.u32("source image pointer")
        src_area = m.read_rect(r, "source area")
        rop = r.u16("rop descriptor")
        scale_mode = r.u8("scale mode")
        self._no_mask(r)
        surface = self._surface(base.surface_id, r.what)
        image = self.images.read(r, ptr)
        surface.blit(base.box, base.clip, image, src_area, rop, nearest=scale_mode == 1)
        self.draws += 1

    def _draw_opaque(self, r: Reader) -> None:
        base = m.read_base(r)
        ptr = r.u32("source image pointer")
        src_area = m.read_rect(r, "source area")
        brush = m.read_brush(r)
        rop = r.u16("rop descriptor")
        scale_mode = r.u8("scale mode")
        self._no_mask(r)
        surface = self._surface(base.surface_id, r.what)
        image = self.images.read(r, ptr)
        if brush.kind != m.BRUSH_NONE and image.has_alpha:
            raise SpiceUnsupportedError(f"{r.what}: an opaque draw over a brush is not supported")
        surface.blit(base.box, base.clip, image, src_area, rop, nearest=scale_mode == 1)
        self.draws += 1

    def _draw_fill(self, r: Reader) -> None:
        base = m.read_base(r)
        brush = m.read_brush(r)
        rop = r.u16("rop descriptor")
        self._no_mask(r)
        surface = self._surface(base.surface_id, r.what)
        if brush.kind == m.BRUSH_SOLID:
            surface.fill(base.box, base.clip, brush.color, rop)
        elif brush.kind == m.BRUSH_PATTERN:
            pattern = self.images.read(r, brush.pattern)
            surface.fill_pattern(base.box, base.clip, pattern, (brush.x, brush.y), rop)
        elif rop & (ROPD_OP_BLACKNESS | ROPD_OP_WHITENESS | ROPD_OP_INVERS):
            surface.fill(base.box, base.clip, 0, rop)  # no brush: only destination-only operations draw
        self.draws += 1

    def _fill_op(self, r: Reader, rop: int) -> None:
        base = m.read_base(r)
        self._no_mask(r)
        self._surface(base.surface_id, r.what).fill(base.box, base.clip, 0, rop)
        self.draws += 1

    def _draw_blackness(self, r: Reader) -> None:
        self._fill_op(r, ROPD_OP_BLACKNESS)

    def _draw_whiteness(self, r: Reader) -> None:
        self._fill_op(r, ROPD_OP_WHITENESS)

    def _draw_invers(self, r: Reader) -> None:
        self._fill_op(r, ROPD_OP_INVERS)

    def _copy_bits(self, r: Reader) -> None:
        base = m.read_base(r)
        x = r.i32("source x")
        y = r.i32("source y")
        self._surface(base.surface_id, r.what).copy_bits(base.box, base.clip, x, y)
        self.draws += 1

    # -- video streams -----------------------------------------------------------------------
    def _stream_create(self, r: Reader) -> None:
        surface_id = r.u32("surface id")
        stream_id = r.u32("stream id")
        flags = r.u8("stream flags")
        codec = r.u8("codec")
        r.u64("stamp")
        r.u32("stream width")
        r.u32("stream height")
        src_w = r.u32("source width")
        src_h = r.u32("source height")
        dest = m.read_rect(r, "destination")
        clip = m.read_clip(r)
        if codec != m.CODEC_MJPEG:
            raise SpiceUnsupportedError(f"unsupported codec {m.CODEC_NAMES.get(codec, str(codec))} (video stream)")
        check_size(src_w, src_h, "video stream")
        self._surface(surface_id, r.what)
        if stream_id not in self.streams and len(self.streams) >= MAX_STREAMS:
            raise SpiceProtocolError(f"STREAM_CREATE: more than {MAX_STREAMS} streams")
        self.streams[stream_id] = _Stream(surface_id, codec, flags, src_w, src_h, dest, clip)

    def _stream(self, stream_id: int, what: str) -> _Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise SpiceProtocolError(f"{what}: stream {stream_id} does not exist")
        return stream

    def _show_frame(self, stream: _Stream, data: bytes, dest: Rect, what: str) -> None:
        frame = decode_jpeg(data, f"{what} MJPEG frame")
        if not stream.flags & m.STREAM_TOP_DOWN:
            frame = Pixels(frame.width, frame.height, flip_rows(frame.data, frame.width, frame.height))
        surface = self._surface(stream.surface_id, what)
        surface.blit(dest, stream.clip, frame, Rect(0, 0, frame.width, frame.height), ROPD_OP_PUT, nearest=False)
        self.draws += 1

    def _stream_data(self, r: Reader) -> None:
        stream = self._stream(r.u32("stream id"), r.what)
        r.u32("multimedia time")
        size = r.u32("data size")
        self._show_frame(stream, r.take(size, "frame"), stream.dest, r.what)

    def _stream_data_sized(self, r: Reader) -> None:
        stream = self._stream(r.u32("stream id"), r.what)
        r.u32("multimedia time")
        r.u32("width")
        r.u32("height")
        dest = m.read_rect(r, "destination")
        size = r.u32("data size")
        self._show_frame(stream, r.take(size, "frame"), dest, r.what)

    def _stream_clip(self, r: Reader) -> None:
        stream = self._stream(r.u32("stream id"), r.what)
        stream.clip = m.read_clip(r)

    def _stream_destroy(self, r: Reader) -> None:
        self.streams.pop(r.u32("stream id"), None)

    def _stream_destroy_all(self, r: Reader) -> None:
        self.streams.clear()
