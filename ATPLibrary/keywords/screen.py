"""Screenshot keywords."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.errors import ScreenshotError
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.screen.capture import Screenshot, take_screenshot


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "vm"


class ScreenKeywords:
    """Take screenshots of a VM's display."""

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

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
        index = 1
        while (out / f"{_safe(vm)}-screenshot-{index}.png").exists():
            index += 1
        return out / f"{_safe(vm)}-screenshot-{index}.png"

    def _embed(self, shot: Screenshot, path: Path) -> None:
        try:
            link = os.path.relpath(path, self.ctx.log_dir())
        except ValueError:  # another drive on Windows
            link = str(path)
        src = html.escape(Path(link).as_posix(), quote=True)
        logger.info(
            f"Screenshot of VM '{html.escape(shot.vm)}' ({shot.width}x{shot.height}): "
            f'<a href="{src}"><img src="{src}" width="800px"></a>',
            html=True,
        )

    @keyword("Take Screenshot")
    def take_screenshot(self, vm: str, filename: str | None = None) -> str:
        """Takes a screenshot of ``vm``, saves it as PNG and embeds it in log.html. Returns the file's path.

        ``filename`` is relative to ``${OUTPUT DIR}`` unless absolute; ``{index}`` in it is replaced by the
        first free number. The default is ``<vm>-screenshot-<index>.png``. Works on remote hosts too (the
        image comes through libvirt); a PPM from QEMU is converted to PNG.

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
