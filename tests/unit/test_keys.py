from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any, cast

import pytest

from ATPLibrary.errors import KeyMapError
from ATPLibrary.keys import (
    DE,
    DEFAULT_KEYMAP,
    KEYS,
    US,
    KeyMap,
    KeyRecord,
    Layout,
    combo_actions,
    get_layout,
    key_names_doc,
)
from ATPLibrary.keys.layout import LAYOUTS
from ATPLibrary.qmp import QmpKeyboard

PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]
SHIFTED = set('ABCDEFGHIJKLMNOPQRSTUVWXYZ!@#$%^&*()_+{}|:"<>?~')


def test_every_printable_ascii_char_newline_and_tab_map() -> None:
    shift = DEFAULT_KEYMAP.get("SHIFT")
    for char in [*PRINTABLE, "\n", "\t"]:
        stroke = US.stroke(char)
        assert stroke.key.qcode, char
        assert stroke.shift == (char in SHIFTED), char
        assert stroke.modifiers == ((shift,) if char in SHIFTED else ()), char


def test_shifted_punctuation_uses_the_us_base_key() -> None:
    expected = {
        "<": "comma",
        ">": "dot",
        "_": "minus",
        "+": "equal",
        "{": "bracket_left",
        "}": "bracket_right",
        "|": "backslash",
        ":": "semicolon",
        '"': "apostrophe",
        "~": "grave_accent",
        "?": "slash",
        "!": "1",
        "@": "2",
        "#": "3",
        "$": "4",
        "%": "5",
        "^": "6",
        "&": "7",
        "*": "8",
        "(": "9",
        ")": "0",
    }
    for char, qcode in expected.items():
        stroke = US.stroke(char)
        assert (stroke.key.qcode, stroke.shift) == (qcode, True), char
    assert (US.stroke(" ").key.qcode, US.stroke("\n").key.qcode, US.stroke("\t").key.qcode) == (
        "spc",
        "ret",
        "tab",
    )
    assert (US.stroke("A").key.qcode, US.stroke("A").shift) == ("a", True)
    assert (US.stroke("-").key.qcode, US.stroke("-").shift) == ("minus", False)


def test_shifted_char_actions_are_shift_down_key_down_key_up_shift_up() -> None:
    actions = [(a.key.qcode, a.down) for a in US.actions(US.stroke("<"))]
    assert actions == [("shift", True), ("comma", True), ("comma", False), ("shift", False)]


def test_repeated_letters_do_not_collapse() -> None:
    actions = [(a.key.qcode, a.down) for s in US.strokes("aabbcc  ::") for a in US.actions(s)]
    assert actions[:4] == [("a", True), ("a", False), ("a", True), ("a", False)]
    assert [a for a in actions if a == ("a", True)] == [("a", True)] * 2
    assert [a for a in actions if a == ("semicolon", True)] == [("semicolon", True)] * 2
    assert [q for q, down in actions if down and q != "shift"] == [
        "a",
        "a",
        "b",
        "b",
        "c",
        "c",
        "spc",
        "spc",
        "semicolon",
        "semicolon",
    ]
    assert len(actions) == 2 * 8 + 4 * 2


def test_untypable_character_fails_before_sending_and_names_position() -> None:
    with pytest.raises(KeyMapError, match=r"'é'.*position 3"):
        US.strokes("abé")
    with pytest.raises(KeyMapError) as info:
        US.strokes("pw\u20ac", secret=True)
    assert "\u20ac" not in str(info.value) and "position 3" in str(info.value)


