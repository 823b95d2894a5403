"""Screen waits on any ``grab`` callable that returns an image, so they run against fakes in tests.

Frames are compared with :func:`ATPLibrary.screen.match.similarity` (percent), over ``region`` (default:
the whole screen) minus the ``exclude`` boxes. Two frames are *the same* when their similarity is at
least ``threshold`` (default :data:`DEFAULT_THRESHOLD`, 99.95 %). The similarity is the worst 64x64 tile,
so one changed text character scores about 94 % however large the region, a single changed pixel about
98.4 %, and a lossless screenshot of an unchanged screen 100 %: by default any visible change counts.
Lower the threshold only for screens with faint noise (dithering, video); exclude blinking cursors and
clocks instead.

Every wait grabs a first frame at once, then one every ``interval`` seconds, and gives up once
``timeout`` seconds have passed since it started, with a :class:`ScreenWaitTimeout` that says what was
awaited, for how long, and the similarities seen. Time is read from ``clock`` and spent with ``sleep``
(both replaceable for tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

from ATPLibrary.errors import ConfigurationError, ScreenWaitTimeout
from ATPLibrary.screen.image import Box, load_image
from ATPLibrary.screen.match import similarity
from ATPLibrary.screen.needle import Needle, NeedleMatch, match_needle

#: Two frames with at least this similarity (percent) are the same screen.
DEFAULT_THRESHOLD = 99.95

Grab = Callable[[], Image.Image]
Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class WaitResult:
    """How a wait ended: seconds waited, frames grabbed, the deciding similarity, the last frame."""

    elapsed: float
    frames: int
    similarity: float
    image: Image.Image = field(repr=False, compare=False)


def _check_times(timeout: float, interval: float) -> None:
    if timeout < 0:
        raise ConfigurationError(f"timeout cannot be negative, got {timeout:g} s")
    if interval <= 0:
        raise ConfigurationError(f"interval must be above 0 s, got {interval:g} s")


def _check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 100:
        raise ConfigurationError(f"threshold must be a percentage above 0 and at most 100, got {threshold:g}")


def _where(region: Box | None, exclude: Sequence[Box]) -> str:
    parts = []
    if region is not None:
        parts.append(f"region {region}")
    if exclude:
        parts.append(f"{len(exclude)} excluded area(s)")
    return f" ({', '.join(parts)})" if parts else ""


def compare_frames(a: Image.Image, b: Image.Image, region: Box | None = None, exclude: Sequence[Box] = ()) -> float:
    """Similarity of two frames over ``region`` minus ``exclude`` (0.0 when their sizes differ)."""
    if a.size != b.size:
        return 0.0
    screen = Box(0, 0, a.width, a.height)
    box = screen if region is None else region.intersection(screen)
    if box is None:
        raise ConfigurationError(
            f"region {region} is outside the {a.width}x{a.height} screen; give x,y,width,height inside it"
        )
    mask = None
    cuts = [hit for e in exclude if (hit := box.intersection(e)) is not None]
    if cuts:
        mask = Image.new("L", (box.width, box.height), 255)
        draw = ImageDraw.Draw(mask)
        for cut in cuts:
            draw.rectangle(
                (cut.x - box.x, cut.y - box.y, cut.right - box.x - 1, cut.bottom - box.y - 1),
                fill=0,
            )
    if box == screen:
        return similarity(a, b, mask)
    return similarity(a.crop(box.pil()), b.crop(box.pil()), mask)


class _Clocked:
    """Deadline bookkeeping shared by the waits."""

    def __init__(self, grab: Grab, timeout: float, interval: float, clock: Clock, sleep: Sleep) -> None:
        self.grab, self.timeout, self.interval, self.clock, self.sleep = grab, timeout, interval, clock, sleep
        self.start = clock()
        self.deadline = self.start + timeout
        self.frames = 0

    def frame(self) -> tuple[Image.Image, float]:
        image = load_image(self.grab())
        self.frames += 1
        return image, self.clock()

    def expired(self, now: float) -> bool:
        return now >= self.deadline

    def pause(self, now: float) -> None:
        self.sleep(max(0.0, min(self.interval, self.deadline - now)))

    def elapsed(self, now: float) -> float:
        return now - self.start


def wait_until_changes(
    grab: Grab,
    timeout: float,
    interval: float = 0.2,
    region: Box | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    exclude: Sequence[Box] = (),
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> WaitResult:
    """Wait until a frame differs from the first one (similarity below ``threshold``)."""
    _check_times(timeout, interval)
    _check_threshold(threshold)
    timer = _Clocked(grab, timeout, interval, clock, sleep)
    first, now = timer.frame()
    lowest = last = 100.0
    image = first
    while True:
        if timer.frames > 1:
            last = compare_frames(first, image, region, exclude)
            lowest = min(lowest, last)
            if last < threshold:
                return WaitResult(timer.elapsed(now), timer.frames, last, image)
        if timer.expired(now):
            raise ScreenWaitTimeout(
                f"The screen did not change within {timeout:g} s{_where(region, exclude)}: "
                f"{timer.frames - 1} screenshot(s) compared with the first, lowest similarity {lowest:.2f}% "
                f"(last {last:.2f}%); a change means a similarity below {threshold:g}%.",
                image,
            )
        timer.pause(now)
        image, now = timer.frame()


def wait_until_still(
    grab: Grab,
    timeout: float,
    still_for: float = 1.0,
    interval: float = 0.2,
    region: Box | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    exclude: Sequence[Box] = (),
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> WaitResult:
    """Wait until the screen has not changed for ``still_for`` seconds.

    The reference is the frame grabbed when the screen last changed; every later frame is compared with
    it, and one below ``threshold`` becomes the new reference and restarts the still period.
    """
    _check_times(timeout, interval)
    _check_threshold(threshold)
    if still_for < 0:
        raise ConfigurationError(f"still_for cannot be negative, got {still_for:g} s")
    if still_for > timeout:
        raise ConfigurationError(
            f"still_for ({still_for:g} s) is longer than the timeout ({timeout:g} s), so the wait could never "
            f"succeed; give a timeout of at least still_for plus the time the screen needs to settle."
        )
    timer = _Clocked(grab, timeout, interval, clock, sleep)
    reference, since = timer.frame()
    now = since
    changes = 0
    last = change_similarity = 100.0
    image = reference
    while True:
        if timer.frames > 1:
            last = compare_frames(reference, image, region, exclude)
            if last < threshold:
                reference, since, change_similarity = image, now, last
                changes += 1
        if now - since >= still_for:
            return WaitResult(timer.elapsed(now), timer.frames, last, image)
        if timer.expired(now):
            raise ScreenWaitTimeout(
                f"The screen did not stay still for {still_for:g} s within {timeout:g} s{_where(region, exclude)}: "
                f"it changed {changes} time(s) in {timer.frames} screenshot(s), the last time "
                f"{now - since:.1f} s before giving up (similarity {change_similarity:.2f}% to the frame before; "
                f"still means at least {threshold:g}%).",
                image,
            )
        timer.pause(now)
        image, now = timer.frame()


def wait_until_matches(
    grab: Grab,
    needle: Needle,
    timeout: float,
    interval: float = 0.5,
    *,
    similarity: float | None = None,
    margin: int | None = None,
    use_opencv: bool | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> NeedleMatch:
    """Grab frames until ``needle`` matches one; return that match."""
    _check_times(timeout, interval)
    timer = _Clocked(grab, timeout, interval, clock, sleep)
    while True:
        image, _grabbed = timer.frame()
        result = match_needle(image, needle, similarity=similarity, margin=margin, use_opencv=use_opencv)
        if result.matched:
            return result
        now = clock()
        if timer.expired(now):
            raise ScreenWaitTimeout(
                f"Needle '{needle.name}' ({needle.source}) did not match within {timeout:g} s "
                f"({timer.frames} screenshot(s)). Last screenshot:\n" + "\n".join(result.describe().splitlines()[1:]),
                image,
                result,
            )
        timer.pause(now)
