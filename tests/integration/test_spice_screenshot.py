"""SPICE screenshots from real SPICE servers: the decoded primary surface equals QEMU's own picture.

1. A lab guest keeps QEMU's default image compression (``auto_glz``): the first full image arrives as LZ and
   later updates as GLZ with references into earlier images; its console hides the text cursor, so a still
   screen is still.  The test uses the session's leased typing guest (tests/conftest.py) and compares with
   libvirt's screenshot.
2. Every codec by itself: a private QEMU (the lab's binary, no disk, SeaBIOS's text screen, a SPICE password)
   started with ``image-compression=`` quic, glz, lz or off; compared with QMP ``screendump``.  Lab guests
   never make the server pick QUIC (it is for photo-like pictures), hence this second test.

Both drive the keywords a suite uses (`Open SPICE Session`, `Take SPICE Screenshot`).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from robot.api.types import Secret

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


class PrivateQemu:
    """A QEMU with only VGA and SPICE (no disk: SeaBIOS's screen), stopped by the fixture that starts it."""

    def __init__(self, compression: str, workdir: Path) -> None:
        binary = shutil.which("qemu-system-x86_64")
        assert binary, "qemu-system-x86_64 is not installed (the lab needs it)"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.password = secrets.token_urlsafe(12)
        self.qmp_path = workdir / "qmp.sock"
        self.proc = subprocess.Popen(
            [
                binary,
                "-machine", "pc,accel=tcg", "-m", "64", "-nodefaults", "-vga", "std", "-display", "none",
                "-object", f"secret,id=spicepw,data={self.password}",
                "-spice", f"port={self.port},addr=127.0.0.1,password-secret=spicepw,image-compression={compression}",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip

    def qmp(self, command: str, **arguments: Any) -> Any:
        deadline = time.monotonic() + 10
        while not self.qmp_path.exists():
            assert self.proc.poll() is None, f"QEMU exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
            assert time.monotonic() < deadline, "QEMU's QMP socket did not appear"
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.qmp_path))
            stream = sock.makefile("rw")
            stream.readline()
            for request in ({"execute": "qmp_capabilities"}, {"execute": command, "arguments": arguments}):
                stream.write(json.dumps(request) + "\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline())
                    if "return" in reply or "error" in reply:
                        break
            assert "return" in reply, reply
            return reply["return"]

    def screendump(self, path: Path) -> Image.Image:
        self.qmp("screendump", filename=str(path))
        with Image.open(path) as img:
            return img.convert("RGB")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


CODECS = {"quic": "QUIC", "glz": "GLZ_RGB", "lz": "LZ_RGB", "off": "BITMAP"}


@pytest.mark.parametrize("compression", sorted(CODECS))
def test_each_codec_from_a_private_qemu_equals_its_screendump(lib: Any, tmp_path: Path, compression: str) -> None:
    qemu = PrivateQemu(compression, tmp_path)
    try:
        name = f"qemu-{compression}"
        # SeaBIOS tries to boot, then settles on its final text screen (where only the text cursor blinks:
        # 18 pixels)
        deadline = time.monotonic() + 60
        previous = qemu.screendump(tmp_path / "settle.ppm")
        while True:
            time.sleep(1)
            dump = qemu.screendump(tmp_path / "settle.ppm")
            if 0 <= differing_pixels(dump, previous) <= 32:
                break
            previous = dump
            assert time.monotonic() < deadline, "QEMU's screen never settled"
        kw(lib, "Open SPICE Session", host="127.0.0.1", port=qemu.port, password=Secret(qemu.password), alias=name)

        # the text cursor blinks: agree with one of two screendumps taken around the SPICE screenshot
        def same() -> tuple[bool, str]:
            before = qemu.screendump(tmp_path / "before.ppm")
            spice = spice_shot(lib, name)
            after = qemu.screendump(tmp_path / "after.ppm")
            seen = lib.ctx.spice_session(name).display.images.seen
            # GLZ starts with an LZ image of the whole screen; the cursor's blinking brings the GLZ updates
            ok = spice.tobytes() in (before.tobytes(), after.tobytes()) and seen[CODECS[compression]] >= 1
            return ok, f"{differing_pixels(spice, before)} pixels differ from QEMU's, image types {dict(seen)}"

        until(same, 20, f"SPICE screenshot (image-compression={compression}) and QEMU's screendump did not agree")
        print(f"image-compression={compression}: image types {dict(lib.ctx.spice_session(name).display.images.seen)}")
    finally:
        kw(lib, "Close SPICE Session")
        qemu.stop()
