"""Keyboard input through QMP ``input-send-event`` (qcodes), with explicit modifiers and bounded batches."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ATPLibrary.errors import ConfigurationError
from ATPLibrary.hosts.timing import Sleep
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KeyMap, KeyRecord
from ATPLibrary.keys.layout import US, KeyAction, Layout, combo_actions
from ATPLibrary.qmp.monitor import MonitorClient

#: Longer than this and a held key starts to auto-repeat on common guests (Linux console and X11 default to
#: 250 ms before the first repeat, Windows to 250 ms at the shortest setting).
MAX_HOLD = 0.2

#: 12 characters of the US layout need at most 48 events (shift down, key down, key up, shift up each).
#: QEMU takes up to 63 events per command, but the guest kernel queues at most 64 events per evdev reader
#: (with a SYN_REPORT every 8): a reader such as the verification agent loses a 60-event burst whole
#: (SYN_DROPPED) however fast it reads, while 48-56 arrive intact. 12 keeps every reader whole.
CHARS_PER_COMMAND = 12
#: The event cap that goes with it (a character with two modifiers takes 6 events).
MAX_TYPING_EVENTS = 48


def key_event(action: KeyAction) -> dict[str, Any]:
    """One QMP ``input-send-event`` key event."""
    return {"type": "key", "data": {"down": action.down, "key": {"type": "qcode", "data": action.key.qcode}}}


class QmpKeyboard:
    """Presses key combos and types text on one VM through its :class:`MonitorClient`."""

    def __init__(
        self,
        monitor: MonitorClient,
        *,
        layout: Layout = US,
        keymap: KeyMap = DEFAULT_KEYMAP,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.monitor = monitor
        self.layout = layout
        self.keymap = keymap
        self._sleep = sleep

    def press_combos(self, combos: Sequence[str]) -> list[list[KeyRecord]]:
        """Press each combo in order: all keys down in order, then up in reverse order.

        Every combo is parsed before anything is sent.  Returns the parsed combos.
        """
        parsed = [self.keymap.parse_combo(c) for c in combos]
        for keys in parsed:
            self.press(keys)
        return parsed

    def press(self, keys: Sequence[KeyRecord]) -> None:
        """One combo in one command: downs in order, then ups in reverse (QEMU keeps the order)."""
        downs, ups = combo_actions(list(keys))
        self.monitor.send_input_events([key_event(a) for a in (*downs, *ups)])

    def type_text(
        self,
        text: str,
        *,
        delay: float = 0.0,
        hold: float = 0.0,
        chars_per_command: int = CHARS_PER_COMMAND,
        secret: bool = False,
    ) -> int:
        """Type ``text`` exactly: one press/release per character, its modifiers (Shift, AltGr) held explicitly.

        Without ``delay`` up to ``chars_per_command`` (<= 12) characters go into one command, never more than
        ``MAX_TYPING_EVENTS`` events and never a character split over two commands; with a delay each
        character is its own command followed by a sleep.  With a ``hold`` (below MAX_HOLD, so that the key
        never auto-repeats) each character is sent as modifiers + key down, a wait of ``hold``, then key up +
        modifiers up.  Every character is checked before anything is sent.
        Returns the number of commands sent.
        """
        if not 0 <= hold < MAX_HOLD:
            raise ConfigurationError(
                f"hold time must be from 0 to below {MAX_HOLD * 1000:.0f} ms (longer and guests auto-repeat the key), "
                f"got {hold * 1000:g} ms"
            )
        if delay < 0:
            raise ConfigurationError(f"delay between characters cannot be negative, got {delay:g} s")
        strokes = self.layout.strokes(text, secret=secret)
        if hold > 0:
            commands = 0
            for index, stroke in enumerate(strokes):
                actions = self.layout.actions(stroke)
                split = next(i for i, a in enumerate(actions) if not a.down)  # first release
                commands += self.monitor.send_input_events([key_event(a) for a in actions[:split]])
                self._sleep(hold)
                commands += self.monitor.send_input_events([key_event(a) for a in actions[split:]])
                if delay > 0 and index < len(strokes) - 1:
                    self._sleep(delay)
            return commands
        per_char = [[key_event(a) for a in self.layout.actions(s)] for s in strokes]
        if delay > 0:
            for index, events in enumerate(per_char):
                self.monitor.send_input_events(events)
                if index < len(per_char) - 1:
                    self._sleep(delay)
            return len(per_char)
        per_command = max(1, min(chars_per_command, CHARS_PER_COMMAND))
        commands = 0
        for batch in _batches(per_char, per_command, MAX_TYPING_EVENTS):
            commands += self.monitor.send_input_events(batch)
        return commands


def _batches(per_char: list[list[dict[str, Any]]], max_chars: int, max_events: int) -> list[list[dict[str, Any]]]:
    """Whole characters packed in order into batches of at most ``max_chars`` characters and ``max_events``."""
    batches: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    chars = 0
    for events in per_char:
        if batch and (chars == max_chars or len(batch) + len(events) > max_events):
            batches.append(batch)
            batch, chars = [], 0
        batch.extend(events)
        chars += 1
    if batch:
        batches.append(batch)
    return batches
