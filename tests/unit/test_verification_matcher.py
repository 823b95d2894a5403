"""Matching rules of the verification server (ATPLibrary.verification.matcher), on a fake clock."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from ATPLibrary.errors import VerificationDroppedEvents, VerificationFailed, VerificationTimeout
from ATPLibrary.keys import DE, US
from ATPLibrary.verification.matcher import (
    ExpectedEvent,
    LatencyStats,
    MatchResult,
    VMInbox,
    decode_text,
    normalize_event,
    qmp_events,
    text_events,
)

pytestmark = pytest.mark.timeout(30)


class FakeTimers:
    """A manual clock with call_later."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._queue: list[tuple[float, int, list[Any]]] = []
        self._ids = itertools.count()

    def clock(self) -> float:
        return self.now

    def call_later(self, delay: float, fn: Callable[[], None]) -> Any:
        entry: list[Any] = [fn, False]
        heapq.heappush(self._queue, (self.now + delay, next(self._ids), entry))

        class Handle:
            def cancel(self) -> None:
                entry[1] = True

        return Handle()

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            due, _, (fn, cancelled) = heapq.heappop(self._queue)
            self.now = max(self.now, due)
            if not cancelled:
                fn()
        self.now = end


@pytest.fixture
def timers() -> FakeTimers:
    return FakeTimers()


@pytest.fixture
def inbox(timers: FakeTimers) -> VMInbox:
    return VMInbox("vm1", call_later=timers.call_later, clock=timers.clock)


def key_msg(code: int, value: int, **extra: Any) -> dict[str, Any]:
    return {"message_type": "raw_input_event", "kind": "key", "code": code, "value": value, "name": "", **extra}


def feed_text(inbox: VMInbox, text: str, layout: Any = US) -> None:
    for event in text_events(text, layout):
        inbox.add(key_msg(event.code, event.value))


def result_of(expectation: Any) -> MatchResult:
    assert expectation.result is not None, "the expectation has not finished"
    return expectation.result  # type: ignore[no-any-return]


def test_exact_text_passes_after_settle_and_records_latency(inbox: VMInbox, timers: FakeTimers) -> None:
    exp = inbox.expect(text_events("Hello, World!", US), timeout=5, text="Hello, World!", layout=US)
    timers.advance(0.02)
    feed_text(inbox, "Hello, World!")
    assert exp.result is None  # still settling: an extra event could come
    timers.advance(0.2)
    result = result_of(exp)
    assert result.ok, result.message
    assert result.latency == pytest.approx(0.02)
    assert inbox.latency_stats().count == 1


def test_wrong_character_names_position_expected_and_received(inbox: VMInbox, timers: FakeTimers) -> None:
    exp = inbox.expect(text_events("abcdef", US), timeout=5, text="abcdef", layout=US)
    feed_text(inbox, "abcXef")
    timers.advance(1)
    result = result_of(exp)
    assert not result.ok and result.reason == "mismatch"
    assert "Position 4: expected 'd', received 'X'." in result.message
    assert result.text_position == 4
    assert result.received_text == "abcXef"
    assert "timeout 5 seconds" in result.message
    assert "First differing event: #7: expected KEY_D down, received KEY_LEFTSHIFT down." in result.message
    with pytest.raises(VerificationFailed, match="Position 4"):
        result.raise_if_failed()


def test_missing_characters_time_out_with_position(inbox: VMInbox, timers: FakeTimers) -> None:
    exp = inbox.expect(text_events("abcdef", US), timeout=2, text="abcdef", layout=US)
    feed_text(inbox, "abcde")
    timers.advance(1.9)
    assert exp.result is None
    timers.advance(0.2)
    result = result_of(exp)
    assert result.reason == "timeout"
    assert "Position 6: expected 'f', received nothing." in result.message
    assert "within 2 seconds" in result.message
    with pytest.raises(VerificationTimeout):
        result.raise_if_failed()


