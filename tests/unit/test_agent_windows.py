"""Verification agent, Windows translation: hand-built KBDLLHOOKSTRUCT / MSLLHOOKSTRUCT values from the documented
constants (winuser.h) become the same raw_input_event shape as on Linux.  The hooks themselves are unproven here."""

from __future__ import annotations

import ctypes
import struct

import pytest

from ATPLibrary.agent import windows as w
from ATPLibrary.verification import protocol

pytestmark = pytest.mark.timeout(10)


def kbd(vk: int, scan: int, flags: int = 0, time: int = 1234) -> w.KBDLLHOOKSTRUCT:
    """From the documented byte layout: DWORD vkCode, scanCode, flags, time; ULONG_PTR dwExtraInfo."""
    raw = struct.pack("<IIIIQ", vk, scan, flags, time, 0)
    return w.KBDLLHOOKSTRUCT.from_buffer_copy(raw)


def mouse(x: int = 0, y: int = 0, data: int = 0, flags: int = 0, time: int = 99) -> w.MSLLHOOKSTRUCT:
    """POINT pt (two LONGs); DWORD mouseData, flags, time; (padding); ULONG_PTR dwExtraInfo."""
    raw = struct.pack("<iiIII4xQ", x, y, data, flags, time, 0)
    return w.MSLLHOOKSTRUCT.from_buffer_copy(raw)


def test_struct_layouts_match_winuser_h_on_64_bit() -> None:
    assert ctypes.sizeof(w.KBDLLHOOKSTRUCT) == 24
    assert ctypes.sizeof(w.MSLLHOOKSTRUCT) == 32
    s = kbd(0x41, 0x1E, w.LLKHF_UP, 777)
    assert (s.vkCode, s.scanCode, s.flags, s.time) == (0x41, 0x1E, 0x80, 777)
    m = mouse(-3, 40, 0x00780000)
    assert (m.pt.x, m.pt.y, m.mouseData) == (-3, 40, 0x00780000)


def test_key_down_and_up_are_named_as_the_linux_kernel_names_them() -> None:
    down = w.translate_keyboard(w.WM_KEYDOWN, kbd(0x41, 0x1E))
    up = w.translate_keyboard(w.WM_KEYUP, kbd(0x41, 0x1E, w.LLKHF_UP))
    assert down is not None and up is not None
    shape = protocol.raw_input_event("key", 30, 1, "KEY_A", w.KEYBOARD_DEVICE, 1234.0, 0)
    assert {k: down[k] for k in shape} == shape
    assert (up["code"], up["value"], up["name"]) == (30, 0, "KEY_A")
    assert down["vk"] == 0x41 and down["scan_code"] == 0x1E and down["extended"] is False
    assert down["event_type"] == "keyboard" and down["message_type"] == "raw_input_event"


def test_sys_key_messages_and_the_up_flag() -> None:
    alt_down = w.translate_keyboard(w.WM_SYSKEYDOWN, kbd(0xA4, 0x38, w.LLKHF_ALTDOWN))
    f4_up = w.translate_keyboard(w.WM_SYSKEYUP, kbd(0x73, 0x3E, w.LLKHF_UP | w.LLKHF_ALTDOWN))
    assert alt_down is not None and f4_up is not None
    assert (alt_down["name"], alt_down["value"]) == ("KEY_LEFTALT", 1)
    assert (f4_up["name"], f4_up["value"]) == ("KEY_F4", 0)
    assert w.translate_keyboard(0x0102, kbd(0x41, 0x1E)) is None  # WM_CHAR is not a key message


@pytest.mark.parametrize(
    ("vk", "scan", "flags", "code", "name"),
    [
        (0x0D, 0x1C, 0, 28, "KEY_ENTER"),
        (0x0D, 0x1C, w.LLKHF_EXTENDED, 96, "KEY_KPENTER"),  # same VK_RETURN: told apart by the extended flag
        (0xA3, 0x1D, w.LLKHF_EXTENDED, 97, "KEY_RIGHTCTRL"),
        (0xA1, 0x36, 0, 54, "KEY_RIGHTSHIFT"),
        (0x26, 0x48, w.LLKHF_EXTENDED, 103, "KEY_UP"),
        (0x26, 0x48, 0, 72, "KEY_KP8"),  # numpad 8 with Num Lock off: VK_UP, but the physical key is KP8
        (0x5A, 0x15, 0, 21, "KEY_Y"),  # German layout: VK_Z on the key the kernel calls KEY_Y
        (0x13, 0x45, 0, 119, "KEY_PAUSE"),  # Pause: scan 0x45 like Num Lock; found by VK
        (0x90, 0x45, w.LLKHF_EXTENDED, 69, "KEY_NUMLOCK"),
        (0x41, 0, w.LLKHF_INJECTED, 30, "KEY_A"),  # injected without a scan code: by VK
    ],
)
def test_keys_are_found_by_scan_code_then_vk(vk: int, scan: int, flags: int, code: int, name: str) -> None:
    event = w.translate_keyboard(w.WM_KEYDOWN, kbd(vk, scan, flags))
    assert event is not None
    assert (event["code"], event["name"]) == (code, name)
    assert event["injected"] is bool(flags & w.LLKHF_INJECTED)


