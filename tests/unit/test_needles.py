"""Needles, the similarity measure and the template search, on synthetic text-like Pillow images."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from ATPLibrary.errors import ConfigurationError, NeedleError
from ATPLibrary.screen.image import Box
from ATPLibrary.screen.match import TIE, opencv_available, search, similarity
from ATPLibrary.screen.needle import (
    DEFAULT_MATCH,
    find_needle,
    load_needle,
    match_needle,
)
from ATPLibrary.screen.report import side_by_side

CELL_W, CELL_H = 9, 16
GREY = (170, 170, 170)
SIZE = (720, 400)

BACKENDS = [
    pytest.param(False, id="pillow"),
    pytest.param(True, id="opencv", marks=pytest.mark.skipif(not opencv_available(), reason="OpenCV is not installed")),
]


# ---------------------------------------------------------------- synthetic console screens


def draw_text(image: Image.Image, col: int, row: int, text: str, colour: tuple[int, int, int] = GREY) -> None:
    """Text-like blocks: each character is a fixed pattern of small bars in a 9x16 cell (VGA text mode)."""
    draw = ImageDraw.Draw(image)
    for i, char in enumerate(text):
        if char == " ":
            continue
        rnd = random.Random(ord(char))
        x0, y0 = (col + i) * CELL_W, row * CELL_H
        for _ in range(7):
            x, y = x0 + rnd.randrange(0, 7), y0 + rnd.randrange(2, 12)
            if rnd.random() < 0.5:  # a vertical or a horizontal stroke, 1-2 px wide
                draw.rectangle((x, y, x + rnd.randrange(0, 2), y + rnd.randrange(2, 5)), fill=colour)
            else:
                draw.rectangle((x, y, x + rnd.randrange(2, 5), y + rnd.randrange(0, 2)), fill=colour)


def console(lines: dict[int, str], size: tuple[int, int] = SIZE, shift: tuple[int, int] = (0, 0)) -> Image.Image:
    """A black screen with ``lines`` (row -> text), everything moved by ``shift`` pixels."""
    image = Image.new("RGB", size)
    for row, text in lines.items():
        draw_text(image, 0, row, text)
    if shift == (0, 0):
        return image
    moved = Image.new("RGB", size)
    moved.paste(image, shift)
    return moved


def write_needle(directory: Path, name: str, image: Image.Image, data: Any) -> Path:
    image.save(directory / f"{name}.png")
    path = directory / f"{name}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def area(x: int, y: int, w: int, h: int, kind: str = "match", **extra: Any) -> dict[str, Any]:
    return {"xpos": x, "ypos": y, "width": w, "height": h, "type": kind, **extra}


PROMPT = "root@atp-lab-04:~# "
TEXT = "NEEDLE-OK-1234"


@pytest.fixture()
def echo_needle(tmp_path: Path) -> Path:
    """A needle of the echoed text on row 2 (not the prompt on row 3, which is excluded)."""
    shot = console({2: TEXT, 3: PROMPT})
    data = {
        "tags": ["echo"],
        "area": [
            area(0, 32, 144, 32, match=95, click_point={"xpos": 10, "ypos": 8}),
            area(0, 48, 144, 16, "exclude"),
        ],
        "properties": [],
    }
    return write_needle(tmp_path, "echo", shot, data)


# ---------------------------------------------------------------- similarity


def test_similarity_is_100_for_identical_and_0_for_black_against_white() -> None:
    black, white = Image.new("RGB", (8, 4)), Image.new("RGB", (8, 4), (255, 255, 255))
    assert similarity(black, black) == 100.0
    assert similarity(black, white) == 0.0


def test_similarity_is_one_minus_rms_over_255() -> None:
    a = Image.new("RGB", (2, 1))
    b = Image.new("RGB", (2, 1))
    b.putpixel((1, 0), (255, 255, 255))  # half the samples differ by 255: RMS = 255 / sqrt(2)
    assert similarity(a, b) == pytest.approx(100 * (1 - 2**-0.5))
    c = Image.new("RGB", (1, 1), (10, 20, 30))
    d = Image.new("RGB", (1, 1), (13, 16, 30))  # squares 9 + 16 + 0 over 3 samples
    assert similarity(c, d) == pytest.approx(100 * (1 - (25 / 3) ** 0.5 / 255))


def test_masked_pixels_do_not_count() -> None:
    a, b = Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4))
    b.putpixel((0, 0), (255, 0, 0))
    mask = Image.new("L", (4, 4), 255)
    mask.putpixel((0, 0), 0)
    assert similarity(a, b) < 100
    assert similarity(a, b, mask) == 100.0
    assert similarity(a, b, Image.new("L", (4, 4), 0)) == 100.0  # nothing left to compare
    with pytest.raises(ValueError, match="different sizes"):
        similarity(a, Image.new("RGB", (3, 4)))


def test_text_scores_far_below_the_default_against_other_text_or_blank() -> None:
    line = console({0: TEXT}, size=(144, 16))
    assert similarity(line, console({0: "NEEDLE-OK-1235"}, size=(144, 16))) < DEFAULT_MATCH
    assert similarity(line, Image.new("RGB", (144, 16))) < 90


# ---------------------------------------------------------------- needle files


def test_needle_loads_with_defaults(tmp_path: Path) -> None:
    path = write_needle(tmp_path, "n", console({0: TEXT}), {"area": [area(0, 0, 50, 16)], "tags": ["a"]})
    needle = load_needle(path)
    assert needle.name == "n" and needle.tags == ("a",) and needle.properties == ()
    (only,) = needle.areas
    assert only.box == Box(0, 0, 50, 16) and only.type == "match" and only.match == DEFAULT_MATCH
    assert only.click_point is None and needle.click_area() is only
    assert load_needle(tmp_path / "n.png").json_path == path  # the PNG of a needle loads the needle


def valid_area() -> dict[str, Any]:
    return area(0, 0, 40, 16)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("{not json", r"not valid JSON \(line 1, column 2"),
        ([], "must hold a JSON object"),
        ({"tags": []}, "'area' must be a non-empty list"),
        ({"area": []}, "'area' must be a non-empty list"),
        ({"area": ["x"]}, r"area\[0\] must be an object"),
        ({"area": [{"xpos": 0, "ypos": 0, "height": 5}]}, r"area\[0\] has no 'width'"),
        ({"area": [area(-1, 0, 5, 5)]}, r"area\[0\] 'xpos' must be a whole number of pixels, at least 0"),
        ({"area": [area(0, 0, 0, 5)]}, r"'width' must be a whole number of pixels, at least 1; got 0"),
        ({"area": [area(0, 0, True, 5)]}, r"'width' must be a whole number.*got True"),
        ({"area": [area(0, 0, 5.5, 5)]}, r"'width' must be a whole number.*got 5.5"),
        ({"area": [area(0, 0, 5, 5, "matc")]}, r"'type' is 'matc'; use one of match, exclude, ocr"),
        ({"area": [area(0, 0, 5, 5, match=0)]}, r"'match' must be a percentage above 0 and at most 100"),
        ({"area": [area(0, 0, 5, 5, match=101)]}, r"'match' must be a percentage"),
        ({"area": [area(0, 0, 5, 5, match="95")]}, r"'match' must be a percentage"),
        ({"area": [area(0, 0, 5, 5, margin=-3)]}, r"'margin' must be a whole number of pixels"),
        ({"area": [area(0, 0, 5, 5, click_point={"xpos": 1})]}, r"'click_point' needs numeric 'xpos' and 'ypos'"),
        ({"area": [area(0, 0, 5, 5, click_point="middle")]}, r"'click_point' must be .* or \"center\""),
        (
            {"area": [area(0, 0, 5, 5, click_point="center"), area(9, 0, 5, 5, click_point="center")]},
            r"area\[0\], area\[1\] all have a click_point; keep it on one area only",
        ),
        (
            {"area": [valid_area(), area(0, 0, 5, 5, "exclude", click_point="center")]},
            r"area\[1\].click_point is on a 'exclude' area",
        ),
        ({"area": [area(0, 0, 5, 5, "exclude")]}, "has no area of type 'match'"),
        ({"area": [area(700, 0, 40, 5)]}, r"area\[0\] \(x=700 y=0 40x5\) extends beyond the needle image"),
        (
            {"area": [valid_area(), area(0, 0, 40, 16, "exclude")]},
            r"area\[0\] is entirely covered by exclude areas",
        ),
        ({"area": [valid_area()], "tags": "a"}, "'tags' must be a list of strings"),
        ({"area": [valid_area()], "properties": [1]}, "'properties' must be a list of strings or objects"),
    ],
)
def test_needle_errors_name_file_field_and_fix(tmp_path: Path, data: Any, expected: str) -> None:
    path = write_needle(tmp_path, "bad", console({0: TEXT}), data)
    with pytest.raises(NeedleError, match=expected) as info:
        load_needle(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ConfigurationError)


def test_needle_without_png_says_where_to_put_it(tmp_path: Path) -> None:
    path = tmp_path / "lonely.json"
    path.write_text(json.dumps({"area": [valid_area()]}))
    with pytest.raises(NeedleError, match=r"has no image lonely\.png beside it"):
        load_needle(path)


def test_find_needle_looks_in_each_directory_json_before_png(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    console({0: TEXT}).save(second / "login.png")
    assert find_needle("login", [first, second]) == second / "login.png"
    (second / "login.json").write_text("{}")
    assert find_needle("login", [first, second]) == second / "login.json"
    assert find_needle("login.png", [first, second]) == second / "login.png"
    assert find_needle(str(second / "login.png"), []) == second / "login.png"
    with pytest.raises(NeedleError, match=r"Needle 'logout' not found; looked for .*a/logout.json.*b/logout.png"):
        find_needle("logout", [first, second])


# ---------------------------------------------------------------- matching


@pytest.mark.parametrize("opencv", BACKENDS)
def test_needle_matches_its_own_screen_and_not_other_text(echo_needle: Path, opencv: bool) -> None:
    needle = load_needle(echo_needle)
    good = match_needle(console({2: TEXT, 3: PROMPT}), needle, use_opencv=opencv)
    assert good.matched and good.similarity == 100.0
    (result,) = good.areas
    assert result.position == (0, 32) and result.shift == (0, 0) and result.required == 95
    assert good.click_point == (10, 40)
    bad = match_needle(console({2: "NEEDLE-OK-9999", 3: PROMPT}), needle, use_opencv=opencv)
    assert not bad.matched and bad.similarity < 95
    assert "does not match" in bad.describe() and "< 95%" in bad.describe()
    blank = match_needle(console({0: PROMPT}), needle, use_opencv=opencv)
    assert not blank.matched


def test_exclude_area_hides_differences_only_inside_it(echo_needle: Path) -> None:
    needle = load_needle(echo_needle)
    other_host = console({2: TEXT, 3: "root@atp-lab-01:~# "})
    assert match_needle(other_host, needle, use_opencv=False).matched  # prompt row is excluded
    strict = load_needle(write_needle(echo_needle.parent, "strict", needle.image, {"area": [area(0, 32, 144, 32)]}))
    result = match_needle(other_host, strict, use_opencv=False)
    assert not result.matched and result.similarity < DEFAULT_MATCH


@pytest.mark.parametrize("opencv", BACKENDS)
@pytest.mark.parametrize("shift", [(13, 7), (9, -21), (47, 30)])
def test_margin_search_finds_a_shifted_match(echo_needle: Path, opencv: bool, shift: tuple[int, int]) -> None:
    needle = load_needle(echo_needle)
    moved = console({2: TEXT, 3: PROMPT}, shift=shift)
    result = match_needle(moved, needle, margin=50, use_opencv=opencv)
    assert result.matched and result.similarity == 100.0
    assert result.areas[0].shift == shift
    assert result.click_point == (10 + shift[0], 40 + shift[1])


@pytest.mark.parametrize("opencv", BACKENDS)
def test_no_match_beyond_the_margin(echo_needle: Path, opencv: bool) -> None:
    needle = load_needle(echo_needle)
    far = console({2: TEXT, 3: PROMPT}, shift=(0, 120))
    assert not match_needle(far, needle, margin=50, use_opencv=opencv).matched
    assert match_needle(far, needle, margin=200, use_opencv=opencv).matched


@pytest.mark.skipif(not opencv_available(), reason="OpenCV is not installed")
def test_default_margin_is_the_whole_screen_with_opencv(echo_needle: Path) -> None:
    far = console({2: TEXT, 3: PROMPT}, shift=(300, 200))
    result = match_needle(far, load_needle(echo_needle))
    assert result.matched and result.areas[0].shift == (300, 200)


def test_area_margin_in_the_json_wins(tmp_path: Path) -> None:
    shot = console({2: TEXT})
    path = write_needle(tmp_path, "tight", shot, {"area": [area(0, 32, 144, 16, margin=0)]})
    moved = console({2: TEXT}, shift=(5, 0))
    assert not match_needle(moved, load_needle(path), margin=50, use_opencv=False).matched


@pytest.mark.parametrize("opencv", BACKENDS)
def test_equal_matches_go_to_the_one_nearest_the_original_position(tmp_path: Path, opencv: bool) -> None:
    screen = console({2: "ABC", 4: "ABC"})
    needle = load_needle(write_needle(tmp_path, "abc", console({4: "ABC"}), {"area": [area(0, 64, 27, 16)]}))
    result = match_needle(screen, needle, margin=None, use_opencv=opencv)
    assert result.areas[0].position == (0, 64)
    needle2 = load_needle(write_needle(tmp_path, "abc2", console({2: "ABC"}), {"area": [area(0, 32, 27, 16)]}))
    assert match_needle(screen, needle2, margin=None, use_opencv=opencv).areas[0].position == (0, 32)
    assert TIE > 0


def test_click_point_center_and_default(tmp_path: Path) -> None:
    shot = console({0: TEXT, 2: TEXT})
    centred = write_needle(tmp_path, "c", shot, {"area": [area(0, 0, 20, 10, click_point="center")]})
    assert match_needle(shot, load_needle(centred), use_opencv=False).click_point == (10, 5)
    # no click point: the centre of the LAST match area (openQA)
    two = write_needle(tmp_path, "two", shot, {"area": [area(0, 0, 40, 16), area(0, 32, 30, 16)]})
    result = match_needle(shot, load_needle(two), use_opencv=False)
    assert result.matched and result.click_point == (15, 40)


def test_similarity_argument_replaces_every_area_match(echo_needle: Path) -> None:
    needle = load_needle(echo_needle)
    near = console({2: "NEEDLE-OK-1235", 3: PROMPT})
    score = match_needle(near, needle, use_opencv=False).similarity
    assert not match_needle(near, needle, use_opencv=False).matched
    assert match_needle(near, needle, similarity=score - 1, use_opencv=False).matched
    with pytest.raises(ConfigurationError, match="similarity must be a percentage"):
        match_needle(near, needle, similarity=0)


def test_area_larger_than_the_screen_does_not_match(echo_needle: Path) -> None:
    small = console({0: TEXT}, size=(100, 40))
    result = match_needle(small, load_needle(echo_needle), use_opencv=False)
    assert not result.matched and result.areas[0].position is None and result.click_point is None
    assert "larger than the screen" in result.describe()


# ---------------------------------------------------------------- plain reference images


def test_plain_png_is_one_area_covering_the_whole_image(tmp_path: Path) -> None:
    shot = console({0: PROMPT, 1: TEXT})
    shot.save(tmp_path / "ref.png")
    needle = load_needle(tmp_path / "ref.png")
    assert [a.box for a in needle.areas] == [Box(0, 0, 720, 400)] and needle.json_path is None
    assert match_needle(shot, needle, use_opencv=False).matched
    assert not match_needle(console({0: PROMPT}), needle, use_opencv=False).matched


def test_plain_png_region_argument(tmp_path: Path) -> None:
    shot = console({0: PROMPT, 1: TEXT})
    shot.save(tmp_path / "ref.png")
    needle = load_needle(tmp_path / "ref.png", region="0,16,126,16")
    assert needle.areas[0].box == Box(0, 16, 126, 16)
    assert match_needle(console({0: "something else", 1: TEXT}), needle, use_opencv=False).matched
    with pytest.raises(NeedleError, match="extends beyond the 720x400 image"):
        load_needle(tmp_path / "ref.png", region="700,0,100,10")
    with pytest.raises(ConfigurationError, match="is not a rectangle"):
        load_needle(tmp_path / "ref.png", region="0,0,10")


def test_small_plain_png_is_searched_around_its_top_left(tmp_path: Path) -> None:
    crop = console({0: TEXT}).crop((0, 0, 126, 16))
    crop.save(tmp_path / "crop.png")
    screen = console({2: TEXT})  # 32 px lower than the crop's own position
    assert match_needle(screen, load_needle(tmp_path / "crop.png"), margin=50, use_opencv=False).matched


def test_region_cannot_be_combined_with_a_json_needle(echo_needle: Path) -> None:
    with pytest.raises(NeedleError, match="region= is for plain reference PNGs"):
        load_needle(echo_needle, region="0,0,10,10")


# ---------------------------------------------------------------- search and report


def test_search_returns_none_when_the_template_is_larger_than_the_screen() -> None:
    assert search(Image.new("RGB", (10, 10)), Image.new("RGB", (20, 5)), None, (0, 0), 50) is None


def test_pillow_and_opencv_report_the_same_similarity(echo_needle: Path) -> None:
    if not opencv_available():
        pytest.skip("OpenCV is not installed")
    needle = load_needle(echo_needle)
    screen = console({2: "NEEDLE-OK-1235", 3: PROMPT}, shift=(3, 0))
    a = match_needle(screen, needle, margin=20, use_opencv=False)
    b = match_needle(screen, needle, margin=20, use_opencv=True)
    assert a.areas[0].similarity == b.areas[0].similarity
    assert a.areas[0].position == b.areas[0].position


def test_side_by_side_shows_screen_and_needle(echo_needle: Path) -> None:
    needle = load_needle(echo_needle)
    result = match_needle(console({0: PROMPT}), needle, use_opencv=False)
    picture = side_by_side(result)
    assert picture.width == 720 + 12 + needle.image.width
    assert picture.height == 16 + 400


def test_without_opencv_the_default_margin_is_50_px(monkeypatch: pytest.MonkeyPatch, echo_needle: Path) -> None:
    import sys

    from ATPLibrary.screen.match import DEFAULT_MARGIN, default_margin

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    assert not opencv_available() and default_margin() == DEFAULT_MARGIN == 50
    needle = load_needle(echo_needle)
    assert match_needle(console({2: TEXT, 3: PROMPT}, shift=(40, 10)), needle).matched
    assert not match_needle(console({2: TEXT, 3: PROMPT}, shift=(0, 120)), needle).matched
    with pytest.raises(ConfigurationError, match="pip install opencv-python-headless"):
        match_needle(console({2: TEXT}), needle, use_opencv=True)