def test_extra_character_fails_even_after_a_complete_match(inbox: VMInbox, timers: FakeTimers) -> None:
    exp = inbox.expect(text_events("abc", US), timeout=5, text="abc", layout=US)
    feed_text(inbox, "abc")
    timers.advance(0.05)  # within settle
    feed_text(inbox, "c")
    timers.advance(1)
    result = result_of(exp)
    assert result.reason == "mismatch"
    assert "Position 4: expected the end of the text, received 'c'." in result.message


def test_reordered_keys_fail(inbox: VMInbox, timers: FakeTimers) -> None:
    exp = inbox.expect(text_events("ab", US), timeout=5, text="ab", layout=US)
    feed_text(inbox, "ba")
    timers.advance(1)
    result = result_of(exp)
    assert not result.ok
    assert result.position == 1
    assert "Position 1: expected 'a', received 'b'." in result.message


def test_wrong_modifier_order_is_reported_as_event_difference(inbox: VMInbox, timers: FakeTimers) -> None:
    """Same characters, but Shift released before the key: the event sequence differs."""
    exp = inbox.expect(text_events("A", US), timeout=5, text="A", layout=US)
    for code, value in ((42, 1), (30, 1), (42, 0), (30, 0)):
        inbox.add(key_msg(code, value))
    timers.advance(1)
    result = result_of(exp)
    assert not result.ok
    assert result.text_position is None
    assert "#3: expected KEY_A up, received KEY_LEFTSHIFT up" in result.message


def test_key_combo_without_text(inbox: VMInbox, timers: FakeTimers) -> None:
    expected = [ExpectedEvent.key(k, d) for k, d in (("ctrl", True), ("alt", True), ("delete", True))]
    expected += [ExpectedEvent.key(k, False) for k in ("delete", "alt", "ctrl")]
    exp = inbox.expect(expected, timeout=5)
    for code, value in ((29, 1), (56, 1), (111, 1), (111, 0), (29, 0)):  # ALT up missing
        inbox.add(key_msg(code, value))
    timers.advance(6)
    result = result_of(exp)
    assert not result.ok
    assert "#5: expected KEY_LEFTALT up, received KEY_LEFTCTRL up" in result.message
    assert "Expected: [KEY_LEFTCTRL down" in result.message


def test_qcode_evdev_and_vk_name_the_same_key(inbox: VMInbox, timers: FakeTimers) -> None:
    by_qcode = ExpectedEvent.key("ret")
    assert by_qcode == ExpectedEvent.key("KEY_ENTER") == ExpectedEvent.key_vk(0x0D) == ExpectedEvent.key("ENTER")
    assert qmp_events([{"type": "key", "data": {"down": True, "key": {"type": "qcode", "data": "ret"}}}]) == [by_qcode]
    # a Linux agent reports evdev 28, a Windows agent VK_RETURN (0x0D): both match
    for platform, code in (("linux", 28), ("windows", 0x0D)):
        exp = inbox.expect([by_qcode, ExpectedEvent.key("ret", False)], timeout=5)
        inbox.add(key_msg(code, 1), platform=platform)
        inbox.add(key_msg(code, 0), platform=platform)
        timers.advance(1)
        assert result_of(exp).ok, (platform, result_of(exp).message)
    # keypad Enter shares VK_RETURN; Windows tells it apart by the extended flag
    event = normalize_event(key_msg(0x0D, 1, extended=True), index=0, arrived=0, platform="windows")
    assert event.name == "KEY_KPENTER"
    assert normalize_event(key_msg(0x41, 1), index=0, arrived=0, platform="windows").name == "KEY_A"


def test_autorepeat_is_extra_unless_allowed(inbox: VMInbox, timers: FakeTimers) -> None:
    for ignore_repeat, ok in ((False, False), (True, True)):
        exp = inbox.expect(text_events("a", US), timeout=5, text="a", layout=US, ignore_repeat=ignore_repeat)
        for value in (1, 2, 2, 0):
            inbox.add(key_msg(30, value))
        timers.advance(1)
        assert result_of(exp).ok is ok, result_of(exp).message


