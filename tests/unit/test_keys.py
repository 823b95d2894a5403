from __future__ import annotations

import pytest

from ATPLibrary.errors import KeyMapError
from ATPLibrary.keys import DEFAULT_KEYMAP, KEYS, US, KeyMap, combo_actions

PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]
SHIFTED = set('ABCDEFGHIJKLMNOPQRSTUVWXYZ!@#$%^&*()_+{}|:"<>?~')


def test_every_printable_ascii_char_newline_and_tab_map() -> None:
    for char in [*PRINTABLE, "\n", "\t"]:
        stroke = US.stroke(char)
        assert stroke.key.qcode, char
        assert stroke.shift == (char in SHIFTED), char


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
        KeyMap([*KEYS[:3], KEYS[0].__class__("X", "x_qcode", (KEYS[0].name,))])
