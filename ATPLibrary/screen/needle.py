"""openQA-style needles: a PNG with a JSON file that says which areas of it must be found on the screen.

Needle files
============

``name.json`` next to ``name.png``::

    {
      "tags": ["login-prompt"],
      "area": [
        {"xpos": 0, "ypos": 0, "width": 144, "height": 32, "type": "match", "match": 95,
         "click_point": {"xpos": 60, "ypos": 8}},
        {"xpos": 0, "ypos": 16, "width": 144, "height": 16, "type": "exclude"}
      ],
      "properties": []
    }

- ``xpos``/``ypos``/``width``/``height``: the area in pixels of the PNG, which is the screenshot (or its
  top-left part, cropped) the needle was made from, so an area's position is also where it is expected
  on the screen.
- ``type``: ``match`` (must be found), ``exclude`` (pixels ignored wherever they overlap a match area:
  clocks, host names, cursors) or ``ocr`` (accepted for openQA compatibility, not compared).
- ``match``: the least similarity in percent for a match area (default 96; see
  :mod:`ATPLibrary.screen.match` for the measure).
- ``click_point`` (one match area at most): ``{"xpos", "ypos"}`` relative to the area's top-left corner,
  or ``"center"``. Without one, the click point is the centre of the last match area (as in openQA).
- ``margin`` (optional, pixels): how far from its position this area is searched (see below).
- ``tags`` (strings) and ``properties`` (strings or objects) are kept but not interpreted.

Matching
========

A needle matches a screenshot when every match area is found with at least its ``match`` similarity.
Each area is searched on its own within a margin around its original position: the area's ``margin``,
else the margin given by the caller, else the default (the whole screen when OpenCV is installed,
50 px without it). Among equally good positions the closest to the original one wins. ``exclude``
areas move with the match area they overlap.

A PNG without a JSON file is a plain reference image: one match area covering the whole image (or the
``region`` given) at its position in the image.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ATPLibrary.errors import ConfigurationError, NeedleError
from ATPLibrary.screen.image import Box, load_image, parse_box
from ATPLibrary.screen.match import default_margin, search

#: Least similarity (percent) of a match area whose JSON gives no ``match``; openQA's default too.
DEFAULT_MATCH = 96.0
AREA_TYPES = ("match", "exclude", "ocr")
NEEDLE_SUFFIXES = (".json", ".png")


@dataclass(frozen=True)
class Area:
    """One area of a needle. ``click_point`` is relative to the area's top-left corner."""

    index: int
    box: Box
    type: str = "match"
    match: float = DEFAULT_MATCH
    click_point: tuple[float, float] | None = None
    margin: int | None = None

    def describe(self) -> str:
        return f"area {self.index + 1} ({self.type}, {self.box})"


@dataclass(frozen=True)
class Needle:
    """A loaded needle (or plain reference image) with its image in RGB."""

    name: str
    image: Image.Image = field(repr=False, compare=False)
    areas: tuple[Area, ...]
    tags: tuple[str, ...] = ()
    properties: tuple[Any, ...] = ()
    json_path: Path | None = None
    image_path: Path | None = None

    @property
    def match_areas(self) -> tuple[Area, ...]:
        return tuple(a for a in self.areas if a.type == "match")

    @property
    def exclude_areas(self) -> tuple[Area, ...]:
        return tuple(a for a in self.areas if a.type == "exclude")

    @property
    def source(self) -> str:
        return str(self.json_path or self.image_path or self.name)

    def click_area(self) -> Area:
        """The match area with a click point, else the last match area (openQA's rule)."""
        with_point = [a for a in self.match_areas if a.click_point is not None]
        return with_point[-1] if with_point else self.match_areas[-1]

    def mask(self, area: Area) -> Image.Image | None:
        """``L`` mask of ``area`` (255 = compared) with the exclude areas cut out; None when nothing is cut."""
        cuts = [hit for e in self.exclude_areas if (hit := area.box.intersection(e.box)) is not None]
        if not cuts:
            return None
        mask = Image.new("L", (area.box.width, area.box.height), 255)
        draw = ImageDraw.Draw(mask)
        for cut in cuts:
            draw.rectangle(
                (cut.x - area.box.x, cut.y - area.box.y, cut.right - area.box.x - 1, cut.bottom - area.box.y - 1),
                fill=0,
            )
        return mask

    def template(self, area: Area) -> Image.Image:
        return self.image.crop(area.box.pil())


@dataclass(frozen=True)
class AreaResult:
    """How one match area fared: the similarity at the best position found and whether it is enough."""

    area: Area
    required: float
    similarity: float
    position: tuple[int, int] | None  # top-left on the screen; None when the area does not fit the screen

    @property
    def matched(self) -> bool:
        return self.position is not None and self.similarity >= self.required

    @property
    def shift(self) -> tuple[int, int] | None:
        if self.position is None:
            return None
        return self.position[0] - self.area.box.x, self.position[1] - self.area.box.y

    def describe(self) -> str:
        if self.position is None:
            return f"{self.area.describe()}: larger than the screen, not compared"
        verdict = "≥" if self.matched else "<"
        dx, dy = self.shift or (0, 0)
        moved = f", moved {dx:+d},{dy:+d}" if dx or dy else ""
        return (
            f"{self.area.describe()}: {self.similarity:.2f}% {verdict} {self.required:g}% "
            f"at x={self.position[0]} y={self.position[1]}{moved}"
        )