def test_early_events_within_the_window_count_older_ones_do_not(inbox: VMInbox, timers: FakeTimers) -> None:
    feed_text(inbox, "x")  # 1.0 s before registration: outside the window
    timers.advance(0.7)
    feed_text(inbox, "a")  # 0.3 s before registration: a fast guest
    timers.advance(0.3)
    exp = inbox.expect(text_events("a", US), timeout=1, text="a", layout=US)
    timers.advance(0.5)
    result = result_of(exp)
    assert result.ok, result.message
    assert [e.name for e in result.received] == ["KEY_A", "KEY_A"]


def test_consumed_events_are_not_offered_to_the_next_expectation(inbox: VMInbox, timers: FakeTimers) -> None:
    first = inbox.expect(text_events("a", US), timeout=1, text="a", layout=US)
    feed_text(inbox, "a")
    timers.advance(0.2)
    assert result_of(first).ok
    second = inbox.expect(text_events("a", US), timeout=1, text="a", layout=US)
    timers.advance(1.5)
    assert result_of(second).reason == "timeout"
    assert "received nothing" in result_of(second).message


def test_unclaimed_kinds_are_left_for_others(inbox: VMInbox, timers: FakeTimers) -> None:
    """A key expectation ignores mouse movement; a mouse expectation registered soon after gets it."""
    keys = inbox.expect(text_events("a", US), timeout=1, text="a", layout=US)
    inbox.add({"message_type": "raw_input_event", "kind": "rel", "code": 0, "value": 5, "name": "REL_X"})
    feed_text(inbox, "a")
    timers.advance(0.3)
    assert result_of(keys).ok
    mouse = inbox.expect([ExpectedEvent.rel("x", 5)], timeout=1)
    timers.advance(0.3)
    assert result_of(mouse).ok, result_of(mouse).message


def test_mouse_buttons_rel_sums_and_abs_final_values(inbox: VMInbox, timers: FakeTimers) -> None:
    qmp = [
        {"type": "rel", "data": {"axis": "x", "value": 100}},
        {"type": "rel", "data": {"axis": "y", "value": -30}},
        {"type": "btn", "data": {"down": True, "button": "left"}},
        {"type": "btn", "data": {"down": False, "button": "left"}},
        {"type": "btn", "data": {"down": True, "button": "wheel-up"}},
        {"type": "btn", "data": {"down": False, "button": "wheel-up"}},
    ]
    exp = inbox.expect(qmp_events(qmp), timeout=5)

    def rel(code: int, value: int) -> dict[str, Any]:
        return {"message_type": "raw_input_event", "kind": "rel", "code": code, "value": value, "name": ""}

    for message in (rel(0, 60), rel(1, -30), rel(0, 40), rel(8, 1), rel(11, 120)):  # hi-res wheel ignored
        inbox.add(message)
    inbox.add({"message_type": "raw_input_event", "event_type": "mouse", "code": 0x110, "value": 1, "name": "LEFT"})
    inbox.add({"message_type": "raw_input_event", "kind": "button", "code": 0x110, "value": 0, "name": "BTN_LEFT"})
    timers.advance(1)
    assert result_of(exp).ok, result_of(exp).message

    # too far on x
    exp = inbox.expect([ExpectedEvent.rel("x", 10)], timeout=1)
    inbox.add(rel(0, 12))
    timers.advance(2)
    assert "REL_X: sent a total of +10, received +12." in result_of(exp).message

    # absolute: final value counts; an axis that did not change sends no event
    def absm(code: int, value: int) -> dict[str, Any]:
        return {"message_type": "raw_input_event", "kind": "abs", "code": code, "value": value, "name": ""}

    exp = inbox.expect([ExpectedEvent.abs("x", 100), ExpectedEvent.abs("y", 200)], timeout=1)
    for message in (absm(0, 50), absm(1, 200), absm(0, 100)):
        inbox.add(message)
    timers.advance(1)
    assert result_of(exp).ok, result_of(exp).message
    exp = inbox.expect([ExpectedEvent.abs("x", 300), ExpectedEvent.abs("y", 200)], timeout=1)
    inbox.add(absm(0, 300))  # y unchanged: the kernel reports nothing for it
    timers.advance(1)
    assert result_of(exp).ok, result_of(exp).message
    exp = inbox.expect([ExpectedEvent.abs("x", 400)], timeout=1)
    timers.advance(2)
    assert "ABS_X: expected final value 400, received 300." in result_of(exp).message


