"""PowerShell end to end on real lab guests, with ATPLibrary's PowerShell STAND-IN (not PowerShell).

The lab cannot run Windows, so each leased guest gets the stand-in (ATPLibrary/powershell/standin.py, a python3
script) through qemu-ga at a path unique to this run, with a console code page: 936 (GBK) on the first guest,
437 on the second. The keyword and ``atp ps exec --all`` (a subprocess) then run through the real guest-exec
path: our argument list, the guest-file route for a script beyond 32 767 characters of command line, and output
in a non-UTF-8 code page. Only the two leased guests have the stand-in at that path, so ``--all`` runs on them
and lists every other lab guest as skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ATPLibrary.errors import GuestCommandError, WaitTimeoutError
from ATPLibrary.hosts.connection import HostConnection
from ATPLibrary.powershell.command import COMMON_SWITCHES, MAX_COMMAND_LINE, encoded_args, windows_command_line
from ATPLibrary.powershell.standin import STAND_IN_LABEL
from ATPLibrary.qga import GuestAgent
from ATPLibrary.qga.files import GuestFiles
from tests.integration.helpers import kw, wait_console_ready

pytestmark = pytest.mark.lab

ATP = str(Path(sys.executable).with_name("atp"))
CODE_PAGES = (936, 437)
TIMEOUT = 120.0


def _running_lab(request: pytest.FixtureRequest) -> tuple[str, list[str], set[str]]:
    """The lab's URI and its running guests, console-ready ones first.

    A running lab is used as it is (one guest that is not console-ready does not hold these tests up); only
    when there is none is the session's ``lab`` fixture asked to bring it up.
    """
    from ATPLibrary.lab import paths
    from ATPLibrary.lab.lab import Lab

    try:
        uri = str(json.loads(paths.vars_file().read_text())["uri"])
        guests = Lab().status()["guests"]
    except (OSError, ValueError, KeyError):
        guests = {}
    running = [name for name, g in sorted(guests.items()) if g["state"] == "running"]
    if len(running) < 2:
        lab = request.getfixturevalue("lab")
        return str(lab["uri"]), [str(v) for v in lab["vms"]], {str(v) for v in lab["vms"]}
    ready = {name for name in running if guests[name]["console_ready"]}
    return uri, sorted(running, key=lambda name: name not in ready), ready


@pytest.fixture(scope="module")
def stand_ins(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Two leased lab guests with the stand-in at ``/tmp/atp-ps-<run>/powershell.exe`` (removed afterwards)."""
    from ATPLibrary.pool.leases import LeaseStore
    from ATPLibrary.powershell.standin_install import install_stand_in

    uri, candidates, ready = _running_lab(request)
    store = LeaseStore()
    leases: list[Any] = []
    try:
        for _ in range(2):
            free = [v for v in candidates if v not in {lease.vm for lease in leases}]
            leases.append(store.acquire(uri, free, "pytest test_powershell_lab", timeout=120))
        vms = (leases[0].vm, leases[1].vm)
    except WaitTimeoutError:
        # Every other guest is busy, maybe held by this very pytest session: use the session's own leases.
        for lease in leases:
            lease.release()
        leases = []
        vms = tuple(request.getfixturevalue("leased_vms"))
    folder = f"/tmp/atp-ps-{uuid.uuid4().hex[:12]}"
    path = f"{folder}/powershell.exe"
    host = HostConnection(uri)
    agents = {vm: GuestAgent(host.domain(vm)) for vm in vms}
    try:
        for vm, code_page in zip(vms, CODE_PAGES, strict=True):
            agents[vm].ping(TIMEOUT)
            install_stand_in(agents[vm], path, code_page=code_page, timeout=TIMEOUT)
        yield {"path": path, "folder": folder, "vms": vms, "agents": agents, "uri": uri, "ready_at_start": ready}
    finally:
        for agent in agents.values():
            agent.exec("/bin/rm", ["-rf", folder], timeout=TIMEOUT)
        host.close()
        for lease in reversed(leases):
            lease.release()


@pytest.fixture()
def library(stand_ins: dict[str, Any]) -> Iterator[Any]:
    """An ATPLibrary instance connected to the lab host (this module's own: see _running_lab)."""
    from ATPLibrary import ATPLibrary

    lib = ATPLibrary(timeout=timedelta(seconds=60))
    kw(lib, "Connect To Host", stand_ins["uri"], alias="lab")
    yield lib
    kw(lib, "Disconnect All Hosts")


