"""Needles and screen waits on a real lab guest's VGA text console (720x400, cursor hidden).

The tests use the session's leased typing guest (tests/conftest.py).

The committed needle ``tests/needles/needle-ok-1234`` was cut from a real screenshot after
``clear; echo NEEDLE-OK-1234``: the echoed text on row 0 and the prompt on row 1, with the host name's
digits (they differ per guest) excluded. ``ATP_WRITE_NEEDLES=1`` writes it again from the guest.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ATPLibrary.errors import ATPError, WaitTimeoutError
from ATPLibrary.screen.capture import take_screenshot
from ATPLibrary.screen.needle import load_needle, match_needle
from tests.integration.helpers import kw, wait_console_ready

pytestmark = pytest.mark.lab

NEEDLES = Path(__file__).resolve().parents[1] / "needles"
NEEDLE = NEEDLES / "needle-ok-1234.json"
#: Typed so that the command line itself does not show the text the needle looks for.
ECHO = "clear; echo NEEDLE-OK-$((1000 + 234))\n"
CELL_W, CELL_H = 9, 16
_written: list[Path] = []


@pytest.fixture(scope="module")
def screen_vm(typing_vm: str) -> str:
    """The session's leased typing guest (see tests/conftest.py)."""
    return typing_vm


@pytest.fixture()
def lib(lab: dict[str, Any], screen_vm: str, tmp_path: Path) -> Iterator[Any]:
    """An ATPLibrary connected to the lab host, like conftest's ``library``.

    Pictures that failing keywords save go to ``tmp_path``, not the current directory.
    """
    from ATPLibrary import ATPLibrary

    library = ATPLibrary(timeout=timedelta(seconds=30))
    library.ctx.output_dir = library.ctx.log_dir = lambda: tmp_path
    kw(library, "Connect To Host", lab["uri"], alias="lab")
    wait_console_ready(library, screen_vm)
    if os.environ.get("ATP_WRITE_NEEDLES") == "1" and not _written:
        kw(library, "Type Text", screen_vm, ECHO)
        kw(library, "Wait Until Screen Is Still", screen_vm, timeout=20, still_for=1)
        write_needle(take_screenshot(library.ctx.domain(screen_vm)).image())
        _written.append(NEEDLE)
    yield library
    kw(library, "Disconnect All Hosts")


def clear_and_settle(lib: Any, vm: str) -> None:
    kw(lib, "Type Text", vm, "clear\n")
    kw(lib, "Wait Until Screen Is Still", vm, timeout=20, still_for=0.7)


