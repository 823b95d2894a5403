"""Key names, QEMU qcodes, Linux evdev codes, set-1 scancodes, Windows VKs and keyboard layouts.

One table of key records (:data:`KEYS`) holds every code of a key; layouts map characters onto it.
"""

from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KEYS, KeyMap, KeyRecord, key_names_doc, parse_combos
from ATPLibrary.keys.layout import DE, US, KeyAction, Layout, Stroke, combo_actions, get_layout

__all__ = [
    "DE",
    "DEFAULT_KEYMAP",
    "KEYS",
    "US",
    "KeyAction",
    "KeyMap",
    "KeyRecord",
    "Layout",
    "Stroke",
    "combo_actions",
    "get_layout",
    "key_names_doc",
    "parse_combos",
]
