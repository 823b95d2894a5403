"""Screenshots and images on Pillow, the screen waits with fake frame sequences, and the screen keywords."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fakes import FakeClock
from PIL import Image
from test_needles import PROMPT, TEXT, area, console, write_needle

from ATPLibrary.errors import (
    ConfigurationError,
    ScreenMismatchError,
    ScreenshotError,
    ScreenWaitTimeout,
    WaitTimeoutError,
)
from ATPLibrary.hosts import HostConnection
from ATPLibrary.input.mouse import MouseButton
from ATPLibrary.keywords.screen import ScreenKeywords
from ATPLibrary.screen import (
    Box,
    Screenshot,
    decode_png,
    decode_ppm,
    encode_image,
    encode_png,
    is_blank,
    parse_box,
    parse_boxes,
    ppm_to_png,
    take_screenshot,
    to_png,
)
from ATPLibrary.screen.needle import load_needle
from ATPLibrary.screen.wait import (
    DEFAULT_THRESHOLD,
    compare_frames,
    wait_until_changes,
    wait_until_matches,
    wait_until_still,
)

ROOT = Path(__file__).resolve().parents[2]


def ppm(width: int, height: int, pixels: bytes, maxval: int = 255, comment: bool = False) -> bytes:
    head = b"P6\n" + (b"# made by a test\n" if comment else b"") + f"{width} {height}\n{maxval}\n".encode()
    return head + pixels


# ---------------------------------------------------------------- images


def test_ppm_to_png_round_trips_pixels() -> None:
    pixels = bytes(range(3 * 2 * 3))  # 3x2 RGB
    png = ppm_to_png(ppm(3, 2, pixels, comment=True))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = decode_png(png)
    assert (image.width, image.height, image.mode) == (3, 2, "RGB")
    assert image.tobytes() == pixels
    assert image.getpixel((2, 1)) == tuple(pixels[15:18])


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
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds


def test_ppm_with_other_maxval_is_scaled() -> None:
    assert decode_ppm(ppm(1, 1, bytes([15, 0, 7]), maxval=15)).getpixel((0, 0)) == (255, 0, 119)
    sixteen = struct.pack(">3H", 65535, 0, 32768)
    assert decode_ppm(ppm(1, 1, sixteen, maxval=65535)).getpixel((0, 0)) == (255, 0, 128)


def test_truncated_or_foreign_data_is_rejected() -> None:
    with pytest.raises(ScreenshotError, match="cannot read PPM image"):
        decode_ppm(ppm(4, 4, b"\x00" * 10))
    with pytest.raises(ScreenshotError, match="P6"):
        decode_ppm(b"GIF89a")
    with pytest.raises(ScreenshotError, match="unsupported screenshot format"):
        to_png(b"GIF89a....", "image/gif")
    with pytest.raises(ScreenshotError, match="bad signature"):
        decode_png(b"not a png")


def _filtered_png(width: int, height: int, rows: list[bytes], filters: list[int], channels: int) -> bytes:
    raw = b"".join(bytes([f]) + r for f, r in zip(filters, rows, strict=True))
    colour = {3: 2, 4: 6}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_decoder_undoes_every_filter_type_and_drops_alpha() -> None:
    # all rows encode the same pixels (10,20,30,40) x2 with different filters, relative to a zero first row
    target = bytes([10, 20, 30, 40, 10, 20, 30, 40])
    rows = [
        bytes(8),  # filter 0, row 0 = zeros
        target,  # filter 0 (None)
        bytes([10, 20, 30, 40, 0, 0, 0, 0]),  # filter 1 (Sub): same as left
        bytes(8),  # filter 2 (Up): same as previous row
        bytes([5, 10, 15, 20, 0, 0, 0, 0]),  # filter 3 (Average) of (left, up)
        bytes(8),  # filter 4 (Paeth): predictor picks up/left
    ]
    image = decode_png(_filtered_png(2, 6, rows, [0, 0, 1, 2, 3, 4], 4))
    assert image.mode == "RGB"
    for y in range(1, 6):
        assert image.getpixel((1, y)) == (10, 20, 30), y


def test_blank_detection() -> None:
    black = encode_png(64, 48, b"\x00\x00\x00" * 64 * 48)
    assert is_blank(black)
    one_dot = bytearray(b"\x00\x00\x00" * 64 * 48)
    one_dot[3 * (64 * 47 + 63) + 1] = 200  # last pixel, green
    assert not is_blank(encode_png(64, 48, bytes(one_dot)))
    assert is_blank(ppm_to_png(ppm(2, 2, b"\x10\x20\x30" * 4)))
    assert is_blank(Image.new("L", (3, 3), 7)) and not is_blank(console({0: "x"}))


def test_screenshot_through_the_test_driver_is_png() -> None:
    host = HostConnection("test:///default", keepalive=None)
    try:
        shot = take_screenshot(host.domain("test"))
    finally:
        host.close()
    assert shot.png.startswith(b"\x89PNG") and shot.source_mime == "image/png"
    assert shot.width > 0 and shot.height > 0
    assert shot.image().size == (shot.width, shot.height) and shot.image().mode == "RGB"


def test_boxes_parse_with_clear_errors() -> None:
    assert parse_box("0, 16 ,720,16") == Box(0, 16, 720, 16)
    assert parse_box([1, 2, 3, 4]) == Box(1, 2, 3, 4)
    assert parse_boxes("0,0,10,10; 5,5,1,1") == [Box(0, 0, 10, 10), Box(5, 5, 1, 1)]
    assert parse_boxes(None) == [] and parse_boxes([1, 2, 3, 4]) == [Box(1, 2, 3, 4)]
    for bad in ("1,2,3", "a,b,c,d", "0,0,0,5", "-1,0,5,5"):
        with pytest.raises(ConfigurationError, match=r"is not a rectangle: give 'x,y,width,height'"):
            parse_box(bad)


# ---------------------------------------------------------------- waits on fake frames


def frames(*images: Image.Image) -> Callable[[], Image.Image]:
    """A grab that returns ``images`` in turn, then the last one forever."""
    sequence: Iterator[Image.Image] = iter(images)
    last: list[Image.Image] = []

    def grab() -> Image.Image:
        image = next(sequence, None)
        if image is not None:
            last[:] = [image]
        return last[0]

    return grab


QUIET = console({0: PROMPT})
BUSY = [console({0: PROMPT, 1: str(i)}) for i in range(1, 40)]


def test_wait_until_changes_returns_at_the_first_different_frame() -> None:
    clock = FakeClock()
    grab = frames(QUIET, QUIET, QUIET, QUIET, BUSY[0])
    result = wait_until_changes(grab, 10, 0.5, clock=clock, sleep=clock.sleep)
    assert result.frames == 5 and result.elapsed == pytest.approx(2.0)
    assert result.similarity < DEFAULT_THRESHOLD and result.image is not None


def test_wait_until_changes_times_out_with_what_when_and_similarity() -> None:
    clock = FakeClock()
    with pytest.raises(ScreenWaitTimeout) as info:
        wait_until_changes(frames(QUIET), 2, 0.5, clock=clock, sleep=clock.sleep)
    message = str(info.value)
    assert "did not change within 2 s" in message and "lowest similarity 100.00%" in message
    assert "below 99.95%" in message and isinstance(info.value, WaitTimeoutError)
    assert clock.now - 1000 == pytest.approx(2.0) and info.value.image is not None


def test_changes_outside_the_region_or_inside_exclude_do_not_count() -> None:
    changed_row_1 = BUSY[0]  # row 1 = y 16..31
    clock = FakeClock()
    with pytest.raises(ScreenWaitTimeout, match=r"region x=0 y=0 720x16"):
        wait_until_changes(frames(QUIET, changed_row_1), 1, 0.25, Box(0, 0, 720, 16), clock=clock, sleep=clock.sleep)
    with pytest.raises(ScreenWaitTimeout, match=r"1 excluded area"):
        wait_until_changes(
            frames(QUIET, changed_row_1), 1, 0.25, exclude=[Box(0, 16, 720, 16)], clock=clock, sleep=clock.sleep
        )
    result = wait_until_changes(
        frames(QUIET, changed_row_1), 1, 0.25, Box(0, 0, 720, 32), clock=clock, sleep=clock.sleep
    )
    assert result.frames == 2


def test_compare_frames_region_outside_screen_and_size_change() -> None:
    assert compare_frames(QUIET, QUIET) == 100.0
    assert compare_frames(QUIET, Image.new("RGB", (640, 480))) == 0.0
    with pytest.raises(ConfigurationError, match="outside the 720x400 screen"):
        compare_frames(QUIET, QUIET, Box(800, 0, 10, 10))


def test_wait_until_still_waits_for_the_last_change_plus_still_for() -> None:
    clock = FakeClock()
    grab = frames(*BUSY[:5], *[BUSY[4]] * 20)
    result = wait_until_still(grab, 10, still_for=1.0, interval=0.25, clock=clock, sleep=clock.sleep)
    # the last change is frame 5 (t = 1.0 s); still from there for 1.0 s
    assert result.elapsed == pytest.approx(2.0) and result.frames == 9


def test_wait_until_still_fails_within_the_timeout_when_never_still() -> None:
    clock = FakeClock()
    with pytest.raises(ScreenWaitTimeout) as info:
        wait_until_still(frames(*BUSY), 3, still_for=1.0, interval=0.25, clock=clock, sleep=clock.sleep)
    message = str(info.value)
    assert "did not stay still for 1 s within 3 s" in message
    assert "changed 12 time(s) in 13 screenshot(s)" in message and "still means at least 99.95%" in message
    assert clock.now - 1000 <= 3.0 + 1e-9


def test_wait_until_still_with_exclude_ignores_a_ticking_clock() -> None:
    ticking = [console({0: PROMPT, 24: f"12:00:{i:02d}"}) for i in range(30)]
    clock = FakeClock()
    with pytest.raises(ScreenWaitTimeout):
        wait_until_still(frames(*ticking), 2, 0.5, 0.25, clock=clock, sleep=clock.sleep)
    result = wait_until_still(
        frames(*ticking), 2, 0.5, 0.25, exclude=[Box(0, 384, 720, 16)], clock=clock, sleep=clock.sleep
    )
    assert result.elapsed == pytest.approx(0.5)


def test_wait_arguments_are_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"still_for \(2 s\) is longer than the timeout \(1 s\)"):
        wait_until_still(frames(QUIET), 1, still_for=2)
    with pytest.raises(ConfigurationError, match="interval must be above 0"):
        wait_until_changes(frames(QUIET), 1, 0)
    with pytest.raises(ConfigurationError, match="threshold must be a percentage"):
        wait_until_changes(frames(QUIET), 1, threshold=0)


def test_wait_until_matches_returns_the_first_matching_frame(tmp_path: Path) -> None:
    needle = load_needle(write_needle(tmp_path, "echo", console({2: TEXT}), {"area": [area(0, 32, 144, 16)]}))
    clock = FakeClock()
    grab = frames(QUIET, QUIET, console({0: PROMPT, 2: TEXT}))
    result = wait_until_matches(grab, needle, 5, 0.5, use_opencv=False, clock=clock, sleep=clock.sleep)
    assert result.matched and clock.now - 1000 == pytest.approx(1.0)
    with pytest.raises(ScreenWaitTimeout) as info:
        wait_until_matches(frames(QUIET), needle, 2, 0.5, use_opencv=False, clock=clock, sleep=clock.sleep)
    assert "Needle 'echo'" in str(info.value) and "did not match within 2 s (5 screenshot(s))" in str(info.value)
    assert "area 1 (match, x=0 y=32 144x16):" in str(info.value) and "< 96%" in str(info.value)
    assert info.value.match is not None and not info.value.match.matched


# ---------------------------------------------------------------- keywords on fakes


class FakeCtx:
    def __init__(self, out: Path, screens: list[Image.Image]) -> None:
        self.out = out
        self.screens = screens
        self.clicks: list[tuple[int, int, str]] = []

    def seconds(self, timeout: timedelta | None) -> float:
        return 2.0 if timeout is None else timeout.total_seconds()

    def domain(self, vm: str) -> str:
        return vm

    def output_dir(self) -> Path:
        return self.out

    def log_dir(self) -> Path:
        return self.out


class FakePointer:
    def __init__(self, ctx: FakeCtx) -> None:
        self.ctx = ctx
        self.at = (0, 0)

    def move_to(self, x: int, y: int) -> None:
        self.at = (x, y)

    def click(self, button: MouseButton) -> None:
        self.ctx.clicks.append((*self.at, button.value))


class MouseCtx(FakeCtx):
    def pointer(self, vm: str) -> FakePointer:
        return FakePointer(self)


@pytest.fixture()
def fake_screens(monkeypatch: pytest.MonkeyPatch) -> list[Image.Image]:
    """What the fake VM shows: take_screenshot returns the first image, dropping it while more follow."""
    screens: list[Image.Image] = []

    def fake_take(vm: str) -> Screenshot:
        image = screens.pop(0) if len(screens) > 1 else screens[0]
        return Screenshot(vm, encode_image(image), "image/png", image.width, image.height)

    monkeypatch.setattr("ATPLibrary.keywords.screen.take_screenshot", fake_take)
    monkeypatch.setenv("ATP_SCREEN_NO_OPENCV", "1")
    return screens


@pytest.fixture()
def needles_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``needles/`` under the current directory, which stands in for ${EXECDIR} outside a Robot run."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "needles"
    folder.mkdir()
    data = {"area": [area(0, 32, 144, 16, click_point={"xpos": 4, "ypos": 8})]}
    write_needle(folder, "echo", console({2: TEXT}), data)
    return folder


def test_screen_should_match_resolves_needles_and_embeds_both_images_on_failure(
    tmp_path: Path, fake_screens: list[Image.Image], needles_dir: Path
) -> None:
    ctx = FakeCtx(tmp_path / "out", fake_screens)
    keywords = ScreenKeywords(ctx)  # type: ignore[arg-type]
    fake_screens[:] = [console({0: PROMPT, 2: TEXT})]
    assert keywords.screen_should_match("vm", "echo").matched
    assert keywords.screen_should_match("vm", "needles/echo.json").matched
    fake_screens[:] = [QUIET]
    with pytest.raises(ScreenMismatchError, match=r"(?s)Screen of VM 'vm' does not match needle 'echo'.*area 1.*< 96%"):
        keywords.screen_should_match("vm", "echo")
    (picture,) = (tmp_path / "out").glob("vm-needle-echo-*.png")
    assert Image.open(picture).size == (720 + 12 + 720, 16 + 400)
    with pytest.raises(ConfigurationError, match="Needle 'nothing' not found"):
        keywords.screen_should_match("vm", "nothing")


def test_click_on_match_clicks_the_click_point_through_the_mouse(
    tmp_path: Path, fake_screens: list[Image.Image], needles_dir: Path
) -> None:
    ctx = MouseCtx(tmp_path, fake_screens)
    fake_screens[:] = [QUIET, console({0: PROMPT, 2: TEXT}, shift=(6, 3))]
    point = ScreenKeywords(ctx).click_on_match("vm", "echo", timedelta(seconds=5), "right")  # type: ignore[arg-type]
    assert point == (10, 43) and ctx.clicks == [(10, 43, "right")]


def test_wait_keywords_fail_naming_the_vm_and_embed_the_last_screenshot(
    tmp_path: Path, fake_screens: list[Image.Image]
) -> None:
    ctx = FakeCtx(tmp_path, fake_screens)
    keywords = ScreenKeywords(ctx)  # type: ignore[arg-type]
    fake_screens[:] = [QUIET]
    with pytest.raises(ScreenWaitTimeout, match=r"VM 'vm': The screen did not change within 0.5 s"):
        keywords.wait_until_screen_changes("vm", timedelta(seconds=0.5), interval=timedelta(seconds=0.1))
    assert list(tmp_path.glob("vm-screen-wait-*.png"))
    fake_screens[:] = [QUIET, BUSY[0]]
    assert keywords.wait_until_screen_changes("vm", region="0,0,720,32", interval=timedelta(seconds=0.05)) < 99.95
    fake_screens[:] = [QUIET]
    waited = keywords.wait_until_screen_is_still("vm", timedelta(seconds=2), timedelta(seconds=0.2))
    assert 0.2 <= waited < 1.5


def test_screen_keywords_in_a_robot_run_on_the_test_driver(tmp_path: Path) -> None:
    (tmp_path / "needles").mkdir()
    suite = tmp_path / "screens.robot"
    suite.write_text(
        textwrap.dedent("""\
        *** Settings ***
        Library    ATPLibrary    timeout=5s

        *** Test Cases ***
        Needles And Waits
            Connect To Host    test:///default    alias=t
            ${path}=    Take Screenshot    test    ${EXECDIR}/needles/reference.png
            ${m}=    Screen Should Match    test    reference
            Should Be Equal As Numbers    ${m.similarity}    100
            Screen Should Match    test    reference.png    region=0,0,8,8    similarity=99
            Wait Until Screen Matches    test    reference    timeout=2s
            Wait Until Screen Is Still    test    timeout=3s    still_for=0.5s
            Run Keyword And Expect Error    *did not change within 1 s*
            ...    Wait Until Screen Changes    test    timeout=1s    exclude=0,0,1,1
            Disconnect All Hosts
        """)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "robot", "--outputdir", str(tmp_path / "out"), str(suite)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), **_env()},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_needle_json_round_trip_of_a_real_file_format(tmp_path: Path) -> None:
    """The openQA layout: extra keys are ignored, numbers may be floats with whole values."""
    data = {
        "area": [{"xpos": 0.0, "ypos": 32, "width": 144, "height": 16, "type": "match", "match": 90, "extra": 1}],
        "tags": ["a", "b"],
        "properties": [{"name": "glyph", "value": "x"}],
        "unknown": True,
    }
    path = write_needle(tmp_path, "openqa", console({2: TEXT}), json.dumps(data))
    needle = load_needle(path)
    assert needle.areas[0].match == 90 and needle.properties == ({"name": "glyph", "value": "x"},)
    assert io.BytesIO(path.with_suffix(".png").read_bytes()).read(4) == b"\x89PNG"