def write_needle(image: Image.Image) -> None:
    """Cut the needle from a screenshot showing NEEDLE-OK-1234 on row 0 and the prompt on row 1."""
    prompt = "root@atp-lab-04:~#"
    digits = prompt.index("04")
    image.crop((0, 0, 180, 2 * CELL_H)).save(NEEDLE.with_suffix(".png"), optimize=True)
    data = {
        "tags": ["echo-needle-ok"],
        "area": [
            {
                "xpos": 0,
                "ypos": 0,
                "width": len(prompt) * CELL_W,
                "height": 2 * CELL_H,
                "type": "match",
                "match": 95,
                "click_point": {"xpos": 7 * CELL_W, "ypos": CELL_H // 2},
            },
            {"xpos": digits * CELL_W, "ypos": CELL_H, "width": 2 * CELL_W, "height": CELL_H, "type": "exclude"},
        ],
        "properties": [],
    }
    NEEDLE.write_text(json.dumps(data, indent=2) + "\n")


def test_needle_matches_the_echoed_text_and_not_a_cleared_screen(
    lib: Any, screen_vm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    vm = screen_vm
    clear_and_settle(lib, vm)
    # negative: a cleared screen shows only the prompt
    with pytest.raises(ATPError, match=r"(?s)does not match needle 'needle-ok-1234'.*area 1 .*% < 95%"):
        kw(lib, "Screen Should Match", vm, str(NEEDLE))

    kw(lib, "Type Text", vm, ECHO)
    result = kw(lib, "Wait Until Screen Matches", vm, str(NEEDLE), timeout=20)
    assert result.matched and result.similarity >= 99.9, result.describe()
    assert result.areas[0].position == (0, 0)
    assert result.click_point == (63, 8)
    # relative names resolve against ${EXECDIR} (the current directory outside Robot) and its needles/
    monkeypatch.chdir(NEEDLES.parent.parent)
    assert kw(lib, "Screen Should Match", vm, "tests/needles/needle-ok-1234.json").matched
    monkeypatch.chdir(NEEDLES.parent)
    assert kw(lib, "Screen Should Match", vm, "needle-ok-1234").matched

    clear_and_settle(lib, vm)
    with pytest.raises(WaitTimeoutError, match=r"did not match within 2 s"):
        kw(lib, "Wait Until Screen Matches", vm, str(NEEDLE), timeout=2)


def test_committed_needle_is_host_independent(tmp_path: Path) -> None:
    """The host name's digits are excluded: the screen of another lab guest matches, other text does not."""
    needle = load_needle(NEEDLE)
    assert [a.type for a in needle.areas] == ["match", "exclude"]
    picture = needle.image
    other_guest = Image.new("RGB", (720, 400))
    other_guest.paste(picture, (0, 0))
    letters = picture.crop((9 * CELL_W, CELL_H, 11 * CELL_W, 2 * CELL_H))  # "la" of "lab"
    other_guest.paste(letters, (needle.areas[1].box.x, CELL_H))  # root@atp-lab-la:~#
    assert match_needle(other_guest, needle).matched
    picture.save(tmp_path / "plain.png")  # the same picture without the exclude area
    assert not match_needle(other_guest, load_needle(tmp_path / "plain.png", region="0,0,162,32")).matched
    cleared = Image.new("RGB", (720, 400))
    cleared.paste(picture.crop((0, CELL_H, picture.width, 2 * CELL_H)), (0, 0))  # only the prompt, on row 0
    assert not match_needle(cleared, needle).matched


def test_wait_until_screen_changes_on_delayed_output(lib: Any, screen_vm: str) -> None:
    vm = screen_vm
    clear_and_settle(lib, vm)
    kw(lib, "Type Text", vm, "sleep 2; echo CHANGED\n")
    kw(lib, "Wait Until Screen Is Still", vm, timeout=10, still_for=0.5)  # the typed line has been echoed
    started = time.monotonic()
    similarity = kw(lib, "Wait Until Screen Changes", vm, timeout=15, interval=0.1)
    waited = time.monotonic() - started
    assert similarity < 99.95
    assert waited < 3.0, f"the change came {waited:.1f} s after the wait started"
    # nothing happens on a settled screen: the wait fails with what it waited for and for how long
    kw(lib, "Wait Until Screen Is Still", vm, timeout=10, still_for=0.5)
    with pytest.raises(WaitTimeoutError, match=r"VM '.+': The screen did not change within 1.5 s.*100.00%"):
        kw(lib, "Wait Until Screen Changes", vm, timeout=1.5)


def test_wait_until_screen_is_still_waits_for_a_loop_to_finish(lib: Any, screen_vm: str) -> None:
    vm = screen_vm
    clear_and_settle(lib, vm)
    kw(lib, "Type Text", vm, "for i in 1 2 3 4; do echo $i; sleep 0.5; done\n")
    started = time.monotonic()
    waited = kw(lib, "Wait Until Screen Is Still", vm, timeout=20, still_for=1, interval=0.1)
    total = time.monotonic() - started
    assert total >= 2.0, f"still after {total:.1f} s, but the loop prints for 2 s"
    assert waited == pytest.approx(total, abs=0.5)
    shot = take_screenshot(lib.ctx.domain(vm)).image()
    assert shot.crop((0, 4 * CELL_H, 720, 6 * CELL_H)).getbbox() is not None  # rows of 3, 4 and the prompt


def test_never_still_fails_within_the_timeout_and_region_limits_the_wait(lib: Any, screen_vm: str) -> None:
    vm = screen_vm
    clear_and_settle(lib, vm)
    kw(lib, "Type Text", vm, "clear; while :; do printf '\\r%s' $RANDOM; sleep 0.2; done\n")
    try:
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError, match=r"did not stay still for 1 s within 3 s: it changed \d+ time"):
            kw(lib, "Wait Until Screen Is Still", vm, timeout=3, still_for=1)
        assert time.monotonic() - started < 6
        # the counter is on row 0: a region below it stays still; the counter's row keeps changing
        kw(lib, "Wait Until Screen Is Still", vm, timeout=5, still_for=1, region="0,64,720,336")
        kw(lib, "Wait Until Screen Changes", vm, timeout=5, region="0,0,720,16")
        kw(lib, "Wait Until Screen Is Still", vm, timeout=5, still_for=1, exclude="0,0,720,16")
    finally:
        kw(lib, "Press Keys", vm, "ctrl+c")
    clear_and_settle(lib, vm)


def test_click_on_match_clicks_the_needles_click_point(lib: Any, screen_vm: str) -> None:
    vm = screen_vm
    clear_and_settle(lib, vm)
    kw(lib, "Type Text", vm, ECHO)
    assert kw(lib, "Click On Match", vm, str(NEEDLE), timeout=20) == (63, 8)