def test_stand_in_is_installed_and_labelled(stand_ins: dict[str, Any]) -> None:
    for vm in stand_ins["vms"]:
        agent = stand_ins["agents"][vm]
        head = GuestFiles(agent, progress=None).download(stand_ins["path"], timeout=TIMEOUT)[:300].decode()
        assert "ATP TEST STAND-IN FOR powershell.exe" in head and "THIS IS NOT POWERSHELL" in head
        mode = agent.exec("/usr/bin/stat", ["-c", "%a", stand_ins["path"]], timeout=TIMEOUT)
        assert mode.stdout.strip() == "755"


def test_kind_5_right_and_wrong_values_through_guest_exec(stand_ins: dict[str, Any]) -> None:
    agent = stand_ins["agents"][stand_ins["vms"][0]]
    right = agent.exec(stand_ins["path"], list(encoded_args('"hi"')), timeout=TIMEOUT)
    assert list(encoded_args('"hi"'))[-1] == "IgBoAGkAIgA="
    assert (right.rc, right.stdout_bytes) == (0, b"hi\r\n")
    wrong = agent.exec(stand_ins["path"], [*COMMON_SWITCHES, "-EncodedCommand", "ImhpIg=="], timeout=TIMEOUT)
    assert wrong.rc == 1 and b"hi" not in wrong.stdout_bytes
    assert b"is not recognized as the name of a cmdlet" in wrong.stderr_bytes


def test_keyword_short_script(library: Any, stand_ins: dict[str, Any]) -> None:
    vm = stand_ins["vms"][0]
    result = kw(library, "Execute PowerShell In Guest", vm, '"hi"', powershell=stand_ins["path"], timeout=TIMEOUT)
    assert (result.rc, result.stdout, result.route) == (0, "hi\r\n", "encoded-command")
    assert result.stderr.startswith(STAND_IN_LABEL) and result.decoding_notes == ()


def test_keyword_gbk_output_detected_and_given(library: Any, stand_ins: dict[str, Any]) -> None:
    vm = stand_ins["vms"][0]  # code page 936
    kw(library, "Set PowerShell Path", stand_ins["path"])
    detected = kw(library, "Execute PowerShell In Guest", vm, "Write-Output '中文 ok'", timeout=TIMEOUT)
    assert detected.stdout_bytes == "中文 ok\r\n".encode("gbk") and detected.stdout == "中文 ok\r\n"
    assert detected.decoding_notes == ("stdout: not UTF-8; decoded as gbk (detected code page)",)
    given = kw(library, "Execute PowerShell In Guest", vm, "'文'", encoding="936", timeout=TIMEOUT)
    assert given.stdout == "文\r\n" and given.stdout_encoding == "gbk"


