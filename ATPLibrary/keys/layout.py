"""Keyboard layouts: which key, with which modifiers held, types a character.

A :class:`Layout` maps characters to :class:`Stroke` objects (a key of the key map plus a tuple of modifier
keys, e.g. ``(SHIFT,)`` or ``(ALT_R,)`` for AltGr).  Layouts are pluggable: build one from a table and
:meth:`Layout.register` it; :func:`get_layout` finds registered layouts by name (case-insensitive).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from ATPLibrary.errors import KeyMapError
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KeyMap, KeyRecord

#: A layout table entry: a key name alone, or ``(key name, modifiers)`` where modifiers is ``True``
#: (Shift), ``False`` (none), one modifier name or a sequence of modifier names (pressed in that order).
LayoutEntry = str | tuple[str, bool | str | Sequence[str]]

#: The ASCII characters a layout with full ASCII coverage types, besides newline and tab.
PRINTABLE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))


@dataclass(frozen=True)
class Stroke:
    """One character's key: ``key`` pressed while ``modifiers`` are held (pressed in order)."""

    char: str
    key: KeyRecord
    modifiers: tuple[KeyRecord, ...] = ()

    @property
    def shift(self) -> bool:
        """Whether a Shift key is among the modifiers."""
        return any(m.qcode in ("shift", "shift_r") for m in self.modifiers)


@dataclass(frozen=True)
class KeyAction:
    """A key going down or up."""

    key: KeyRecord
    down: bool


class Layout:
    """A character → (key, modifiers) table resolved against a :class:`KeyMap`.

    ``coverage`` is the sentence error messages use to say what the layout types.
    """

    def __init__(
        self,
        name: str,
        table: Mapping[str, LayoutEntry],
        keymap: KeyMap = DEFAULT_KEYMAP,
        *,
        coverage: str = "",
    ) -> None:
        self.name = name
        self.keymap = keymap
        self.shift_key = keymap.get("SHIFT")
        self.coverage = coverage
        self._strokes = {char: self._stroke(char, entry) for char, entry in table.items()}

    def _stroke(self, char: str, entry: LayoutEntry) -> Stroke:
        if isinstance(entry, str):
            return Stroke(char, self.keymap.get(entry))
        key, mods = entry
        names: Sequence[str]
        if isinstance(mods, bool):
            names = ("SHIFT",) if mods else ()
        elif isinstance(mods, str):
            names = (mods,)
        else:
            names = mods
        modifiers = tuple(self.keymap.get(m) for m in names)
        for mod in modifiers:
            if not mod.modifier:
                raise KeyMapError(f"Layout {self.name}: {mod.name} (for {char!r}) is not a modifier key.")
        if len({m.qcode for m in modifiers}) != len(modifiers):
            raise KeyMapError(f"Layout {self.name}: a modifier is named twice for {char!r}.")
        return Stroke(char, self.keymap.get(key), modifiers)

    def __contains__(self, char: object) -> bool:
        return char in self._strokes

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, {len(self._strokes)} characters)"

    @property
    def chars(self) -> str:
        """Every character the layout types, in table order."""
        return "".join(self._strokes)

    def stroke(self, char: str) -> Stroke:
        try:
            return self._strokes[char]
        except KeyError:
            raise KeyMapError(self._cannot_type(char, None)) from None

    def _cannot_type(self, char: str, index: int | None, secret: bool = False) -> str:
        where = f" at position {index + 1}" if index is not None else ""
        what = "a character" if secret else f"the character {char!r} (U+{ord(char):04X})"
        hint = f" {self.coverage}" if self.coverage else ""
        return f"The {self.name} layout cannot type {what}{where}.{hint}"

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
        """Modifiers down (in order), key down, key up, modifiers up (in reverse order)."""
        return [
            *(KeyAction(m, True) for m in stroke.modifiers),
            KeyAction(stroke.key, True),
            KeyAction(stroke.key, False),
            *(KeyAction(m, False) for m in reversed(stroke.modifiers)),
        ]

    # -- registry -------------------------------------------------------------------------------------------

    @staticmethod
    def register(layout: Layout, *aliases: str, replace: bool = False) -> Layout:
        """Make ``layout`` known to :func:`get_layout` under its name and ``aliases`` (case-insensitive).

        A name already taken by another layout is a ``ValueError`` unless ``replace``.  Returns the layout.
        """
        keys = [n.lower() for n in (layout.name, *aliases)]
        for key in keys:
            other = LAYOUTS.get(key)
            if other is not None and other is not layout and not replace:
                raise ValueError(f"Keyboard layout name '{key}' is already registered ({other.name}).")
        for key in keys:
            LAYOUTS[key] = layout
        return layout

    @staticmethod
    def known() -> list[str]:
        """The registered layout names, sorted."""
        return sorted(LAYOUTS)


