"""Mouse events for QEMU's ``input-send-event`` and the pixel → absolute-axis scaling.

Absolute positions go to an absolute pointer (the virtio or USB tablet) on QEMU's axis range
``0 .. ABS_MAX`` (0x7FFF), whatever the screen size.  ATPLibrary maps a pixel ``p`` on an axis of ``size``
pixels with::

    abs = round(p * ABS_MAX / (size - 1))

so that the first pixel is 0 and the last pixel (``size - 1``) is exactly ``ABS_MAX``.  The virtio tablet
reports that value unchanged as ``EV_ABS`` (``ABS_X``/``ABS_Y``, range 0..32767) in the guest, which maps it
back onto its own screen.  Relative moves (``rel``) and buttons go to the relative mouse.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from ATPLibrary.errors import ConfigurationError

#: QEMU's INPUT_EVENT_ABS_MAX: absolute axes run from 0 to 0x7FFF.
ABS_MAX = 0x7FFF
#: Key of an ``abs`` event carrying the pixel its value was scaled from: ``{"position": p, "size": n}``.  Not
#: part of QMP: :class:`~ATPLibrary.qmp.monitor.MonitorClient` drops it; the SPICE sink sends the pixel itself
#: (SPICE positions are pixels, scaled by QEMU), so no value is ever inverted.
PIXEL_KEY = "atp-pixel"
#: QEMU limits a relative move per event only by int32; keep each step small so guests accelerate sanely.
MAX_REL_STEP = 127


class MouseButton(Enum):
    """A mouse button (QEMU ``InputButton`` names)."""

    LEFT = "left"
    MIDDLE = "middle"
    RIGHT = "right"
    SIDE = "side"
    EXTRA = "extra"


class ScrollDirection(Enum):
    """Wheel direction for `Scroll`."""

    UP = "wheel-up"
    DOWN = "wheel-down"
    LEFT = "wheel-left"
    RIGHT = "wheel-right"


E = TypeVar("E", bound=Enum)


def coerce_enum(cls: type[E], value: E | str) -> E:
    """``value`` as a member of ``cls``: a member, or its name or value in any case (Robot converts too)."""
    if isinstance(value, cls):
        return value
    text = str(value).strip().lower()
    for member in cls:
        if text in (member.name.lower(), str(member.value).lower()):
            return member
    names = ", ".join(m.name.lower() for m in cls)
    raise ConfigurationError(f"'{value}' is not a {cls.__name__}: use one of {names}")


def pixel_to_abs(position: int, size: int, axis: str = "x") -> int:
    """Scale pixel ``position`` on an axis of ``size`` pixels to QEMU's 0..ABS_MAX range."""
    if size < 1:
        raise ConfigurationError(f"screen {axis} size must be at least 1 pixel, got {size}")
    if not 0 <= position < size:
        raise ConfigurationError(
            f"mouse {axis}={position} is outside the screen (0..{size - 1} pixels); "
            "positions are in screen pixels from the top-left corner"
        )
    if size == 1:
        return 0
    return round(position * ABS_MAX / (size - 1))


def abs_events(x_abs: int, y_abs: int, pixel: tuple[int, int, int, int] | None = None) -> list[dict[str, Any]]:
    """An absolute move; ``pixel`` = (x, y, width, height) it was scaled from, carried under PIXEL_KEY."""
    events: list[dict[str, Any]] = [
        {"type": "abs", "data": {"axis": "x", "value": x_abs}},
        {"type": "abs", "data": {"axis": "y", "value": y_abs}},
    ]
    if pixel is not None:
        x, y, width, height = pixel
        events[0][PIXEL_KEY] = {"position": x, "size": width}
        events[1][PIXEL_KEY] = {"position": y, "size": height}
    return events


def rel_events(dx: int, dy: int) -> list[dict[str, Any]]:
    """Relative move in one report (both axes), as a mouse sends it."""
    events: list[dict[str, Any]] = []
    if dx:
        events.append({"type": "rel", "data": {"axis": "x", "value": dx}})
    if dy:
        events.append({"type": "rel", "data": {"axis": "y", "value": dy}})
    return events


def rel_steps(dx: int, dy: int, max_step: int = MAX_REL_STEP) -> list[tuple[int, int]]:
    """Split a relative move into steps of at most ``max_step`` per axis whose sums are exactly (dx, dy)."""
    steps = max(1, -(-max(abs(dx), abs(dy)) // max_step))
    out: list[tuple[int, int]] = []
    done_x = done_y = 0
    for i in range(1, steps + 1):
        x, y = round(dx * i / steps), round(dy * i / steps)
        out.append((x - done_x, y - done_y))
        done_x, done_y = x, y
    return out


def button_event(button: MouseButton | ScrollDirection, down: bool) -> dict[str, Any]:
    return {"type": "btn", "data": {"down": down, "button": button.value}}


def click_events(button: MouseButton, count: int = 1) -> list[list[dict[str, Any]]]:
    """Press/release pairs, one report each (a double click is two pairs)."""
    if count < 1:
        raise ConfigurationError(f"click count must be at least 1, got {count}")
    return [[button_event(button, True)], [button_event(button, False)]] * count


def scroll_events(direction: ScrollDirection, clicks: int) -> list[list[dict[str, Any]]]:
    """One wheel notch = the wheel 'button' pressed and released."""
    if clicks < 1:
        raise ConfigurationError(f"scroll clicks must be at least 1, got {clicks}")
    return [[button_event(direction, True), button_event(direction, False)] for _ in range(clicks)]