@pytest.mark.parametrize(
    ("name", "qcode"),
    [
        ("ENTER", "ret"),
        ("return", "ret"),
        ("ret", "ret"),
        ("Esc", "esc"),
        ("ESCAPE", "esc"),
        ("space", "spc"),
        ("spc", "spc"),
        ("CTRL", "ctrl"),
        ("ctrl_l", "ctrl"),
        ("LEFTCTRL", "ctrl"),
        ("alt", "alt"),
        ("SHIFT", "shift"),
        ("SUPER", "meta_l"),
        ("win", "meta_l"),
        ("META_L", "meta_l"),
        ("DEL", "delete"),
        ("delete", "delete"),
        ("BACKSPACE", "backspace"),
        ("TAB", "tab"),
        ("up", "up"),
        ("DOWN", "down"),
        ("Left", "left"),
        ("RIGHT", "right"),
        ("HOME", "home"),
        ("END", "end"),
        ("PGUP", "pgup"),
        ("PGDN", "pgdn"),
        ("INSERT", "insert"),
        ("F1", "f1"),
        ("f12", "f12"),
        ("a", "a"),
        ("Z", "z"),
        ("7", "7"),
        ("minus", "minus"),
        ("-", "minus"),
        ("equal", "equal"),
        ("grave_accent", "grave_accent"),
        ("KEY_ENTER", "ret"),
    ],
)
def test_key_names_and_aliases_are_case_insensitive(name: str, qcode: str) -> None:
    assert DEFAULT_KEYMAP.get(name).qcode == qcode


def test_unknown_key_name_suggests_close_matches() -> None:
    with pytest.raises(KeyMapError, match=r"Unknown key name 'ENTRE'.*ENTER"):
        DEFAULT_KEYMAP.get("ENTRE")
    with pytest.raises(KeyMapError, match=r"BACKSPACE"):
        DEFAULT_KEYMAP.get("backspce")


def test_combo_parsing_only_plus_separates() -> None:
    assert [k.qcode for k in DEFAULT_KEYMAP.parse_combo("ctrl+alt+delete")] == ["ctrl", "alt", "delete"]
    assert [k.qcode for k in DEFAULT_KEYMAP.parse_combo("Shift+A")] == ["shift", "a"]
    assert [k.qcode for k in DEFAULT_KEYMAP.parse_combo("-")] == ["minus"]
    assert [k.qcode for k in DEFAULT_KEYMAP.parse_combo("ctrl+-")] == ["ctrl", "minus"]
    with pytest.raises(KeyMapError):
        DEFAULT_KEYMAP.parse_combo("ctrl-alt-delete")
    with pytest.raises(KeyMapError, match="Malformed"):
        DEFAULT_KEYMAP.parse_combo("ctrl++")
    with pytest.raises(KeyMapError, match="twice"):
        DEFAULT_KEYMAP.parse_combo("ctrl+control+c")


def test_combo_actions_release_in_reverse_order() -> None:
    downs, ups = combo_actions(DEFAULT_KEYMAP.parse_combo("ctrl+alt+delete"))
    assert [(a.key.qcode, a.down) for a in downs] == [("ctrl", True), ("alt", True), ("delete", True)]
    assert [(a.key.qcode, a.down) for a in ups] == [("delete", False), ("alt", False), ("ctrl", False)]


def test_key_table_is_one_consistent_table() -> None:
    keymap = KeyMap(KEYS)
    assert len({k.qcode for k in KEYS}) == len(KEYS)
    assert all(keymap.by_qcode(k.qcode) is k for k in KEYS)
    with pytest.raises(ValueError, match="names both"):
        KeyMap([*KEYS[:3], replace(KEYS[50], name="X", qcode="x_qcode", aliases=(KEYS[0].name,))])


# --- the codes of every key ------------------------------------------------------------------------------------

