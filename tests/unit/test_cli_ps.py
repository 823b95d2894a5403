"""``atp ps``: arguments, per-host JSON, exit codes; VMs are qemu-ga doubles running the stand-in on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_powershell import LocalGuest, local_agent

from ATPLibrary.cli import ps
from ATPLibrary.cli.main import main
from ATPLibrary.errors import HostConnectionError
from ATPLibrary.powershell.command import decode_command
from ATPLibrary.powershell.standin import STAND_IN_LABEL
from ATPLibrary.powershell.standin_install import stand_in_source


class FakeInventory:
    def __init__(self, host_id: str, vms: dict[str, LocalGuest | None], broken: bool = False) -> None:
        self.id = host_id
        self.uri = f"test:///{host_id}"
        self.vms = vms  # None: defined but not running
        self.broken = broken

    def domains(self) -> list[tuple[str, bool]]:
        if self.broken:
            raise HostConnectionError(f"Cannot connect to libvirt host '{self.uri}': refused")
        return sorted((name, guest is not None) for name, guest in self.vms.items())

    def agent(self, vm: str) -> Any:
        guest = self.vms[vm]
        assert guest is not None
        return local_agent(guest, vm)


@pytest.fixture()
def stand_in(tmp_path: Path) -> str:
    path = tmp_path / "powershell.exe"
    path.write_bytes(stand_in_source())
    path.chmod(0o755)
    return str(path)


@pytest.fixture()
def lab(monkeypatch: pytest.MonkeyPatch, stand_in: str) -> dict[str, FakeInventory]:
    hosts = {
        "h1": FakeInventory("h1", {"lin-01": LocalGuest("debian"), "win-01": LocalGuest("mswindows"), "off-01": None}),
        "h2": FakeInventory("h2", {"lin-02": LocalGuest("debian")}),
    }
    chosen: list[Any] = []

    def inventories(host_ids: list[str] | None, config_path: str | None) -> list[FakeInventory]:
        chosen.append(host_ids)
        return [hosts[h] for h in host_ids] if host_ids else list(hosts.values())

    monkeypatch.setattr(ps, "configured_inventories", inventories)
    return hosts


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["ps", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_exec_all_runs_on_windows_and_stand_in_vms_grouped_per_host(
    lab: dict[str, FakeInventory], stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lab["h2"].vms["lin-02"] = LocalGuest("debian", absent=(stand_in,))  # lin-02 has no stand-in
    code, out, _ = run(capsys, "exec", "--all", "--powershell", stand_in, "--command", '"hi"', "--json")
    data = json.loads(out)
    assert code == 0
    assert [h["id"] for h in data["hosts"]] == ["h1", "h2"]
    assert data["hosts"][1]["vms"] == [] and data["hosts"][1]["skipped"][0]["kind"] == "not-windows"
    h1 = {v["vm"]: v for v in data["hosts"][0]["vms"]}
    assert set(h1) == {"lin-01", "win-01"}  # lin-01: the file at --powershell; win-01: qemu-ga says mswindows
    assert h1["lin-01"]["kind"] == "stand-in" and h1["win-01"]["kind"] == "windows"
    for vm in h1.values():
        assert vm["rc"] == 0 and vm["stdout"] == "hi\r\n" and vm["route"] == "encoded-command"
        assert vm["stderr"].startswith(STAND_IN_LABEL) and vm["error"] is None and vm["host"] == "h1"
    assert data["hosts"][0]["skipped"] == [
        {"vm": "off-01", "kind": "not-running", "reason": "the domain is not running"}
    ]
    assert data["summary"] == {"ok": 2, "failed": 0, "skipped": 2, "unreachable_hosts": []}


def test_exec_sends_our_argument_list(
    lab: dict[str, FakeInventory], stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(capsys, "exec", "--vm", "lin-01", "--powershell", stand_in, "--command", '"hi"')
    guest = lab["h1"].vms["lin-01"]
    assert code == 0 and guest is not None
    path, args = guest.execs[-1]
    assert path == stand_in
    assert args == ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand", "IgBoAGkAIgA="]


def test_exec_long_script_file_takes_the_guest_file_route_and_gbk_output_decodes(
    lab: dict[str, FakeInventory], stand_in: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path(stand_in + ".codepage").write_text("936")
    script = tmp_path / "long.ps1"
    body = "\n".join(f"Write-Output '行 {i:04d} {'x' * 60}'" for i in range(300))
    script.write_bytes(b"\xef\xbb\xbf" + body.encode())
    code, out, _ = run(
        capsys, "exec", "--vms", "lin-01,win-01", "--powershell", stand_in, "--script-file", str(script), "--json",
        "--script-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 0
    for vm in json.loads(out)["hosts"][0]["vms"]:
        assert vm["route"] == "guest-file" and vm["rc"] == 0 and vm["cleanup_error"] is None
        assert vm["stdout"].splitlines()[299] == f"行 0299 {'x' * 60}"
        assert vm["stdout_encoding"] == "gbk"
        assert vm["decoding_notes"] == ["stdout: not UTF-8; decoded as gbk (detected code page)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.ps1", "powershell.exe", "powershell.exe.codepage"]


def test_exec_given_encoding_and_invalid_utf8_in_table_output(
    lab: dict[str, FakeInventory], stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, "exec", "--vm", "lin-01", "--powershell", stand_in, "--encoding", "cp437",
        "--command", "Write-StandInBytes 'c9 cd bb'",
    )  # fmt: skip
    assert code == 0
    assert "== host h1 (test:///h1)" in out and "-- lin-01 [stand-in] rc 0 via encoded-command" in out
    assert "   ╔═╗" in out and "note: stdout: not UTF-8; decoded as cp437 (given code page)" in out


def test_exec_failing_vm_gives_exit_1_and_says_which(
    lab: dict[str, FakeInventory], stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "exec", "--all", "--powershell", stand_in, "--command", "exit 5", "--json")
    data = json.loads(out)
    assert code == 1
    assert {v["vm"]: v["rc"] for v in data["hosts"][0]["vms"]} == {"lin-01": 5, "win-01": 5}
    assert data["summary"]["failed"] == 3  # lin-02 on h2 too


def test_exec_named_vm_that_is_not_a_powershell_vm_fails_with_the_reason(
    lab: dict[str, FakeInventory], stand_in: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nothing.exe")
    code, out, _ = run(capsys, "exec", "--vms", "lin-01,win-01", "--powershell", missing, "--command", "'x'", "--json")
    vms = {v["vm"]: v for v in json.loads(out)["hosts"][0]["vms"]}
    assert code == 1
    assert vms["lin-01"]["error"].startswith("not a PowerShell VM (not-windows: OS id 'debian'; no file at")
    # Windows per qemu-ga, but no powershell.exe at that path: qemu-ga's own error
    assert "guest-exec" in vms["win-01"]["error"] and "No such file or directory" in vms["win-01"]["error"]


def test_exec_unknown_vm_is_exit_2_before_anything_runs(
    lab: dict[str, FakeInventory], stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "exec", "--vms", "lin-01,nope", "--powershell", stand_in, "--command", "'x'")
    assert code == 2 and out == ""
    assert "VM 'nope' is not defined on h1, h2" in err
    assert all(not g.execs for inv in lab.values() for g in inv.vms.values() if g is not None)
    lab["h2"].broken = True
    code, _, err = run(capsys, "exec", "--vm", "lin-02", "--powershell", stand_in, "--command", "'x'")
    assert code == 2 and "VM 'lin-02' is not defined on h1 (h2 unreachable)" in err


def test_exec_no_powershell_vm_is_exit_2(
    lab: dict[str, FakeInventory], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "exec", "--all", "--host", "h2", "--powershell", str(tmp_path / "x"), "--command", "1")
    assert code == 2 and "no PowerShell VM found" in err


def test_exec_unreachable_hosts(
    lab: dict[str, FakeInventory], stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lab["h2"].broken = True
    code, out, _ = run(capsys, "exec", "--all", "--powershell", stand_in, "--command", '"hi"', "--json")
    data = json.loads(out)
    assert code == 1 and data["summary"]["unreachable_hosts"] == ["h2"]
    assert "refused" in data["hosts"][1]["error"] and data["summary"]["ok"] == 2
    lab["h1"].broken = True
    code, _, err = run(capsys, "exec", "--all", "--powershell", stand_in, "--command", '"hi"')
    assert code == 2 and "host h1 (test:///h1) unreachable" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["exec", "--all", "--command", "1", "--encoding", "klingon"], "unknown output encoding 'klingon'"),
        (["exec", "--all", "--command", "  "], "the script is empty"),
        (["exec", "--vms", ",", "--command", "1"], "--vms needs VM names"),
        (["exec", "--all", "--script-file", "/nonexistent/x.ps1"], "cannot read --script-file /nonexistent/x.ps1"),
    ],
)
def test_exec_usage_errors_are_exit_2(
    lab: dict[str, FakeInventory], argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err


def test_script_file_must_be_utf8_or_utf16_with_bom(
    lab: dict[str, FakeInventory], stand_in: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin = tmp_path / "latin.ps1"
    latin.write_bytes("'é'".encode("latin-1"))
    code, _, err = run(capsys, "exec", "--vm", "lin-01", "--powershell", stand_in, "--script-file", str(latin))
    assert code == 2 and "is not UTF-8" in err
    utf16 = tmp_path / "u16.ps1"
    utf16.write_bytes("'é'".encode("utf-16"))
    code, out, _ = run(capsys, "exec", "--vm", "lin-01", "--powershell", stand_in, "--script-file", str(utf16))
    guest = lab["h1"].vms["lin-01"]
    assert "-- lin-01 [stand-in] rc 0" in out
    assert code == 0 and guest is not None and decode_command(guest.execs[0][1][-1]) == "'é'"


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "--command", "1"],  # no target
        ["exec", "--all"],  # no script
        ["exec", "--all", "--vm", "a", "--command", "1"],  # two targets
        ["exec", "--all", "--command", "1", "--script-file", "f"],  # two scripts
    ],
)
def test_argument_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ps", *argv])
    assert exit_info.value.code == 2


def test_list_vms_table_and_json(
    lab: dict[str, FakeInventory], stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "list-vms", "--powershell", stand_in, "--json")
    data = json.loads(out)
    assert code == 0
    kinds = {v["vm"]: v["kind"] for h in data["hosts"] for v in h["vms"]}
    assert kinds == {"lin-01": "stand-in", "off-01": "not-running", "win-01": "windows", "lin-02": "stand-in"}
    code, out, _ = run(capsys, "list-vms", "--host", "h1", "--powershell", stand_in)
    assert code == 0 and "host h1 (test:///h1)" in out and "h2" not in out
    assert [line.split()[:3] for line in out.splitlines()[2:]] == [
        ["lin-01", "stand-in", "yes"],
        ["off-01", "not-running", "no"],
        ["win-01", "windows", "yes"],
    ]


def test_list_vms_all_hosts_unreachable_is_exit_2(
    lab: dict[str, FakeInventory], capsys: pytest.CaptureFixture[str]
) -> None:
    for inventory in lab.values():
        inventory.broken = True
    code, out, _ = run(capsys, "list-vms")
    assert code == 2 and "UNREACHABLE" in out


def test_powershell_alias_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["powershell", "exec", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--vm", "--vms", "--all", "--command", "--script-file", "--host", "--json", "--timeout"):
        assert option in text
    assert "--powershell" in text and "--encoding" in text


def test_configured_inventories_use_the_atp_config(tmp_path: Path) -> None:
    config = tmp_path / "atp.toml"
    inventories = ps.configured_inventories(None, str(config))  # no file yet: the implicit lab host
    assert [(i.id, i.uri) for i in inventories] == [("local", "qemu:///system")]
    adhoc = ps.configured_inventories(["qemu+ssh://root@10.0.0.5/system"], str(config))
    assert [i.uri for i in adhoc] == ["qemu+ssh://root@10.0.0.5/system"]


def test_one_vm_failing_unexpectedly_keeps_the_others(
    lab: dict[str, FakeInventory], stand_in: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import libvirt
    from fakes import libvirt_error

    original = lab["h1"].agent

    def agent(vm: str) -> Any:
        if vm == "win-01":
            raise libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "internal error: domain is being torn down")
        return original(vm)

    monkeypatch.setattr(lab["h1"], "agent", agent)
    code, out, _ = run(capsys, "exec", "--all", "--powershell", stand_in, "--command", '"hi"', "--json")
    vms = {v["vm"]: v for v in json.loads(out)["hosts"][0]["vms"]}
    assert code == 1
    assert vms["lin-01"]["ok"] and vms["win-01"]["error"] == "libvirtError: internal error: domain is being torn down"
