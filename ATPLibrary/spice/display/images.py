"""SPICE images inside display messages: the descriptor, each image type, and the caches.

An image (``SpiceImage``) is a descriptor (``id`` u64, ``type`` u8, ``flags`` u8, ``width``, ``height``)
followed by its type's body; ``flags & CACHE_ME`` asks the client to keep it in the pixmap cache under
``id`` (``FROM_CACHE`` / ``FROM_CACHE_LOSSLESS`` later refer to it).  Palettes travel behind a pointer
and may be cached by their ``unique`` id.  The pixmap cache and the GLZ window belong to the client
session (shared by its display channels); palettes belong to one channel.
"""

from __future__ import annotations

import io
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from ATPLibrary.errors import SpiceProtocolError, SpiceUnsupportedError
from ATPLibrary.spice.display.bitmap import bitmap_data_size, decode_bitmap
from ATPLibrary.spice.display.glz import DEFAULT_WINDOW_PIXELS, GlzWindow, decode_glz, decode_zlib_glz
from ATPLibrary.spice.display.lz import decode_lz
from ATPLibrary.spice.display.pixels import MAX_PIXELS, Pixels, check_size
from ATPLibrary.spice.display.quic import decode_quic
from ATPLibrary.spice.display.reader import Reader

# SpiceImageType
IMAGE_BITMAP = 0
IMAGE_QUIC = 1
IMAGE_LZ_PLT = 100
IMAGE_LZ_RGB = 101
IMAGE_GLZ_RGB = 102
IMAGE_FROM_CACHE = 103
IMAGE_SURFACE = 104
IMAGE_JPEG = 105
IMAGE_FROM_CACHE_LOSSLESS = 106
IMAGE_ZLIB_GLZ_RGB = 107
IMAGE_JPEG_ALPHA = 108
IMAGE_LZ4 = 109
IMAGE_TYPE_NAMES = {
    IMAGE_BITMAP: "BITMAP",
    IMAGE_QUIC: "QUIC",
    IMAGE_LZ_PLT: "LZ_PLT",
    IMAGE_LZ_RGB: "LZ_RGB",
    IMAGE_GLZ_RGB: "GLZ_RGB",
    IMAGE_FROM_CACHE: "FROM_CACHE",
    IMAGE_SURFACE: "SURFACE",
    IMAGE_JPEG: "JPEG",
    IMAGE_FROM_CACHE_LOSSLESS: "FROM_CACHE_LOSSLESS",
    IMAGE_ZLIB_GLZ_RGB: "ZLIB_GLZ_RGB",
    IMAGE_JPEG_ALPHA: "JPEG_ALPHA",
    IMAGE_LZ4: "LZ4",
}
# SpiceImageFlags
IMAGE_CACHE_ME = 1 << 0
IMAGE_CACHE_REPLACE_ME = 1 << 2
# SpiceBitmapFlags
BITMAP_PAL_CACHE_ME = 1 << 0
BITMAP_PAL_FROM_CACHE = 1 << 1
BITMAP_TOP_DOWN = 1 << 2

#: Pixmap cache size (pixels) this client announces in DISPLAY_INIT.
DEFAULT_PIXMAP_CACHE_PIXELS = 4 * 1024 * 1024
MAX_PALETTES = 4096


class PixmapCache:
    """Images the server asked the client to keep (by image id), bounded in pixels (oldest out first)."""

    def __init__(self, max_pixels: int = DEFAULT_PIXMAP_CACHE_PIXELS, cache_id: int = 1) -> None:
        self.max_pixels = max_pixels
        self.cache_id = cache_id
        self._items: OrderedDict[int, Pixels] = OrderedDict()
        self._total = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, image_id: int, image: Pixels) -> None:
        self.remove(image_id)
        self._items[image_id] = image
        self._total += image.width * image.height
        limit = max(self.max_pixels, MAX_PIXELS)
        while self._total > limit and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._total -= old.width * old.height

    def get(self, image_id: int) -> Pixels:
        image = self._items.get(image_id)
        if image is None:
            raise SpiceProtocolError(f"image FROM_CACHE: image {image_id:#x} is not in the pixmap cache")
        self._items.move_to_end(image_id)
        return image

    def remove(self, image_id: int) -> None:
        old = self._items.pop(image_id, None)
        if old is not None:
            self._total -= old.width * old.height

    def clear(self) -> None:
        self._items.clear()
        self._total = 0


@dataclass
class SessionCaches:
    """What all display channels of one SPICE session share: the pixmap cache and the GLZ window."""

    pixmaps: PixmapCache = field(default_factory=PixmapCache)
    glz: GlzWindow = field(default_factory=lambda: GlzWindow(DEFAULT_WINDOW_PIXELS))


