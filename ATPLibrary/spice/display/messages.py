"""Display channel message numbers and the shared structures of draw messages (SPICE protocol 2.2)."""

from __future__ import annotations

from dataclasses import dataclass

from ATPLibrary.errors import SpiceProtocolError
from ATPLibrary.spice.display.canvas import Rect
from ATPLibrary.spice.display.reader import Reader

# server -> client (display channel; 1..100 are the common messages the channel itself handles)
MSG_MODE = 101
MSG_MARK = 102
MSG_RESET = 103
MSG_COPY_BITS = 104
MSG_INVAL_LIST = 105
MSG_INVAL_ALL_PIXMAPS = 106
MSG_INVAL_PALETTE = 107
MSG_INVAL_ALL_PALETTES = 108
MSG_STREAM_CREATE = 122
MSG_STREAM_DATA = 123
MSG_STREAM_CLIP = 124
MSG_STREAM_DESTROY = 125
MSG_STREAM_DESTROY_ALL = 126
MSG_DRAW_FILL = 302
MSG_DRAW_OPAQUE = 303
MSG_DRAW_COPY = 304
MSG_DRAW_BLEND = 305
MSG_DRAW_BLACKNESS = 306
MSG_DRAW_WHITENESS = 307
MSG_DRAW_INVERS = 308
MSG_DRAW_ROP3 = 309
MSG_DRAW_STROKE = 310
MSG_DRAW_TEXT = 311
MSG_DRAW_TRANSPARENT = 312
MSG_DRAW_ALPHA_BLEND = 313
MSG_SURFACE_CREATE = 314
MSG_SURFACE_DESTROY = 315
MSG_STREAM_DATA_SIZED = 316
MSG_MONITORS_CONFIG = 317
MSG_DRAW_COMPOSITE = 318
MSG_STREAM_ACTIVATE_REPORT = 319
MSG_GL_SCANOUT_UNIX = 320
MSG_GL_DRAW = 321
MSG_QUALITY_INDICATOR = 322

MESSAGE_NAMES = {v: k[4:] for k, v in dict(globals()).items() if k.startswith("MSG_") and isinstance(v, int)}

# client -> server
MSGC_DISPLAY_INIT = 101

# SpiceClipType
CLIP_NONE = 0
CLIP_RECTS = 1
# SpiceBrushType
BRUSH_NONE = 0
BRUSH_SOLID = 1
BRUSH_PATTERN = 2
# SpiceSurfaceFlags
SURFACE_FLAG_PRIMARY = 1 << 0
# SpiceStreamFlags
STREAM_TOP_DOWN = 1 << 0
# SpiceVideoCodecType
CODEC_NAMES = {1: "MJPEG", 2: "VP8", 3: "H264", 4: "VP9", 5: "H265"}
CODEC_MJPEG = 1

#: Display channel capabilities this client supports (bit numbers of SPICE_DISPLAY_CAP_*): none.  Without
#: them the server sends only what is decoded here: no LZ4 images, no GL scanout, MJPEG as the only
#: video codec, no sized streams, no stream reports, no composite/A8 surfaces.
DISPLAY_CAPS: tuple[int, ...] = ()


def read_rect(r: Reader, field: str = "rect") -> Rect:
    top = r.i32(field)
    left = r.i32(field)
    bottom = r.i32(field)
    right = r.i32(field)
    return Rect(left, top, right, bottom)


def read_clip(r: Reader) -> list[Rect] | None:
    """A ``SpiceClip``: None for no clipping, else the clip rectangles (the count checked first)."""
    kind = r.u8("clip type")
    if kind == CLIP_NONE:
        return None
    if kind != CLIP_RECTS:
        raise SpiceProtocolError(f"{r.what}: unknown clip type {kind}")
    count = r.u32("clip rect count")
    r.need(count * 16, f"{count} clip rects")
    return [read_rect(r, "clip rect") for _ in range(count)]


@dataclass(frozen=True)
class DisplayBase:
    surface_id: int
    box: Rect
    clip: list[Rect] | None


def read_base(r: Reader) -> DisplayBase:
    surface_id = r.u32("surface id")
    box = read_rect(r, "box")
    return DisplayBase(surface_id, box, read_clip(r))


@dataclass(frozen=True)
class Mask:
    flags: int
    x: int
    y: int
    bitmap: int  # pointer; 0 = no mask


def read_mask(r: Reader) -> Mask:
    flags = r.u8("mask flags")
    x = r.i32("mask x")
    y = r.i32("mask y")
    return Mask(flags, x, y, r.u32("mask bitmap pointer"))


@dataclass(frozen=True)
class Brush:
    kind: int
    color: int = 0
    pattern: int = 0  # pointer to the pattern image
    x: int = 0
    y: int = 0


def read_brush(r: Reader) -> Brush:
    kind = r.u8("brush type")
    if kind == BRUSH_NONE:
        return Brush(kind)
    if kind == BRUSH_SOLID:
        return Brush(kind, color=r.u32("brush color"))
    if kind == BRUSH_PATTERN:
        ptr = r.u32("pattern pointer")
        x = r.i32("pattern x")
        return Brush(kind, pattern=ptr, x=x, y=r.i32("pattern y"))
    raise SpiceProtocolError(f"{r.what}: unknown brush type {kind}")