@dataclass(frozen=True)
class NeedleMatch:
    """The result of comparing a needle with a screenshot."""

    needle: Needle
    areas: tuple[AreaResult, ...]
    screen: Image.Image = field(repr=False, compare=False)

    @property
    def matched(self) -> bool:
        return all(r.matched for r in self.areas)

    @property
    def similarity(self) -> float:
        """The lowest similarity of the match areas."""
        return min(r.similarity for r in self.areas)

    @property
    def click_point(self) -> tuple[int, int] | None:
        """Screen pixel to click: the needle's click point where its area was found (None if not found)."""
        area = self.needle.click_area()
        result = next(r for r in self.areas if r.area is area)
        if result.position is None:
            return None
        cx, cy = area.click_point if area.click_point is not None else (area.box.width / 2, area.box.height / 2)
        return math.floor(result.position[0] + cx), math.floor(result.position[1] + cy)

    def describe(self) -> str:
        state = "matches" if self.matched else "does not match"
        lines = [f"Needle '{self.needle.name}' {state} the {self.screen.width}x{self.screen.height} screen:"]
        lines += [f"  {r.describe()}" for r in self.areas]
        return "\n".join(lines)


# ---------------------------------------------------------------- loading


def find_needle(name: str | Path, directories: Sequence[Path]) -> Path:
    """The needle file ``name`` refers to: absolute as is, relative in each of ``directories`` in turn.

    ``name`` may end in ``.json`` or ``.png``, or have no suffix (``.json`` is tried before ``.png``).
    """
    path = Path(name)
    bases = [path] if path.is_absolute() else [d / path for d in directories]
    tried: list[Path] = []
    for base in bases:
        options = (
            [base]
            if base.suffix.lower() in NEEDLE_SUFFIXES
            else [base.with_name(base.name + s) for s in NEEDLE_SUFFIXES]
        )
        for option in options:
            tried.append(option)
            if option.is_file():
                return option
    looked = ", ".join(str(t) for t in tried) or "(no directory to look in)"
    raise NeedleError(
        f"Needle '{name}' not found; looked for {looked}. Give an absolute path, or put the needle's "
        f".json and .png (or a reference .png) in one of those places."
    )


def load_needle(path: str | Path, region: str | Sequence[int] | Box | None = None) -> Needle:
    """A needle from ``name.json`` (with ``name.png``) or from a PNG.

    A PNG with a JSON file beside it is that needle; a PNG alone is a plain reference image (one match
    area: ``region`` of it, default the whole image). ``region`` cannot be combined with a JSON needle.
    """
    path = Path(path)
    json_path = path if path.suffix.lower() == ".json" else path.with_suffix(".json")
    if json_path.is_file():
        if region is not None:
            raise NeedleError(
                f"Needle {json_path}: region= is for plain reference PNGs; this needle's areas already say "
                f"what to compare. Drop region= or edit the areas in the JSON file."
            )
        return _load_json_needle(json_path)
    if path.suffix.lower() == ".json":
        raise NeedleError(f"Needle {path} does not exist.")
    image = load_image(path, "reference image")
    box = Box(0, 0, image.width, image.height) if region is None else parse_box(region, "region")
    if box.right > image.width or box.bottom > image.height:
        raise NeedleError(
            f"Reference image {path}: region {box} extends beyond the {image.width}x{image.height} image; "
            f"give a region inside it."
        )
    return Needle(path.stem, image, (Area(0, box),), image_path=path)


