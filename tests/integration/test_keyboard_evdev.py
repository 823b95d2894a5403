"""Typing proven twice on a real guest: the characters the guest received, and the raw key events its kernel saw.

The Linux console forgives some wrong maps, so characters alone are not proof: every character must arrive
as exactly modifier down, key down, key up, modifier up, with the evdev codes of the one key map.

Text here is typed with a 5 ms delay (one character per QMP command): a Python reader under TCG cannot drain
the kernel's 64-event evdev client buffer between back-to-back 60-event commands, and the kernel then drops
events for that reader (SYN_DROPPED) although the console received them all (tests/integration/test_guests.py
proves full-speed typing by the characters that arrive).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from ATPLibrary.keys import KEYS
from ATPLibrary.keys.layout import US
from tests.integration.helpers import (
    EV_KEY,
    GuestEvents,
    kw,
    read_file_when,
    wait_console_ready,
    wait_for_file,
)

pytestmark = pytest.mark.lab

KEYBOARD = "QEMU Virtio Keyboard"
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
#: Keys never pressed by the proof: they power the guest off or suspend it.
UNSAFE = {"POWER", "SLEEP", "WAKE"}


def expected_key_events(text: str) -> list[tuple[int, int]]:
    """(evdev code, value) for typing ``text`` with the US layout: what the guest kernel must see."""
    return [(a.key.evdev, 1 if a.down else 0) for stroke in US.strokes(text) for a in US.actions(stroke)]


SYN_DROPPED = 3


def key_events(rows: list[tuple[str, int, int, int]]) -> list[tuple[int, int]]:
    if any(name == KEYBOARD and etype == 0 and code == SYN_DROPPED for name, etype, code, _v in rows):
        raise AssertionError("the guest-side evdev reader fell behind and the kernel dropped events (SYN_DROPPED)")
    return [(code, value) for name, etype, code, value in rows if name == KEYBOARD and etype == EV_KEY]


@pytest.fixture()
def console_sink(library: Any, typing_vm: str) -> Iterator[GuestEvents]:
    """``cat > /tmp/sink.txt`` running on the console, and the evdev reader started after it (so the events
    it records are exactly the ones typed into cat)."""
    wait_console_ready(library, typing_vm)
    kw(library, "Execute Command In Guest", typing_vm, "rm -f /tmp/sink.txt")
    kw(library, "Type Text", typing_vm, "cat > /tmp/sink.txt\n")
    wait_for_file(library, typing_vm, "/tmp/sink.txt")
    reader = GuestEvents(library, typing_vm)
    reader.start()
    yield reader
    reader.stop()
    kw(library, "Press Keys", typing_vm, "ctrl+c")


@pytest.mark.parametrize(
    "text",
    [PRINTABLE, "aabbccdd  ::<<>>", "Hello_World-42 (a>b) & {x|y} #~$ tail"],
    ids=["95-printable-ascii", "repeated-and-angle", "failure-kind-1"],
)
def test_text_arrives_exactly_and_as_the_right_key_events(
    library: Any, typing_vm: str, console_sink: GuestEvents, text: str
) -> None:
    kw(library, "Type Text", typing_vm, text + "\n", delay=0.005)
    assert read_file_when(library, typing_vm, "/tmp/sink.txt", text + "\n") == text + "\n"
    want = expected_key_events(text + "\n")
    rows = console_sink.wait_for(lambda r: len(key_events(r)) >= len(want))
    got = key_events(rows)
    assert got == want, _first_difference(got, want)
    assert not any(value == 2 for _code, value in got), "a key auto-repeated"


def test_every_named_key_arrives_with_its_evdev_code(library: Any, typing_vm: str, console_sink: GuestEvents) -> None:
    names = [k.name for k in KEYS if k.name not in UNSAFE]
    want: list[tuple[int, int]] = []
    for name in names:
        record = next(k for k in KEYS if k.name == name)
        presses = 2 if name.endswith("_LOCK") else 1  # lock keys twice: leave their state as it was
        for _ in range(presses):
            kw(library, "Press Keys", typing_vm, name)
            want += [(record.evdev, 1), (record.evdev, 0)]
            time.sleep(0.02)  # the Python reader (beside the image's agent) keeps up at this pace under TCG
    rows = console_sink.wait_for(lambda r: len(key_events(r)) >= len(want), timeout=20)
    got = key_events(rows)
    assert got == want, _first_difference(got, want)


def test_combo_order_is_modifiers_down_key_then_reverse(
    library: Any, typing_vm: str, console_sink: GuestEvents
) -> None:
    kw(library, "Press Keys", typing_vm, "ctrl+shift+u", "shift+kp_1")
    codes = {k.name: k.evdev for k in KEYS}
    ctrl, shift, u, kp1 = codes["CTRL"], codes["SHIFT"], codes["U"], codes["KP_1"]
    want = [(ctrl, 1), (shift, 1), (u, 1), (u, 0), (shift, 0), (ctrl, 0), (shift, 1), (kp1, 1), (kp1, 0), (shift, 0)]
    rows = console_sink.wait_for(lambda r: len(key_events(r)) >= len(want))
    assert key_events(rows) == want


def test_a_held_key_is_released_when_asked(library: Any, typing_vm: str, console_sink: GuestEvents) -> None:
    kw(library, "Hold Key", typing_vm, "shift")
    kw(library, "Type Text", typing_vm, "ab")
    kw(library, "Release Key", typing_vm, "shift")
    kw(library, "Type Text", typing_vm, "c\n")
    assert read_file_when(library, typing_vm, "/tmp/sink.txt", "ABc\n") == "ABc\n"


def _first_difference(got: list[tuple[int, int]], want: list[tuple[int, int]]) -> str:
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            return (
                f"first difference at event {i}: got {got[max(0, i - 3) : i + 4]}, want {want[max(0, i - 3) : i + 4]}"
            )
    return f"lengths differ: got {len(got)} events, want {len(want)}"