def test_keyword_cp437_and_invalid_utf8(library: Any, stand_ins: dict[str, Any]) -> None:
    vm = stand_ins["vms"][1]  # code page 437
    boxes = kw(library, "Execute PowerShell In Guest", vm, "'╔═╗ été'", powershell=stand_ins["path"], timeout=TIMEOUT)
    assert boxes.stdout_bytes == b"\xc9\xcd\xbb \x82t\x82\r\n" and boxes.stdout == "╔═╗ été\r\n"
    broken = kw(
        library,
        "Execute PowerShell In Guest",
        vm,
        "Write-StandInBytes 'ff fe 41'",
        powershell=stand_ins["path"],
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    assert broken.stdout == "\ufffd\ufffdA" and any("2 byte(s) replaced" in n for n in broken.decoding_notes)


def test_keyword_long_script_takes_the_guest_file_route(library: Any, stand_ins: dict[str, Any]) -> None:
    vm = stand_ins["vms"][0]
    script = "\n".join(f"Write-Output 'line {i:04d} {'中' * 20}'" for i in range(500))
    assert len(windows_command_line(stand_ins["path"], encoded_args(script))) + 1 > MAX_COMMAND_LINE
    result = kw(library, "Execute PowerShell In Guest", vm, script, powershell=stand_ins["path"], timeout=TIMEOUT)
    assert result.route == "guest-file" and result.rc == 0 and result.cleanup_error is None
    lines = result.stdout.splitlines()
    assert len(lines) == 500 and lines[499] == f"line 0499 {'中' * 20}"
    assert result.script_path.startswith("/tmp/atp-ps-") and result.script_path.endswith(".ps1")
    assert not GuestFiles(stand_ins["agents"][vm], progress=None).exists(result.script_path)


def test_keyword_expected_rc(library: Any, stand_ins: dict[str, Any]) -> None:
    vm = stand_ins["vms"][1]
    with pytest.raises(GuestCommandError, match=rf"PowerShell: exit 3 .* in VM '{vm}' exited with rc 3, expected rc 0"):
        kw(library, "Execute PowerShell In Guest", vm, "exit 3", powershell=stand_ins["path"], timeout=TIMEOUT)
    result = kw(library, "Execute PowerShell In Guest", vm, "exit 3", powershell=stand_ins["path"], expected_rc="3")
    assert result.rc == 3


def _atp(tmp_path: Path, *argv: str) -> tuple[int, dict[str, Any], str]:
    env = dict(os.environ, ATP_CONFIG=str(tmp_path / "none.toml"))  # no config: the lab is host 'local'
    done = subprocess.run([ATP, *argv], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path, check=False)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else {}, done.stderr


def test_atp_ps_exec_all_short_long_and_code_pages(stand_ins: dict[str, Any], tmp_path: Path) -> None:
    path, mine = stand_ins["path"], set(stand_ins["vms"])
    script = tmp_path / "long.ps1"
    lines = [f"Write-Output 'row {i:04d} {'é' * 30}'" for i in range(500)]
    script.write_text("\n".join([*lines, "[Console]::OutputEncoding.CodePage", "Write-StandInBytes 'ff'"]))
    assert len(windows_command_line(path, encoded_args(script.read_text()))) + 1 > MAX_COMMAND_LINE

    code, short, err = _atp(tmp_path, "ps", "exec", "--all", "--powershell", path, "--command", '"hi"', "--json")
    assert code == 0, err
    (host,) = short["hosts"]
    assert host["id"] == "local" and host["uri"] == stand_ins["uri"] and host["error"] is None
    assert {v["vm"] for v in host["vms"]} == mine  # only the guests with the stand-in at this path
    for vm in host["vms"]:
        assert (vm["rc"], vm["stdout"], vm["route"], vm["kind"]) == (0, "hi\r\n", "encoded-command", "stand-in")
        assert vm["host"] == "local" and vm["error"] is None and vm["stderr"].startswith(STAND_IN_LABEL)
    assert all(s["vm"] not in mine for s in host["skipped"])
    assert short["summary"]["ok"] == 2 and short["summary"]["failed"] == 0

    code, long, err = _atp(
        tmp_path, "ps", "exec", "--all", "--powershell", path, "--script-file", str(script), "--json"
    )
    vms = {v["vm"]: v for v in long["hosts"][0]["vms"]}
    assert code == 0, err
    assert set(vms) == mine
    for vm_name, code_page in zip(stand_ins["vms"], CODE_PAGES, strict=True):
        vm = vms[vm_name]
        assert vm["route"] == "guest-file" and vm["rc"] == 0 and vm["cleanup_error"] is None
        out = vm["stdout"].splitlines()
        assert len(out) == 502 and out[0] == f"row 0000 {'é' * 30}" and out[500] == str(code_page)
        codec = "gbk" if code_page == 936 else "cp437"
        assert vm["stdout_encoding"] == codec
        if codec == "gbk":  # 0xff alone is not GBK: replaced, counted and said
            assert out[501] == "\ufffd"
            assert vm["decoding_notes"] == [
                "stdout: not UTF-8; decoded as gbk (detected code page); "
                "1 byte(s) not valid in gbk replaced with U+FFFD"
            ]
        else:  # every byte is a CP437 character: 0xff is a no-break space
            assert out[501] == "\xa0"
            assert vm["decoding_notes"] == ["stdout: not UTF-8; decoded as cp437 (detected code page)"]


def test_atp_ps_list_vms_shows_the_stand_ins(stand_ins: dict[str, Any], tmp_path: Path) -> None:
    code, data, err = _atp(tmp_path, "ps", "list-vms", "--powershell", stand_ins["path"], "--json")
    assert code == 0, err
    kinds = {v["vm"]: v["kind"] for v in data["hosts"][0]["vms"]}
    assert all(kinds[vm] == "stand-in" for vm in stand_ins["vms"])
    assert all(kind != "stand-in" for vm, kind in kinds.items() if vm not in stand_ins["vms"])


def test_atp_ps_exec_named_vm_without_the_stand_in_fails_with_exit_1(stand_ins: dict[str, Any], tmp_path: Path) -> None:
    vm = stand_ins["vms"][0]
    code, data, _ = _atp(
        tmp_path, "ps", "exec", "--vm", vm, "--powershell", "/tmp/none/powershell.exe", "--command", "1", "--json"
    )
    assert code == 1
    (report,) = data["hosts"][0]["vms"]
    assert report["kind"] == "not-windows" and report["error"].startswith("not a PowerShell VM")


def test_guests_stay_console_ready(library: Any, stand_ins: dict[str, Any]) -> None:
    for vm in stand_ins["vms"]:
        if vm in stand_ins["ready_at_start"]:
            wait_console_ready(library, vm, timeout=TIMEOUT)
        else:  # leased while not console-ready (another process's doing): the guest agent at least answers
            kw(library, "Guest Agent Should Respond", vm, timeout=TIMEOUT)