#: QKeyCode of QEMU 7.2 (qapi/ui.json): the current list without f13-f24, which are "since 8.0".
QEMU_7_2_QCODES = frozenset(
    [
        "unmapped",
        "shift",
        "shift_r",
        "alt",
        "alt_r",
        "ctrl",
        "ctrl_r",
        "menu",
        "esc",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "0",
        "minus",
        "equal",
        "backspace",
        "tab",
        "q",
        "w",
        "e",
        "r",
        "t",
        "y",
        "u",
        "i",
        "o",
        "p",
        "bracket_left",
        "bracket_right",
        "ret",
        "a",
        "s",
        "d",
        "f",
        "g",
        "h",
        "j",
        "k",
        "l",
        "semicolon",
        "apostrophe",
        "grave_accent",
        "backslash",
        "z",
        "x",
        "c",
        "v",
        "b",
        "n",
        "m",
        "comma",
        "dot",
        "slash",
        "asterisk",
        "spc",
        "caps_lock",
        "f1",
        "f2",
        "f3",
        "f4",
        "f5",
        "f6",
        "f7",
        "f8",
        "f9",
        "f10",
        "num_lock",
        "scroll_lock",
        "kp_divide",
        "kp_multiply",
        "kp_subtract",
        "kp_add",
        "kp_enter",
        "kp_decimal",
        "sysrq",
        "kp_0",
        "kp_1",
        "kp_2",
        "kp_3",
        "kp_4",
        "kp_5",
        "kp_6",
        "kp_7",
        "kp_8",
        "kp_9",
        "less",
        "f11",
        "f12",
        "print",
        "home",
        "pgup",
        "pgdn",
        "end",
        "left",
        "up",
        "down",
        "right",
        "insert",
        "delete",
        "stop",
        "again",
        "props",
        "undo",
        "front",
        "copy",
        "open",
        "paste",
        "find",
        "cut",
        "lf",
        "help",
        "meta_l",
        "meta_r",
        "compose",
        "pause",
        "ro",
        "hiragana",
        "henkan",
        "yen",
        "muhenkan",
        "katakanahiragana",
        "kp_comma",
        "kp_equals",
        "power",
        "sleep",
        "wake",
        "audionext",
        "audioprev",
        "audiostop",
        "audioplay",
        "audiomute",
        "volumeup",
        "volumedown",
        "mediaselect",
        "mail",
        "calculator",
        "computer",
        "ac_home",
        "ac_back",
        "ac_forward",
        "ac_refresh",
        "ac_bookmarks",
        "lang1",
        "lang2",
    ]
)

#: Every key of a US 104-key keyboard plus the 102nd key of the 105-key (ISO) keyboard.
PC105_KEYS = [
    *"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    *[
        "MINUS",
        "EQUAL",
        "BRACKET_LEFT",
        "BRACKET_RIGHT",
        "BACKSLASH",
        "SEMICOLON",
        "APOSTROPHE",
        "GRAVE_ACCENT",
        "COMMA",
        "DOT",
        "SLASH",
    ],
    "LESS",
    *(f"F{n}" for n in range(1, 13)),
    *[
        "ESC",
        "TAB",
        "CAPS_LOCK",
        "ENTER",
        "BACKSPACE",
        "SPACE",
        "SHIFT",
        "SHIFT_R",
        "CTRL",
        "CTRL_R",
        "ALT",
        "ALT_R",
        "SUPER",
        "SUPER_R",
        "MENU",
    ],
    *[
        "INSERT",
        "DELETE",
        "HOME",
        "END",
        "PGUP",
        "PGDN",
        "UP",
        "DOWN",
        "LEFT",
        "RIGHT",
        "PRINT",
        "SCROLL_LOCK",
        "PAUSE",
        "NUM_LOCK",
    ],
    *(f"KP_{n}" for n in range(10)),
    *["KP_DECIMAL", "KP_DIVIDE", "KP_MULTIPLY", "KP_SUBTRACT", "KP_ADD", "KP_ENTER"],
]


def key(name: str) -> KeyRecord:
    return DEFAULT_KEYMAP.get(name)


def test_table_covers_the_pc105_keyboard_with_valid_qemu_7_2_qcodes() -> None:
    assert len(PC105_KEYS) == 105
    names = {k.name for k in KEYS}
    assert [n for n in PC105_KEYS if n not in names] == []
    assert [k.qcode for k in KEYS if k.qcode not in QEMU_7_2_QCODES] == []
    assert {k.name for k in KEYS if k.modifier} == {
        "SHIFT",
        "SHIFT_R",
        "CTRL",
        "CTRL_R",
        "ALT",
        "ALT_R",
        "SUPER",
        "SUPER_R",
    }