def test_dropped_fails_at_once(inbox: VMInbox, timers: FakeTimers) -> None:
    exp = inbox.expect(text_events("abc", US), timeout=30, text="abc", layout=US)
    feed_text(inbox, "a")
    inbox.dropped({"message_type": "dropped", "count": 7})
    result = result_of(exp)
    assert result.reason == "dropped"
    assert "the verification agent fell behind and the guest kernel dropped events (7 events)" in result.message
    with pytest.raises(VerificationDroppedEvents):
        result.raise_if_failed()


def test_timeout_counts_from_sent(inbox: VMInbox, timers: FakeTimers) -> None:
    exp = inbox.expect(text_events("a", US), timeout=1, text="a", layout=US)
    timers.advance(0.8)
    exp.mark_sent(timers.now)  # sending took 0.8 s
    timers.advance(0.9)
    assert exp.result is None
    timers.advance(0.2)
    assert result_of(exp).reason == "timeout"


def test_window_check_since_mark_claims_nothing(inbox: VMInbox, timers: FakeTimers) -> None:
    mark = inbox.mark()
    feed_text(inbox, "abcXef")  # sent without verification
    window = inbox.window(text_events("abcdef", US), since=mark, timeout=1, text="abcdef", layout=US)
    timers.advance(2)
    assert "Position 4: expected 'd', received 'X'." in result_of(window).message
    # the events are still there for another look
    assert decode_text(inbox.since(mark), US) == "abcXef"


def test_secret_text_never_shows_characters(inbox: VMInbox, timers: FakeTimers) -> None:
    exp = inbox.expect(text_events("hunter2", US), timeout=1, text="hunter2", layout=US, secret=True)
    feed_text(inbox, "hunted2")
    timers.advance(2)
    result = result_of(exp)
    assert "Text position 6 differs" in result.message
    for fragment in ("hunt", "'r'", "'d'", "KEY_R", "KEY_D"):
        assert fragment not in result.message
    assert result.expected_text is None and result.received_text is None


def test_decode_text_tracks_shift_and_altgr() -> None:
    assert decode_text([{"code": c, "value": v} for c, v in ((54, 1), (30, 1), (30, 0), (54, 0))], US) == "A"
    text = "a@€{Z!"
    assert decode_text(text_events(text, DE), DE) == text
    assert decode_text(text_events("Tab\tEnd\n", US), US) == "Tab\tEnd\n"
    ctrl_c = [ExpectedEvent.key("ctrl"), ExpectedEvent.key("c"), ExpectedEvent.key("c", False)]
    assert decode_text(ctrl_c, US) == "<CTRL+C>"


def test_malformed_event_fields_are_protocol_errors(inbox: VMInbox) -> None:
    from ATPLibrary.verification.protocol import ProtocolError

    with pytest.raises(ProtocolError):
        inbox.add({"message_type": "raw_input_event", "kind": "key", "code": "x", "value": 1})
    assert inbox.mark() == 0


def test_latency_percentiles() -> None:
    stats = LatencyStats.of([i / 1000 for i in range(1, 101)])
    assert (stats.count, stats.p50, stats.p99, stats.max) == (100, pytest.approx(50), pytest.approx(99), 100)
    assert LatencyStats.of([]).p50 is None