def test_an_unknown_vk_keeps_its_vk_and_code_zero() -> None:
    event = w.translate_keyboard(w.WM_KEYDOWN, kbd(0xE8, 0))
    assert event is not None
    assert (event["code"], event["name"], event["vk"]) == (0, "VK_0xe8", 0xE8)


def test_a_held_key_repeats_with_value_2_as_on_linux() -> None:
    pressed: set[int] = set()
    values = []
    for wparam in (w.WM_KEYDOWN, w.WM_KEYDOWN, w.WM_KEYDOWN, w.WM_KEYUP, w.WM_KEYDOWN):
        event = w.translate_keyboard(wparam, kbd(0x41, 0x1E), pressed=pressed)
        assert event is not None
        values.append(event["value"])
    assert values == [1, 2, 2, 0, 1]


def test_mouse_moves_are_absolute_screen_pixels() -> None:
    events = w.translate_mouse(w.WM_MOUSEMOVE, mouse(640, 480))
    assert [(e["kind"], e["code"], e["name"], e["value"], e["units"]) for e in events] == [
        ("abs", 0, "ABS_X", 640, "pixels"),
        ("abs", 1, "ABS_Y", 480, "pixels"),
    ]
    assert events[0]["event_type"] == "mouse" and events[0]["device"] == w.MOUSE_DEVICE
    assert events[0]["timestamp"] == 99.0


@pytest.mark.parametrize(
    ("wparam", "data", "code", "name", "value"),
    [
        (w.WM_LBUTTONDOWN, 0, 0x110, "BTN_LEFT", 1),
        (w.WM_LBUTTONUP, 0, 0x110, "BTN_LEFT", 0),
        (w.WM_RBUTTONDOWN, 0, 0x111, "BTN_RIGHT", 1),
        (w.WM_RBUTTONUP, 0, 0x111, "BTN_RIGHT", 0),
        (w.WM_MBUTTONDOWN, 0, 0x112, "BTN_MIDDLE", 1),
        (w.WM_MBUTTONUP, 0, 0x112, "BTN_MIDDLE", 0),
        (w.WM_XBUTTONDOWN, w.XBUTTON1 << 16, 0x113, "BTN_SIDE", 1),
        (w.WM_XBUTTONUP, w.XBUTTON2 << 16, 0x114, "BTN_EXTRA", 0),
    ],
)
def test_buttons(wparam: int, data: int, code: int, name: str, value: int) -> None:
    (event,) = w.translate_mouse(wparam, mouse(data=data))
    assert (event["kind"], event["code"], event["name"], event["value"]) == ("button", code, name, value)


@pytest.mark.parametrize(
    ("wparam", "delta", "name", "value"),
    [
        (w.WM_MOUSEWHEEL, 120, "REL_WHEEL", 1),
        (w.WM_MOUSEWHEEL, -240, "REL_WHEEL", -2),
        (w.WM_MOUSEWHEEL, 30, "REL_WHEEL", 1),  # partial notch of a smooth wheel still counts
        (w.WM_MOUSEHWHEEL, -120, "REL_HWHEEL", -1),
    ],
)
def test_wheel_delta_in_the_high_word_becomes_notches(wparam: int, delta: int, name: str, value: int) -> None:
    data = (delta & 0xFFFF) << 16  # mouseData high word, signed
    (event,) = w.translate_mouse(wparam, mouse(data=data))
    assert (event["kind"], event["name"], event["value"], event["wheel_delta"]) == ("rel", name, value, delta)


def test_injected_mouse_flag_and_unknown_messages() -> None:
    (event,) = w.translate_mouse(w.WM_LBUTTONDOWN, mouse(flags=w.LLMHF_INJECTED))
    assert event["injected"] is True
    assert w.translate_mouse(0x0203, mouse()) == []  # WM_LBUTTONDBLCLK never reaches a low-level hook


def test_the_hook_capture_reports_its_devices_without_windows() -> None:
    capture = w.WindowsCapture(kinds=frozenset({"key"}))
    assert capture.devices() == [
        {"path": w.KEYBOARD_DEVICE, "name": "low-level keyboard hook", "classes": ["keyboard"]}
    ]
    assert not capture.ready
