"""The key map: ONE table of key records.

Each :class:`KeyRecord` is one physical key of a PC 104/105-key keyboard and carries every code this library
needs for it:

- ``name`` and ``aliases``: the names accepted in keywords (case-insensitive);
- ``qcode``: QEMU's ``QKeyCode`` (qapi/ui.json; every qcode here exists in QEMU 7.2);
- ``evdev`` / ``evdev_name``: the Linux input code (``KEY_*`` in linux/input-event-codes.h);
- ``set1`` / ``extended``: the PC/AT scan code set 1 make code and whether it has the ``0xE0`` prefix;
- ``vk``: the Windows virtual-key code (``VK_*``), or None where Windows defines none.

The codes follow QEMU's keycodemapdb (data/keymaps.csv), the Linux header and Microsoft's Virtual-Key Codes
table.  Where sources differ or a key is irregular, the choice is documented here:

- ``MENU`` (the context-menu key between AltGr and right Ctrl) is qcode ``compose`` / ``KEY_COMPOSE`` /
  ``E0 5D`` / ``VK_APPS``.  QEMU's ``menu`` qcode is a different key (``KEY_MENU``, 139) and is not in the table.
- ``PRINT`` (Print Screen / SysRq) is ``KEY_SYSRQ``; QEMU treats its ``sysrq`` qcode as a synonym of ``print``,
  so both name this one key.  Its set-1 code is ``E0 37``; a keyboard wraps it in a fake shift
  (``E0 2A E0 37`` / ``E0 B7 E0 AA``, see :meth:`KeyRecord.set1_make`).  ``by_set1(0x54)`` also finds it:
  ``0x54`` is what the key sends with Alt held (SysRq), the code keycodemapdb lists for ``KEY_SYSRQ``.
- ``PAUSE`` is ``E0 46`` in the table (keycodemapdb, the code Ctrl+Pause (Break) sends); on its own the key
  sends ``E1 1D 45 E1 9D C5`` on press and nothing on release (see :meth:`KeyRecord.set1_make`).
- ``KP_ENTER`` shares ``VK_RETURN`` (0x0D) with ``ENTER``: Windows tells them apart by the extended flag only.
  :meth:`KeyMap.by_vk` returns ``ENTER`` for 0x0D.  This is the only shared code in the table.
- Modifiers carry the left/right specific VKs (``VK_LSHIFT`` ...); ``by_vk`` also accepts the generic
  ``VK_SHIFT``/``VK_CONTROL``/``VK_MENU`` and returns the left key.
- ``KP_EQUALS``, ``POWER`` and ``WAKE`` have no Windows VK.  F13-F24 are left out: their qcodes only exist
  since QEMU 8.0.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import TypeVar

from ATPLibrary.errors import KeyMapError

_Code = TypeVar("_Code", str, int, tuple[int, bool])

#: Set-1 byte sequences of the two keys that do not follow "[E0] make / [E0] make|0x80" when pressed alone
#: (qcode -> (make, break)); the PC/AT keyboard protocol, as QEMU's PS/2 keyboard emits them.
_SET1_SEQUENCES: dict[str, tuple[bytes, bytes]] = {
    "print": (b"\xe0\x2a\xe0\x37", b"\xe0\xb7\xe0\xaa"),
    "pause": (b"\xe1\x1d\x45\xe1\x9d\xc5", b""),
}


@dataclass(frozen=True)
class KeyRecord:
    """One physical key (see the module docstring for the meaning and sources of every code)."""

    name: str
    qcode: str
    aliases: tuple[str, ...] = ()
    modifier: bool = False
    _: KW_ONLY
    evdev: int
    evdev_name: str
    set1: int
    extended: bool
    vk: int | None

    def __post_init__(self) -> None:
        if not 0 < self.set1 < 0x80:
            raise ValueError(f"{self.name}: set-1 make code {self.set1:#x} is not in 0x01..0x7F")
        if not self.evdev_name.startswith("KEY_"):
            raise ValueError(f"{self.name}: evdev name {self.evdev_name!r} does not start with KEY_")

    def __str__(self) -> str:
        return self.name

    @property
    def set1_code(self) -> int:
        """The set-1 code as one number, ``0xE0xx`` for extended keys (libvirt's ``atset1`` codeset)."""
        return 0xE000 | self.set1 if self.extended else self.set1

    def set1_make(self) -> bytes:
        """The set-1 bytes the key sends when pressed alone: ``[E0] make`` (``PRINT`` and ``PAUSE`` differ)."""
        special = _SET1_SEQUENCES.get(self.qcode)
        if special is not None:
            return special[0]
        return bytes([0xE0, self.set1]) if self.extended else bytes([self.set1])

    def set1_break(self) -> bytes:
        """The set-1 bytes the key sends when released: ``[E0] make|0x80`` (``PAUSE`` sends none)."""
        special = _SET1_SEQUENCES.get(self.qcode)
        if special is not None:
            return special[1]
        code = self.set1 | 0x80
        return bytes([0xE0, code]) if self.extended else bytes([code])


def _k(
    name: str,
    qcode: str,
    evdev_name: str,
    evdev: int,
    set1: int,
    vk: int | None,
    *aliases: str,
    modifier: bool = False,
) -> KeyRecord:
    """A table row; ``set1`` is written as keycodemapdb writes it (``0xE048`` for an extended key)."""
    extended = set1 > 0xFF
    if extended and set1 >> 8 != 0xE0:
        raise ValueError(f"{name}: set-1 code {set1:#x} is neither 0xNN nor 0xE0NN")
    return KeyRecord(
        name,
        qcode,
        tuple(aliases),
        modifier,
        evdev=evdev,
        evdev_name=evdev_name,
        set1=set1 & 0xFF,
        extended=extended,
        vk=vk,
    )


# fmt: off
#: The table.  Aliases are matched case-insensitively; evdev names (``KEY_ENTER``, also without ``KEY_``) and
#: qcodes are accepted as names too.
#: Columns: name, qcode, evdev name, evdev code, set-1 (0xE0NN = extended), Windows VK, aliases...
KEYS: tuple[KeyRecord, ...] = (
    # modifiers
    _k("SHIFT", "shift", "KEY_LEFTSHIFT", 42, 0x2A, 0xA0, "SHIFT_L", "LSHIFT", modifier=True),
    _k("SHIFT_R", "shift_r", "KEY_RIGHTSHIFT", 54, 0x36, 0xA1, "RSHIFT", modifier=True),
    _k("CTRL", "ctrl", "KEY_LEFTCTRL", 29, 0x1D, 0xA2, "CONTROL", "CTRL_L", "LCTRL", modifier=True),
    _k("CTRL_R", "ctrl_r", "KEY_RIGHTCTRL", 97, 0xE01D, 0xA3, "RCTRL", modifier=True),
    _k("ALT", "alt", "KEY_LEFTALT", 56, 0x38, 0xA4, "ALT_L", "LALT", modifier=True),
    _k("ALT_R", "alt_r", "KEY_RIGHTALT", 100, 0xE038, 0xA5, "RALT", "ALTGR", modifier=True),
    _k("SUPER", "meta_l", "KEY_LEFTMETA", 125, 0xE05B, 0x5B,
       "WIN", "WINDOWS", "META", "SUPER_L", "LWIN", "CMD", modifier=True),
    _k("SUPER_R", "meta_r", "KEY_RIGHTMETA", 126, 0xE05C, 0x5C, "RWIN", modifier=True),
    _k("MENU", "compose", "KEY_COMPOSE", 127, 0xE05D, 0x5D, "APPS", "CONTEXT_MENU"),
    # main block
    _k("ESC", "esc", "KEY_ESC", 1, 0x01, 0x1B, "ESCAPE"),
    _k("1", "1", "KEY_1", 2, 0x02, 0x31),
    _k("2", "2", "KEY_2", 3, 0x03, 0x32),
    _k("3", "3", "KEY_3", 4, 0x04, 0x33),
    _k("4", "4", "KEY_4", 5, 0x05, 0x34),
    _k("5", "5", "KEY_5", 6, 0x06, 0x35),
    _k("6", "6", "KEY_6", 7, 0x07, 0x36),
    _k("7", "7", "KEY_7", 8, 0x08, 0x37),
    _k("8", "8", "KEY_8", 9, 0x09, 0x38),
    _k("9", "9", "KEY_9", 10, 0x0A, 0x39),
    _k("0", "0", "KEY_0", 11, 0x0B, 0x30),
    _k("MINUS", "minus", "KEY_MINUS", 12, 0x0C, 0xBD, "-", "DASH", "HYPHEN"),
    _k("EQUAL", "equal", "KEY_EQUAL", 13, 0x0D, 0xBB, "=", "EQUALS"),
    _k("BACKSPACE", "backspace", "KEY_BACKSPACE", 14, 0x0E, 0x08, "BKSP", "BS"),
    _k("TAB", "tab", "KEY_TAB", 15, 0x0F, 0x09, "\t"),
    _k("Q", "q", "KEY_Q", 16, 0x10, 0x51),
    _k("W", "w", "KEY_W", 17, 0x11, 0x57),
    _k("E", "e", "KEY_E", 18, 0x12, 0x45),
    _k("R", "r", "KEY_R", 19, 0x13, 0x52),
    _k("T", "t", "KEY_T", 20, 0x14, 0x54),
    _k("Y", "y", "KEY_Y", 21, 0x15, 0x59),
    _k("U", "u", "KEY_U", 22, 0x16, 0x55),
    _k("I", "i", "KEY_I", 23, 0x17, 0x49),
    _k("O", "o", "KEY_O", 24, 0x18, 0x4F),
    _k("P", "p", "KEY_P", 25, 0x19, 0x50),
    _k("BRACKET_LEFT", "bracket_left", "KEY_LEFTBRACE", 26, 0x1A, 0xDB, "[", "LEFT_BRACKET"),
    _k("BRACKET_RIGHT", "bracket_right", "KEY_RIGHTBRACE", 27, 0x1B, 0xDD, "]", "RIGHT_BRACKET"),
    _k("ENTER", "ret", "KEY_ENTER", 28, 0x1C, 0x0D, "RETURN"),
    _k("A", "a", "KEY_A", 30, 0x1E, 0x41),
    _k("S", "s", "KEY_S", 31, 0x1F, 0x53),
    _k("D", "d", "KEY_D", 32, 0x20, 0x44),
    _k("F", "f", "KEY_F", 33, 0x21, 0x46),
    _k("G", "g", "KEY_G", 34, 0x22, 0x47),
    _k("H", "h", "KEY_H", 35, 0x23, 0x48),
    _k("J", "j", "KEY_J", 36, 0x24, 0x4A),
    _k("K", "k", "KEY_K", 37, 0x25, 0x4B),
    _k("L", "l", "KEY_L", 38, 0x26, 0x4C),
    _k("SEMICOLON", "semicolon", "KEY_SEMICOLON", 39, 0x27, 0xBA, ";"),
    _k("APOSTROPHE", "apostrophe", "KEY_APOSTROPHE", 40, 0x28, 0xDE, "'", "QUOTE"),
    _k("GRAVE_ACCENT", "grave_accent", "KEY_GRAVE", 41, 0x29, 0xC0, "`", "BACKQUOTE", "BACKTICK"),
    _k("BACKSLASH", "backslash", "KEY_BACKSLASH", 43, 0x2B, 0xDC, "\\"),
    _k("Z", "z", "KEY_Z", 44, 0x2C, 0x5A),
    _k("X", "x", "KEY_X", 45, 0x2D, 0x58),
    _k("C", "c", "KEY_C", 46, 0x2E, 0x43),
    _k("V", "v", "KEY_V", 47, 0x2F, 0x56),
    _k("B", "b", "KEY_B", 48, 0x30, 0x42),
    _k("N", "n", "KEY_N", 49, 0x31, 0x4E),
    _k("M", "m", "KEY_M", 50, 0x32, 0x4D),
    _k("COMMA", "comma", "KEY_COMMA", 51, 0x33, 0xBC, ","),
    _k("DOT", "dot", "KEY_DOT", 52, 0x34, 0xBE, ".", "PERIOD"),
    _k("SLASH", "slash", "KEY_SLASH", 53, 0x35, 0xBF, "/"),
    _k("LESS", "less", "KEY_102ND", 86, 0x56, 0xE2, "LESS_GREATER", "OEM_102"),
    _k("SPACE", "spc", "KEY_SPACE", 57, 0x39, 0x20, " "),
    _k("CAPS_LOCK", "caps_lock", "KEY_CAPSLOCK", 58, 0x3A, 0x14, "CAPS"),
    # function keys
    _k("F1", "f1", "KEY_F1", 59, 0x3B, 0x70),
    _k("F2", "f2", "KEY_F2", 60, 0x3C, 0x71),
    _k("F3", "f3", "KEY_F3", 61, 0x3D, 0x72),
    _k("F4", "f4", "KEY_F4", 62, 0x3E, 0x73),
    _k("F5", "f5", "KEY_F5", 63, 0x3F, 0x74),
    _k("F6", "f6", "KEY_F6", 64, 0x40, 0x75),
    _k("F7", "f7", "KEY_F7", 65, 0x41, 0x76),
    _k("F8", "f8", "KEY_F8", 66, 0x42, 0x77),
    _k("F9", "f9", "KEY_F9", 67, 0x43, 0x78),
    _k("F10", "f10", "KEY_F10", 68, 0x44, 0x79),
    _k("F11", "f11", "KEY_F11", 87, 0x57, 0x7A),
    _k("F12", "f12", "KEY_F12", 88, 0x58, 0x7B),
    # system and navigation keys
    _k("PRINT", "print", "KEY_SYSRQ", 99, 0xE037, 0x2C, "PRINTSCREEN", "PRINT_SCREEN", "PRTSC", "SYSRQ"),
    _k("SCROLL_LOCK", "scroll_lock", "KEY_SCROLLLOCK", 70, 0x46, 0x91),
    _k("PAUSE", "pause", "KEY_PAUSE", 119, 0xE046, 0x13, "BREAK"),
    _k("INSERT", "insert", "KEY_INSERT", 110, 0xE052, 0x2D, "INS"),
    _k("DELETE", "delete", "KEY_DELETE", 111, 0xE053, 0x2E, "DEL"),
    _k("HOME", "home", "KEY_HOME", 102, 0xE047, 0x24),
    _k("END", "end", "KEY_END", 107, 0xE04F, 0x23),
    _k("PGUP", "pgup", "KEY_PAGEUP", 104, 0xE049, 0x21, "PAGE_UP", "PRIOR"),
    _k("PGDN", "pgdn", "KEY_PAGEDOWN", 109, 0xE051, 0x22, "PAGE_DOWN", "NEXT"),
    _k("UP", "up", "KEY_UP", 103, 0xE048, 0x26, "ARROW_UP", "UP_ARROW"),
    _k("DOWN", "down", "KEY_DOWN", 108, 0xE050, 0x28, "ARROW_DOWN", "DOWN_ARROW"),
    _k("LEFT", "left", "KEY_LEFT", 105, 0xE04B, 0x25, "ARROW_LEFT", "LEFT_ARROW"),
    _k("RIGHT", "right", "KEY_RIGHT", 106, 0xE04D, 0x27, "ARROW_RIGHT", "RIGHT_ARROW"),
    # keypad
    _k("NUM_LOCK", "num_lock", "KEY_NUMLOCK", 69, 0x45, 0x90),
    _k("KP_DIVIDE", "kp_divide", "KEY_KPSLASH", 98, 0xE035, 0x6F, "KP_SLASH"),
    _k("KP_MULTIPLY", "kp_multiply", "KEY_KPASTERISK", 55, 0x37, 0x6A, "KP_ASTERISK"),
    _k("KP_SUBTRACT", "kp_subtract", "KEY_KPMINUS", 74, 0x4A, 0x6D, "KP_MINUS"),
    _k("KP_ADD", "kp_add", "KEY_KPPLUS", 78, 0x4E, 0x6B, "KP_PLUS"),
    _k("KP_ENTER", "kp_enter", "KEY_KPENTER", 96, 0xE01C, 0x0D),
    _k("KP_DECIMAL", "kp_decimal", "KEY_KPDOT", 83, 0x53, 0x6E, "KP_DOT"),
    _k("KP_0", "kp_0", "KEY_KP0", 82, 0x52, 0x60),
    _k("KP_1", "kp_1", "KEY_KP1", 79, 0x4F, 0x61),
    _k("KP_2", "kp_2", "KEY_KP2", 80, 0x50, 0x62),
    _k("KP_3", "kp_3", "KEY_KP3", 81, 0x51, 0x63),
    _k("KP_4", "kp_4", "KEY_KP4", 75, 0x4B, 0x64),
    _k("KP_5", "kp_5", "KEY_KP5", 76, 0x4C, 0x65),
    _k("KP_6", "kp_6", "KEY_KP6", 77, 0x4D, 0x66),
    _k("KP_7", "kp_7", "KEY_KP7", 71, 0x47, 0x67),
    _k("KP_8", "kp_8", "KEY_KP8", 72, 0x48, 0x68),
    _k("KP_9", "kp_9", "KEY_KP9", 73, 0x49, 0x69),
    _k("KP_EQUALS", "kp_equals", "KEY_KPEQUAL", 117, 0x59, None, "KP_EQUAL"),
    # power and media keys of ACPI/multimedia keyboards
    _k("POWER", "power", "KEY_POWER", 116, 0xE05E, None),
    _k("SLEEP", "sleep", "KEY_SLEEP", 142, 0xE05F, 0x5F),
    _k("WAKE", "wake", "KEY_WAKEUP", 143, 0xE063, None),
    _k("AUDIOMUTE", "audiomute", "KEY_MUTE", 113, 0xE020, 0xAD, "VOLUME_MUTE"),
    _k("VOLUMEDOWN", "volumedown", "KEY_VOLUMEDOWN", 114, 0xE02E, 0xAE, "VOLUME_DOWN"),
    _k("VOLUMEUP", "volumeup", "KEY_VOLUMEUP", 115, 0xE030, 0xAF, "VOLUME_UP"),
)
# fmt: on

#: Further QEMU qcodes that name a key of the table (QEMU maps them to the same Linux key).
QCODE_SYNONYMS: dict[str, str] = {"sysrq": "print", "asterisk": "kp_multiply"}
#: Further set-1 codes that find a key: 0x54 is Print Screen pressed with Alt (SysRq).
SET1_SYNONYMS: dict[tuple[int, bool], str] = {(0x54, False): "print"}
#: The generic Windows VKs (VK_SHIFT, VK_CONTROL, VK_MENU) find the left key.
VK_SYNONYMS: dict[int, str] = {0x10: "shift", 0x11: "ctrl", 0x12: "alt"}


def _normalize(name: str) -> str:
    if len(name) == 1:
        return name.lower()
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return key


class KeyMap:
    """Lookups in the key table: by name (case-insensitive, aliases, qcodes, evdev names) and by every code.

    Building a map checks the table: a qcode, evdev code, evdev name, set-1 code (with its E0 flag) or name
    that names two keys is a ``ValueError``.  A Windows VK may be shared (``ENTER``/``KP_ENTER``); ``by_vk``
    returns the first key of the table with it.
    """

    def __init__(self, records: Iterable[KeyRecord] = KEYS) -> None:
        self.records: tuple[KeyRecord, ...] = tuple(records)
        self._by_name: dict[str, KeyRecord] = {}
        self._by_qcode: dict[str, KeyRecord] = {}
        self._by_evdev: dict[int, KeyRecord] = {}
        self._by_evdev_name: dict[str, KeyRecord] = {}
        self._by_set1: dict[tuple[int, bool], KeyRecord] = {}
        self._by_vk: dict[int, KeyRecord] = {}
        for rec in self.records:
            self._add_unique(self._by_qcode, rec.qcode, rec, "qcode")
            self._add_unique(self._by_evdev, rec.evdev, rec, "evdev code")
            self._add_unique(self._by_evdev_name, rec.evdev_name, rec, "evdev name")
            self._add_unique(self._by_set1, (rec.set1, rec.extended), rec, "set-1 code")
            if rec.vk is not None:
                self._by_vk.setdefault(rec.vk, rec)
        for rec in self.records:
            for alias in (rec.name, rec.qcode, *rec.aliases, rec.evdev_name, rec.evdev_name[4:]):
                key = _normalize(alias)
                other = self._by_name.get(key)
                if other is not None and other is not rec:
                    raise ValueError(f"key name {alias!r} names both {other.name} and {rec.name}")
                self._by_name[key] = rec
        for qcode, target in QCODE_SYNONYMS.items():
            if target in self._by_qcode:
                self._by_qcode.setdefault(qcode, self._by_qcode[target])
        for set1, target in SET1_SYNONYMS.items():
            if target in self._by_qcode:
                self._by_set1.setdefault(set1, self._by_qcode[target])
        for vk, target in VK_SYNONYMS.items():
            if target in self._by_qcode:
                self._by_vk.setdefault(vk, self._by_qcode[target])

    @staticmethod
    def _add_unique(index: dict[_Code, KeyRecord], code: _Code, rec: KeyRecord, what: str) -> None:
        other = index.get(code)
        if other is not None:
            raise ValueError(f"duplicate {what} {code!r} in the key table ({other.name} and {rec.name})")
        index[code] = rec

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
        """The key of a QEMU qcode (``ret``; the synonyms ``sysrq`` and ``asterisk`` too)."""
        try:
            return self._by_qcode[qcode]
        except KeyError:
            raise KeyMapError(f"Unknown QEMU qcode '{qcode}'.") from None

    def by_evdev(self, code: int) -> KeyRecord:
        """The key of a Linux evdev code (``KEY_ENTER`` = 28)."""
        try:
            return self._by_evdev[code]
        except KeyError:
            raise KeyMapError(f"Unknown Linux evdev key code {code}.") from None

    def by_evdev_name(self, name: str) -> KeyRecord:
        """The key of a Linux evdev name, case-insensitive, ``KEY_`` prefix optional (``KEY_ENTER``)."""
        key = name.strip().upper()
        if not key.startswith("KEY_"):
            key = f"KEY_{key}"
        try:
            return self._by_evdev_name[key]
        except KeyError:
            raise KeyMapError(f"Unknown Linux evdev key name '{name}'.") from None

    def by_set1(self, code: int, extended: bool = False) -> KeyRecord:
        """The key of a set-1 make code: ``by_set1(0x48, True)`` or ``by_set1(0xE048)`` is UP."""
        if code > 0xFF:
            if code >> 8 != 0xE0:
                raise KeyMapError(f"Set-1 code {code:#06x} is neither 0xNN nor 0xE0NN.")
            code, extended = code & 0xFF, True
        try:
            return self._by_set1[(code, extended)]
        except KeyError:
            shown = f"E0 {code:02X}" if extended else f"{code:02X}"
            raise KeyMapError(f"Unknown set-1 make code {shown}.") from None

    def by_vk(self, vk: int) -> KeyRecord:
        """The key of a Windows virtual-key code (0x0D is ENTER; VK_SHIFT etc. give the left key)."""
        try:
            return self._by_vk[vk]
        except KeyError:
            raise KeyMapError(f"Unknown Windows virtual-key code {vk:#04x}.") from None

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


def _doc_cell(text: str) -> str:
    """One alias as Robot documentation: single punctuation characters as ``code``."""
    if len(text) == 1 and not text.isalnum():
        return text if text == "`" else f"``{text}``"
    return text


def key_names_doc(keymap: KeyMap = DEFAULT_KEYMAP) -> str:
    """The key table in Robot Framework documentation format (a libdoc table), one row per key.

    Columns: name, aliases, QEMU qcode, Linux evdev name and code, set-1 make code, Windows VK.
    Whitespace aliases (the space and tab characters) are left out.
    """
    lines = ["| =Name= | =Aliases= | =qcode= | =evdev= | =Set 1= | =VK= |"]
    for rec in keymap:
        aliases = ", ".join(_doc_cell(a) for a in rec.aliases if a.strip()) or "-"
        set1 = f"E0 {rec.set1:02X}" if rec.extended else f"{rec.set1:02X}"
        vk = f"0x{rec.vk:02X}" if rec.vk is not None else "-"
        lines.append(f"| {rec.name} | {aliases} | {rec.qcode} | {rec.evdev_name} ({rec.evdev}) | {set1} | {vk} |")
    return "\n".join(lines)
