"""SPICE image decoders against known vectors.

LZ and GLZ vectors come from the test-only encoders in ``spice_encoders.py``; QUIC vectors are payloads
captured from QEMU's real SPICE server on this lab host, stored under ``tests/data/spice`` with the
screendump QEMU itself took of the same screen (see the README there).
"""

from __future__ import annotations

import random
import struct
import time
import zlib
from pathlib import Path

import pytest
import spice_encoders as enc
from PIL import Image

from ATPLibrary.errors import SpiceProtocolError
from ATPLibrary.spice.display import GlzWindow, decode_glz, decode_lz, decode_quic
from ATPLibrary.spice.display.bitmap import FMT_8BIT, FMT_16BIT, FMT_24BIT, FMT_32BIT, decode_bitmap
from ATPLibrary.spice.display.glz import decode_zlib_glz

DATA = Path(__file__).resolve().parents[1] / "data" / "spice"


def console_like(width: int, height: int, seed: int = 1) -> bytes:
    """A text-console-like picture: a dark background, bright glyph-ish blocks, a coloured bar."""
    rnd = random.Random(seed)
    px = bytearray(width * height * 4)
    for y in range(height):
        for x in range(width):
            i = (y * width + x) * 4
            if y < 8:
                px[i : i + 3] = bytes((200, 80, 20))
            elif (x // 9 + y // 16) % 3 == 0 and rnd.random() < 0.4:
                px[i : i + 3] = bytes((170, 170, 170))
    return bytes(px)


def noisy(width: int, height: int, seed: int = 2) -> bytes:
    rnd = random.Random(seed)
    return bytes(b if i % 4 != 3 else 0 for i, b in enumerate(rnd.randbytes(width * height * 4)))


def test_lz_rgb32_round_trip_console_and_noise() -> None:
    for pixels, w, h in ((console_like(97, 41), 97, 41), (noisy(33, 17), 33, 17)):
        out = decode_lz(enc.lz_encode_rgb(pixels, w, h))
        assert (out.width, out.height) == (w, h)
        assert bytes(out.data) == pixels


def test_lz_rgb24_bottom_up_is_flipped_to_top_down() -> None:
    pixels = console_like(40, 30, seed=5)
    out = decode_lz(enc.lz_encode_rgb(pixels, 40, 30, kind=enc.RGB24, top_down=False))
    assert bytes(out.data) == pixels


def test_lz_far_distance_and_long_lengths() -> None:
    # a 100x120 picture whose bottom half repeats the top half: distance 6000 pixels, plus runs > 255
    w, h = 100, 120
    top = noisy(w, 30, seed=7) + bytes(w * 30 * 4)
    pixels = top + top
    data = enc.lz_encode_rgb(pixels, w, h)
    assert bytes(decode_lz(data).data) == pixels
    # far distances (> 8191 pixels) need the escape form
    w, h = 128, 160
    half = noisy(w, 80, seed=8)
    data = enc.lz_encode_rgb(half + half, w, h)
    assert bytes(decode_lz(data).data) == half + half
    assert len(data) < len(half) * 3 // 4 * 1.05 + 100  # the second half was coded as far references


def test_lz_rgba_carries_alpha() -> None:
    rnd = random.Random(3)
    pixels = bytes(rnd.choice((0, 255)) if i % 4 == 3 else (i * 7) % 256 for i in range(20 * 10 * 4))
    out = decode_lz(enc.lz_encode_rgb(pixels, 20, 10, kind=enc.RGBA))
    assert out.has_alpha
    assert bytes(out.data) == pixels


def test_lz_rgb16_widens_555() -> None:
    words = [(31 << 10), (31 << 5), 31, 0x7FFF, 0, (16 << 10) | (8 << 5) | 1] * 5
    out = decode_lz(enc.lz_encode_rgb16(words, 6, 5))
    assert bytes(out.data[:24]) == bytes(
        (0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0, 0, 0, 0, 0, 8, 66, 132, 0)
    )


def test_lz_plt8_uses_the_palette() -> None:
    indexes = bytes([0, 1, 2, 2, 2, 2, 1, 0] * 4)
    out = decode_lz(enc.lz_encode_plt8(indexes, 8, 4), palette=[0x000000, 0xFF0000, 0x00FF00])
    assert bytes(out.data[:12]) == bytes((0, 0, 0, 0, 0, 0, 255, 0, 0, 255, 0, 0))


def test_glz_window_references_across_images() -> None:
    w, h = 90, 50
    first = console_like(w, h, seed=11)
    second = bytearray(first)
    second[4 * (10 * w + 10) : 4 * (10 * w + 20)] = bytes((1, 2, 3, 0)) * 10  # a small change
    encoder = enc.GlzEncoder()
    window = GlzWindow()
    a = encoder.encode(first, w, h)
    b = encoder.encode(bytes(second), w, h, head_dist=1)
    assert len(b) < len(a) // 4  # the second image is mostly references into the first
    assert bytes(decode_glz(a, window).data) == first
    assert bytes(decode_glz(b, window).data) == bytes(second)
    # a bottom-up image, long (>= 4096) and very long (>= 131072) pixel offsets into the window
    big_w, big_h = 400, 360
    big = noisy(big_w, big_h, seed=12)
    c = encoder.encode(big, big_w, big_h, top_down=False, head_dist=2)
    d = encoder.encode(big, big_w, big_h, top_down=False, head_dist=1)
    assert bytes(decode_glz(c, window).data) == big
    assert bytes(decode_glz(d, window).data) == big
    assert len(d) < 2000


def test_glz_window_drops_images_out_of_the_servers_window() -> None:
    w, h = 16, 8
    encoder = enc.GlzEncoder()
    window = GlzWindow()
    pixels = console_like(w, h, seed=4)
    decode_glz(encoder.encode(pixels, w, h), window)  # id 0
    decode_glz(encoder.encode(bytes(w * h * 4), w, h, head_dist=0), window)  # id 1: window starts at itself
    assert len(window) == 1
    with pytest.raises(SpiceProtocolError, match="not in the window"):
        decode_glz(encoder.encode(pixels, w, h), window)  # id 2 references id 0, which was dropped


def test_zlib_glz() -> None:
    w, h = 30, 20
    glz = enc.GlzEncoder().encode(console_like(w, h), w, h)
    out = decode_zlib_glz(zlib.compress(glz), len(glz), GlzWindow())
    assert bytes(out.data) == console_like(w, h)


def test_plain_bitmaps() -> None:
    w, h = 5, 3
    bgrx = bytes(range(w * h * 4))
    stride32 = w * 4 + 4  # padded rows
    padded = b"".join(bgrx[y * w * 4 : (y + 1) * w * 4] + b"\xee" * 4 for y in range(h))
    assert bytes(decode_bitmap(FMT_32BIT, w, h, stride32, True, padded, None).data) == bgrx
    bottom_up = b"".join(bgrx[y * w * 4 : (y + 1) * w * 4] for y in reversed(range(h)))
    assert bytes(decode_bitmap(FMT_32BIT, w, h, w * 4, False, bottom_up, None).data) == bgrx
    rgb24 = bytes(b for i, b in enumerate(bgrx) if i % 4 != 3)
    expect24 = bytes(b if i % 4 != 3 else 0 for i, b in enumerate(bgrx))
    assert bytes(decode_bitmap(FMT_24BIT, w, h, w * 3, True, rgb24, None).data) == expect24
    px16 = decode_bitmap(FMT_16BIT, 1, 1, 2, True, struct.pack("<H", 31 << 10), None)
    assert bytes(px16.data) == bytes((0, 0, 255, 0))
    px8 = decode_bitmap(FMT_8BIT, 2, 1, 4, True, bytes((1, 0, 0, 0)), [0x0000FF, 0x123456])
    assert bytes(px8.data) == bytes((0x56, 0x34, 0x12, 0, 0xFF, 0, 0, 0))


@pytest.mark.parametrize("payload", sorted(DATA.glob("quic-*.bin")), ids=lambda p: p.stem)
def test_quic_matches_qemus_own_screendump(payload: Path) -> None:
    """QUIC payloads captured from QEMU's SPICE server decode to QEMU's own screendump of that screen."""
    expected = Image.open(payload.with_suffix(".expected.png")).convert("RGB")
    start = time.perf_counter()
    out = decode_quic(payload.read_bytes())
    elapsed = time.perf_counter() - start
    assert (out.width, out.height) == expected.size
    got = Image.frombuffer("RGB", (out.width, out.height), bytes(out.data), "raw", "BGRX", 0, 1)
    assert got.tobytes() == expected.tobytes()
    assert elapsed < 1.0, f"QUIC decode of {out.width}x{out.height} took {elapsed:.2f} s"


def test_quic_captures_are_present() -> None:
    assert len(sorted(DATA.glob("quic-*.bin"))) >= 1


def test_lz_decode_speed_of_a_full_console_frame() -> None:
    w, h = 720, 400
    pixels = console_like(w, h, seed=21)
    data = enc.lz_encode_rgb(pixels, w, h)
    start = time.perf_counter()
    out = decode_lz(data)
    elapsed = time.perf_counter() - start
    assert bytes(out.data) == pixels
    assert elapsed < 1.0, f"LZ decode of a 720x400 frame took {elapsed:.2f} s"