def test_codes_are_unique_except_the_documented_shared_vk() -> None:
    for what, codes in (
        ("qcode", [k.qcode for k in KEYS]),
        ("evdev", [k.evdev for k in KEYS]),
        ("evdev name", [k.evdev_name for k in KEYS]),
        ("set-1", [(k.set1, k.extended) for k in KEYS]),
        ("name", [k.name for k in KEYS]),
    ):
        assert [c for c, n in Counter(codes).items() if n > 1] == [], what
    shared_vk = {vk: sorted(k.name for k in KEYS if k.vk == vk) for vk, n in Counter(k.vk for k in KEYS).items()}
    assert {vk: names for vk, names in shared_vk.items() if vk is not None and len(names) > 1} == {
        0x0D: ["ENTER", "KP_ENTER"]
    }
    assert sorted(k.name for k in KEYS if k.vk is None) == ["KP_EQUALS", "POWER", "WAKE"]


@pytest.mark.parametrize(
    ("name", "evdev_name", "evdev"),
    [
        ("A", "KEY_A", 30),
        ("ENTER", "KEY_ENTER", 28),
        ("SHIFT", "KEY_LEFTSHIFT", 42),
        ("SHIFT_R", "KEY_RIGHTSHIFT", 54),
        ("CTRL", "KEY_LEFTCTRL", 29),
        ("CTRL_R", "KEY_RIGHTCTRL", 97),
        ("ALT", "KEY_LEFTALT", 56),
        ("ALT_R", "KEY_RIGHTALT", 100),
        ("SUPER", "KEY_LEFTMETA", 125),
        ("SUPER_R", "KEY_RIGHTMETA", 126),
        ("MENU", "KEY_COMPOSE", 127),
        ("ESC", "KEY_ESC", 1),
        ("1", "KEY_1", 2),
        ("0", "KEY_0", 11),
        ("Q", "KEY_Q", 16),
        ("P", "KEY_P", 25),
        ("L", "KEY_L", 38),
        ("Z", "KEY_Z", 44),
        ("M", "KEY_M", 50),
        ("MINUS", "KEY_MINUS", 12),
        ("EQUAL", "KEY_EQUAL", 13),
        ("BACKSPACE", "KEY_BACKSPACE", 14),
        ("TAB", "KEY_TAB", 15),
        ("BRACKET_LEFT", "KEY_LEFTBRACE", 26),
        ("BRACKET_RIGHT", "KEY_RIGHTBRACE", 27),
        ("SEMICOLON", "KEY_SEMICOLON", 39),
        ("APOSTROPHE", "KEY_APOSTROPHE", 40),
        ("GRAVE_ACCENT", "KEY_GRAVE", 41),
        ("BACKSLASH", "KEY_BACKSLASH", 43),
        ("COMMA", "KEY_COMMA", 51),
        ("DOT", "KEY_DOT", 52),
        ("SLASH", "KEY_SLASH", 53),
        ("SPACE", "KEY_SPACE", 57),
        ("CAPS_LOCK", "KEY_CAPSLOCK", 58),
        ("F1", "KEY_F1", 59),
        ("F10", "KEY_F10", 68),
        ("F11", "KEY_F11", 87),
        ("F12", "KEY_F12", 88),
        ("NUM_LOCK", "KEY_NUMLOCK", 69),
        ("SCROLL_LOCK", "KEY_SCROLLLOCK", 70),
        ("KP_7", "KEY_KP7", 71),
        ("KP_SUBTRACT", "KEY_KPMINUS", 74),
        ("KP_ADD", "KEY_KPPLUS", 78),
        ("KP_0", "KEY_KP0", 82),
        ("KP_DECIMAL", "KEY_KPDOT", 83),
        ("KP_MULTIPLY", "KEY_KPASTERISK", 55),
        ("KP_DIVIDE", "KEY_KPSLASH", 98),
        ("KP_ENTER", "KEY_KPENTER", 96),
        ("KP_EQUALS", "KEY_KPEQUAL", 117),
        ("LESS", "KEY_102ND", 86),
        ("PRINT", "KEY_SYSRQ", 99),
        ("PAUSE", "KEY_PAUSE", 119),
        ("HOME", "KEY_HOME", 102),
        ("UP", "KEY_UP", 103),
        ("PGUP", "KEY_PAGEUP", 104),
        ("LEFT", "KEY_LEFT", 105),
        ("RIGHT", "KEY_RIGHT", 106),
        ("END", "KEY_END", 107),
        ("DOWN", "KEY_DOWN", 108),
        ("PGDN", "KEY_PAGEDOWN", 109),
        ("INSERT", "KEY_INSERT", 110),
        ("DELETE", "KEY_DELETE", 111),
        ("AUDIOMUTE", "KEY_MUTE", 113),
        ("POWER", "KEY_POWER", 116),
        ("SLEEP", "KEY_SLEEP", 142),
        ("WAKE", "KEY_WAKEUP", 143),
    ],
)
def test_evdev_codes_match_linux_input_event_codes_h(name: str, evdev_name: str, evdev: int) -> None:
    rec = key(name)
    assert (rec.evdev_name, rec.evdev) == (evdev_name, evdev)


