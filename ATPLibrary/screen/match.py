"""Comparing screen images: the similarity measure and the search for a template around a position.

Similarity
==========

``similarity(a, b, mask)`` compares two images of the same size in percent:

1. The image is cut into tiles of about :data:`TILE` x :data:`TILE` pixels (``n = max(1, round(size /
   TILE))`` equal parts per axis, so no sliver tiles at the edges).
2. Per tile: ``100 x (1 - RMS / 255)``, where RMS is the root mean square of the differences of the R, G
   and B samples of every pixel the mask keeps (all pixels without a mask).
3. The similarity is the lowest tile score (tiles the mask removes entirely do not count).

Identical images give 100.0, black against white gives 0.0. The value is computed from integer
histograms, so the same images always give the same number, with or without OpenCV.

Squaring makes a few strongly different pixels (a changed character) count more than faint noise, and
taking the worst tile keeps a local difference from being averaged away in a large area: one changed
character of light-grey VGA text scores about 85-93 % in its tile, whether the area is one word or the
whole 720x400 screen, while a lossless screenshot of the same content scores 100 %.

Search
======

``search(screen, template, mask, origin, margin)`` finds where ``template`` (with ``mask``) best matches
``screen``, looking at every top-left position within ``margin`` pixels of ``origin`` horizontally and
vertically (``margin=None``: the whole screen). The result is the position with the highest similarity;
among positions that score within :data:`TIE` percentage points of the best, the one closest to
``origin`` wins, so a repeated pattern is found where it was when the needle was made.

- With OpenCV (``opencv-python-headless``, the ``opencv`` extra), ``cv2.matchTemplate`` (squared
  differences over the whole area, with the mask) scores every position; the best candidates are then
  scored again with :func:`similarity`, so reported values do not depend on OpenCV's floating-point
  sums.
- Without OpenCV, pure Pillow scores every position on grey levels over the whole area, nearest to
  ``origin`` first, and scores the best few again with :func:`similarity`. An exact match (lossless
  screenshots of content that only moved) ends the scan at once. A full scan costs about 15 µs per
  position for a text-line-sized area, so the default 50 px margin (101 x 101 positions) takes about
  0.2 s; a whole-screen scan takes seconds, which is why the whole screen is the default only with
  OpenCV. (Image pyramids would be faster but lose
  one-pixel strokes of text, so they are not used.)
"""

from __future__ import annotations

import importlib
import itertools
import math
import operator
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageChops

from ATPLibrary.errors import ConfigurationError

#: Side in pixels of the tiles :func:`similarity` takes its lowest score from.
TILE = 64
#: Positions scoring within this many percentage points of the best count as a tie, won by the closest.
TIE = 0.5
#: Margin used when OpenCV is missing and neither the caller nor the needle area gives one.
DEFAULT_MARGIN = 50
#: Set to 1 to ignore an installed OpenCV (e.g. to compare both search back ends).
NO_OPENCV_ENV = "ATP_SCREEN_NO_OPENCV"

_SQUARES = [i * i for i in range(256)] * 4
_EXACT_CANDIDATES = 16  # OpenCV candidates re-scored exactly

Position = tuple[int, int]


def _cv2() -> Any | None:
    if os.environ.get(NO_OPENCV_ENV, "").strip() not in ("", "0"):
        return None
    try:
        return importlib.import_module("cv2")
    except ImportError:
        return None


def opencv_available() -> bool:
    """True when OpenCV can be imported (and :data:`NO_OPENCV_ENV` does not disable it)."""
    return _cv2() is not None


def default_margin(use_opencv: bool | None = None) -> int | None:
    """The search margin when none is given: the whole screen (None) when OpenCV will be used, else
    :data:`DEFAULT_MARGIN`. ``use_opencv`` as in :func:`search`."""
    if use_opencv is False:
        return DEFAULT_MARGIN
    return None if opencv_available() else DEFAULT_MARGIN


