"""Verification agent: VM identity fallbacks (fake sysfs tree, fake Windows commands) and command verification."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from ATPLibrary.agent.commands import run_verify_command
from ATPLibrary.agent.identity import detect_vm_id, usable

pytestmark = pytest.mark.timeout(30)

ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def sysfs(root: Path, serial: str | None = None, uuid: str | None = None, hostname: str | None = None) -> Path:
    dmi = root / "sys/class/dmi/id"
    dmi.mkdir(parents=True)
    if serial is not None:
        (dmi / "product_serial").write_text(serial)
    if uuid is not None:
        (dmi / "product_uuid").write_text(uuid)
    if hostname is not None:
        (root / "etc").mkdir()
        (root / "etc/hostname").write_text(hostname)
    return root


def no_hostname() -> str:
    return ""


def test_smbios_serial_first(tmp_path: Path) -> None:
    root = sysfs(tmp_path, "atp-lab-03\n", "4c4c4544-0000-1000-8000-000000000001\n", "debian\n")
    assert detect_vm_id(root=root) == ("atp-lab-03", "smbios-serial")


def test_explicit_vm_id_wins(tmp_path: Path) -> None:
    root = sysfs(tmp_path, "atp-lab-03\n")
    assert detect_vm_id("my-vm", root=root) == ("my-vm", "--vm-id")
    assert detect_vm_id("  ", root=root) == ("atp-lab-03", "smbios-serial")


@pytest.mark.parametrize("serial", ["", "None\n", "0\n", "To be filled by O.E.M.\n", "Not Specified", None])
def test_placeholder_serial_falls_back_to_the_product_uuid(tmp_path: Path, serial: str | None) -> None:
    root = sysfs(tmp_path, serial, "7d9b3c2e-1111-4a4a-9c9c-0123456789ab\n")
    assert detect_vm_id(root=root) == ("7d9b3c2e-1111-4a4a-9c9c-0123456789ab", "product-uuid")


def test_all_zero_uuid_falls_back_to_etc_hostname(tmp_path: Path) -> None:
    root = sysfs(tmp_path, "None", ZERO_UUID + "\n", "guest-7\n")
    assert detect_vm_id(root=root, hostname=no_hostname) == ("guest-7", "hostname")


def test_nothing_readable_falls_back_to_the_hostname_call(tmp_path: Path) -> None:
    root = sysfs(tmp_path)  # no files at all (or root-only product_serial: unreadable)
    assert detect_vm_id(root=root, hostname=lambda: "box") == ("box", "hostname")
    assert detect_vm_id(root=root, hostname=no_hostname) == ("unknown", "none")


def test_placeholders() -> None:
    assert usable(ZERO_UUID) is None and usable("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF") is None
    assert usable(" None ") is None and usable("") is None and usable(None) is None
    assert usable(" vm-1\n") == "vm-1"


def windows_runner(outputs: dict[str, str]):  # type: ignore[no-untyped-def]
    calls: list[list[str]] = []

    def run(argv: Sequence[str]) -> str:
        calls.append(list(argv))
        key = " ".join(argv[:3]) if argv[0] == "wmic" else argv[-1]
        return outputs.get(key, "")

    return run, calls


def test_windows_wmic_serial() -> None:
    run, calls = windows_runner({"wmic bios get": "SerialNumber  \r\r\natp-win-01  \r\r\n\r\r\n"})
    assert detect_vm_id(platform="win32", run=run) == ("atp-win-01", "smbios-serial")
    assert calls == [["wmic", "bios", "get", "serialnumber"]]


def test_windows_falls_back_to_wmic_uuid_then_powershell_then_hostname() -> None:
    run, calls = windows_runner(
        {"wmic bios get": "SerialNumber\r\nNone\r\n", "wmic csproduct get": "UUID\r\n" + ZERO_UUID}
    )
    assert detect_vm_id(platform="win32", run=run, hostname=lambda: "WIN-HOST") == ("WIN-HOST", "hostname")
    assert [c[0] for c in calls] == ["wmic", "wmic", "powershell.exe", "powershell.exe"]

    uuid = "5A2F0E4C-9B1D-4C2A-8F00-1234567890AB"
    run, _ = windows_runner({"(Get-CimInstance -ClassName Win32_ComputerSystemProduct).UUID": uuid + "\r\n"})
    assert detect_vm_id(platform="win32", run=run) == (uuid, "product-uuid")


# -- command verification ------------------------------------------------------------------------------------------

PY = sys.executable


def test_command_passes_with_exit_code_and_output_checks() -> None:
    result = run_verify_command(
        {
            "message_type": "verify_command",
            "request_id": "r1",
            "command": PY,
            "args": ["-c", "import sys; print('hello out'); print('warn', file=sys.stderr); sys.exit(3)"],
            "expected_exit_code": 3,
            "expected_stdout_contains": "hello",
            "expected_stderr_contains": "warn",
            "timeout": 20,
        }
    )
    assert result["message_type"] == "command_result" and result["request_id"] == "r1"
    assert result["exit_code"] == 3 and result["verified"] is True, result
    assert result["stdout"] == "hello out\n" and result["stderr"] == "warn\n"
    assert result["details"] == "all checks passed"


def test_command_failures_are_each_named() -> None:
    result = run_verify_command(
        {
            "request_id": "r2",
            "command": [PY, "-c", "print('abc')"],
            "expected_exit_code": 1,
            "expected_stdout_contains": "xyz",
        }
    )
    assert result["verified"] is False and result["exit_code"] == 0
    assert result["details"] == "exit code 0, expected 1; stdout does not contain 'xyz'"


def test_no_shell_unless_asked() -> None:
    literal = run_verify_command({"request_id": "r3", "command": "echo hi; exit 3"})
    assert literal["verified"] is False and literal["exit_code"] is None
    assert "could not start" in literal["details"]
    shell = run_verify_command(
        {"request_id": "r4", "command": "echo hi; exit 3", "shell": True, "expected_exit_code": 3}
    )
    assert shell["verified"] is True and shell["stdout"] == "hi\n"
    bad = run_verify_command({"request_id": "r5", "command": "echo", "args": ["x"], "shell": True})
    assert bad["verified"] is False and "takes no 'args'" in bad["details"]


def test_timeout_kills_the_command() -> None:
    started = time.monotonic()
    result = run_verify_command(
        {
            "request_id": "r6",
            "command": PY,
            "args": ["-c", "import time; print('x', flush=True); time.sleep(30)"],
            "timeout": 0.5,
        }
    )
    assert time.monotonic() - started < 5
    assert result["timed_out"] is True and result["verified"] is False and result["exit_code"] is None
    assert result["details"] == "timed out after 0.5 s and was killed"
    assert result["stdout"] == "x\n"


def test_null_expected_exit_code_skips_that_check() -> None:
    result = run_verify_command(
        {"request_id": 7, "command": PY, "args": ["-c", "raise SystemExit(5)"], "expected_exit_code": None}
    )
    assert result["verified"] is True and result["exit_code"] == 5 and result["request_id"] == 7