@pytest.mark.parametrize(
    ("name", "set1", "extended"),
    [
        ("A", 0x1E, False),
        ("ESC", 0x01, False),
        ("1", 0x02, False),
        ("BACKSPACE", 0x0E, False),
        ("ENTER", 0x1C, False),
        ("KP_ENTER", 0x1C, True),
        ("CTRL", 0x1D, False),
        ("CTRL_R", 0x1D, True),
        ("SHIFT", 0x2A, False),
        ("SHIFT_R", 0x36, False),
        ("ALT", 0x38, False),
        ("ALT_R", 0x38, True),
        ("SUPER", 0x5B, True),
        ("SUPER_R", 0x5C, True),
        ("MENU", 0x5D, True),
        ("SPACE", 0x39, False),
        ("CAPS_LOCK", 0x3A, False),
        ("F1", 0x3B, False),
        ("F10", 0x44, False),
        ("F11", 0x57, False),
        ("F12", 0x58, False),
        ("LESS", 0x56, False),
        ("GRAVE_ACCENT", 0x29, False),
        ("BACKSLASH", 0x2B, False),
        ("UP", 0x48, True),
        ("DOWN", 0x50, True),
        ("LEFT", 0x4B, True),
        ("RIGHT", 0x4D, True),
        ("HOME", 0x47, True),
        ("END", 0x4F, True),
        ("PGUP", 0x49, True),
        ("PGDN", 0x51, True),
        ("INSERT", 0x52, True),
        ("DELETE", 0x53, True),
        ("NUM_LOCK", 0x45, False),
        ("SCROLL_LOCK", 0x46, False),
        ("PAUSE", 0x46, True),
        ("PRINT", 0x37, True),
        ("KP_MULTIPLY", 0x37, False),
        ("KP_DIVIDE", 0x35, True),
        ("KP_SUBTRACT", 0x4A, False),
        ("KP_ADD", 0x4E, False),
        ("KP_0", 0x52, False),
        ("KP_7", 0x47, False),
        ("KP_DECIMAL", 0x53, False),
    ],
)
def test_set1_make_codes(name: str, set1: int, extended: bool) -> None:
    rec = key(name)
    assert (rec.set1, rec.extended) == (set1, extended)
    assert rec.set1_code == (0xE000 | set1 if extended else set1)


def test_set1_make_and_break_bytes() -> None:
    assert (key("LEFT").set1_make(), key("LEFT").set1_break()) == (b"\xe0\x4b", b"\xe0\xcb")
    assert (key("A").set1_make(), key("A").set1_break()) == (b"\x1e", b"\x9e")
    assert (key("KP_ENTER").set1_make(), key("KP_ENTER").set1_break()) == (b"\xe0\x1c", b"\xe0\x9c")
    for rec in KEYS:
        if rec.name in ("PRINT", "PAUSE"):
            continue
        make, brk = rec.set1_make(), rec.set1_break()
        assert make == (bytes([0xE0, rec.set1]) if rec.extended else bytes([rec.set1])), rec.name
        assert brk == make[:-1] + bytes([make[-1] | 0x80]), rec.name
    # the two irregular keys, as a PC/AT keyboard (and QEMU's PS/2 keyboard) send them when pressed alone
    assert (key("PRINT").set1_make(), key("PRINT").set1_break()) == (b"\xe0\x2a\xe0\x37", b"\xe0\xb7\xe0\xaa")
    assert (key("PAUSE").set1_make(), key("PAUSE").set1_break()) == (b"\xe1\x1d\x45\xe1\x9d\xc5", b"")