def combo_actions(keys: list[KeyRecord]) -> tuple[list[KeyAction], list[KeyAction]]:
    """For a combo: every key down in order, then every key up in reverse order."""
    return [KeyAction(k, True) for k in keys], [KeyAction(k, False) for k in reversed(keys)]


def _us_table() -> dict[str, LayoutEntry]:
    table: dict[str, LayoutEntry] = {}
    for c in "abcdefghijklmnopqrstuvwxyz":
        table[c] = c
        table[c.upper()] = (c, True)
    for d in "0123456789":
        table[d] = d
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
        table[char] = key
        table[shifted] = (key, True)
    for shifted, digit in zip(")!@#$%^&*(", "0123456789", strict=True):
        table[shifted] = (digit, True)
    table[" "] = "spc"
    table["\n"] = "ret"
    table["\t"] = "tab"
    return table


def _de_table() -> dict[str, LayoutEntry]:
    """German (T1, xkb ``de`` / Windows German) without its dead keys (circumflex, acute and grave accent).

    Keys are named by their US legend (``y`` is the key that types ``z`` here).
    """
    table: dict[str, LayoutEntry] = {}
    swap = {"y": "z", "z": "y"}
    for c in "abcdefghijklmnopqrstuvwxyz":
        key = swap.get(c, c)
        table[c] = key
        table[c.upper()] = (key, True)
    for d in "0123456789":
        table[d] = d
    for shifted, digit in zip('=!"§$%&/()', "0123456789", strict=True):
        table[shifted] = (digit, True)
    for char, shifted, key in (
        ("ß", "?", "minus"),
        ("ü", "Ü", "bracket_left"),
        ("+", "*", "bracket_right"),
        ("ö", "Ö", "semicolon"),
        ("ä", "Ä", "apostrophe"),
        ("#", "'", "backslash"),
        ("<", ">", "less"),
        (",", ";", "comma"),
        (".", ":", "dot"),
        ("-", "_", "slash"),
    ):
        table[char] = key
        table[shifted] = (key, True)
    table["°"] = ("grave_accent", True)
    for char, key in (
        ("@", "q"),
        ("€", "e"),
        ("²", "2"),
        ("³", "3"),
        ("{", "7"),
        ("[", "8"),
        ("]", "9"),
        ("}", "0"),
        ("\\", "minus"),
        ("~", "bracket_right"),
        ("|", "less"),
        ("µ", "m"),
    ):
        table[char] = (key, ("ALT_R",))
    table[" "] = "spc"
    table["\n"] = "ret"
    table["\t"] = "tab"
    return table


LAYOUTS: dict[str, Layout] = {}

US = Layout.register(Layout("US", _us_table(), coverage="Printable ASCII, newline and tab are supported."))
DE = Layout.register(
    Layout(
        "DE",
        _de_table(),
        coverage="Printable ASCII except ^ and ` (dead keys), newline, tab and äöüÄÖÜß§°€²³µ are supported.",
    ),
    "german",
)


def get_layout(name: str) -> Layout:
    """The registered layout called ``name`` (case-insensitive); KeyMapError lists the known ones."""
    try:
        return LAYOUTS[name.strip().lower()]
    except KeyError:
        raise KeyMapError(f"Unknown keyboard layout '{name}'. Known layouts: {', '.join(Layout.known())}.") from None


def iter_actions(layout: Layout, strokes: list[Stroke]) -> Iterator[list[KeyAction]]:
    """The actions of each stroke, one list per character."""
    for stroke in strokes:
        yield layout.actions(stroke)
