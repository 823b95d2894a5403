"""The key map: ONE table of key records (name, QEMU qcode, aliases).

Later codes (evdev, set-1 scancodes, Windows VK) are added as further fields of :class:`KeyRecord` and further
columns of the same table, so extending the map never changes existing lookups.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ATPLibrary.errors import KeyMapError


@dataclass(frozen=True)
class KeyRecord:
    """One physical key.  ``name`` is the canonical (upper-case) name; ``qcode`` is QEMU's QKeyCode."""

    name: str
    qcode: str
    aliases: tuple[str, ...] = ()
    modifier: bool = False

    def __str__(self) -> str:
        return self.name


def _k(name: str, qcode: str, *aliases: str, modifier: bool = False) -> KeyRecord:
    return KeyRecord(name, qcode, tuple(aliases), modifier)


_LETTERS = [_k(c.upper(), c) for c in "abcdefghijklmnopqrstuvwxyz"]
_DIGITS = [_k(d, d) for d in "0123456789"]
_FUNCTION = [_k(f"F{n}", f"f{n}") for n in range(1, 13)]
_KEYPAD = [_k(f"KP_{n}", f"kp_{n}") for n in range(10)]

#: The table.  Aliases are matched case-insensitively; a name is also found with a ``KEY_`` prefix.
KEYS: tuple[KeyRecord, ...] = (
    _k("SHIFT", "shift", "SHIFT_L", "LSHIFT", "LEFTSHIFT", modifier=True),
    _k("SHIFT_R", "shift_r", "RSHIFT", "RIGHTSHIFT", modifier=True),
    _k("CTRL", "ctrl", "CONTROL", "CTRL_L", "LCTRL", "LEFTCTRL", modifier=True),
    _k("CTRL_R", "ctrl_r", "RCTRL", "RIGHTCTRL", modifier=True),
    _k("ALT", "alt", "ALT_L", "LALT", "LEFTALT", modifier=True),
    _k("ALT_R", "alt_r", "RALT", "RIGHTALT", "ALTGR", modifier=True),
    _k(
        "SUPER",
        "meta_l",
        "WIN",
        "WINDOWS",
        "META",
        "META_L",
        "SUPER_L",
        "LEFTMETA",
        "LWIN",
        "CMD",
        modifier=True,
    ),
    _k("SUPER_R", "meta_r", "META_R", "RIGHTMETA", "RWIN", modifier=True),
    _k("MENU", "menu", "APPS", "CONTEXT_MENU"),
    _k("ENTER", "ret", "RETURN", "RET"),
    _k("ESC", "esc", "ESCAPE"),
    _k("SPACE", "spc", "SPC", " "),
    _k("TAB", "tab", "\t"),
    _k("BACKSPACE", "backspace", "BKSP", "BS"),
    _k("DELETE", "delete", "DEL"),
    _k("INSERT", "insert", "INS"),
    _k("HOME", "home"),
    _k("END", "end"),
    _k("PGUP", "pgup", "PAGEUP", "PAGE_UP", "PRIOR"),
    _k("PGDN", "pgdn", "PAGEDOWN", "PAGE_DOWN", "NEXT"),
    _k("UP", "up", "ARROW_UP", "UP_ARROW"),
    _k("DOWN", "down", "ARROW_DOWN", "DOWN_ARROW"),
    _k("LEFT", "left", "ARROW_LEFT", "LEFT_ARROW"),
    _k("RIGHT", "right", "ARROW_RIGHT", "RIGHT_ARROW"),
    _k("CAPS_LOCK", "caps_lock", "CAPSLOCK", "CAPS"),
    _k("NUM_LOCK", "num_lock", "NUMLOCK"),
    _k("SCROLL_LOCK", "scroll_lock", "SCROLLLOCK"),
    _k("PRINT", "print", "PRINTSCREEN", "PRINT_SCREEN", "PRTSC"),
    _k("SYSRQ", "sysrq"),
    _k("PAUSE", "pause", "BREAK"),
    _k("MINUS", "minus", "-", "DASH", "HYPHEN"),
    _k("EQUAL", "equal", "=", "EQUALS"),
    _k("BRACKET_LEFT", "bracket_left", "[", "LEFTBRACE", "LEFT_BRACKET"),
    _k("BRACKET_RIGHT", "bracket_right", "]", "RIGHTBRACE", "RIGHT_BRACKET"),
    _k("BACKSLASH", "backslash", "\\"),
    _k("SEMICOLON", "semicolon", ";"),
    _k("APOSTROPHE", "apostrophe", "'", "QUOTE"),
    _k("GRAVE_ACCENT", "grave_accent", "`", "GRAVE", "BACKQUOTE", "BACKTICK"),
    _k("COMMA", "comma", ","),
    _k("DOT", "dot", ".", "PERIOD"),
    _k("SLASH", "slash", "/"),
    _k("LESS", "less", "102ND", "LESS_GREATER"),
    *_LETTERS,
    *_DIGITS,
    *_FUNCTION,
    *_KEYPAD,
    _k("KP_ADD", "kp_add", "KP_PLUS", "KPPLUS"),
    _k("KP_SUBTRACT", "kp_subtract", "KP_MINUS", "KPMINUS"),
    _k("KP_MULTIPLY", "kp_multiply", "KP_ASTERISK", "KPASTERISK"),
    _k("KP_DIVIDE", "kp_divide", "KP_SLASH", "KPSLASH"),
    _k("KP_ENTER", "kp_enter", "KPENTER"),
    _k("KP_DECIMAL", "kp_decimal", "KP_DOT", "KPDOT"),
    _k("POWER", "power"),
    _k("SLEEP", "sleep"),
    _k("WAKE", "wake"),
    _k("AUDIOMUTE", "audiomute", "MUTE"),
    _k("VOLUMEUP", "volumeup", "VOLUME_UP"),
    _k("VOLUMEDOWN", "volumedown", "VOLUME_DOWN"),
)