@pytest.mark.parametrize(
    ("name", "vk"),
    [
        ("A", 0x41),
        ("Z", 0x5A),
        ("0", 0x30),
        ("9", 0x39),
        ("ENTER", 0x0D),
        ("KP_ENTER", 0x0D),
        ("ESC", 0x1B),
        ("BACKSPACE", 0x08),
        ("TAB", 0x09),
        ("SPACE", 0x20),
        ("CAPS_LOCK", 0x14),
        ("PAUSE", 0x13),
        ("PGUP", 0x21),
        ("PGDN", 0x22),
        ("END", 0x23),
        ("HOME", 0x24),
        ("LEFT", 0x25),
        ("UP", 0x26),
        ("RIGHT", 0x27),
        ("DOWN", 0x28),
        ("PRINT", 0x2C),
        ("INSERT", 0x2D),
        ("DELETE", 0x2E),
        ("SUPER", 0x5B),
        ("SUPER_R", 0x5C),
        ("MENU", 0x5D),
        ("KP_0", 0x60),
        ("KP_9", 0x69),
        ("KP_MULTIPLY", 0x6A),
        ("KP_ADD", 0x6B),
        ("KP_SUBTRACT", 0x6D),
        ("KP_DECIMAL", 0x6E),
        ("KP_DIVIDE", 0x6F),
        ("F1", 0x70),
        ("F12", 0x7B),
        ("NUM_LOCK", 0x90),
        ("SCROLL_LOCK", 0x91),
        ("SHIFT", 0xA0),
        ("SHIFT_R", 0xA1),
        ("CTRL", 0xA2),
        ("CTRL_R", 0xA3),
        ("ALT", 0xA4),
        ("ALT_R", 0xA5),
        ("SEMICOLON", 0xBA),
        ("EQUAL", 0xBB),
        ("COMMA", 0xBC),
        ("MINUS", 0xBD),
        ("DOT", 0xBE),
        ("SLASH", 0xBF),
        ("GRAVE_ACCENT", 0xC0),
        ("BRACKET_LEFT", 0xDB),
        ("BACKSLASH", 0xDC),
        ("BRACKET_RIGHT", 0xDD),
        ("APOSTROPHE", 0xDE),
        ("LESS", 0xE2),
        ("AUDIOMUTE", 0xAD),
        ("SLEEP", 0x5F),
    ],
)
def test_windows_virtual_key_codes(name: str, vk: int) -> None:
    assert key(name).vk == vk


def test_every_reverse_lookup_round_trips() -> None:
    km = DEFAULT_KEYMAP
    for rec in KEYS:
        assert km.by_qcode(rec.qcode) is rec
        assert km.by_evdev(rec.evdev) is rec
        assert km.by_evdev_name(rec.evdev_name) is rec
        assert km.by_evdev_name(rec.evdev_name.lower()) is rec
        assert km.by_evdev_name(rec.evdev_name[4:]) is rec
        assert km.by_set1(rec.set1, rec.extended) is rec
        assert km.by_set1(rec.set1_code) is rec
        if rec.vk is not None:
            assert km.by_vk(rec.vk) is (km.get("ENTER") if rec.vk == 0x0D else rec)
        for name in (rec.name, rec.qcode, rec.evdev_name, *rec.aliases):
            assert km.get(name) is rec, name
        assert km.get(rec.name.lower()) is rec


