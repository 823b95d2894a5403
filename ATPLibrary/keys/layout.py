"""Keyboard layouts: which key (and whether shift) types a character."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ATPLibrary.errors import KeyMapError
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KeyMap, KeyRecord


@dataclass(frozen=True)
class Stroke:
    """One character's key: ``key`` pressed with ``shift`` held or not."""

    char: str
    key: KeyRecord
    shift: bool = False


@dataclass(frozen=True)
class KeyAction:
    """A key going down or up."""

    key: KeyRecord
    down: bool


class Layout:
    """A character → (key name, shift) table resolved against a :class:`KeyMap`."""

    def __init__(
        self, name: str, table: Mapping[str, tuple[str, bool]], keymap: KeyMap = DEFAULT_KEYMAP
    ) -> None:
        self.name = name
        self.keymap = keymap
        self.shift_key = keymap.get("SHIFT")
        self._strokes = {ch: Stroke(ch, keymap.get(key), shift) for ch, (key, shift) in table.items()}

    def __contains__(self, char: object) -> bool:
        return char in self._strokes

    def stroke(self, char: str) -> Stroke:
        try:
            return self._strokes[char]
        except KeyError:
            raise KeyMapError(self._cannot_type(char, None)) from None

    def _cannot_type(self, char: str, index: int | None, secret: bool = False) -> str:
        where = f" at position {index + 1}" if index is not None else ""
        what = "a character" if secret else f"the character {char!r} (U+{ord(char):04X})"
        return (
            f"The {self.name} layout cannot type {what}{where}. "
            f"Printable ASCII, newline and tab are supported."
        )

    def strokes(self, text: str, *, secret: bool = False) -> list[Stroke]:
        """Strokes for every character, checked before anything is sent (KeyMapError names the first bad one).

        With ``secret`` the error message gives the position only, never the character.
        """
        result: list[Stroke] = []
        for index, char in enumerate(text):
            stroke = self._strokes.get(char)
            if stroke is None:
                raise KeyMapError(self._cannot_type(char, index, secret))
            result.append(stroke)
        return result

    def actions(self, stroke: Stroke) -> list[KeyAction]:
        """``shift down, key down, key up, shift up`` for a shifted stroke, else ``key down, key up``."""
        press = [KeyAction(stroke.key, True), KeyAction(stroke.key, False)]
        if stroke.shift:
            return [KeyAction(self.shift_key, True), *press, KeyAction(self.shift_key, False)]
        return press


def combo_actions(keys: list[KeyRecord]) -> tuple[list[KeyAction], list[KeyAction]]:
    """For a combo: every key down in order, then every key up in reverse order."""
    return [KeyAction(k, True) for k in keys], [KeyAction(k, False) for k in reversed(keys)]


def _us_table() -> dict[str, tuple[str, bool]]:
    table: dict[str, tuple[str, bool]] = {}
    for c in "abcdefghijklmnopqrstuvwxyz":
        table[c] = (c, False)
        table[c.upper()] = (c, True)
    for d in "0123456789":
        table[d] = (d, False)
    for char, shifted, key in (
        ("`", "~", "grave_accent"),
        ("-", "_", "minus"),
        ("=", "+", "equal"),
        ("[", "{", "bracket_left"),
        ("]", "}", "bracket_right"),
        ("\\", "|", "backslash"),
        (";", ":", "semicolon"),
        ("'", '"', "apostrophe"),
        (",", "<", "comma"),
        (".", ">", "dot"),
        ("/", "?", "slash"),
    ):
        table[char] = (key, False)
        table[shifted] = (key, True)
    for shifted, digit in zip(")!@#$%^&*(", "0123456789", strict=True):
        table[shifted] = (digit, True)
    table[" "] = ("spc", False)
    table["\n"] = ("ret", False)
    table["\t"] = ("tab", False)
    return table


US = Layout("US", _us_table())

LAYOUTS: dict[str, Layout] = {"us": US}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name.lower()]
    except KeyError:
        raise KeyMapError(f"Unknown keyboard layout '{name}'. Known layouts: {', '.join(LAYOUTS)}.") from None


def iter_actions(layout: Layout, strokes: list[Stroke]) -> Iterator[list[KeyAction]]:
    """The actions of each stroke, one list per character."""
    for stroke in strokes:
        yield layout.actions(stroke)
