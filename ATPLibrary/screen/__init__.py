"""Screenshots and pure-Python image helpers."""

from ATPLibrary.screen.capture import Screenshot, take_screenshot
from ATPLibrary.screen.image import RawImage, decode_png, decode_ppm, encode_png, is_blank, ppm_to_png, to_png

__all__ = [
    "RawImage",
    "Screenshot",
    "decode_png",
    "decode_ppm",
    "encode_png",
    "is_blank",
    "ppm_to_png",
    "take_screenshot",
    "to_png",
]
