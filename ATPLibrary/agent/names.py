"""Names of Linux input events: keys through the one key map, buttons and axes from small tables here.

Everything is precomputed once into dicts, so naming an event is one lookup.
"""

from __future__ import annotations

from ATPLibrary.keys.keymap import DEFAULT_KEYMAP
from ATPLibrary.verification import protocol

# linux/input-event-codes.h
EV_SYN = 0x00
EV_KEY = 0x01
EV_REL = 0x02
EV_ABS = 0x03
EV_MSC = 0x04
SYN_REPORT = 0
SYN_DROPPED = 3
KEY_A = 30
KEY_MAX = 0x2FF
REL_MAX = 0x0F
ABS_MAX = 0x3F
BTN_MISC = 0x100
BTN_LEFT = 0x110
BTN_RIGHT = 0x111
BTN_MIDDLE = 0x112
BTN_SIDE = 0x113
BTN_EXTRA = 0x114
KEY_OK = 0x160  # first key code after the BTN_* block 0x100..0x15f
BTN_TRIGGER_HAPPY = 0x2C0
REL_X = 0x00
REL_Y = 0x01
REL_HWHEEL = 0x06
REL_WHEEL = 0x08
ABS_X = 0x00
ABS_Y = 0x01

BUTTON_NAMES: dict[int, str] = {
    **{0x100 + i: f"BTN_{i}" for i in range(10)},
    0x110: "BTN_LEFT",
    0x111: "BTN_RIGHT",
    0x112: "BTN_MIDDLE",
    0x113: "BTN_SIDE",
    0x114: "BTN_EXTRA",
    0x115: "BTN_FORWARD",
    0x116: "BTN_BACK",
    0x117: "BTN_TASK",
    0x120: "BTN_TRIGGER",
    0x130: "BTN_SOUTH",
    0x131: "BTN_EAST",
    0x133: "BTN_NORTH",
    0x134: "BTN_WEST",
    0x140: "BTN_TOOL_PEN",
    0x141: "BTN_TOOL_RUBBER",
    0x145: "BTN_TOOL_FINGER",
    0x146: "BTN_TOOL_MOUSE",
    0x14A: "BTN_TOUCH",
    0x14B: "BTN_STYLUS",
    0x14C: "BTN_STYLUS2",
    0x14D: "BTN_TOOL_DOUBLETAP",
    0x14E: "BTN_TOOL_TRIPLETAP",
    0x14F: "BTN_TOOL_QUADTAP",
    0x150: "BTN_GEAR_DOWN",
    0x151: "BTN_GEAR_UP",
}

REL_NAMES: dict[int, str] = {
    0x00: "REL_X",
    0x01: "REL_Y",
    0x02: "REL_Z",
    0x03: "REL_RX",
    0x04: "REL_RY",
    0x05: "REL_RZ",
    0x06: "REL_HWHEEL",
    0x07: "REL_DIAL",
    0x08: "REL_WHEEL",
    0x09: "REL_MISC",
    0x0B: "REL_WHEEL_HI_RES",
    0x0C: "REL_HWHEEL_HI_RES",
}

ABS_NAMES: dict[int, str] = {
    0x00: "ABS_X",
    0x01: "ABS_Y",
    0x02: "ABS_Z",
    0x03: "ABS_RX",
    0x04: "ABS_RY",
    0x05: "ABS_RZ",
    0x06: "ABS_THROTTLE",
    0x07: "ABS_RUDDER",
    0x08: "ABS_WHEEL",
    0x09: "ABS_GAS",
    0x0A: "ABS_BRAKE",
    0x10: "ABS_HAT0X",
    0x11: "ABS_HAT0Y",
    0x18: "ABS_PRESSURE",
    0x19: "ABS_DISTANCE",
    0x1A: "ABS_TILT_X",
    0x1B: "ABS_TILT_Y",
    0x1C: "ABS_TOOL_WIDTH",
    0x20: "ABS_VOLUME",
    0x28: "ABS_MISC",
    0x2F: "ABS_MT_SLOT",
    0x30: "ABS_MT_TOUCH_MAJOR",
    0x31: "ABS_MT_TOUCH_MINOR",
    0x35: "ABS_MT_POSITION_X",
    0x36: "ABS_MT_POSITION_Y",
    0x39: "ABS_MT_TRACKING_ID",
    0x3A: "ABS_MT_PRESSURE",
}


def is_button(code: int) -> bool:
    """Whether an EV_KEY code is a button (``BTN_*``: 0x100-0x15f and the trigger-happy block), not a key."""
    return BTN_MISC <= code < KEY_OK or BTN_TRIGGER_HAPPY <= code < BTN_TRIGGER_HAPPY + 0x28


def _key_table() -> dict[int, tuple[str, str]]:
    table: dict[int, tuple[str, str]] = {}
    for code in range(KEY_MAX + 1):
        if is_button(code):
            table[code] = (protocol.KIND_BUTTON, BUTTON_NAMES.get(code, f"BTN_{code:#05x}"))
        else:
            table[code] = (protocol.KIND_KEY, f"KEY_{code:#05x}")
    for record in DEFAULT_KEYMAP:
        table[record.evdev] = (protocol.KIND_KEY, record.evdev_name)
    return table


#: EV_KEY code → (kind, name): ``28 → ("key", "KEY_ENTER")``, ``0x110 → ("button", "BTN_LEFT")``; codes the
#: key map does not know are named ``KEY_0x0..`` (never a bare number, which would read like ``KEY_1``).
KEY_TABLE: dict[int, tuple[str, str]] = _key_table()


def key_kind_and_name(code: int) -> tuple[str, str]:
    """(kind, name) of an EV_KEY code."""
    found = KEY_TABLE.get(code)
    if found is not None:
        return found
    return (protocol.KIND_BUTTON, f"BTN_{code:#05x}") if is_button(code) else (protocol.KIND_KEY, f"KEY_{code:#05x}")


def rel_name(code: int) -> str:
    return REL_NAMES.get(code) or f"REL_{code:#04x}"


def abs_name(code: int) -> str:
    return ABS_NAMES.get(code) or f"ABS_{code:#04x}"
