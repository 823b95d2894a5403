"""Screenshots, image comparison, openQA-style needles and screen waits (plain Python on Pillow)."""

from ATPLibrary.screen.capture import Screenshot, take_screenshot
from ATPLibrary.screen.image import (
    Box,
    decode_png,
    decode_ppm,
    encode_image,
    encode_png,
    is_blank,
    load_image,
    parse_box,
    parse_boxes,
    ppm_to_png,
    to_png,
)
from ATPLibrary.screen.match import Found, default_margin, opencv_available, search, similarity

__all__ = [
    "Box",
    "Found",
    "Screenshot",
    "decode_png",
    "decode_ppm",
    "default_margin",
    "encode_image",
    "encode_png",
    "is_blank",
    "load_image",
    "opencv_available",
    "parse_box",
    "parse_boxes",
    "ppm_to_png",
    "search",
    "similarity",
    "take_screenshot",
    "to_png",
]
