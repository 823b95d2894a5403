"""SPICE display channel: surfaces, draw messages and the image codecs QEMU's default ``auto_glz`` uses.

:class:`DisplayChannelHandler` is what the SPICE channel loop drives (``start``, ``on_message``,
``wait_for_surface``, ``screenshot``).  Decoders: :func:`decode_lz` (LZ_RGB/LZ_PLT), :func:`decode_glz`
with a session-wide :class:`GlzWindow`, :func:`decode_quic`, plain bitmaps.  Malformed or truncated
server data raises :class:`~ATPLibrary.errors.SpiceProtocolError` only.  See docs/spice-display.md.
"""

from __future__ import annotations

from ATPLibrary.spice.display.glz import GlzWindow, decode_glz
from ATPLibrary.spice.display.handler import DisplayChannelHandler
from ATPLibrary.spice.display.images import PixmapCache, SessionCaches
from ATPLibrary.spice.display.lz import decode_lz
from ATPLibrary.spice.display.messages import DISPLAY_CAPS
from ATPLibrary.spice.display.pixels import Pixels
from ATPLibrary.spice.display.quic import decode_quic

__all__ = [
    "DISPLAY_CAPS",
    "DisplayChannelHandler",
    "GlzWindow",
    "Pixels",
    "PixmapCache",
    "SessionCaches",
    "decode_glz",
    "decode_lz",
    "decode_quic",
]
