"""Screen keywords: screenshots, needle matching, screen waits, clicking on a match."""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from PIL import Image
from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.errors import ScreenMismatchError, ScreenshotError, ScreenWaitTimeout
from ATPLibrary.input.mouse import MouseButton, coerce_enum
from ATPLibrary.keywords.context import LibraryContext, to_seconds
from ATPLibrary.screen.capture import Screenshot, take_screenshot
from ATPLibrary.screen.image import encode_image, parse_box, parse_boxes
from ATPLibrary.screen.needle import Needle, NeedleMatch, find_needle, load_needle, match_needle
from ATPLibrary.screen.report import side_by_side
from ATPLibrary.screen.wait import (
    DEFAULT_THRESHOLD,
    WaitResult,
    wait_until_changes,
    wait_until_matches,
    wait_until_still,
)

#: Screenshots up to this size are embedded in log.html itself; larger ones are linked.
EMBED_LIMIT = 512 * 1024


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "vm"


def _execdir() -> Path:
    """Robot's ``${EXECDIR}``; the current directory outside a Robot run."""
    try:
        from robot.libraries.BuiltIn import BuiltIn, RobotNotRunningError
    except ImportError:  # pragma: no cover
        return Path.cwd()
    try:
        value = BuiltIn().get_variable_value("${EXECDIR}")
    except RobotNotRunningError:
        value = None
    return Path(str(value)) if value else Path.cwd()