def _load_json_needle(json_path: Path) -> Needle:
    def fail(what: str) -> NeedleError:
        return NeedleError(f"Needle {json_path}: {what}")

    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except OSError as err:
        raise fail(f"cannot be read ({err.strerror or err}).") from err
    except UnicodeDecodeError as err:
        raise fail(f"is not UTF-8 text ({err}).") from err
    except json.JSONDecodeError as err:
        raise fail(f"is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); fix the syntax.") from err
    if not isinstance(data, dict):
        raise fail(f"must hold a JSON object with 'area' and 'tags', not {type(data).__name__}.")

    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise fail(f"'tags' must be a list of strings, e.g. [\"login\"]; got {tags!r}.")
    properties = data.get("properties", [])
    if not isinstance(properties, list) or not all(isinstance(p, str | dict) for p in properties):
        raise fail(f"'properties' must be a list of strings or objects; got {properties!r}.")
    raw_areas = data.get("area")
    if not isinstance(raw_areas, list) or not raw_areas:
        raise fail(
            "'area' must be a non-empty list of areas such as "
            '{"xpos": 0, "ypos": 0, "width": 100, "height": 20, "type": "match"}.'
        )
    areas = tuple(_parse_area(json_path, i, raw) for i, raw in enumerate(raw_areas))
    matches = [a for a in areas if a.type == "match"]
    if not matches:
        raise fail("has no area of type 'match'; at least one area must say what to look for.")
    clickers = [a for a in matches if a.click_point is not None]
    if len(clickers) > 1:
        numbers = ", ".join(f"area[{a.index}]" for a in clickers)
        raise fail(f"{numbers} all have a click_point; keep it on one area only.")
    for a in areas:
        if a.type != "match" and (raw_areas[a.index] or {}).get("click_point") is not None:
            raise fail(f"area[{a.index}].click_point is on a '{a.type}' area; put it on a 'match' area.")

    image_path = json_path.with_suffix(".png")
    if not image_path.is_file():
        raise fail(f"has no image {image_path.name} beside it; save the screenshot the areas refer to there.")
    image = load_image(image_path, "needle image")
    for a in areas:
        if a.box.right > image.width or a.box.bottom > image.height:
            raise fail(
                f"area[{a.index}] ({a.box}) extends beyond the needle image {image_path.name} "
                f"({image.width}x{image.height}); make the area fit or save a larger screenshot."
            )
    needle = Needle(
        json_path.stem, image, areas, tuple(tags), tuple(properties), json_path=json_path, image_path=image_path
    )
    for a in matches:
        mask = needle.mask(a)
        if mask is not None and mask.getbbox() is None:
            raise fail(f"area[{a.index}] is entirely covered by exclude areas; nothing of it is left to compare.")
    return needle


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _parse_area(json_path: Path, index: int, raw: Any) -> Area:
    def fail(what: str) -> NeedleError:
        return NeedleError(f"Needle {json_path}: area[{index}] {what}")

    if not isinstance(raw, dict):
        raise fail(f"must be an object with xpos, ypos, width, height and type; got {raw!r}.")
    values: dict[str, int] = {}
    for key, least in (("xpos", 0), ("ypos", 0), ("width", 1), ("height", 1)):
        value = raw.get(key)
        if value is None:
            raise fail(f"has no '{key}'; give it in pixels of the needle image.")
        if not _number(value) or value != int(value) or value < least:
            raise fail(f"'{key}' must be a whole number of pixels, at least {least}; got {value!r}.")
        values[key] = int(value)
    kind = raw.get("type", "match")
    if kind not in AREA_TYPES:
        raise fail(f"'type' is {kind!r}; use one of {', '.join(AREA_TYPES)}.")
    match = raw.get("match", DEFAULT_MATCH)
    if not _number(match) or not 0 < match <= 100:
        raise fail(f"'match' must be a percentage above 0 and at most 100 (default {DEFAULT_MATCH:g}); got {match!r}.")
    margin = raw.get("margin")
    if margin is not None and (not _number(margin) or margin != int(margin) or margin < 0):
        raise fail(f"'margin' must be a whole number of pixels, at least 0; got {margin!r}.")
    click = raw.get("click_point")
    point: tuple[float, float] | None = None
    if click == "center":
        point = (values["width"] / 2, values["height"] / 2)
    elif isinstance(click, dict):
        if not _number(click.get("xpos")) or not _number(click.get("ypos")):
            raise fail(f"'click_point' needs numeric 'xpos' and 'ypos' (relative to the area); got {click!r}.")
        point = (float(click["xpos"]), float(click["ypos"]))
    elif click is not None:
        raise fail(f'\'click_point\' must be {{"xpos": .., "ypos": ..}} or "center"; got {click!r}.')
    box = Box(values["xpos"], values["ypos"], values["width"], values["height"])
    return Area(index, box, kind, float(match), point, None if margin is None else int(margin))


# ---------------------------------------------------------------- matching


def match_needle(
    screen: Image.Image,
    needle: Needle,
    *,
    similarity: float | None = None,
    margin: int | None = None,
    use_opencv: bool | None = None,
) -> NeedleMatch:
    """Compare ``needle`` with ``screen``.

    ``similarity`` (percent) replaces every area's ``match``. ``margin`` (pixels) is used for areas
    without their own ``margin``; None means :func:`~ATPLibrary.screen.match.default_margin`.
    """
    if similarity is not None and not 0 < similarity <= 100:
        raise ConfigurationError(f"similarity must be a percentage above 0 and at most 100, got {similarity}")
    if margin is not None and margin < 0:
        raise ConfigurationError(f"margin must be at least 0 pixels, got {margin}")
    screen = load_image(screen)
    fallback = margin if margin is not None else default_margin(use_opencv)
    results = []
    for area in needle.match_areas:
        required = similarity if similarity is not None else area.match
        area_margin = area.margin if area.margin is not None else fallback
        found = search(
            screen,
            needle.template(area),
            needle.mask(area),
            (area.box.x, area.box.y),
            area_margin,
            use_opencv=use_opencv,
        )
        if found is None:
            results.append(AreaResult(area, required, 0.0, None))
        else:
            results.append(AreaResult(area, required, found.similarity, (found.x, found.y)))
    return NeedleMatch(needle, tuple(results), screen)