def _cuts(size: int) -> list[int]:
    parts = max(1, round(size / TILE))
    return [size * i // parts for i in range(parts + 1)]


def _histogram_score(histogram: list[int]) -> float | None:
    """``100 x (1 - RMS/255)`` from a difference histogram; None when it counts no pixel."""
    bands = len(histogram) // 256
    count = sum(histogram[:256])
    if count == 0:
        return None
    squares = sum(map(operator.mul, histogram, _SQUARES))
    return 100.0 * (1.0 - math.sqrt(squares / (count * bands)) / 255.0)


def _same_size(a: Image.Image, b: Image.Image) -> Image.Image:
    if a.size != b.size:
        raise ValueError(f"cannot compare images of different sizes {a.size} and {b.size}")
    return b if a.mode == b.mode else b.convert(a.mode)


def similarity(a: Image.Image, b: Image.Image, mask: Image.Image | None = None) -> float:
    """The lowest ``100 x (1 - RMS/255)`` over the tiles of two same-sized images (see the module doc).

    ``mask`` is an ``L`` or ``1`` image of the same size; non-zero pixels are compared. With nothing to
    compare (an all-zero mask, an empty image) the result is 100.0.
    """
    diff = ImageChops.difference(a, _same_size(a, b))
    xs, ys = _cuts(a.width), _cuts(a.height)
    scores = []
    for top, bottom in itertools.pairwise(ys):
        for left, right in itertools.pairwise(xs):
            box = (left, top, right, bottom)
            whole = len(xs) == 2 and len(ys) == 2
            tile = diff if whole else diff.crop(box)
            tile_mask = mask if mask is None or whole else mask.crop(box)
            score = _histogram_score(tile.histogram(tile_mask))
            if score is not None:
                scores.append(score)
    return min(scores, default=100.0)


def mean_similarity(a: Image.Image, b: Image.Image, mask: Image.Image | None = None) -> float:
    """``100 x (1 - RMS/255)`` over the whole of two same-sized images (no tiles): the search's quick score."""
    score = _histogram_score(ImageChops.difference(a, _same_size(a, b)).histogram(mask))
    return 100.0 if score is None else score


@dataclass(frozen=True)
class Found:
    """Where a template matched best: its top-left corner on the screen and the similarity there."""

    x: int
    y: int
    similarity: float


def _window(
    screen: tuple[int, int], size: tuple[int, int], origin: Position, margin: int | None
) -> tuple[int, int, int, int] | None:
    """(x_lo, x_hi, y_lo, y_hi) of the allowed top-left positions, or None when the template cannot fit."""
    max_x, max_y = screen[0] - size[0], screen[1] - size[1]
    if max_x < 0 or max_y < 0:
        return None
    if margin is None:
        return 0, max_x, 0, max_y

    def clamp(value: int, high: int) -> int:
        return min(max(value, 0), high)

    m = max(margin, 0)
    return (
        clamp(origin[0] - m, max_x),
        clamp(origin[0] + m, max_x),
        clamp(origin[1] - m, max_y),
        clamp(origin[1] + m, max_y),
    )


def _distance2(position: Position, origin: Position) -> int:
    return (position[0] - origin[0]) ** 2 + (position[1] - origin[1]) ** 2


def choose(scores: dict[Position, float], origin: Position) -> Found:
    """The best of scored positions: highest similarity, ties (within :data:`TIE`) to the closest to origin."""
    best = max(scores.values())
    near_best = [p for p, s in scores.items() if s >= best - TIE]
    x, y = min(near_best, key=lambda p: (_distance2(p, origin), p[1], p[0]))
    return Found(x, y, scores[(x, y)])


def _full_mask(mask: Image.Image | None) -> Image.Image | None:
    """None for a mask that keeps every pixel (so the fast paths apply)."""
    if mask is None:
        return None
    extrema: Any = mask.getextrema()
    low = extrema[0]
    return None if low else mask


def search(
    screen: Image.Image,
    template: Image.Image,
    mask: Image.Image | None,
    origin: Position,
    margin: int | None,
    *,
    use_opencv: bool | None = None,
) -> Found | None:
    """Best position of ``template`` on ``screen`` within ``margin`` px of ``origin`` (None: whole screen).

    Returns None when the template is larger than the screen. ``use_opencv``: None uses OpenCV when it is
    available, False forces pure Pillow, True requires OpenCV.
    """
    cv2 = _cv2() if use_opencv is not False else None
    if use_opencv and cv2 is None:
        raise ConfigurationError("OpenCV was requested but cannot be imported: pip install opencv-python-headless")
    mask = _full_mask(mask)
    window = _window(screen.size, template.size, origin, margin)
    if window is None:
        return None
    x_lo, x_hi, y_lo, y_hi = window
    start = (min(max(origin[0], x_lo), x_hi), min(max(origin[1], y_lo), y_hi))
    at_start = _score(screen, template, mask, start)
    if at_start == 100.0 or (x_lo == x_hi and y_lo == y_hi):
        return Found(start[0], start[1], at_start)
    if cv2 is not None:
        scores = _search_opencv(cv2, screen, template, mask, window, origin)
    else:
        scores = _search_pillow(screen, template, mask, window, origin)
    scores[start] = at_start
    return choose(scores, origin)


def _score(
    screen: Image.Image,
    template: Image.Image,
    mask: Image.Image | None,
    position: Position,
    measure: Callable[[Image.Image, Image.Image, Image.Image | None], float] = similarity,
) -> float:
    x, y = position
    return measure(screen.crop((x, y, x + template.width, y + template.height)), template, mask)


# ---------------------------------------------------------------- OpenCV


def _search_opencv(
    cv2: Any,
    screen: Image.Image,
    template: Image.Image,
    mask: Image.Image | None,
    window: tuple[int, int, int, int],
    origin: Position,
) -> dict[Position, float]:
    import numpy as np

    x_lo, x_hi, y_lo, y_hi = window
    width, height = template.size
    region = np.asarray(screen.convert("RGB"))[y_lo : y_hi + height, x_lo : x_hi + width]
    needle = np.asarray(template.convert("RGB"))
    if mask is None:
        squares = cv2.matchTemplate(region, needle, cv2.TM_SQDIFF)
        count = width * height
    else:
        keep = (np.asarray(mask) > 0).astype(np.uint8)
        squares = cv2.matchTemplate(region, needle, cv2.TM_SQDIFF, mask=keep)
        count = int(keep.sum())
    rms = np.sqrt(np.maximum(squares, 0) / (max(count, 1) * 3))
    approx = 100.0 * (1.0 - rms / 255.0)
    best = float(approx.max())
    ys, xs = np.nonzero(approx >= best - TIE - 0.05)  # 0.05: room for float32 sums
    distance = (xs + x_lo - origin[0]) ** 2 + (ys + y_lo - origin[1]) ** 2
    order = np.lexsort((xs, ys, distance))[:_EXACT_CANDIDATES]
    by, bx = np.unravel_index(int(np.argmax(approx)), approx.shape)
    candidates = {(int(xs[i]) + x_lo, int(ys[i]) + y_lo) for i in order} | {(int(bx) + x_lo, int(by) + y_lo)}
    return {p: _score(screen, template, mask, p) for p in candidates}


# ---------------------------------------------------------------- Pillow


def _search_pillow(
    screen: Image.Image,
    template: Image.Image,
    mask: Image.Image | None,
    window: tuple[int, int, int, int],
    origin: Position,
) -> dict[Position, float]:
    """Every position scored on grey levels (nearest first), the best few again on RGB.

    An exact RGB match ends the scan: nothing farther can score higher or win a tie.
    """
    x_lo, x_hi, y_lo, y_hi = window
    positions = sorted(
        ((x, y) for y in range(y_lo, y_hi + 1) for x in range(x_lo, x_hi + 1)),
        key=lambda p: (_distance2(p, origin), p[1], p[0]),
    )
    grey_screen, grey_template = screen.convert("L"), template.convert("L")
    grey: dict[Position, float] = {}
    exact: dict[Position, float] = {}
    for p in positions:
        grey[p] = value = _score(grey_screen, grey_template, mask, p, mean_similarity)
        if value == 100.0:
            exact[p] = _score(screen, template, mask, p)
            if exact[p] == 100.0:
                return exact
    best = max(grey.values())
    near = [p for p in positions if grey[p] >= best - TIE - 1.0][:_EXACT_CANDIDATES]
    ranked = sorted(grey, key=lambda p: -grey[p])[:_EXACT_CANDIDATES]
    for p in (*near, *ranked):
        if p not in exact:
            exact[p] = _score(screen, template, mask, p)
    return exact