class ScreenKeywords:
    """Screenshots, openQA-style needles and screen waits."""

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------ files and log

    def _free_path(self, stem: str) -> Path:
        out = self.ctx.output_dir()
        index = 1
        while (out / f"{stem}-{index}.png").exists():
            index += 1
        return out / f"{stem}-{index}.png"

    def _path(self, vm: str, filename: str | None) -> Path:
        out = self.ctx.output_dir()
        if filename:
            if "{index}" in filename:
                index = 1
                while (out / filename.format(index=index)).exists():
                    index += 1
                filename = filename.format(index=index)
            path = Path(filename)
            if path.suffix.lower() != ".png":
                path = path.with_name(path.name + ".png")
            return path if path.is_absolute() else out / path
        return self._free_path(f"{_safe(vm)}-screenshot")

    def _embed_file(self, path: Path, caption: str, width: int = 800) -> None:
        """Show the PNG in log.html: embedded (a data URI, so log.html alone shows it) when it is at most
        EMBED_LIMIT bytes, else linked; it links to the file beside log.html either way."""
        try:
            link = os.path.relpath(path, self.ctx.log_dir())
        except ValueError:  # another drive on Windows
            link = str(path)
        href = html.escape(Path(link).as_posix(), quote=True)
        data = path.read_bytes()
        src = f"data:image/png;base64,{base64.b64encode(data).decode('ascii')}" if len(data) <= EMBED_LIMIT else href
        logger.info(
            f'{html.escape(caption)}: <a href="{href}"><img src="{src}" width="{width}px"></a>',
            html=True,
        )

    def _embed(self, shot: Screenshot, path: Path) -> None:
        self._embed_file(path, f"Screenshot of VM '{shot.vm}' ({shot.width}x{shot.height})")

    def _save_image(self, image: Image.Image, stem: str) -> Path:
        path = self._free_path(stem)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_image(image))
        return path

    def _log_match(self, vm: str, result: NeedleMatch) -> None:
        """Per-area similarities always; the screenshot and the needle side by side when it did not match."""
        logger.info(result.describe())
        if not result.matched:
            path = self._save_image(side_by_side(result), f"{_safe(vm)}-needle-{_safe(result.needle.name)}")
            self._embed_file(
                path,
                f"VM '{vm}' (left: found areas, green matched, red not) and needle '{result.needle.name}' "
                f"(right: its areas)",
                width=min(1600, result.screen.width + 12 + result.needle.image.width),
            )

    def _log_frame(self, vm: str, image: Image.Image | None, what: str) -> None:
        if image is not None:
            path = self._save_image(image, f"{_safe(vm)}-{what}")
            self._embed_file(path, f"Last screenshot of VM '{vm}'")

    # ------------------------------------------------------------ needles

    def _needle_dirs(self) -> list[Path]:
        """Where relative needle names are looked up, in order."""
        configured = getattr(self.ctx, "needle_dir", None)
        execdir = _execdir()
        dirs = [Path(configured)] if configured else []
        return [*dirs, execdir, execdir / "needles"]

    def _resolve_needle(self, needle: str, region: str | None) -> Needle:
        """The one place that turns a keyword's ``needle`` argument into a loaded needle."""
        return load_needle(find_needle(needle, self._needle_dirs()), region)

    def _grab(self, vm: str) -> Callable[[], Image.Image]:
        domain = self.ctx.domain(vm)
        return lambda: take_screenshot(domain).image()

    # ------------------------------------------------------------ keywords

    @keyword("Take Screenshot")
    def take_screenshot(self, vm: str, filename: str | None = None) -> str:
        """Takes a screenshot of ``vm``, saves it as a PNG file, embeds it in log.html and returns the file's path.

        The picture is embedded in log.html itself (so the log shows it on its own) when the PNG is at most
        512 KiB, and linked to the file beside the log otherwise.

        ``filename`` is relative to ``${OUTPUT DIR}`` unless absolute; ``{index}`` in it is replaced by the
        first free number. The default is ``<vm>-screenshot-<index>.png``. Works on remote hosts too (the
        image comes through libvirt); a PPM from QEMU is converted to PNG. Fails when ``vm`` is not defined
        or libvirt cannot take the screenshot (a VM that is not running), with libvirt's error.

        | =Keyword / Assignment= | =Argument=      | =Argument= | =Argument=           |
        | ${path} =              | Take Screenshot | atp-lab-03 |                      |
        | Take Screenshot        | atp-lab-03      | login-{index}.png |               |
        """
        shot = take_screenshot(self.ctx.domain(vm))
        path = self._path(vm, filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(shot.png)
        self._embed(shot, path)
        return str(path)

    @keyword("Screen Should Not Be Blank")
    def screen_should_not_be_blank(self, vm: str) -> None:
        """Fails when the whole screen of ``vm`` has a single colour (e.g. black: nothing drawn yet).

        The screenshot is embedded in log.html when the check fails.

        | =Keyword=                  | =VM=       |
        | Screen Should Not Be Blank | atp-lab-03 |
        """
        shot = take_screenshot(self.ctx.domain(vm))
        if shot.blank:
            path = self._path(vm, None)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(shot.png)
            self._embed(shot, path)
            raise ScreenshotError(
                f"Screen of VM '{vm}' is blank: all {shot.width}x{shot.height} pixels have one colour."
            )
        logger.info(f"Screen of VM '{vm}' is not blank ({shot.width}x{shot.height}).")

    @keyword("Screen Should Match")
    def screen_should_match(
        self,
        vm: str,
        needle: str,
        similarity: float | None = None,
        region: str | None = None,
        margin: int | None = None,
    ) -> NeedleMatch:
        """Fails unless the screen of ``vm`` matches ``needle`` now, and returns the match.

        ``needle`` is an openQA-style needle (``name.json`` beside ``name.png``, named with or without
        the suffix) or a plain reference PNG. A relative name is looked up in ``${EXECDIR}``, then in
        ``${EXECDIR}/needles``; a needle found in neither fails naming the places looked in.

        A needle matches when each of its ``match`` areas is found with at least its ``match``
        similarity (default 96 %), ignoring its ``exclude`` areas. Each area is searched around its
        position in the needle: within ``margin`` pixels (default: the whole screen with OpenCV
        installed, 50 px without; an area's own ``margin`` in the JSON wins); among equally good
        positions the one closest to the original wins.

        Similarity is ``100 x (1 - RMS/255)`` of the RGB differences, taken in tiles of about 64x64
        pixels, the worst tile counting: 100 for identical pixels, 0 for black against white; one
        changed character of console text scores about 85-93, other text or a blank line far less.

        - ``similarity``: percent that replaces every area's ``match``.
        - ``region``: for a plain PNG, the part of it to look for, ``x,y,width,height`` in pixels of the
          PNG (default: the whole PNG, expected at its top-left corner plus the margin).

        The per-area similarity and position are logged. When the screen does not match, the
        screenshot (found areas drawn green or red) and the needle (its areas drawn) are embedded in
        log.html side by side.

        The returned match has ``matched``, ``similarity`` (lowest area), ``click_point`` (screen
        pixels) and ``areas`` (each with ``similarity`` and ``position``).

        | =Keyword / Assignment= | =Argument=          | =Argument=   | =Argument=     |
        | Screen Should Match    | atp-lab-03          | login-prompt |                |
        | Screen Should Match    | atp-lab-03          | needles/desktop.json | similarity=90 |
        | ${m} =                 | Screen Should Match | atp-lab-03   | ${CURDIR}/ok-button.png |
        | Should Be True         | ${m.similarity} > 99 |             |                |
        """
        loaded = self._resolve_needle(needle, region)
        result = match_needle(self._grab(vm)(), loaded, similarity=similarity, margin=margin)
        self._log_match(vm, result)
        if not result.matched:
            raise ScreenMismatchError(
                f"Screen of VM '{vm}' does not match needle '{loaded.name}' ({loaded.source}):\n"
                + "\n".join(result.describe().splitlines()[1:]),
                result,
            )
        return result

    @keyword("Wait Until Screen Matches")
    def wait_until_screen_matches(
        self,
        vm: str,
        needle: str,
        timeout: timedelta | None = None,
        similarity: float | None = None,
        region: str | None = None,
        margin: int | None = None,
        interval: timedelta = timedelta(milliseconds=500),
    ) -> NeedleMatch:
        """Takes screenshots of ``vm`` until one matches ``needle`` and returns the match.

        ``needle``, ``similarity``, ``region`` and ``margin`` are as in `Screen Should Match`. A
        screenshot is taken every ``interval``. ``timeout`` defaults to the library's timeout. On
        failure the last screenshot and the needle are embedded side by side, with the per-area
        similarities in the message.

        | =Keyword=                 | =VM=       | =Needle=     | =Argument=  |
        | Wait Until Screen Matches | atp-lab-03 | login-prompt | timeout=60s |
        | ${m} =                    | Wait Until Screen Matches | atp-lab-03 | desktop |
        """
        loaded = self._resolve_needle(needle, region)
        seconds = self.ctx.seconds(timeout)
        try:
            result = wait_until_matches(
                self._grab(vm),
                loaded,
                seconds,
                to_seconds(interval),
                similarity=similarity,
                margin=margin,
            )
        except ScreenWaitTimeout as err:
            if err.match is not None:
                self._log_match(vm, err.match)
            raise ScreenWaitTimeout(f"VM '{vm}': {err}", err.image, err.match) from None
        self._log_match(vm, result)
        return result

    @keyword("Wait Until Screen Changes")
    def wait_until_screen_changes(
        self,
        vm: str,
        timeout: timedelta | None = None,
        region: str | None = None,
        exclude: str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        interval: timedelta = timedelta(milliseconds=200),
    ) -> float:
        """Waits until the screen of ``vm`` differs from how it was when the keyword started.

        Returns the similarity of the changed screen to the first one, in percent.

        - ``region``: only this part counts, ``x,y,width,height`` in screen pixels.
        - ``exclude``: parts that never count (a clock, a blinking cursor), ``x,y,width,height``,
          several separated by ``;``.
        - ``threshold``: a screenshot is changed when its similarity to the first one is below this
          percentage (default 99.95: any visible change; one changed character of text scores about 94).
        - ``interval``: time between screenshots.

        The first screenshot, taken when the keyword starts, is the reference: use it for effects that
        show up later (a command's delayed output, a window that opens), typically after
        `Wait Until Screen Is Still`. Fails after ``timeout`` (default: the library's) with the
        similarities seen; the last screenshot is embedded.

        | =Keyword=                 | =VM=       | =Argument=  | =Argument=         |
        | Wait Until Screen Changes | atp-lab-03 | timeout=10s |                    |
        | Wait Until Screen Changes | atp-lab-03 | timeout=10s | region=0,0,720,32  |
        | Wait Until Screen Changes | atp-lab-03 | exclude=640,0,80,16 |             |
        """
        result = self._wait(
            vm,
            lambda grab: wait_until_changes(
                grab,
                self.ctx.seconds(timeout),
                to_seconds(interval),
                None if region is None else parse_box(region),
                threshold,
                parse_boxes(exclude),
            ),
        )
        logger.info(
            f"Screen of VM '{vm}' changed after {result.elapsed:.2f} s ({result.frames} screenshots): "
            f"similarity {result.similarity:.2f}% to the first."
        )
        return result.similarity

    @keyword("Wait Until Screen Is Still")
    def wait_until_screen_is_still(
        self,
        vm: str,
        timeout: timedelta | None = None,
        still_for: timedelta = timedelta(seconds=1),
        region: str | None = None,
        exclude: str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        interval: timedelta = timedelta(milliseconds=200),
    ) -> float:
        """Waits until the screen of ``vm`` has not changed for ``still_for`` and returns the seconds waited.

        ``region``, ``exclude``, ``threshold`` and ``interval`` are as in `Wait Until Screen Changes`;
        a screenshot whose similarity to the one taken at the last change is below ``threshold``
        restarts the still period. Fails after ``timeout`` (default: the library's; it must be at least
        ``still_for``), saying how often and how recently the screen changed; the last screenshot is
        embedded.

        | =Keyword=                  | =VM=       | =Argument=  | =Argument=     |
        | Type Text                  | atp-lab-03 | make\\n     |                |
        | Wait Until Screen Is Still | atp-lab-03 | timeout=60s | still_for=2s   |
        | Wait Until Screen Is Still | atp-lab-03 | exclude=640,0,80,16 |        |
        """
        result = self._wait(
            vm,
            lambda grab: wait_until_still(
                grab,
                self.ctx.seconds(timeout),
                to_seconds(still_for),
                to_seconds(interval),
                None if region is None else parse_box(region),
                threshold,
                parse_boxes(exclude),
            ),
        )
        logger.info(
            f"Screen of VM '{vm}' was still for {to_seconds(still_for):g} s after {result.elapsed:.2f} s "
            f"({result.frames} screenshots)."
        )
        return result.elapsed

    def _wait(self, vm: str, run: Callable[[Callable[[], Image.Image]], WaitResult]) -> WaitResult:
        try:
            return run(self._grab(vm))
        except ScreenWaitTimeout as err:
            self._log_frame(vm, err.image, "screen-wait")
            raise ScreenWaitTimeout(f"VM '{vm}': {err}", err.image) from None

    @keyword("Click On Match")
    def click_on_match(
        self,
        vm: str,
        needle: str,
        timeout: timedelta | None = None,
        button: str = "left",
        similarity: float | None = None,
        margin: int | None = None,
    ) -> tuple[int, int]:
        """Waits until the screen of ``vm`` matches ``needle``, then clicks ``button`` on its click point.

        The click point is the needle's ``click_point`` where its area was found on the screen; without
        one, the centre of the needle's last match area. ``timeout``, ``similarity`` and ``margin`` are
        as in `Wait Until Screen Matches`; ``button`` is ``left``, ``middle`` or ``right``. Returns the
        clicked screen pixel as ``(x, y)``. Fails like `Wait Until Screen Matches` when the needle does not
        match within ``timeout``; nothing is clicked then.

        | =Keyword=      | =VM=       | =Needle=  | =Argument=   |
        | Click On Match | atp-lab-03 | ok-button | timeout=20s  |
        | Click On Match | atp-lab-03 | file-icon | button=right |
        """
        click = self._clicker(vm)
        result: NeedleMatch = self.wait_until_screen_matches(vm, needle, timeout, similarity, None, margin)
        point = result.click_point
        if point is None:  # pragma: no cover - a matched needle always has its areas on the screen
            raise ScreenshotError(f"Needle '{result.needle.name}' matched but has no click point on the screen")
        click(point[0], point[1], button)
        logger.info(f"Clicked {button} on VM '{vm}' at ({point[0]}, {point[1]}) (needle '{result.needle.name}').")
        return point

    def _clicker(self, vm: str) -> Callable[[int, int, str], None]:
        """Click at a screen pixel with the VM's pointer (the same path as `Click`)."""

        def click(x: int, y: int, button: str) -> None:
            pointer = self.ctx.pointer(vm)
            pointer.move_to(x, y)
            pointer.click(coerce_enum(MouseButton, button))

        return click
