"""SPICE screenshots of a real lab guest: the decoded primary surface equals libvirt's screenshot.

The guest keeps QEMU's default image compression (``auto_glz``), so the first full image arrives as LZ and
later updates as GLZ with references into earlier images; the console hides its text cursor, so a still
screen is still.  The test drives the keywords a suite uses (`Open SPICE Session`, `Take SPICE Screenshot`)
on the session's leased typing guest (tests/conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ATPLibrary.screen.capture import take_screenshot
from tests.integration.helpers import kw, wait_console_ready

pytestmark = pytest.mark.lab


@pytest.fixture()
def lib(lab: dict[str, Any], tmp_path: Path) -> Iterator[Any]:
    """An ATPLibrary connected to the lab host; screenshots go to ``tmp_path``."""
    from ATPLibrary import ATPLibrary

    library = ATPLibrary(timeout=timedelta(seconds=30))
    library.ctx.output_dir = library.ctx.log_dir = lambda: tmp_path
    kw(library, "Connect To Host", lab["uri"], alias="lab")
    yield library
    kw(library, "Close SPICE Session")
    kw(library, "Disconnect All Hosts")


def libvirt_shot(lib: Any, vm: str) -> Image.Image:
    return take_screenshot(lib.ctx.domain(vm)).image()


def spice_shot(lib: Any, vm: str) -> Image.Image:
    with Image.open(kw(lib, "Take SPICE Screenshot", vm)) as img:
        return img.convert("RGB")


def differing_pixels(a: Image.Image, b: Image.Image) -> int:
    if a.size != b.size:
        return -1
    ra, rb = a.tobytes(), b.tobytes()
    return sum(1 for i in range(0, len(ra), 3) if ra[i : i + 3] != rb[i : i + 3])


def until(check: Callable[[], tuple[bool, str]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    detail = ""
    while time.monotonic() < deadline:
        ok, detail = check()
        if ok:
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout} s ({detail})")


def test_spice_screenshot_equals_libvirt_screenshot_and_follows_changes(lib: Any, typing_vm: str) -> None:
    vm = typing_vm
    wait_console_ready(lib, vm)
    kw(lib, "Type Text", vm, "clear\n")
    kw(lib, "Wait Until Screen Is Still", vm, timeout=20, still_for=1)
    kw(lib, "Open SPICE Session", vm)

    # 1. a still screen: SPICE and libvirt agree pixel for pixel (720x400, cursor hidden)
    def same() -> tuple[bool, str]:
        before, spice, after = libvirt_shot(lib, vm), spice_shot(lib, vm), libvirt_shot(lib, vm)
        ok = before.tobytes() == after.tobytes() == spice.tobytes() and spice.size == before.size
        return ok, f"SPICE {spice.size} vs libvirt {before.size}: {differing_pixels(spice, before)} pixels differ"

    until(same, 15, "SPICE and libvirt screenshots of a still screen did not agree")
    first = spice_shot(lib, vm)
    assert first.size == (720, 400)

    # 2. the screen changes: the SPICE screenshot differs from before and again equals libvirt's
    kw(lib, "Type Text", vm, "echo SPICE-DISPLAY-$((40 + 2)); ls -l /etc | head -20\n")

    def changed() -> tuple[bool, str]:
        spice, now = spice_shot(lib, vm), libvirt_shot(lib, vm)
        ok = spice.tobytes() != first.tobytes() and spice.tobytes() == now.tobytes()
        return ok, f"{differing_pixels(spice, now)} pixels differ from libvirt's"

    until(changed, 20, "the SPICE screenshot did not follow the changed screen")

    seen = dict(lib.ctx.spice_session(vm).display.images.seen)
    print(f"image types from the server: {seen}")
    # auto_glz: the first full image is LZ (or GLZ), the updates after typing are GLZ-compressed
    assert seen.get("GLZ_RGB", 0) >= 1, seen
