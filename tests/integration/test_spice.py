"""Our SPICE client against the lab guests' real SPICE servers (QEMU 7.2, libspice-server 0.15).

Every test opens its own session on the leased typing guest and closes it; input goes through the SPICE
inputs channel (``via=spice``), and the guest's kernel (evdev reader, verification agent) says what arrived.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from robot.api.types import Secret

from ATPLibrary.errors import ATPError
from ATPLibrary.keys import DEFAULT_KEYMAP
from ATPLibrary.keys.layout import US
from ATPLibrary.spice.protocol import SpiceAuthError
from ATPLibrary.spice.sink import client_mode_abs
from tests.integration.helpers import EV_ABS, EV_KEY, GuestEvents, kw, read_file_when, wait_console_ready, wait_for_file

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

KEYBOARD = "QEMU Virtio Keyboard"
TABLET = "QEMU Virtio Tablet"
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
ABS_X, ABS_Y = 0, 1
BTN_LEFT = 0x110
SYN_DROPPED = 3


@pytest.fixture()
def spice_vm(library: Any, typing_vm: str, lab: dict[str, Any]) -> Iterator[str]:
    """The typing guest, console ready, with a SPICE session open on it (closed afterwards)."""
    wait_console_ready(library, typing_vm)
    kw(library, "Open SPICE Session", typing_vm, timeout=30)
    yield typing_vm
    kw(library, "Close SPICE Session", typing_vm)


def test_wrong_password_fails_naming_link_error_7(library: Any, typing_vm: str, lab: dict[str, Any]) -> None:
    guest = lab["guests"][typing_vm]
    with pytest.raises(SpiceAuthError, match=r"error 7 \(PERMISSION_DENIED") as caught:
        kw(library, "Open SPICE Session", typing_vm, password=Secret("not-the-password"), timeout=15)
    assert caught.value.code == 7
    assert guest["spice_password"] not in str(caught.value)
    with pytest.raises(ATPError, match="No SPICE session is open"):
        kw(library, "Type Text", typing_vm, "x", via="spice")


def test_printable_ascii_via_spice_is_verified(library: Any, spice_vm: str) -> None:
    vm = spice_vm
    kw(library, "Press Keys", vm, "ctrl+c")
    kw(library, "Execute Command In Guest", vm, "rm -f /tmp/spice.txt")
    kw(library, "Type Text", vm, "cat > /tmp/spice.txt\n", via="spice", verify=True)
    wait_for_file(library, vm, "/tmp/spice.txt")
    kw(library, "Type Text", vm, PRINTABLE + "\n", via="spice", verify=True)
    kw(library, "Press Keys", vm, "ctrl+d", via="spice", verify=True)
    assert read_file_when(library, vm, "/tmp/spice.txt", PRINTABLE + "\n") == PRINTABLE + "\n"
    kw(library, "Stop Verification Server")


def _key_events(rows: list[tuple[str, int, int, int]]) -> list[tuple[int, int]]:
    """Key presses (1) and releases (0) in order.  Auto-repeats (2) are left out: every SPICE key message
    is its own report, so on a loaded TCG host a release can reach the guest kernel after its 250 ms
    repeat delay (QMP puts a press and its release in one report)."""
    return [(code, value) for name, etype, code, value in rows if name == KEYBOARD and etype == EV_KEY and value != 2]


def test_raw_evdev_codes_and_order_via_spice_incl_extended_keys(library: Any, spice_vm: str) -> None:
    vm = spice_vm
    text = "aA_{}~"
    keys = ["up", "down", "left", "right", "home", "end", "pageup", "pagedown", "insert", "delete", "kp_enter",
            "ctrl_r", "alt_r", "kp_divide", "meta_l", "print", "pause"]  # fmt: skip
    reader = GuestEvents(library, vm)
    reader.start()
    try:
        # Slowly: a Python evdev reader under TCG cannot drain its 64-event queue between fast SPICE reports
        # (one report per key message); the kernel would drop events for it (SYN_DROPPED, checked below).
        kw(library, "Type Text", vm, text, via="spice", delay=0.05)
        for name in keys:
            kw(library, "Press Keys", vm, name, via="spice")
            time.sleep(0.05)
        want = [(a.key.evdev, 1 if a.down else 0) for s in US.strokes(text) for a in US.actions(s)]
        for name in keys:
            record = DEFAULT_KEYMAP.get(name)
            want += [(record.evdev, 1), (record.evdev, 0)]
        rows = reader.wait_for(lambda r: len(_key_events(r)) >= len(want), timeout=20)
    finally:
        reader.stop()
        kw(library, "Press Keys", vm, "ctrl+c")
    assert not [r for r in rows if r[0] == KEYBOARD and r[1] == 0 and r[2] == SYN_DROPPED], "evdev reader fell behind"
    assert _key_events(rows) == want


@pytest.fixture()
def client_mouse_mode(library: Any, spice_vm: str) -> Iterator[str]:
    """Make the virtio tablet QEMU's current pointer (HMP ``mouse_set``), so the SPICE server offers client
    mouse mode; the lab guests' current pointer (the virtio mouse, activated last) is restored afterwards."""
    monitor = library.ctx.monitor(spice_vm)
    mice = monitor.execute("human-monitor-command", {"command-line": "info mice"})
    current = re.search(r"\*\s*Mouse #(\d+)", mice)
    tablet = re.search(r"Mouse #(\d+): QEMU Virtio Tablet", mice)
    assert current and tablet, mice
    monitor.execute("human-monitor-command", {"command-line": f"mouse_set {tablet.group(1)}"})
    yield spice_vm
    monitor.execute("human-monitor-command", {"command-line": f"mouse_set {current.group(1)}"})


def test_click_via_spice_gives_qemu_client_mode_abs_values(library: Any, client_mouse_mode: str) -> None:
    vm = client_mouse_mode
    targets = [(123, 321), (719, 399), (1, 1)]
    reader = GuestEvents(library, vm)
    reader.start()
    try:
        for x, y in targets:
            kw(library, "Click", vm, x, y, via="spice")
        rows = reader.wait_for(
            lambda r: sum(1 for n, t, c, v in r if t == EV_KEY and c == BTN_LEFT) >= 2 * len(targets), timeout=20
        )
    finally:
        reader.stop()
    session = library.ctx.spice_session(vm)
    assert session.mouse_mode == 2  # client mode
    seen = [(code, value) for name, t, code, value in rows if name == TABLET and t == EV_ABS]
    # QEMU 7.2: ui/spice-input.c tablet_position -> qemu_input_queue_abs(NULL, axis, x, 0, width) and
    # ui/input.c qemu_input_scale_axis: (x - 0) * (0x7FFF - 0) / (width - 0) + 0, int64, truncating;
    # width/height = the primary surface, 720x400 (the lab's text console).
    for x, y in targets:
        assert (ABS_X, client_mode_abs(x, 720)) in seen, seen
        assert (ABS_Y, client_mode_abs(y, 400)) in seen, seen
    assert (ABS_X, 123 * 0x7FFF // 720) in seen and (ABS_X, 5597) in seen  # 123 * 32767 // 720 = 5597
    clicks = [v for n, t, c, v in rows if t == EV_KEY and c == BTN_LEFT]
    assert clicks == [1, 0] * len(targets)


def test_click_via_spice_verified(library: Any, client_mouse_mode: str) -> None:
    kw(library, "Click", client_mouse_mode, 200, 100, via="spice", verify=True)
    kw(library, "Stop Verification Server")