def _normalize(name: str) -> str:
    if len(name) == 1:
        return name.lower()
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return key


class KeyMap:
    """Lookup of key names (case-insensitive, with aliases and qcode names) to :class:`KeyRecord`."""

    def __init__(self, records: Iterable[KeyRecord] = KEYS) -> None:
        self.records: tuple[KeyRecord, ...] = tuple(records)
        self._by_name: dict[str, KeyRecord] = {}
        self._by_qcode: dict[str, KeyRecord] = {}
        for rec in self.records:
            if rec.qcode in self._by_qcode:
                raise ValueError(f"duplicate qcode {rec.qcode!r} in the key table")
            self._by_qcode[rec.qcode] = rec
        for rec in self.records:
            for alias in (rec.name, rec.qcode, *rec.aliases):
                key = _normalize(alias)
                other = self._by_name.get(key)
                if other is not None and other is not rec:
                    raise ValueError(f"key name {alias!r} names both {other.name} and {rec.name}")
                self._by_name[key] = rec

    def __iter__(self) -> Iterator[KeyRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def names(self) -> list[str]:
        """Every accepted (normalized) key name."""
        return sorted(self._by_name)

    def find(self, name: str) -> KeyRecord | None:
        """The record for ``name`` or None."""
        if not name:
            return None
        key = _normalize(name)
        rec = self._by_name.get(key)
        if rec is None and key.startswith("key_"):
            rec = self._by_name.get(key[4:])
        return rec

    def get(self, name: str) -> KeyRecord:
        """The record for ``name``; KeyMapError lists close matches."""
        rec = self.find(name)
        if rec is None:
            raise KeyMapError(self._unknown_message(name))
        return rec

    def by_qcode(self, qcode: str) -> KeyRecord:
        try:
            return self._by_qcode[qcode]
        except KeyError:
            raise KeyMapError(f"Unknown QEMU qcode '{qcode}'.") from None

    def suggestions(self, name: str, n: int = 5) -> list[str]:
        """Canonical names close to ``name`` (difflib), best first."""
        key = _normalize(name)
        found: list[str] = []
        for match in difflib.get_close_matches(key, list(self._by_name), n=n * 3, cutoff=0.6):
            canonical = self._by_name[match].name
            if canonical not in found:
                found.append(canonical)
        return found[:n]

    def _unknown_message(self, name: str) -> str:
        close = self.suggestions(name)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        return f"Unknown key name '{name}'.{hint} Names are case-insensitive, e.g. ENTER, CTRL, F5, A, MINUS."

    def parse_combo(self, combo: str) -> list[KeyRecord]:
        """Parse ``ctrl+alt+delete`` into records.  Only ``+`` separates; ``-`` alone is the MINUS key.

        ``+`` is not a key name (type it as ``shift+equal``); an empty part is rejected.
        """
        text = combo.strip()
        if not text:
            raise KeyMapError("Empty key combination.")
        tokens = text.split("+")
        if any(not t.strip() for t in tokens):
            raise KeyMapError(
                f"Malformed key combination '{combo}': use names joined by '+', e.g. ctrl+alt+delete "
                f"(the '+' character is typed as shift+equal)."
            )
        records = [self.get(t.strip()) for t in tokens]
        seen: set[str] = set()
        for rec in records:
            if rec.qcode in seen:
                raise KeyMapError(f"Key combination '{combo}' names {rec.name} twice.")
            seen.add(rec.qcode)
        return records


DEFAULT_KEYMAP = KeyMap()


def parse_combos(combos: Sequence[str], keymap: KeyMap = DEFAULT_KEYMAP) -> list[list[KeyRecord]]:
    """Parse every combo first, so that nothing is sent when one of them is wrong."""
    return [keymap.parse_combo(c) for c in combos]