class ImageReader:
    """Parses and decodes ``SpiceImage`` structures for one display channel."""

    def __init__(self, caches: SessionCaches, surface_pixels: Callable[[int], Pixels]) -> None:
        self.caches = caches
        self.palettes: dict[int, list[int]] = {}
        self._surface_pixels = surface_pixels
        #: how many images of each type were read (``"GLZ_RGB"``: 3, ...): which codecs the server used
        self.seen: Counter[str] = Counter()

    def _palette(self, r: Reader, flags: int) -> list[int] | None:
        if flags & BITMAP_PAL_FROM_CACHE:
            pal_id = r.u64("palette id")
            if pal_id not in self.palettes:
                raise SpiceProtocolError(f"image: palette {pal_id:#x} is not in the palette cache")
            return self.palettes[pal_id]
        ptr = r.u32("palette pointer")
        if ptr == 0:
            return None
        p = r.at(ptr, "palette")
        unique = p.u64("palette unique id")
        count = p.u16("palette size")
        p.need(count * 4, "palette entries")
        entries = [p.u32() for _ in range(count)]
        if flags & BITMAP_PAL_CACHE_ME:
            if len(self.palettes) >= MAX_PALETTES:
                self.palettes.clear()
            self.palettes[unique] = entries
        return entries

    def read(self, msg: Reader, ptr: int) -> Pixels:
        """Decode the image that pointer ``ptr`` of message ``msg`` points at."""
        r = msg.at(ptr, "image")
        image_id = r.u64("image id")
        kind = r.u8("image type")
        flags = r.u8("image flags")
        width = r.u32("image width")
        height = r.u32("image height")
        name = IMAGE_TYPE_NAMES.get(kind)
        if name is None:
            raise SpiceProtocolError(f"image: unknown image type {kind}")
        self.seen[name] += 1
        if kind in (IMAGE_FROM_CACHE, IMAGE_FROM_CACHE_LOSSLESS):
            return self.caches.pixmaps.get(image_id)
        if kind == IMAGE_SURFACE:
            return self._surface_pixels(r.u32("source surface id"))
        check_size(width, height, f"{name} image")
        image = self._decode(r, kind, name)
        if (image.width, image.height) != (width, height):
            raise SpiceProtocolError(
                f"{name} image: decodes to {image.width}x{image.height}, descriptor says {width}x{height}"
            )
        if flags & (IMAGE_CACHE_ME | IMAGE_CACHE_REPLACE_ME):
            self.caches.pixmaps.put(image_id, image)
        return image

    def _decode(self, r: Reader, kind: int, name: str) -> Pixels:
        if kind == IMAGE_BITMAP:
            fmt = r.u8("bitmap format")
            bflags = r.u8("bitmap flags")
            x = r.u32("bitmap width")
            y = r.u32("bitmap height")
            stride = r.u32("bitmap stride")
            palette = self._palette(r, bflags)
            size = bitmap_data_size(fmt, x, y, stride)
            data = r.take(size, "bitmap data")
            return decode_bitmap(fmt, x, y, stride, bool(bflags & BITMAP_TOP_DOWN), data, palette)
        if kind == IMAGE_LZ_PLT:
            bflags = r.u8("LZ_PLT flags")
            size = r.u32("LZ_PLT data size")
            palette = self._palette(r, bflags)
            if palette is None:
                raise SpiceProtocolError("LZ_PLT image: no palette")
            return decode_lz(r.take(size, "LZ_PLT data"), palette)
        if kind == IMAGE_ZLIB_GLZ_RGB:
            glz_size = r.u32("GLZ data size")
            size = r.u32("zlib data size")
            return decode_zlib_glz(r.take(size, "ZLIB_GLZ data"), glz_size, self.caches.glz)
        if kind in (IMAGE_QUIC, IMAGE_LZ_RGB, IMAGE_GLZ_RGB, IMAGE_JPEG):
            size = r.u32(f"{name} data size")
            data = r.take(size, f"{name} data")
            if kind == IMAGE_QUIC:
                return decode_quic(data)
            if kind == IMAGE_LZ_RGB:
                return decode_lz(data)
            if kind == IMAGE_GLZ_RGB:
                return decode_glz(data, self.caches.glz)
            return decode_jpeg(data, "JPEG image")
        raise SpiceUnsupportedError(f"unsupported image codec {name}")


def decode_jpeg(data: bytes, what: str) -> Pixels:
    """A JPEG (lossy images, MJPEG stream frames) to :class:`Pixels`, via Pillow."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG":
                raise SpiceProtocolError(f"{what}: not JPEG data ({img.format})")
            check_size(img.width, img.height, what)
            rgb = img.convert("RGB")
            return Pixels(rgb.width, rgb.height, bytearray(rgb.tobytes("raw", "BGRX")))
    except SpiceProtocolError:
        raise
    except Exception as exc:  # Pillow's decoders raise many kinds (OSError, SyntaxError, DecompressionBombError, ...)
        raise SpiceProtocolError(f"{what}: cannot decode ({type(exc).__name__}: {exc})") from None
