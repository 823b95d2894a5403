from __future__ import annotations

import struct
import zlib

import pytest

from ATPLibrary.errors import ScreenshotError
from ATPLibrary.hosts import HostConnection
from ATPLibrary.screen import (
    decode_png,
    decode_ppm,
    encode_png,
    is_blank,
    ppm_to_png,
    take_screenshot,
    to_png,
)


def ppm(width: int, height: int, pixels: bytes, maxval: int = 255, comment: bool = False) -> bytes:
    head = b"P6\n" + (b"# made by a test\n" if comment else b"") + f"{width} {height}\n{maxval}\n".encode()
    return head + pixels


def test_ppm_to_png_round_trips_pixels() -> None:
    pixels = bytes(range(2 * 3 * 3 * 2))[: 3 * 2 * 3]  # 3x2 RGB
    png = ppm_to_png(ppm(3, 2, pixels, comment=True))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = decode_png(png)
    assert (image.width, image.height, image.channels) == (3, 2, 3)
    assert image.pixels == pixels
    assert image.pixel(2, 1) == pixels[15:18]


def test_png_chunks_have_valid_crcs() -> None:
    png = encode_png(2, 2, b"\x00" * 12)
    pos = 8
    kinds = []
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        kinds.append(kind)
        pos += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]


def test_ppm_with_other_maxval_is_scaled() -> None:
    assert decode_ppm(ppm(1, 1, bytes([15, 0, 7]), maxval=15)).pixels == bytes([255, 0, 119])
    sixteen = struct.pack(">3H", 65535, 0, 32768)
    assert decode_ppm(ppm(1, 1, sixteen, maxval=65535)).pixels == bytes([255, 0, 128])


def test_truncated_or_foreign_data_is_rejected() -> None:
    with pytest.raises(ScreenshotError, match="truncated"):
        decode_ppm(ppm(4, 4, b"\x00" * 10))
    with pytest.raises(ScreenshotError, match="P6"):
        decode_ppm(b"GIF89a")
    with pytest.raises(ScreenshotError, match="unsupported screenshot format"):
        to_png(b"GIF89a....", "image/gif")


def _filtered_png(width: int, height: int, rows: list[bytes], filters: list[int], channels: int) -> bytes:
    raw = b"".join(bytes([f]) + r for f, r in zip(filters, rows, strict=True))
    colour = {3: 2, 4: 6}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def test_decoder_undoes_every_filter_type() -> None:
    # all rows encode the same pixels (10,20,30,40) x2 with different filters, relative to a zero first row
    target = bytes([10, 20, 30, 40, 10, 20, 30, 40])
    rows = [
        bytes(8),  # filter 0, row 0 = zeros
        target,  # filter 0 (None)
        bytes([10, 20, 30, 40, 0, 0, 0, 0]),  # filter 1 (Sub): same as left
        bytes(8),  # filter 2 (Up): same as previous row
        bytes([5, 10, 15, 20, 0, 0, 0, 0]),  # filter 3 (Average) of (left, up)=(0|10.., target)
        bytes(8),  # filter 4 (Paeth): predictor picks up/left
    ]
    png = _filtered_png(2, 6, rows, [0, 0, 1, 2, 3, 4], 4)
    image = decode_png(png)
    assert image.pixels[8:16] == target  # None
    assert image.pixels[16:24] == target  # Sub
    assert image.pixels[24:32] == target  # Up
    assert image.pixels[32:40] == target  # Average
    assert image.pixels[40:48] == target  # Paeth


def test_blank_detection() -> None:
    black = encode_png(64, 48, b"\x00\x00\x00" * 64 * 48)
    assert is_blank(black)
    one_dot = bytearray(b"\x00\x00\x00" * 64 * 48)
    one_dot[3 * (64 * 47 + 63) + 1] = 200  # last pixel, green
    assert not is_blank(encode_png(64, 48, bytes(one_dot)))
    assert is_blank(ppm_to_png(ppm(2, 2, b"\x10\x20\x30" * 4)))


def test_screenshot_through_the_test_driver_is_png() -> None:
    host = HostConnection("test:///default", keepalive=None)
    try:
        shot = take_screenshot(host.domain("test"))
    finally:
        host.close()
    assert shot.png.startswith(b"\x89PNG") and shot.source_mime == "image/png"
    assert shot.width > 0 and shot.height > 0
    assert (decode_png(shot.png).width, decode_png(shot.png).height) == (shot.width, shot.height)
