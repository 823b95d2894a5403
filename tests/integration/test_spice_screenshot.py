"""SPICE screenshots of a real lab guest: the decoded primary surface equals libvirt's screenshot.

The guest keeps QEMU's default image compression (``auto_glz``), so the first full image arrives as LZ and
later updates as GLZ with references into earlier images; the console hides its text cursor, so a still
screen is still. The test uses the session's leased typing guest (tests/conftest.py) and the SPICE core's
channel (``ATPLibrary.spice.channel``) for link and ticket.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import libvirt
import pytest

from ATPLibrary.lab.domains import spice_password_of, spice_port_of
from ATPLibrary.screen.capture import take_screenshot
from ATPLibrary.spice import protocol as p
from ATPLibrary.spice.channel import Endpoint, SpiceChannel
from ATPLibrary.spice.display import DISPLAY_CAPS, DisplayChannelHandler
from tests.integration.helpers import kw, wait_console_ready

pytestmark = pytest.mark.lab


class _MainInit:
    """Just enough of the main channel for this test: the session id from MAIN_INIT."""

    def __init__(self) -> None:
        self.session_id: int | None = None
        self.ready = asyncio.Event()

    async def on_message(self, msg_type: int, payload: bytes) -> None:
        if msg_type == p.MSG_MAIN_INIT:
            (self.session_id,) = struct.unpack_from("<I", payload)
            self.ready.set()


def _libvirt_rgb(library: Any, vm: str) -> tuple[int, int, bytes]:
    shot = take_screenshot(library.ctx.domain(vm))
    return shot.width, shot.height, shot.image().tobytes()


def _spice_address(library: Any, vm: str) -> tuple[int, str]:
    xml = library.ctx.domain(vm).run(
        lambda dom: dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE), what="live XML", idempotent=True
    )
    port, password = spice_port_of(xml), spice_password_of(xml)
    assert port and password is not None, f"{vm}: no SPICE port/password in the live XML"
    return port, password


async def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        await asyncio.sleep(0.3)  # the display channel keeps reading meanwhile
    raise AssertionError(f"{what} within {timeout} s (last: {last})")


def _diff(a: bytes, b: bytes) -> str:
    if len(a) != len(b):
        return f"sizes {len(a)} != {len(b)}"
    n = sum(1 for i in range(0, len(a), 3) if a[i : i + 3] != b[i : i + 3])
    return f"{n} pixels differ"


def test_spice_screenshot_equals_libvirt_screenshot_and_follows_changes(library: Any, typing_vm: str) -> None:
    vm = typing_vm
    wait_console_ready(library, vm)
    kw(library, "Type Text", vm, "clear\n")
    kw(library, "Wait Until Screen Is Still", vm, timeout=20, still_for=1)
    port, password = _spice_address(library, vm)

    async def scenario() -> dict[str, int]:
        endpoint = Endpoint("127.0.0.1", port)
        main = SpiceChannel(endpoint, p.ChannelType.MAIN)
        await main.connect(password, 20)
        init = _MainInit()
        main.start(init)
        await main.wait(init.ready, 20, "MAIN_INIT")
        assert init.session_id is not None
        await main.send(p.MSGC_MAIN_ATTACH_CHANNELS)
        display = SpiceChannel(
            endpoint, p.ChannelType.DISPLAY, connection_id=init.session_id, channel_caps=frozenset(DISPLAY_CAPS)
        )
        try:
            await display.connect(password, 20)
            handler = DisplayChannelHandler(display.send)
            display.start(handler)
            await handler.start()
            await handler.wait_for_surface(30)

            # 1. a still screen: SPICE and libvirt agree pixel for pixel (720x400, cursor hidden)
            def same() -> tuple[bool, str]:
                before = _libvirt_rgb(library, vm)
                spice = handler.screenshot()
                after = _libvirt_rgb(library, vm)
                return before == spice == after, f"{spice[:2]} vs {before[:2]}: {_diff(spice[2], before[2])}"

            await _until(same, 15, "SPICE and libvirt screenshots of a still screen did not agree")
            width, height, first = handler.screenshot()
            assert (width, height) == (720, 400)

            # 2. the screen changes: the SPICE screenshot differs from before and again equals libvirt's
            kw(library, "Type Text", vm, "echo SPICE-DISPLAY-$((40 + 2)); ls -l /etc | head -20\n")

            def changed() -> tuple[bool, str]:
                lib_shot = _libvirt_rgb(library, vm)
                spice = handler.screenshot()
                return spice[2] != first and spice == lib_shot, _diff(spice[2], lib_shot[2])

            await _until(changed, 20, "the SPICE screenshot did not follow the changed screen")
            assert display.error is None and handler.error is None
            return dict(handler.images.seen)
        finally:
            await display.close()
            await main.close()

    seen = asyncio.run(scenario())
    print(f"image types from the server: {seen}")
    # auto_glz: the initial image is LZ (or GLZ), the updates after typing are GLZ-compressed
    assert seen.get("GLZ_RGB", 0) >= 1, seen
