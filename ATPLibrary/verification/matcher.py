"""Matching what the guest's kernel received against what a keyword sent.

Plain Python, no asyncio and no Robot Framework: the server drives it from its loop thread (``clock`` and
``call_later`` are injected), tests drive it directly.

Events
    Every ``raw_input_event`` from an agent becomes a :class:`ReceivedEvent` with a per-VM ``index`` and its
    host arrival time.  Keys are compared by **Linux evdev code** through the one key map: an agent on Windows
    reports virtual-key codes, which are mapped to evdev (``VK_RETURN`` → ``KEY_ENTER``); the keyword side builds
    :class:`ExpectedEvent` objects from key records, qcodes (``ret``), evdev names or VKs, so all of them meet
    in the same code.  Mouse buttons are compared by evdev ``BTN_*`` code (the agent may send ``LEFT``,
    ``BTN_LEFT`` or a Windows name), axes by evdev ``REL_*`` / ``ABS_*`` code.

Matching rules (one :class:`Expectation`)
    - **Claimed kinds.** An expectation claims the kinds it names (key, button, rel, abs; an empty expectation
      claims every kind).  Events of other kinds are left for other expectations.
    - **Exact sequence.** Key and button events form one ordered sequence that must equal the expected one:
      every event in order, none missing, none extra.  Autorepeat (value 2) counts as an extra event unless the
      caller passes ``ignore_repeat=True``.
    - **Relative axes** are summed per axis over the action (the kernel may merge or split reports); an axis
      that was not expected must sum to zero.  **Absolute axes** compare the final value per axis; the kernel
      drops an ``EV_ABS`` event whose value did not change, so an axis with no event passes when the VM's last
      reported value already equals the expected one.
    - **Settle.** Once everything expected has arrived, the expectation keeps claiming events for ``settle``
      seconds; anything more is an extra event and fails it.  After a mismatch it keeps collecting until the
      guest has been quiet for ``settle`` seconds (or the timeout), so the failure shows what arrived.
    - **Timeout** counts from :meth:`Expectation.sent` (the end of sending) or, before that, from registration.
    - A ``dropped`` report from the agent while the expectation is open fails it at once; so does the loss of
      the agent's session.

Early events (the rule that keeps a fast guest from beating the registration without polluting later checks)
    Events that no open expectation claims are kept in a per-VM buffer for ``early_window`` seconds (0.5 s).
    A new expectation takes over the buffered events of its kinds that arrived at most ``early_window``
    seconds before its registration time (taken in the caller's thread, before the action); older buffered
    events are dropped.  An event claimed by one expectation (matched, or counted as extra during its life or
    settle time) is never offered to another one.

Window checks (``Input Should Be Received``)
    :meth:`VMInbox.mark` returns the index the VM's next event will get; a window check compares every event
    since a mark (claimed or not, the history keeps the last ``history_size``) with the expected input, using
    the same rules, and claims nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ATPLibrary.archive.metrics import record_latency as archive_latency
from ATPLibrary.errors import (
    KeyMapError,
    VerificationAgentLost,
    VerificationDroppedEvents,
    VerificationFailed,
    VerificationTimeout,
)
from ATPLibrary.hosts.timing import format_seconds
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KeyMap, KeyRecord
from ATPLibrary.keys.layout import KeyAction, Layout
from ATPLibrary.verification import protocol

log = logging.getLogger(__name__)

KIND_KEY = protocol.KIND_KEY
KIND_BUTTON = protocol.KIND_BUTTON
KIND_REL = protocol.KIND_REL
KIND_ABS = protocol.KIND_ABS
KIND_OTHER = "other"
ALL_KINDS = frozenset({KIND_KEY, KIND_BUTTON, KIND_REL, KIND_ABS, KIND_OTHER})
SEQUENCE_KINDS = frozenset({KIND_KEY, KIND_BUTTON})

DEFAULT_EARLY_WINDOW = 0.5
DEFAULT_SETTLE = 0.1
DEFAULT_HISTORY = 100_000
DEFAULT_LATENCIES = 10_000

#: evdev mouse buttons (linux/input-event-codes.h) and the names agents and QEMU use for them.
BUTTON_CODES: dict[str, int] = {
    "BTN_LEFT": 0x110,
    "BTN_RIGHT": 0x111,
    "BTN_MIDDLE": 0x112,
    "BTN_SIDE": 0x113,
    "BTN_EXTRA": 0x114,
    "BTN_FORWARD": 0x115,
    "BTN_BACK": 0x116,
    "BTN_TASK": 0x117,
    "BTN_TOUCH": 0x14A,
}
_BUTTON_ALIASES: dict[str, str] = {
    "left": "BTN_LEFT",
    "right": "BTN_RIGHT",
    "middle": "BTN_MIDDLE",
    "side": "BTN_SIDE",
    "extra": "BTN_EXTRA",
    "forward": "BTN_FORWARD",
    "back": "BTN_BACK",
    "task": "BTN_TASK",
    "touch": "BTN_TOUCH",
    "x1": "BTN_SIDE",  # Windows XBUTTON1 is the side (back) button QEMU calls 'side'
    "xbutton1": "BTN_SIDE",
    "x2": "BTN_EXTRA",
    "xbutton2": "BTN_EXTRA",
    "lbutton": "BTN_LEFT",
    "rbutton": "BTN_RIGHT",
    "mbutton": "BTN_MIDDLE",
}
REL_CODES: dict[str, int] = {
    "REL_X": 0x00,
    "REL_Y": 0x01,
    "REL_Z": 0x02,
    "REL_HWHEEL": 0x06,
    "REL_DIAL": 0x07,
    "REL_WHEEL": 0x08,
    "REL_MISC": 0x09,
    "REL_WHEEL_HI_RES": 0x0B,
    "REL_HWHEEL_HI_RES": 0x0C,
}
#: High-resolution wheel axes duplicate REL_WHEEL/REL_HWHEEL (120 per notch) on newer kernels: not compared.
REL_IGNORED = frozenset({REL_CODES["REL_WHEEL_HI_RES"], REL_CODES["REL_HWHEEL_HI_RES"]})
ABS_CODES: dict[str, int] = {"ABS_X": 0x00, "ABS_Y": 0x01, "ABS_Z": 0x02, "ABS_WHEEL": 0x08, "ABS_PRESSURE": 0x18}
_AXIS_ALIASES = {"x": "X", "y": "Y", "z": "Z", "wheel": "WHEEL", "hwheel": "HWHEEL", "dial": "DIAL"}

_CODE_NAMES: dict[str, dict[int, str]] = {
    KIND_BUTTON: {v: k for k, v in BUTTON_CODES.items()},
    KIND_REL: {v: k for k, v in REL_CODES.items()},
    KIND_ABS: {v: k for k, v in ABS_CODES.items()},
}

#: Modifier classes for decoding text: the left and right key of a pair type the same characters;
#: right Alt is AltGr.
_MOD_CLASS: dict[str, str] = {
    "shift": "shift",
    "shift_r": "shift",
    "ctrl": "ctrl",
    "ctrl_r": "ctrl",
    "alt": "alt",
    "alt_r": "altgr",
    "meta_l": "super",
    "meta_r": "super",
}

#: Windows VK of ENTER (shared with keypad Enter, told apart by the extended flag).
_VK_RETURN = 0x0D


def _button_code(name: str) -> int:
    text = name.strip()
    upper = text.upper()
    if upper in BUTTON_CODES:
        return BUTTON_CODES[upper]
    canonical = _BUTTON_ALIASES.get(text.lower().removeprefix("btn_").removeprefix("vk_"))
    if canonical is None:
        raise KeyMapError(f"Unknown mouse button '{name}': use left, right, middle, side or extra.")
    return BUTTON_CODES[canonical]


def _axis_code(kind: str, name: str) -> int:
    table = REL_CODES if kind == KIND_REL else ABS_CODES
    prefix = "REL_" if kind == KIND_REL else "ABS_"
    upper = name.strip().upper()
    if not upper.startswith(prefix):
        upper = prefix + _AXIS_ALIASES.get(name.strip().lower(), upper)
    try:
        return table[upper]
    except KeyError:
        raise KeyMapError(f"Unknown {kind} axis '{name}': use x or y (or {', '.join(table)}).") from None


def _code_name(kind: str, code: int) -> str:
    return _CODE_NAMES.get(kind, {}).get(code, f"{kind.upper()}_{code}")


# -- events ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedEvent:
    """One event the guest should receive: ``kind`` and evdev ``code``; ``value`` is 1 (down) / 0 (up) for keys
    and buttons, the delta for ``rel`` and the final value for ``abs``."""

    kind: str
    code: int
    value: int
    name: str

    @classmethod
    def key(cls, key: KeyRecord | str, down: bool = True, keymap: KeyMap = DEFAULT_KEYMAP) -> ExpectedEvent:
        """A key by record or by any name the key map knows (``ENTER``, qcode ``ret``, ``KEY_ENTER``)."""
        rec = key if isinstance(key, KeyRecord) else keymap.get(key)
        return cls(KIND_KEY, rec.evdev, 1 if down else 0, rec.evdev_name)

    @classmethod
    def key_vk(cls, vk: int, down: bool = True, keymap: KeyMap = DEFAULT_KEYMAP) -> ExpectedEvent:
        """A key by Windows virtual-key code (``0x0D`` is ENTER)."""
        return cls.key(keymap.by_vk(vk), down)

    @classmethod
    def action(cls, action: KeyAction) -> ExpectedEvent:
        return cls.key(action.key, action.down)

    @classmethod
    def button(cls, button: str, down: bool = True) -> ExpectedEvent:
        """A mouse button: ``left``/``right``/``middle``/``side``/``extra`` or an evdev name (``BTN_LEFT``)."""
        code = _button_code(button)
        return cls(KIND_BUTTON, code, 1 if down else 0, _code_name(KIND_BUTTON, code))

    @classmethod
    def rel(cls, axis: str, delta: int) -> ExpectedEvent:
        """A relative move on ``x``, ``y``, ``wheel`` or ``hwheel`` (deltas are summed per axis)."""
        code = _axis_code(KIND_REL, axis)
        return cls(KIND_REL, code, int(delta), _code_name(KIND_REL, code))

    @classmethod
    def abs(cls, axis: str, value: int) -> ExpectedEvent:
        """An absolute position on ``x`` or ``y`` (the last one per axis counts)."""
        code = _axis_code(KIND_ABS, axis)
        return cls(KIND_ABS, code, int(value), _code_name(KIND_ABS, code))

    def describe(self, secret: bool = False) -> str:
        return _describe(self.kind, self.name, self.value, secret)


@dataclass(frozen=True)
class ReceivedEvent:
    """An input event reported by the verification agent, normalized to evdev codes.

    ``index`` counts the VM's events on the host from 0; ``arrived`` is the host's ``time.monotonic()`` when it
    was decoded; ``raw_code``/``raw_name`` are what the agent sent (a VK on Windows).
    """

    index: int
    kind: str
    code: int
    value: int
    name: str
    arrived: float
    raw_code: int = -1
    raw_name: str = ""
    device: str = ""
    seq: int | None = None
    timestamp: float | None = None

    def describe(self, secret: bool = False) -> str:
        return _describe(self.kind, self.name, self.value, secret)


def _describe(kind: str, name: str, value: int, secret: bool) -> str:
    if kind in SEQUENCE_KINDS:
        state = {1: "down", 0: "up", 2: "repeat"}.get(value, f"value {value}")
        return f"{'a key' if secret and kind == KIND_KEY else name} {state}"
    if kind == KIND_REL:
        return f"{name} {value:+d}"
    return f"{name}={value}"


def _int_field(message: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = message.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise protocol.ProtocolError(f"raw_input_event field '{name}' must be a number")
    return int(value)


def normalize_event(
    message: Mapping[str, Any],
    *,
    index: int,
    arrived: float,
    platform: str = "linux",
    keymap: KeyMap = DEFAULT_KEYMAP,
) -> ReceivedEvent:
    """A ``raw_input_event`` message as a :class:`ReceivedEvent` (ProtocolError when a field is malformed).

    On ``platform='windows'`` (or with ``"code_type": "vk"`` in the event) key codes are Windows VKs and are
    mapped to evdev through the key map (VK_RETURN with ``"extended": true`` is keypad Enter).
    """
    code = _int_field(message, "code")
    value = _int_field(message, "value", 0)
    raw_name = message.get("name")
    raw_name = raw_name if isinstance(raw_name, str) else ""
    kind = message.get("kind")
    if kind not in ALL_KINDS:
        kind = _infer_kind(message.get("event_type"), raw_name)
    vk_codes = platform == "windows" or message.get("code_type") == "vk"
    name = raw_name
    if kind == KIND_KEY and not vk_codes and 0x100 <= code < 0x160:
        kind = KIND_BUTTON  # an evdev BTN_* code reported as a key
    if kind == KIND_KEY:
        rec: KeyRecord | None
        try:
            if vk_codes:
                rec = keymap.by_vk(code)
                if code == _VK_RETURN and message.get("extended"):
                    rec = keymap.by_qcode("kp_enter")
            else:
                rec = keymap.by_evdev(code)
        except KeyMapError:
            rec = None
        if rec is not None:
            code, name = rec.evdev, rec.evdev_name
        else:
            name = raw_name.upper() or f"{'VK' if vk_codes else 'KEY'}_{code}"
            if vk_codes:
                code = -1 - code  # an unknown VK never equals an evdev code
    elif kind == KIND_BUTTON:
        if vk_codes or raw_name:
            with contextlib.suppress(KeyMapError):
                code = _button_code(raw_name) if raw_name else code
        name = _code_name(kind, code) if code in _CODE_NAMES[kind] else (raw_name or f"BTN_{code}")
    elif kind in (KIND_REL, KIND_ABS):
        if vk_codes and raw_name:
            with contextlib.suppress(KeyMapError):
                code = _axis_code(kind, raw_name)
        name = _code_name(kind, code)
    device = message.get("device")
    seq = message.get("seq")
    timestamp = message.get("timestamp")
    return ReceivedEvent(
        index=index,
        kind=kind,
        code=code,
        value=value,
        name=name,
        arrived=arrived,
        raw_code=_int_field(message, "code"),
        raw_name=raw_name,
        device=device if isinstance(device, str) else "",
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        timestamp=float(timestamp) if isinstance(timestamp, int | float) and not isinstance(timestamp, bool) else None,
    )


def _infer_kind(event_type: Any, name: str) -> str:
    upper = name.upper()
    if event_type == "keyboard":
        return KIND_KEY
    if upper.startswith("BTN_") or name.lower() in _BUTTON_ALIASES:
        return KIND_BUTTON
    if upper.startswith("REL_"):
        return KIND_REL
    if upper.startswith("ABS_"):
        return KIND_ABS
    return KIND_OTHER


# -- building expectations ---------------------------------------------------------------------------------------


def action_events(actions: Iterable[KeyAction]) -> list[ExpectedEvent]:
    """Key actions (``Layout.actions``, ``combo_actions``) as expected events."""
    return [ExpectedEvent.action(a) for a in actions]


def text_events(text: str, layout: Layout) -> list[ExpectedEvent]:
    """The key events typing ``text`` on ``layout`` produces (modifiers down, key down, key up, modifiers up)."""
    events: list[ExpectedEvent] = []
    for stroke in layout.strokes(text):
        events.extend(action_events(layout.actions(stroke)))
    return events


def qmp_events(events: Iterable[Mapping[str, Any]], keymap: KeyMap = DEFAULT_KEYMAP) -> list[ExpectedEvent]:
    """QMP ``input-send-event`` events (``key`` by qcode or number, ``btn``, ``rel``, ``abs``) as expected
    events.  Wheel "buttons" become ``REL_WHEEL``/``REL_HWHEEL`` ±1 on press (what QEMU's devices report);
    their release reports nothing."""
    out: list[ExpectedEvent] = []
    for event in events:
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "key":
            key = data.get("key") or {}
            down = bool(data.get("down"))
            if key.get("type") == "qcode":
                out.append(ExpectedEvent.key(keymap.by_qcode(str(key.get("data"))), down))
            else:
                out.append(ExpectedEvent.key(keymap.by_set1(int(key.get("data", 0))), down))
        elif kind == "btn":
            button, down = str(data.get("button")), bool(data.get("down"))
            wheel = {"wheel-up": ("wheel", 1), "wheel-down": ("wheel", -1)}
            wheel |= {"wheel-right": ("hwheel", 1), "wheel-left": ("hwheel", -1)}
            if button in wheel:
                if down:
                    out.append(ExpectedEvent.rel(*wheel[button]))
            else:
                out.append(ExpectedEvent.button(button, down))
        elif kind in ("rel", "abs"):
            axis, value = str(data.get("axis")), int(data.get("value", 0))
            out.append(ExpectedEvent.rel(axis, value) if kind == "rel" else ExpectedEvent.abs(axis, value))
        else:
            raise KeyMapError(f"Unknown QMP input event type {kind!r}.")
    return out


# -- text decoding -----------------------------------------------------------------------------------------------


class _KeyEventLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def code(self) -> int: ...
    @property
    def value(self) -> int: ...


_INVERSE_CACHE: dict[int, dict[tuple[int, frozenset[str]], str]] = {}


def _inverse(layout: Layout) -> dict[tuple[int, frozenset[str]], str]:
    cached = _INVERSE_CACHE.get(id(layout))
    if cached is not None:
        return cached
    inverse: dict[tuple[int, frozenset[str]], str] = {}
    for char in layout.chars:
        stroke = layout.stroke(char)
        mods = frozenset(_MOD_CLASS.get(m.qcode, m.qcode) for m in stroke.modifiers)
        inverse.setdefault((stroke.key.evdev, mods), char)
    _INVERSE_CACHE[id(layout)] = inverse
    return inverse


def decode_tokens(
    events: Iterable[_KeyEventLike | Mapping[str, Any]], layout: Layout, keymap: KeyMap = DEFAULT_KEYMAP
) -> list[str]:
    """Characters typed by key events (evdev codes), one token per key press.

    Shift, AltGr, Ctrl, Alt and Super are tracked (left and right keys alike); a press the layout cannot turn
    into a character becomes a token like ``<CTRL+C>``.  Autorepeat (value 2) types the character again.
    Caps Lock and dead keys are not modelled.
    """
    inverse = _inverse(layout)
    held: dict[int, str] = {}
    tokens: list[str] = []
    for event in events:
        if isinstance(event, Mapping):
            kind, code, value = event.get("kind", KIND_KEY), int(event["code"]), int(event.get("value", 1))
        else:
            kind, code, value = event.kind, event.code, event.value
        if kind != KIND_KEY:
            continue
        try:
            rec: KeyRecord | None = keymap.by_evdev(code)
        except KeyMapError:
            rec = None
        if rec is not None and rec.qcode in _MOD_CLASS:
            if value:
                held[code] = _MOD_CLASS[rec.qcode]
            else:
                held.pop(code, None)
            continue
        if value == 0:
            continue
        mods = frozenset(held.values())
        char = inverse.get((code, mods))
        if char is None:
            name = rec.name if rec is not None else f"KEY_{code}"
            token_mods = sorted(m.upper() for m in mods)
            tokens.append("<" + "+".join([*token_mods, name]) + ">")
        else:
            tokens.append(char)
    return tokens


def decode_text(
    events: Iterable[_KeyEventLike | Mapping[str, Any]], layout: Layout, keymap: KeyMap = DEFAULT_KEYMAP
) -> str:
    """The text key events type on ``layout`` (see :func:`decode_tokens`)."""
    return "".join(decode_tokens(events, layout, keymap))


# -- results -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Latencies (milliseconds) of the matches on one VM."""

    count: int
    p50: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, seconds: Iterable[float]) -> LatencyStats:
        values = sorted(s * 1000.0 for s in seconds)
        if not values:
            return cls(0, None, None, None)

        def rank(p: float) -> float:
            return values[max(0, math.ceil(p / 100.0 * len(values)) - 1)]

        return cls(len(values), rank(50), rank(99), values[-1])

    def as_dict(self) -> dict[str, float | int | None]:
        return {"count": self.count, "p50": self.p50, "p99": self.p99, "max": self.max}