def test_reverse_lookup_synonyms_and_errors() -> None:
    km = DEFAULT_KEYMAP
    assert km.by_qcode("sysrq") is key("PRINT")
    assert km.by_qcode("asterisk") is key("KP_MULTIPLY")
    assert km.by_set1(0x54) is key("PRINT")  # Alt+Print Screen (SysRq)
    assert km.by_set1(0x46) is key("SCROLL_LOCK")
    assert km.by_set1(0x46, True) is km.by_set1(0xE046) is key("PAUSE")
    assert (km.by_vk(0x10), km.by_vk(0x11), km.by_vk(0x12)) == (key("SHIFT"), key("CTRL"), key("ALT"))
    assert km.get("SYSRQ") is km.get("print") is key("PRINT")
    assert km.get("KEY_KP0") is km.get("kp0") is key("KP_0")
    assert km.get("key_102nd") is key("LESS")
    for call, pattern in (
        (lambda: km.by_qcode("f13"), "qcode 'f13'"),
        (lambda: km.by_evdev(0), "evdev key code 0"),
        (lambda: km.by_evdev_name("KEY_MENU"), "KEY_MENU"),
        (lambda: km.by_set1(0x1C, True) and km.by_set1(0x7F), "7F"),
        (lambda: km.by_set1(0xE1_1D), "neither"),
        (lambda: km.by_set1(0x60, True), "E0 60"),
        (lambda: km.by_vk(0xFF), "0xff"),
    ):
        with pytest.raises(KeyMapError, match=pattern):
            call()


def test_key_map_rejects_inconsistent_tables() -> None:
    a, b = key("A"), key("B")
    with pytest.raises(ValueError, match="evdev code 30"):
        KeyMap([a, replace(b, evdev=30)])
    with pytest.raises(ValueError, match="set-1 code"):
        KeyMap([a, replace(b, set1=0x1E)])
    with pytest.raises(ValueError, match="qcode 'a'"):
        KeyMap([a, replace(b, qcode="a")])
    with pytest.raises(ValueError, match=r"not in 0x01\.\.0x7F"):
        replace(a, set1=0x9E)
    assert KeyMap([a, replace(b, vk=0x41)]).by_vk(0x41) is a  # a shared VK finds the first key


# --- layouts ---------------------------------------------------------------------------------------------------


def test_layout_registry() -> None:
    assert get_layout("us") is get_layout("US") is US
    assert get_layout("de") is get_layout("German") is DE
    with pytest.raises(KeyMapError, match=r"Unknown keyboard layout 'fr'\. Known layouts: de, german, us\."):
        get_layout("fr")
    custom = Layout("XX", {"x": ("x", ("shift", "alt_r"))})
    try:
        assert Layout.register(custom, "xx-test") is custom
        assert get_layout("xx") is get_layout("XX-TEST") is custom
        with pytest.raises(ValueError, match="already registered"):
            Layout.register(Layout("us", {"a": "a"}))
        assert get_layout("us") is US
    finally:
        LAYOUTS.pop("xx", None)
        LAYOUTS.pop("xx-test", None)


def test_modifiers_go_down_in_order_and_up_in_reverse() -> None:
    layout = Layout("XX", {"x": ("x", ("shift", "alt_r")), "y": ("y", "CTRL"), "z": "z"})
    actions = [(a.key.qcode, a.down) for a in layout.actions(layout.stroke("x"))]
    assert actions == [
        ("shift", True),
        ("alt_r", True),
        ("x", True),
        ("x", False),
        ("alt_r", False),
        ("shift", False),
    ]
    assert layout.stroke("x").shift and not layout.stroke("y").shift
    assert [(a.key.qcode, a.down) for a in layout.actions(layout.stroke("z"))] == [("z", True), ("z", False)]
    with pytest.raises(KeyMapError, match="not a modifier"):
        Layout("XX", {"x": ("x", ("a",))})
    with pytest.raises(KeyMapError, match="Unknown key name 'nope'"):
        Layout("XX", {"x": ("nope", True)})


