"""Transport-independent input: pixel scaling, relative steps, pointer event order, input options."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest

from ATPLibrary.errors import ConfigurationError
from ATPLibrary.input.mouse import ABS_MAX, MouseButton, ScrollDirection, pixel_to_abs, rel_steps
from ATPLibrary.input.pointer import QmpPointer
from ATPLibrary.input.transport import InputTransport
from ATPLibrary.keywords.context import LibraryContext


class Sink:
    def __init__(self) -> None:
        self.reports: list[list[Mapping[str, Any]]] = []

    def send_input_events(self, events: Sequence[Mapping[str, Any]]) -> int:
        self.reports.append(list(events))
        return 1


@pytest.mark.parametrize(
    ("pos", "size", "expected"),
    [(0, 720, 0), (719, 720, ABS_MAX), (360, 720, round(360 * 32767 / 719)), (199, 400, round(199 * 32767 / 399))],
)
def test_pixel_to_abs_formula(pos: int, size: int, expected: int) -> None:
    assert pixel_to_abs(pos, size) == expected


def test_pixel_to_abs_maps_every_pixel_monotonically_and_distinctly() -> None:
    values = [pixel_to_abs(p, 1920) for p in range(1920)]
    assert values == sorted(values) and len(set(values)) == 1920
    assert values[0] == 0 and values[-1] == ABS_MAX


@pytest.mark.parametrize(("pos", "size"), [(-1, 720), (720, 720), (5, 0)])
def test_positions_outside_the_screen_fail_naming_the_range(pos: int, size: int) -> None:
    with pytest.raises(ConfigurationError, match="x"):
        pixel_to_abs(pos, size)


@pytest.mark.parametrize(("dx", "dy"), [(0, 0), (10, -5), (300, 0), (-1000, 777), (127, 127), (128, -1)])
def test_relative_steps_add_up_exactly_and_stay_small(dx: int, dy: int) -> None:
    steps = rel_steps(dx, dy)
    assert sum(s[0] for s in steps) == dx and sum(s[1] for s in steps) == dy
    assert all(abs(sx) <= 127 and abs(sy) <= 127 for sx, sy in steps)


def _pointer(sink: Sink, size: tuple[int, int] = (720, 400)) -> QmpPointer:
    return QmpPointer(sink, lambda: size, sleep=lambda _s: None)


def test_move_to_sends_x_and_y_in_one_report() -> None:
    sink = Sink()
    assert _pointer(sink).move_to(719, 0) == (ABS_MAX, 0)
    # each axis also carries the pixel it was scaled from (for SPICE, which sends pixels; QMP drops it)
    assert sink.reports == [
        [
            {"type": "abs", "data": {"axis": "x", "value": ABS_MAX}, "atp-pixel": {"position": 719, "size": 720}},
            {"type": "abs", "data": {"axis": "y", "value": 0}, "atp-pixel": {"position": 0, "size": 400}},
        ]
    ]


def test_double_click_is_press_release_press_release() -> None:
    sink = Sink()
    _pointer(sink).click(MouseButton.RIGHT, 2)
    downs = [r[0]["data"]["down"] for r in sink.reports]
    assert downs == [True, False, True, False]
    assert {r[0]["data"]["button"] for r in sink.reports} == {"right"}


def test_scroll_sends_one_notch_per_click() -> None:
    sink = Sink()
    _pointer(sink).scroll(ScrollDirection.UP, 3)
    assert len(sink.reports) == 3
    assert all([e["data"]["down"] for e in r] == [True, False] for r in sink.reports)
    assert all(e["data"]["button"] == "wheel-up" for r in sink.reports for e in r)


def test_drag_presses_moves_and_releases_and_checks_the_end_first() -> None:
    sink = Sink()
    _pointer(sink).drag((10, 10), (100, 50), MouseButton.LEFT, steps=3, step_delay=0)
    kinds = [r[0]["type"] for r in sink.reports]
    assert kinds == ["abs", "btn", "abs", "abs", "abs", "btn"]
    assert sink.reports[-2][0]["data"]["value"] == pixel_to_abs(100, 720)
    bad = Sink()
    with pytest.raises(ConfigurationError):
        _pointer(bad).drag((10, 10), (9999, 50), MouseButton.LEFT)
    assert not any(r[0]["type"] == "btn" for r in bad.reports), "a button went down before the bad target failed"


def test_input_options_default_to_the_library_and_refuse_what_is_missing() -> None:
    ctx = LibraryContext()
    assert ctx.input_options(None, None) == (InputTransport.QMP, False)
    assert ctx.input_options(InputTransport.QMP, False) == (InputTransport.QMP, False)
    assert ctx.input_options("QMP", True) == (InputTransport.QMP, True)
    assert LibraryContext(verify=True).input_options(None, None) == (InputTransport.QMP, True)
    assert ctx.input_options("spice", None) == (InputTransport.SPICE, False)
    spice_by_default = LibraryContext(via=InputTransport.SPICE)
    assert spice_by_default.input_options(None, None) == (InputTransport.SPICE, False)
    # via=spice without an open session fails before anything is sent, saying what to do
    with pytest.raises(ConfigurationError, match="Open SPICE Session"):
        spice_by_default.perform_input("vm1", lambda sink, _sleep: sink, via=None, verify=False)


def test_timeout_scale_multiplies_default_and_explicit_timeouts() -> None:
    ctx = LibraryContext(timeout=timedelta(seconds=10), timeout_scale=2.5)
    assert ctx.seconds(None) == 25.0
    assert ctx.seconds(timedelta(seconds=4)) == 10.0
    assert ctx.seconds("2s") == 5.0
    with pytest.raises(ConfigurationError):
        LibraryContext(timeout_scale=0)


def test_recording_sink_replays_the_same_commands_and_pauses() -> None:
    from ATPLibrary.input.recording import RecordingSink

    recorder = RecordingSink()
    pointer = QmpPointer(recorder, lambda: (720, 400), sleep=recorder.sleep)
    pointer.drag((0, 0), (719, 399), MouseButton.LEFT, steps=2, step_delay=0.01)
    assert [kind for kind, _ in recorder.steps].count("sleep") == 2
    sink, pauses = Sink(), []
    assert recorder.replay(sink, pauses.append) == len(sink.reports) == 5
    assert pauses == [0.01, 0.01]
    assert [e for r in sink.reports for e in r] == recorder.events
