"""Key names, QEMU qcodes and keyboard layouts (one table of key records)."""

from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KEYS, KeyMap, KeyRecord, parse_combos
from ATPLibrary.keys.layout import US, KeyAction, Layout, Stroke, combo_actions, get_layout

__all__ = [
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
    "parse_combos",
]