@dataclass(frozen=True)
class MatchResult:
    """The outcome of one expectation or window check.

    ``reason``: ``ok``, ``mismatch`` (wrong, extra or reordered events), ``timeout`` (something missing),
    ``dropped`` (the guest kernel dropped events), ``lost`` (the agent's session ended), ``cancelled``.
    ``position`` is the 1-based first differing position in the key/button sequence, ``text_position`` the
    1-based first differing character when the expectation was typed text.
    """

    vm: str
    ok: bool
    reason: str
    message: str
    expected: tuple[ExpectedEvent, ...]
    received: tuple[ReceivedEvent, ...]
    timeout: float
    position: int | None = None
    text_position: int | None = None
    expected_text: str | None = None
    received_text: str | None = None
    latency: float | None = None

    def raise_if_failed(self) -> None:
        """Raise the matching VerificationFailed subclass when the check failed."""
        if self.ok:
            return
        error: type[VerificationFailed] = {
            "timeout": VerificationTimeout,
            "dropped": VerificationDroppedEvents,
            "lost": VerificationAgentLost,
        }.get(self.reason, VerificationFailed)
        raise error(self.message, result=self)


# -- matching ----------------------------------------------------------------------------------------------------


class Expectation:
    """Input expected on one VM (see the module docstring for the rules).

    Created through :meth:`VMInbox.expect` / :meth:`VMInbox.window`; lives on one thread (the server's loop).
    """

    def __init__(
        self,
        inbox: VMInbox,
        expected: Sequence[ExpectedEvent],
        *,
        timeout: float,
        registered_at: float,
        ignore_repeat: bool = False,
        settle: float = DEFAULT_SETTLE,
        text: str | None = None,
        layout: Layout | None = None,
        secret: bool = False,
        claiming: bool = True,
        what: str = "",
    ) -> None:
        if text is not None and layout is None:
            raise ValueError("an expectation with text needs its layout")
        self.inbox = inbox
        self.expected = tuple(expected)
        self.timeout = max(0.0, float(timeout))
        self.registered_at = registered_at
        self.sending_at: float | None = None
        self.sent_at: float | None = None
        self.ignore_repeat = ignore_repeat
        self.settle = max(0.0, settle)
        self.text = text
        self.layout = layout
        self.secret = secret
        self.claiming = claiming
        self.what = what
        kinds = {e.kind for e in self.expected}
        self.kinds = frozenset(kinds) if kinds else ALL_KINDS
        self._seq_expected = [e for e in self.expected if e.kind in SEQUENCE_KINDS]
        self._rel_expected: dict[int, int] = {}
        self._abs_expected: dict[int, int] = {}
        for e in self.expected:
            if e.kind == KIND_REL and e.code not in REL_IGNORED:
                self._rel_expected[e.code] = self._rel_expected.get(e.code, 0) + e.value
            elif e.kind == KIND_ABS:
                self._abs_expected[e.code] = e.value
        self._abs_before = dict(inbox.last_abs)
        self.claimed: list[ReceivedEvent] = []
        self._seq: list[ReceivedEvent] = []
        self._rel: dict[int, int] = {}
        self._abs: dict[int, int] = {}
        self._others = 0
        self._diff: int | None = None
        self._complete_at: float | None = None
        self._overshot = False
        self._last_arrival: float | None = None
        self.result: MatchResult | None = None
        self._callbacks: list[Callable[[MatchResult], None]] = []
        self._timer: Any = None
        self._deadline_timer: Any = None

    # -- state -----------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.result is not None

    def add_done_callback(self, callback: Callable[[MatchResult], None]) -> None:
        if self.result is not None:
            callback(self.result)
        else:
            self._callbacks.append(callback)

    def claims(self, event: ReceivedEvent) -> bool:
        return event.kind in self.kinds

    def _complete(self) -> bool:
        if self._diff is not None or len(self._seq) != len(self._seq_expected) or self._others:
            return False
        for code in set(self._rel) | set(self._rel_expected):
            if self._rel.get(code, 0) != self._rel_expected.get(code, 0):
                return False
        if set(self._abs) - set(self._abs_expected):
            return False
        for code, value in self._abs_expected.items():
            seen = self._abs.get(code, self._abs_before.get(code))
            if seen != value:
                return False
        return True

    # -- feeding ---------------------------------------------------------------------------------------------
    def feed(self, event: ReceivedEvent) -> None:
        """One claimed event (in arrival order)."""
        if self.result is not None:
            return
        self.claimed.append(event)
        self._last_arrival = event.arrived
        if event.kind in SEQUENCE_KINDS:
            if event.value == 2 and self.ignore_repeat:
                pass
            else:
                position = len(self._seq)
                self._seq.append(event)
                if self._diff is None:
                    expected = self._seq_expected[position] if position < len(self._seq_expected) else None
                    if expected is None or (expected.kind, expected.code, expected.value) != (
                        event.kind,
                        event.code,
                        event.value,
                    ):
                        self._diff = position
        elif event.kind == KIND_REL:
            if event.code not in REL_IGNORED:
                self._rel[event.code] = self._rel.get(event.code, 0) + event.value
        elif event.kind == KIND_ABS:
            self._abs[event.code] = event.value
        else:
            self._others += 1
        self._update(event.arrived)

    def _update(self, now: float) -> None:
        if self._diff is not None:
            # keep collecting until the guest has been quiet for `settle` (bounded by the deadline)
            self._schedule_finish(now + self.settle)
        elif self._complete():
            if self._complete_at is None:
                self._complete_at = now
            self._schedule_finish(now + self.settle)
        elif self._complete_at is not None or self._overshot:
            # more than expected arrived after completion (a relative axis overshot): a mismatch, reported
            # once the guest has been quiet for `settle`
            self._complete_at = None
            self._overshot = True
            self._schedule_finish(now + self.settle)

    def _schedule_finish(self, at: float) -> None:
        at = min(at, self.deadline)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.inbox.call_later(max(0.0, at - self.inbox.clock()), self._settled)

    def start(self, initial: Iterable[ReceivedEvent] = ()) -> None:
        """Arm the deadline and take ``initial`` events (buffered or, for windows, from history)."""
        for event in initial:
            self.feed(event)
        self._arm_deadline()
        if self.result is None and not self.expected and self._timer is None:
            self._schedule_finish(self.inbox.clock() + self.settle)
        elif self.result is None and self._complete() and self._timer is None:
            self._complete_at = self.inbox.clock()
            self._schedule_finish(self._complete_at + self.settle)

    @property
    def deadline(self) -> float:
        start = self.sent_at if self.sent_at is not None else self.registered_at
        return start + self.timeout + (self.settle if self._complete() else 0.0)

    def _arm_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        if self.result is None:
            delay = max(0.0, self.deadline - self.inbox.clock())
            self._deadline_timer = self.inbox.call_later(delay, self._on_deadline)

    def mark_sending(self, at: float) -> None:
        """The action started being sent at ``at`` (the latency reference)."""
        self.sending_at = at

    def mark_sent(self, at: float) -> None:
        """The action was sent completely at ``at``: the timeout counts from here."""
        self.sent_at = at
        if self.result is None:
            self._arm_deadline()

    def _settled(self) -> None:
        self._timer = None
        if self.result is not None:
            return
        now = self.inbox.clock()
        if self._diff is None and self._complete():
            self._finish("ok")
        elif (self._diff is not None or self._overshot) and (
            self._last_arrival is None or now - self._last_arrival >= self.settle - 1e-3
        ):
            self._finish("mismatch")
        elif now >= self.deadline:
            self._on_deadline()
        elif (self._diff is not None or self._overshot) and self._last_arrival is not None:
            self._schedule_finish(self._last_arrival + self.settle)

    def _on_deadline(self) -> None:
        self._deadline_timer = None
        if self.result is not None:
            return
        if self.inbox.clock() + 1e-3 < self.deadline:  # sent() moved the deadline
            self._arm_deadline()
            return
        if self._diff is None and self._complete():
            self._finish("ok")
        elif self._diff is not None or self._overshot or self._extra_mouse():
            self._finish("mismatch")
        else:
            self._finish("timeout")

    def _extra_mouse(self) -> bool:
        return self._others > 0 or any(code not in self._rel_expected and v for code, v in self._rel.items())

    def dropped(self, message: Mapping[str, Any]) -> None:
        count = message.get("count")
        detail = f" ({count} events)" if isinstance(count, int) else ""
        self._finish("dropped", extra=detail)

    def lost(self, why: str) -> None:
        self._finish("lost", extra=why)

    def cancel(self) -> None:
        self._finish("cancelled")

    def _finish(self, reason: str, extra: str = "") -> None:
        if self.result is not None:
            return
        for timer in (self._timer, self._deadline_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._deadline_timer = None
        ok = reason == "ok"
        latency = None
        if ok and self.claimed:
            reference = self.sending_at if self.sending_at is not None else self.registered_at
            last = max((e.arrived for e in self.claimed), default=reference)
            latency = max(0.0, last - reference)
        self.result = self._build_result(reason, ok, latency, extra)
        self.inbox.finished(self)
        for callback in self._callbacks:
            try:
                callback(self.result)
            except Exception:  # a callback must not break the loop
                log.exception("verification result callback failed")
        self._callbacks.clear()

    # -- reporting -------------------------------------------------------------------------------------------
    def _build_result(self, reason: str, ok: bool, latency: float | None, extra: str) -> MatchResult:
        seq_expected, seq = self._seq_expected, self._seq
        position = None
        for i in range(max(len(seq_expected), len(seq))):
            e = seq_expected[i] if i < len(seq_expected) else None
            r = seq[i] if i < len(seq) else None
            if e is None or r is None or (e.kind, e.code, e.value) != (r.kind, r.code, r.value):
                position = i + 1
                break
        expected_text = received_text = None
        text_position = None
        expected_tokens: list[str] = []
        received_tokens: list[str] = []
        if self.text is not None and self.layout is not None:
            expected_tokens = list(self.text)
            received_tokens = decode_tokens(seq, self.layout, self.inbox.keymap)
            expected_text, received_text = self.text, "".join(received_tokens)
            for i in range(max(len(expected_tokens), len(received_tokens))):
                a = expected_tokens[i] if i < len(expected_tokens) else None
                b = received_tokens[i] if i < len(received_tokens) else None
                if a != b:
                    text_position = i + 1
                    break
        message = "" if ok else self._message(reason, position, text_position, expected_tokens, received_tokens, extra)
        return MatchResult(
            vm=self.inbox.vm,
            ok=ok,
            reason=reason,
            message=message,
            expected=self.expected,
            received=tuple(self.claimed),
            timeout=self.timeout,
            position=position,
            text_position=text_position,
            expected_text=None if self.secret else expected_text,
            received_text=None if self.secret else received_text,
            latency=latency,
        )

    def _message(
        self,
        reason: str,
        position: int | None,
        text_position: int | None,
        expected_tokens: list[str],
        received_tokens: list[str],
        extra: str,
    ) -> str:
        vm, secret = self.inbox.vm, self.secret
        what = f" for {self.what}" if self.what else ""
        timeout = format_seconds(self.timeout)
        lines: list[str] = []
        if reason == "dropped":
            lines.append(
                f"Input verification{what} on VM '{vm}' failed: the verification agent fell behind and the guest "
                f"kernel dropped events{extra}, so what arrived cannot be checked. Send the input more slowly or "
                f"give the guest more CPU."
            )
        elif reason == "lost":
            lines.append(
                f"Input verification{what} on VM '{vm}' failed: the verification agent's session ended while "
                f"waiting ({extra}). Check that the agent still runs in the guest."
            )
        elif reason == "cancelled":
            lines.append(f"Input verification{what} on VM '{vm}' was cancelled.")
        elif reason == "timeout":
            lines.append(
                f"Input verification{what} on VM '{vm}' failed: not everything expected arrived within {timeout}."
            )
        else:
            lines.append(
                f"Input verification{what} on VM '{vm}' failed: the guest did not receive exactly what was expected "
                f"(timeout {timeout})."
            )
        if self.text is not None and text_position is not None:
            i = text_position - 1
            if secret:
                lines.append(f"Text position {text_position} differs (secret text: characters are not shown).")
            else:
                exp = repr(expected_tokens[i]) if i < len(expected_tokens) else "the end of the text"
                got = repr(received_tokens[i]) if i < len(received_tokens) else "nothing"
                lines.append(f"Position {text_position}: expected {exp}, received {got}.")
        seq_count = len(self._seq_expected)
        got_count = len(self._seq)
        if self.text is not None:
            if secret:
                lines.append(f"Expected {len(self.text)} characters ({seq_count} key events); received {got_count}.")
            else:
                lines.append(f"Expected: {self.text!r} ({seq_count} key events)")
                lines.append(f"Received: {''.join(received_tokens)!r} ({got_count} key events)")
        elif self._seq_expected or self._seq:
            lines.append(f"Expected: {_event_list(self._seq_expected, secret)} ({seq_count} events)")
            lines.append(f"Received: {_event_list(self._seq, secret)} ({got_count} events)")
        if position is not None and self._seq_expected is not None:
            i = position - 1
            exp = self._seq_expected[i].describe(secret) if i < seq_count else "nothing more"
            got = self._seq[i].describe(secret) if i < got_count else "nothing"
            lines.append(f"First differing event: #{position}: expected {exp}, received {got}.")
        for code in sorted(set(self._rel) | set(self._rel_expected)):
            want, have = self._rel_expected.get(code, 0), self._rel.get(code, 0)
            if want != have:
                lines.append(f"{_code_name(KIND_REL, code)}: sent a total of {want:+d}, received {have:+d}.")
        for code in sorted(set(self._abs) | set(self._abs_expected)):
            want_abs = self._abs_expected.get(code)
            have_abs = self._abs.get(code, self._abs_before.get(code))
            if want_abs != have_abs:
                shown = "nothing" if have_abs is None else str(have_abs)
                wanted = "nothing" if want_abs is None else str(want_abs)
                lines.append(f"{_code_name(KIND_ABS, code)}: expected final value {wanted}, received {shown}.")
        if self._others:
            lines.append(f"{self._others} other event(s) arrived.")
        if reason == "timeout":
            idle = self.inbox.idle_for()
            if idle is not None:
                lines.append(
                    f"The agent's last message arrived {format_seconds(idle)} ago"
                    + (" (it may have stopped)." if idle > protocol.HEARTBEAT_INTERVAL * 1.5 else ".")
                )
        return "\n".join(lines)


def _event_list(events: Sequence[ExpectedEvent | ReceivedEvent], secret: bool, limit: int = 24) -> str:
    shown = [e.describe(secret) for e in events[:limit]]
    more = f", … {len(events) - limit} more" if len(events) > limit else ""
    return "[" + ", ".join(shown) + more + "]" if shown else "nothing"


Timer = Any


@dataclass
class VMInbox:
    """Events and expectations of one VM (used on one thread)."""

    vm: str
    call_later: Callable[[float, Callable[[], None]], Timer]
    clock: Callable[[], float] = time.monotonic
    keymap: KeyMap = DEFAULT_KEYMAP
    early_window: float = DEFAULT_EARLY_WINDOW
    history_size: int = DEFAULT_HISTORY
    idle_for: Callable[[], float | None] = lambda: None
    history: deque[ReceivedEvent] = field(init=False)
    unclaimed: deque[ReceivedEvent] = field(init=False)
    latencies: deque[float] = field(init=False)
    active: list[Expectation] = field(default_factory=list)
    windows: list[Expectation] = field(default_factory=list)
    last_abs: dict[int, int] = field(default_factory=dict)
    next_index: int = 0
    dropped_total: int = 0

    def __post_init__(self) -> None:
        self.history = deque(maxlen=self.history_size)
        self.unclaimed = deque(maxlen=self.history_size)
        self.latencies = deque(maxlen=DEFAULT_LATENCIES)

    # -- events ----------------------------------------------------------------------------------------------
    def add(self, message: Mapping[str, Any], *, platform: str = "linux", arrived: float | None = None) -> None:
        """One ``raw_input_event`` from the agent (ProtocolError when malformed; nothing is stored then)."""
        event = normalize_event(
            message,
            index=self.next_index,
            arrived=self.clock() if arrived is None else arrived,
            platform=platform,
            keymap=self.keymap,
        )
        self.next_index += 1
        self.history.append(event)
        for window in list(self.windows):
            if window.claims(event):
                window.feed(event)
        for expectation in self.active:
            if expectation.claims(event):
                expectation.feed(event)
                break
        else:
            self.unclaimed.append(event)
            self._prune(event.arrived)
        if event.kind == KIND_ABS:
            self.last_abs[event.code] = event.value

    def _prune(self, now: float) -> None:
        limit = now - self.early_window
        while self.unclaimed and self.unclaimed[0].arrived < limit:
            self.unclaimed.popleft()

    def dropped(self, message: Mapping[str, Any]) -> None:
        """The agent reported that the guest kernel dropped events (SYN_DROPPED / buffer overrun)."""
        count = message.get("count")
        self.dropped_total += count if isinstance(count, int) and count > 0 else 1
        for expectation in [*self.active, *self.windows]:
            expectation.dropped(message)

    def lost(self, why: str) -> None:
        """The agent's session ended: every open expectation fails now."""
        for expectation in [*self.active, *self.windows]:
            expectation.lost(why)

    def mark(self) -> int:
        """The index the next event will get (for :meth:`since` and window checks)."""
        return self.next_index

    def since(self, mark: int) -> list[ReceivedEvent]:
        """Events with ``index >= mark`` still in the history."""
        return [e for e in self.history if e.index >= mark]

    # -- expectations ----------------------------------------------------------------------------------------
    def expect(
        self, expected: Sequence[ExpectedEvent], *, timeout: float, registered_at: float | None = None, **options: Any
    ) -> Expectation:
        """Register a claiming expectation: buffered events of its kinds that arrived at most
        ``early_window`` before ``registered_at`` are taken over; older buffered events are dropped."""
        registered = self.clock() if registered_at is None else registered_at
        expectation = Expectation(self, expected, timeout=timeout, registered_at=registered, **options)
        limit = registered - self.early_window
        early: list[ReceivedEvent] = []
        keep: deque[ReceivedEvent] = deque(maxlen=self.history_size)
        for event in self.unclaimed:
            if event.arrived < limit:
                continue
            (early if expectation.claims(event) else keep).append(event)
        self.unclaimed = keep
        self.active.append(expectation)
        expectation.start(early)
        return expectation

    def window(self, expected: Sequence[ExpectedEvent], *, since: int, timeout: float, **options: Any) -> Expectation:
        """A non-claiming check of everything since mark ``since`` (history first, then new events)."""
        expectation = Expectation(
            self, expected, timeout=timeout, registered_at=self.clock(), claiming=False, **options
        )
        first = self.history[0].index if self.history else self.next_index
        if since < first and since < self.next_index:
            log.warning(
                "VM '%s': events %d..%d are no longer in the history (size %d); the check starts at %d",
                self.vm,
                since,
                first - 1,
                self.history_size,
                first,
            )
        self.windows.append(expectation)
        expectation.start(e for e in self.since(since) if expectation.claims(e))
        return expectation

    def finished(self, expectation: Expectation) -> None:
        if expectation in self.active:
            self.active.remove(expectation)
            result = expectation.result
            if result is not None and result.ok and result.latency is not None:
                self.latencies.append(result.latency)
                archive_latency(self.vm, result.latency * 1000.0, "+".join(sorted(expectation.kinds)), expectation.what)
        if expectation in self.windows:
            self.windows.remove(expectation)

    def latency_stats(self) -> LatencyStats:
        return LatencyStats.of(self.latencies)
