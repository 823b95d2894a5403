"""Input proven at the guest kernel: raw evdev events read inside the guest, not just characters.

The Linux console forgives some wrong key maps (it may accept a keypad digit for a digit), so these
tests also assert the key codes and their order as the guest kernel saw them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ATPLibrary.input.mouse import ABS_MAX, pixel_to_abs
from tests.integration.helpers import EV_ABS, EV_KEY, EV_REL, GuestEvents, kw, wait_console_ready

pytestmark = pytest.mark.lab

KEYBOARD = "QEMU Virtio Keyboard"
TABLET = "QEMU Virtio Tablet"
MOUSE = "QEMU Virtio Mouse"
BTN_LEFT, BTN_RIGHT, BTN_MIDDLE = 0x110, 0x111, 0x112
REL_X, REL_Y, REL_WHEEL = 0, 1, 8
ABS_X, ABS_Y = 0, 1


@pytest.fixture()
def guest_events(library: Any, typing_vm: str) -> Iterator[GuestEvents]:
    wait_console_ready(library, typing_vm)
    reader = GuestEvents(library, typing_vm)
    ready = reader.start()
    assert KEYBOARD in ready and TABLET in ready and MOUSE in ready, ready
    yield reader
    reader.stop()


def _on(rows: list[tuple[str, int, int, int]], device: str, etype: int) -> list[tuple[int, int]]:
    return [(code, value) for name, t, code, value in rows if name == device and t == etype]


def test_absolute_move_gives_the_predicted_abs_values(library: Any, typing_vm: str, guest_events: GuestEvents) -> None:
    targets = [(0, 0), (719, 399), (360, 200), (123, 321)]
    for x, y in targets:
        kw(library, "Move Mouse To", typing_vm, x, y)
    expected = [v for x, y in targets for v in ((ABS_X, pixel_to_abs(x, 720)), (ABS_Y, pixel_to_abs(y, 400)))]
    rows = guest_events.wait_for(lambda r: len(_on(r, TABLET, EV_ABS)) >= len(expected))
    seen = _on(rows, TABLET, EV_ABS)
    # The kernel drops an axis value equal to the last one it reported; compare the values that changed.
    assert (ABS_X, ABS_MAX) in seen and (ABS_Y, ABS_MAX) in seen
    assert [e for e in expected if e[1] not in (0,)][-2:] == seen[-2:]
    assert set(seen) <= set(expected)


def test_relative_move_gives_the_exact_rel_deltas(library: Any, typing_vm: str, guest_events: GuestEvents) -> None:
    kw(library, "Move Mouse By", typing_vm, 10, -5)
    kw(library, "Move Mouse By", typing_vm, -3, 7)
    rows = guest_events.wait_for(lambda r: len(_on(r, MOUSE, EV_REL)) >= 4)
    assert _on(rows, MOUSE, EV_REL) == [(REL_X, 10), (REL_Y, -5), (REL_X, -3), (REL_Y, 7)]


def test_clicks_and_wheel_give_button_down_then_up(library: Any, typing_vm: str, guest_events: GuestEvents) -> None:
    kw(library, "Click", typing_vm)
    kw(library, "Click", typing_vm, button="right")
    kw(library, "Click", typing_vm, double=True)
    kw(library, "Scroll", typing_vm, 2, "UP")
    kw(library, "Scroll", typing_vm, 1, "DOWN")
    want_buttons = [(BTN_LEFT, 1), (BTN_LEFT, 0), (BTN_RIGHT, 1), (BTN_RIGHT, 0)] + [(BTN_LEFT, 1), (BTN_LEFT, 0)] * 2
    rows = guest_events.wait_for(lambda r: len(_on(r, MOUSE, EV_REL)) >= 3 and len(_on(r, MOUSE, EV_KEY)) >= 8)
    assert _on(rows, MOUSE, EV_KEY) == want_buttons
    assert _on(rows, MOUSE, EV_REL) == [(REL_WHEEL, 1), (REL_WHEEL, 1), (REL_WHEEL, -1)]


def test_drag_presses_at_start_and_releases_at_end(library: Any, typing_vm: str, guest_events: GuestEvents) -> None:
    kw(library, "Drag From To", typing_vm, 10, 20, 700, 380, steps=4)
    rows = guest_events.wait_for(lambda r: (BTN_LEFT, 0) in _on(r, MOUSE, EV_KEY))
    ordered = [(name, t, code, value) for name, t, code, value in rows if t in (EV_KEY, EV_ABS)]
    press = ordered.index((MOUSE, EV_KEY, BTN_LEFT, 1))
    release = ordered.index((MOUSE, EV_KEY, BTN_LEFT, 0))
    before = [(c, v) for n, t, c, v in ordered[:press] if n == TABLET]
    after = [(c, v) for n, t, c, v in ordered[press:release] if n == TABLET]
    assert (ABS_X, pixel_to_abs(10, 720)) in before and (ABS_Y, pixel_to_abs(20, 400)) in before
    assert after[-2:] == [(ABS_X, pixel_to_abs(700, 720)), (ABS_Y, pixel_to_abs(380, 400))]
