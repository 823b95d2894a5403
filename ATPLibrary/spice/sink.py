"""The SPICE input sink: QMP-shaped ``input-send-event`` events, sent through a SPICE session.

Every input keyword builds QMP event dicts (the one input design); with ``via=spice`` they come here:

- ``key`` (qcode, or a set-1 number) → ``KEY_DOWN``/``KEY_UP`` with the key map's set-1 make/break bytes;
- ``btn`` → ``MOUSE_PRESS``/``MOUSE_RELEASE`` (left, middle, right, wheel up/down; SPICE servers pass no
  side/extra buttons and no horizontal wheel, so those fail before anything is sent);
- ``abs`` → one ``MOUSE_POSITION`` per report, in **pixels** (the pointer code carries the pixel each axis
  value was scaled from under :data:`~ATPLibrary.input.mouse.PIXEL_KEY`), in client mouse mode: QEMU
  scales the pixel itself (see :func:`client_mode_abs`);
- ``rel`` → one ``MOUSE_MOTION`` per report, in server mouse mode.

The sink switches the server's mouse mode when a report needs the other one.  :func:`expected_events`
gives what the guest must then see, for ``verify=True``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

from ATPLibrary.errors import ConfigurationError, SpiceUnsupportedError
from ATPLibrary.input.mouse import ABS_MAX, PIXEL_KEY
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KeyMap, KeyRecord
from ATPLibrary.spice import protocol as p
from ATPLibrary.spice.inputs import key_scancodes
from ATPLibrary.spice.session import SpiceSession

BUTTONS: dict[str, p.MouseButton] = {
    "left": p.MouseButton.LEFT,
    "middle": p.MouseButton.MIDDLE,
    "right": p.MouseButton.RIGHT,
    "wheel-up": p.MouseButton.UP,
    "wheel-down": p.MouseButton.DOWN,
}
#: Each SPICE key message reaches the guest as its own report (the key event and a SYN_REPORT), where QMP
#: puts a whole command in one report; a guest evdev reader's queue holds 64 events, so after this many key
#: messages the sink pauses BURST_PAUSE seconds to let readers (the verification agent) drain it. 8 messages
#: (16-24 events) leave room for a reader that falls a burst or two behind on a busy, just-booted TCG guest:
#: with 16 a new VDI guest under the full test run dropped a whole line (SYN_DROPPED). About 100 chars/s.
KEYS_PER_BURST = 8
BURST_PAUSE = 0.04
#: QEMU's spice-input.c enlarges a logical screen side below this many pixels to it.
MIN_LOGICAL_SIZE = 16


def client_mode_abs(pixel: int, size: int) -> int:
    """The absolute value QEMU gives a SPICE client-mode position: ``pixel * 0x7FFF // size``.

    QEMU ui/spice-input.c ``tablet_position`` calls ``qemu_input_queue_abs(NULL, axis, x, 0, width)``
    (width = the display's logical size, at least 16), and ui/input.c ``qemu_input_scale_axis`` computes
    ``(value - min_in) * (max_out - min_out) / (max_in - min_in) + min_out`` in int64 arithmetic with
    ``min_out = 0``, ``max_out = INPUT_EVENT_ABS_MAX = 0x7FFF``: an integer division, truncating.
    """
    return pixel * ABS_MAX // max(size, MIN_LOGICAL_SIZE)


def _pixel(event: Mapping[str, Any]) -> tuple[int, int]:
    pixel = event.get(PIXEL_KEY)
    if not isinstance(pixel, Mapping) or "position" not in pixel or "size" not in pixel:
        raise ConfigurationError(
            "an absolute mouse event without its pixel position cannot go through SPICE (SPICE sends pixels); "
            "move the mouse with Move Mouse To / Click At, which carry it"
        )
    return int(pixel["position"]), int(pixel["size"])


def expected_events(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The QMP-shaped events the guest sees when ``events`` go through SPICE: ``abs`` values become QEMU's
    client-mode scaling of the carried pixel (:func:`client_mode_abs`); everything else is unchanged."""
    out: list[dict[str, Any]] = []
    for event in events:
        if event.get("type") == "abs":
            position, size = _pixel(event)
            data = dict(event.get("data") or {})
            data["value"] = client_mode_abs(position, size)
            out.append({"type": "abs", "data": data})
        else:
            out.append(dict(event))
    return out


class SpiceInputSink:
    """Sends QMP-shaped input reports through ``session`` (an :class:`EventSink` for the input keywords)."""

    def __init__(self, session: SpiceSession, keymap: KeyMap = DEFAULT_KEYMAP) -> None:
        self.session = session
        self.keymap = keymap
        #: the last pixel position sent (client mode)
        self.last_position = (0, 0)
        self._burst = 0

    def send_input_events(self, events: Sequence[Mapping[str, Any]], **_kwargs: Any) -> int:
        """Translate one report (everything is checked first), then send it; returns 1 (one report)."""
        steps = self._translate(events)
        if steps:
            self.session.run_batch(self._send(steps), what=f"sending {len(events)} input events")
        return 1

    def _key(self, data: Mapping[str, Any]) -> KeyRecord:
        key = data.get("key") or {}
        if key.get("type") == "qcode":
            return self.keymap.by_qcode(str(key.get("data")))
        return self.keymap.by_set1(int(key.get("data", 0)))

    def _translate(self, events: Sequence[Mapping[str, Any]]) -> list[Callable[[], Awaitable[None]]]:
        session = self.session
        inputs = session.inputs
        main = session.main
        if inputs is None or main is None:
            session.check_open()
            raise SpiceUnsupportedError(f"SPICE session {session.name} has no inputs channel")
        steps: list[Callable[[], Awaitable[None]]] = []
        position: dict[str, int] = {}
        motion: dict[str, int] = {}
        for event in events:
            kind, data = event.get("type"), event.get("data") or {}
            if kind == "key":
                record, down = self._key(data), bool(data.get("down"))
                code = key_scancodes(record, down)
                steps.append(partial(self._key_down if down else self._key_up, code))
            elif kind == "btn":
                name = str(data.get("button"))
                button = BUTTONS.get(name)
                if button is None:
                    raise SpiceUnsupportedError(
                        f"mouse button '{name}' cannot go through SPICE: SPICE servers pass left, middle, right and "
                        "the vertical wheel only; send it with via=qmp"
                    )
                steps.append(partial(self._button, button, bool(data.get("down"))))
            elif kind == "abs":
                axis = str(data.get("axis"))
                pixel, _size = _pixel(event)
                if not position:
                    steps.append(partial(self._position, position))
                position[axis] = pixel
            elif kind == "rel":
                if not motion:
                    steps.append(partial(self._motion, motion))
                motion[str(data.get("axis"))] = motion.get(str(data.get("axis")), 0) + int(data.get("value", 0))
            else:
                raise ConfigurationError(f"unknown input event type {kind!r} for SPICE")
        return steps

    async def _send(self, steps: list[Callable[[], Awaitable[None]]]) -> None:
        for step in steps:
            await step()
            if isinstance(step, partial) and step.func in (self._key_down, self._key_up):
                self._burst += 1
                if self._burst >= KEYS_PER_BURST:
                    self._burst = 0
                    await asyncio.sleep(BURST_PAUSE)

    async def _key_down(self, code: bytes) -> None:
        assert self.session.inputs is not None
        await self.session.inputs.key_down(code)

    async def _key_up(self, code: bytes) -> None:
        assert self.session.inputs is not None
        await self.session.inputs.key_up(code)

    async def _button(self, button: p.MouseButton, down: bool) -> None:
        session = self.session
        assert session.inputs is not None
        if down:
            session.buttons |= button.mask
            await session.inputs.mouse_press(button, session.buttons)
        else:
            session.buttons &= ~button.mask
            await session.inputs.mouse_release(button, session.buttons)

    async def _position(self, position: dict[str, int]) -> None:
        session = self.session
        assert session.inputs is not None and session.main is not None
        await session.main.set_mouse_mode(p.MOUSE_MODE_CLIENT, session.timeout)
        # a report with one axis keeps the other where the pointer was
        x = position.get("x", self.last_position[0])
        y = position.get("y", self.last_position[1])
        self.last_position = (x, y)
        await session.inputs.mouse_position(x, y, session.buttons, 0, session.timeout)

    async def _motion(self, motion: dict[str, int]) -> None:
        session = self.session
        assert session.inputs is not None and session.main is not None
        await session.main.set_mouse_mode(p.MOUSE_MODE_SERVER, session.timeout)
        await session.inputs.mouse_motion(motion.get("x", 0), motion.get("y", 0), session.buttons, session.timeout)
