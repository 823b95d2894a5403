"""Image helpers on Pillow: loading screenshots (PNG, PPM), PNG encoding, blank detection, regions.

Every image the screen code compares is 8-bit RGB (:func:`load_image` converts); alpha is dropped.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, UnidentifiedImageError

from ATPLibrary.errors import ConfigurationError, ScreenshotError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MIME = "image/png"
PPM_MIMES = frozenset({"image/x-portable-pixmap", "image/x-portable-anymap", "image/x-ppm"})


class Box(NamedTuple):
    """A rectangle in pixels: top-left corner and size."""

    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    def pil(self) -> tuple[int, int, int, int]:
        """(left, upper, right, lower), as Pillow's ``crop`` wants it."""
        return (self.x, self.y, self.right, self.bottom)

    def intersection(self, other: Box) -> Box | None:
        left, top = max(self.x, other.x), max(self.y, other.y)
        right, bottom = min(self.right, other.right), min(self.bottom, other.bottom)
        if right <= left or bottom <= top:
            return None
        return Box(left, top, right - left, bottom - top)

    def __str__(self) -> str:
        return f"x={self.x} y={self.y} {self.width}x{self.height}"


def parse_box(value: str | Sequence[int] | Box, what: str = "region") -> Box:
    """A :class:`Box` from ``"x,y,width,height"`` (commas and/or spaces) or a sequence of four integers."""
    if isinstance(value, Box):
        return value
    if isinstance(value, str):
        parts: Sequence[object] = [p for p in re.split(r"[\s,;]+", value.strip()) if p]
    else:
        parts = list(value)
    try:
        numbers = [int(str(p)) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or numbers[2] <= 0 or numbers[3] <= 0 or numbers[0] < 0 or numbers[1] < 0:
        raise ConfigurationError(
            f"{what} {value!r} is not a rectangle: give 'x,y,width,height' in screen pixels, "
            f"e.g. '0,0,720,16' (x and y from 0, width and height above 0)"
        )
    return Box(*numbers)


def parse_boxes(value: str | Sequence[str | Sequence[int] | Box] | None, what: str = "exclude") -> list[Box]:
    """Several boxes: ``"x,y,w,h; x,y,w,h"`` or a list of boxes (``None`` or empty → none)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [parse_box(part, what) for part in value.split(";") if part.strip()]
    if len(value) == 4 and all(isinstance(v, int) for v in value):
        return [parse_box(value, what)]  # type: ignore[arg-type]
    return [parse_box(part, what) for part in value]


def load_image(source: bytes | str | Path | Image.Image, what: str = "image") -> Image.Image:
    """An RGB image from PNG/PPM bytes, a file path or a Pillow image (loaded, alpha dropped)."""
    if isinstance(source, Image.Image):
        image = source
    else:
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            image.load()
        except FileNotFoundError:
            raise ScreenshotError(f"{what} '{source!s}' does not exist") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            name = "data" if isinstance(source, bytes) else f"'{source}'"
            raise ScreenshotError(f"cannot read {what} {name}: {err}") from err
    return image if image.mode == "RGB" else image.convert("RGB")


def encode_image(image: Image.Image) -> bytes:
    """PNG bytes of ``image``."""
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=6)
    return out.getvalue()


def encode_png(width: int, height: int, rgb: bytes, *, channels: int = 3) -> bytes:
    """Encode 8-bit RGB (``channels=3``) or RGBA (4) rows as PNG."""
    mode = {3: "RGB", 4: "RGBA"}[channels]
    if len(rgb) != width * height * channels:
        raise ScreenshotError(
            f"pixel data has {len(rgb)} bytes, expected {width * height * channels} for {width}x{height}"
        )
    return encode_image(Image.frombytes(mode, (width, height), rgb))


def decode_png(data: bytes) -> Image.Image:
    """Decode PNG bytes into an RGB image."""
    if not data.startswith(PNG_SIGNATURE):
        raise ScreenshotError("not a PNG image (bad signature)")
    return load_image(data, "PNG image")


def decode_ppm(data: bytes) -> Image.Image:
    """Decode a binary PPM (P6, any maxval; 16-bit is scaled to 8) into an RGB image."""
    if not data.startswith(b"P6"):
        raise ScreenshotError(f"not a binary PPM (P6) image: starts with {data[:2]!r}")
    return load_image(data, "PPM image")


def ppm_to_png(data: bytes) -> bytes:
    """Convert a binary PPM (what QEMU's screendump writes) to PNG."""
    return encode_image(decode_ppm(data))


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, without decoding the image."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ScreenshotError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def is_blank(image: bytes | Image.Image) -> bool:
    """True when every pixel has the same colour (``image`` may be PNG/PPM bytes)."""
    picture = load_image(image)
    if picture.width == 0 or picture.height == 0:
        return True
    extrema: Any = picture.getextrema()
    return all(low == high for low, high in extrema)


def to_png(data: bytes, mime: str) -> bytes:
    """Return PNG bytes for a screenshot of type ``mime`` (PNG as is, PPM converted)."""
    mime = (mime or "").lower()
    if mime == PNG_MIME or data.startswith(PNG_SIGNATURE):
        return data
    if mime in PPM_MIMES or data.startswith(b"P6"):
        return ppm_to_png(data)
    raise ScreenshotError(f"unsupported screenshot format '{mime}'")
