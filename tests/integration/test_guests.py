"""The first keywords on real lab guests: typing, keys, commands, screenshots, lifecycle, bad input.

Each failure kind from shared/notes/failure-kinds.md that this layer can meet has its right value here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ATPLibrary.errors import ATPError
from tests.integration.helpers import kw, read_file_when, type_into_file, wait_console_ready

pytestmark = pytest.mark.lab


@pytest.fixture()
def ready_vm(library: Any, typing_vm: str) -> str:
    wait_console_ready(library, typing_vm)
    return typing_vm


# ---------------------------------------------------------------- typing (failure kinds 1 and 2)


@pytest.mark.parametrize(
    "text",
    [
        "aabbcc  ::",  # kind 2: repeated letters must not collapse
        "Hello_World-42 (a>b) & {x|y} #~$ tail",  # kind 1: shifted punctuation keeps its shift
        "1 < 2 > 0 <<>> ''\"\" ``~~ \\\\ ||",
        "".join(chr(c) for c in range(0x20, 0x7F)),  # every printable ASCII character
    ],
    ids=["repeated-letters", "shifted-punctuation", "brackets-quotes", "all-printable-ascii"],
)
def test_typed_text_arrives_exactly(library: Any, ready_vm: str, text: str) -> None:
    assert type_into_file(library, ready_vm, text) == text + "\n"


def test_typed_shell_command_runs(library: Any, ready_vm: str) -> None:
    kw(library, "Execute Command In Guest", ready_vm, "rm -f /tmp/hello")
    kw(library, "Type Text", ready_vm, "echo typed > /tmp/hello\n")
    assert read_file_when(library, ready_vm, "/tmp/hello", "typed\n") == "typed\n"


def test_ctrl_c_interrupts_foreground_command(library: Any, ready_vm: str) -> None:
    kw(library, "Execute Command In Guest", ready_vm, "rm -f /tmp/status")
    kw(library, "Type Text", ready_vm, "sleep 60\n")
    deadline = time.monotonic() + 10
    while kw(library, "Execute Command In Guest", ready_vm, "pgrep -fx 'sleep 60'", expected_rc="any").rc != 0:
        assert time.monotonic() < deadline, "sleep never started on the console"
        time.sleep(0.2)
    kw(library, "Press Keys", ready_vm, "ctrl+c")
    # bash abandons the rest of a command list when its job dies of SIGINT: ask for $? on the next line.
    kw(library, "Type Text", ready_vm, "echo $? > /tmp/status\n")
    assert read_file_when(library, ready_vm, "/tmp/status", "130\n") == "130\n"


def test_unknown_key_name_fails_with_close_matches(library: Any, ready_vm: str) -> None:
    with pytest.raises(ATPError, match=r"ENTERR.*ENTER"):
        kw(library, "Press Keys", ready_vm, "ENTERR")


def test_untypable_character_fails_before_anything_is_sent(library: Any, ready_vm: str) -> None:
    kw(library, "Execute Command In Guest", ready_vm, "rm -f /tmp/untypable")
    with pytest.raises(ATPError, match="é"):
        kw(library, "Type Text", ready_vm, "echo café > /tmp/untypable\n")
    time.sleep(1)
    result = kw(library, "Execute Command In Guest", ready_vm, "test -e /tmp/untypable", expected_rc="any")
    assert result.rc != 0, "part of the text was typed although it could not all be typed"
    kw(library, "Press Keys", ready_vm, "ctrl+c")


# ---------------------------------------------------------------- commands (failure kind 4)


def test_output_after_a_delay_is_read(library: Any, typing_vm: str) -> None:
    result = kw(library, "Execute Command In Guest", typing_vm, "sleep 1; echo x")
    assert (result.rc, result.stdout, result.stderr) == (0, "x\n", "")


def test_stderr_and_exit_code(library: Any, typing_vm: str) -> None:
    result = kw(library, "Execute Command In Guest", typing_vm, "echo o; echo e >&2; exit 5", expected_rc=5)
    assert (result.rc, result.stdout, result.stderr) == (5, "o\n", "e\n")


def test_unexpected_exit_code_fails_with_stderr(library: Any, typing_vm: str) -> None:
    with pytest.raises(ATPError, match=r"(?s)2.*No such file"):
        kw(library, "Execute Command In Guest", typing_vm, "ls /nope")


def test_command_that_never_exits_fails_within_timeout_and_is_killed(library: Any, typing_vm: str) -> None:
    started = time.monotonic()
    with pytest.raises(ATPError, match=r"(?s)sleep 987.*3"):
        kw(library, "Execute Command In Guest", typing_vm, "sleep 987", timeout=3)
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"timeout of 3 s took {elapsed:.1f} s"
    left = kw(library, "Execute Command In Guest", typing_vm, "pgrep -fx 'sleep 987'", expected_rc="any")
    assert left.rc != 0, f"the timed-out command still runs in the guest: {left.stdout}"


def test_guest_identity_is_the_vm_name(library: Any, typing_vm: str) -> None:
    assert kw(library, "Execute Command In Guest", typing_vm, "hostname").stdout == typing_vm + "\n"


# ---------------------------------------------------------------- screenshots


def test_screenshot_is_a_png_of_the_console_and_not_blank(library: Any, ready_vm: str, tmp_path: Any) -> None:
    from ATPLibrary.screen.image import decode_png, is_blank

    kw(library, "Type Text", ready_vm, "clear; echo screenshot test\n")
    deadline = time.monotonic() + 10
    while True:
        path = kw(library, "Take Screenshot", ready_vm, str(tmp_path / "shot.png"))
        data = Path(path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = decode_png(data)
        if not is_blank(image):
            break
        assert time.monotonic() < deadline, "the screen stayed blank"
        time.sleep(0.3)
    assert (image.width, image.height) == (720, 400)


# ---------------------------------------------------------------- lifecycle (failure kind 6)


def test_lifecycle_and_agent_waits(library: Any, lifecycle_vm: str) -> None:
    vm = lifecycle_vm
    wait_console_ready(library, vm)
    kw(library, "Shutdown VM", vm, timeout=60)
    assert kw(library, "Get VM State", vm) == "shut off"
    with pytest.raises(ATPError, match=vm):
        kw(library, "Execute Command In Guest", vm, "true")

    kw(library, "Start VM", vm)
    started = time.monotonic()
    kw(library, "Guest Agent Should Respond", vm, timeout=90)  # right after start: passes by waiting
    assert time.monotonic() - started > 0.5, "the agent cannot answer before the guest has booted"
    assert kw(library, "Get VM State", vm) == "running"

    wait_console_ready(library, vm)
    kw(library, "Execute Command In Guest", vm, "touch /run/before-reboot")
    kw(library, "Reboot VM", vm)
    deadline = time.monotonic() + 90
    while True:
        try:
            if (
                kw(
                    library, "Execute Command In Guest", vm, "test -e /run/before-reboot", timeout=5, expected_rc="any"
                ).rc
                == 1
            ):
                break
        except ATPError:
            pass
        assert time.monotonic() < deadline, "the guest did not come back after Reboot VM"
        time.sleep(0.5)

    kw(library, "Destroy VM", vm)
    kw(library, "Wait Until VM State", vm, "shut off", timeout=10)
    kw(library, "Start VM", vm)
    kw(library, "Wait Until VM State", vm, "running", timeout=10)
    wait_console_ready(library, vm)


def test_stopped_guest_agent_fails_within_timeout(library: Any, lifecycle_vm: str) -> None:
    vm = lifecycle_vm
    wait_console_ready(library, vm)
    # Stop qemu-ga a moment after this command has answered (killing it at once would lose the answer).
    kw(library, "Execute Command In Guest", vm, "(sleep 0.5; kill $(cat /run/qemu-ga.pid)) >/dev/null 2>&1 &")
    time.sleep(1.5)
    started = time.monotonic()
    with pytest.raises(ATPError, match="guest agent not responding") as info:
        kw(library, "Guest Agent Should Respond", vm, timeout=5)
    elapsed = time.monotonic() - started
    assert 4.0 <= elapsed < 15, f"failed after {elapsed:.1f} s for a 5 s timeout"
    assert vm in str(info.value)
    kw(library, "Destroy VM", vm)
    wait_console_ready(library, vm)


def test_lab_up_waits_for_a_stopped_guests_new_boot(library: Any, lab: dict[str, Any], lifecycle_vm: str) -> None:
    """A guest stopped with its serial log still saying ready: `atp lab up` must wait for the new boot's mark."""
    from ATPLibrary.lab.lab import Lab, console_status

    vm = lifecycle_vm
    wait_console_ready(library, vm)
    serial = Path(lab["guests"][vm]["serial_log"])
    # The guest creates /run/atp-console-ready just before it writes the serial line: give the line a moment.
    deadline = time.monotonic() + 15
    while console_status(serial) != "ready" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert console_status(serial) == "ready"
    kw(library, "Destroy VM", vm)
    kw(library, "Wait Until VM State", vm, "shut off", timeout=10)
    started = time.monotonic()
    Lab().up(len(lab["vms"]))
    assert time.monotonic() - started > 2, "lab up returned before the guest could have booted again"
    assert kw(library, "Get VM State", vm) == "running"
    assert console_status(serial) == "ready"
    kw(library, "Guest Agent Should Respond", vm, timeout=30)


def test_wait_until_state_times_out_naming_vm_and_state(library: Any, typing_vm: str) -> None:
    started = time.monotonic()
    with pytest.raises(ATPError, match=rf"(?s){typing_vm}.*paused"):
        kw(library, "Wait Until VM State", typing_vm, "paused", timeout=2)
    assert time.monotonic() - started < 8


def test_unknown_vm_names_the_vm_and_lists_domains(library: Any, typing_vm: str) -> None:
    with pytest.raises(ATPError, match=rf"(?s)atp-lab-0x.*{typing_vm}"):
        kw(library, "Get VM State", "atp-lab-0x")


def test_unknown_uri_names_the_uri(lab: dict[str, Any]) -> None:
    from ATPLibrary import ATPLibrary

    lib = ATPLibrary()
    with pytest.raises(ATPError, match="nosuchdriver:///system"):
        kw(lib, "Connect To Host", "nosuchdriver:///system")