def test_german_layout() -> None:
    shift, altgr = key("SHIFT"), key("ALT_R")
    for char in [*PRINTABLE, "\n", "\t", *"äöüÄÖÜß§°€²³µ"]:
        if char in "^`":
            assert char not in DE
            continue
        assert char in DE, char
    expected = {
        "z": ("y", ()),
        "Y": ("z", (shift,)),
        "ß": ("minus", ()),
        "?": ("minus", (shift,)),
        '"': ("2", (shift,)),
        "=": ("0", (shift,)),
        "#": ("backslash", ()),
        "'": ("backslash", (shift,)),
        "-": ("slash", ()),
        "ö": ("semicolon", ()),
        "+": ("bracket_right", ()),
        "*": ("bracket_right", (shift,)),
        "<": ("less", ()),
        ">": ("less", (shift,)),
        "@": ("q", (altgr,)),
        "\\": ("minus", (altgr,)),
        "{": ("7", (altgr,)),
        "}": ("0", (altgr,)),
        "~": ("bracket_right", (altgr,)),
        "|": ("less", (altgr,)),
        "€": ("e", (altgr,)),
    }
    for char, (qcode, mods) in expected.items():
        stroke = DE.stroke(char)
        assert (stroke.key.qcode, stroke.modifiers) == (qcode, mods), char
    actions = [(a.key.qcode, a.down) for a in DE.actions(DE.stroke("|"))]
    assert actions == [("alt_r", True), ("less", True), ("less", False), ("alt_r", False)]
    with pytest.raises(KeyMapError, match=r"DE layout cannot type .*'\^'.*dead keys"):
        DE.strokes("a^b")


class _RecordingMonitor:
    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def send_input_events(self, events: list[dict[str, Any]]) -> int:
        assert len(events) <= 60
        self.batches.append(list(events))
        return 1


def test_typing_never_splits_a_character_or_exceeds_48_events() -> None:
    monitor = _RecordingMonitor()
    layout = Layout("XX", {"x": ("x", ("shift", "alt_r")), "a": "a"})  # 6 and 2 events per character
    text = "x" * 12 + "a" * 20
    commands = QmpKeyboard(cast(Any, monitor), layout=layout).type_text(text)
    assert commands == len(monitor.batches)
    assert [len(b) for b in monitor.batches] == [8 * 6, 4 * 6 + 8 * 2, 12 * 2]
    seq = [(e["data"]["key"]["data"], e["data"]["down"]) for b in monitor.batches for e in b]
    assert seq[:6] == [("shift", True), ("alt_r", True), ("x", True), ("x", False), ("alt_r", False), ("shift", False)]
    assert [q for q, down in seq if down and q in "xa"] == list(text)
    for batch in monitor.batches:  # every batch ends with all keys up
        held: set[str] = set()
        for e in batch:
            (held.add if e["data"]["down"] else held.discard)(e["data"]["key"]["data"])
        assert held == set()


# --- documentation ---------------------------------------------------------------------------------------------


def test_key_names_doc_is_a_libdoc_table_of_every_key() -> None:
    from robot.utils import html_format

    doc = key_names_doc()
    lines = doc.splitlines()
    assert lines[0] == "| =Name= | =Aliases= | =qcode= | =evdev= | =Set 1= | =VK= |"
    assert len(lines) == len(KEYS) + 1
    assert "| ENTER | RETURN | ret | KEY_ENTER (28) | 1C | 0x0D |" in lines
    assert "| UP | ARROW_UP, UP_ARROW | up | KEY_UP (103) | E0 48 | 0x26 |" in lines
    assert "| KP_EQUALS | KP_EQUAL | kp_equals | KEY_KPEQUAL (117) | 59 | - |" in lines
    html = html_format(doc)
    assert html.count("<tr>") == len(KEYS) + 1
    assert html.count("<th>") == 6
    assert html.count("<td>") == 6 * len(KEYS)
    assert "<b>" not in html and "<i>" not in html and "<a " not in html
    assert "<td><code>-</code>, DASH, HYPHEN</td>" in html
    assert all(line.count("`") <= 1 or "``" in line for line in lines)  # no stray libdoc `links`
