"""`atp host …` against libvirt's test driver (test:///default) and unreachable URIs; no lab guests."""

from __future__ import annotations

import json
import socket
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.main import main

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ATP_CONFIG names a file that does not exist yet; nothing else of the machine's config is read."""
    path = tmp_path / "atp.toml"
    monkeypatch.setenv("ATP_CONFIG", str(path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in ("ATP_TEST_CONFIG", "XDG_CONFIG_HOME", "ATP_TIMEOUT", "ATP_TEST_TIMEOUT", "ATP_CONNECT_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a libvirt open there hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("sub", ["add", "list", "remove", "update-ssh", "check"])
def test_help_of_every_host_command(capsys: pytest.CaptureFixture[str], sub: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(["host", sub, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: atp host {sub}" in out
    assert "implicit host 'local'" in out
    assert "Exit codes: 0 ok" in out


def test_without_a_host_the_lab_is_the_implicit_local_host(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "host", "list")
    assert code == ExitCode.OK
    assert f"config: {config} (does not exist yet)" in out
    assert "local  qemu:///system" in out
    assert "implicit" in out
    code, out, _ = run(capsys, "host", "list", "--json")
    data = json.loads(out)
    assert data["hosts"][0]["id"] == "local"
    assert data["hosts"][0]["implicit"] is True
    assert not config.exists()


def test_add_list_update_ssh_remove(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "host", "add", "t", "test:///default")[0] == ExitCode.OK
    code, out, _ = run(capsys, "host", "add", "node1", "10.1.2.3", "--default")
    assert code == ExitCode.OK
    assert "qemu+tcp://10.1.2.3/system" in out  # the original system's default URI for an address
    saved = tomllib.loads(config.read_text())
    assert saved["hosts"]["node1"] == {"uri": "qemu+tcp://10.1.2.3/system", "address": "10.1.2.3"}
    assert saved["defaults"]["host"] == "node1"

    key = tmp_path / "id_test"
    key.write_text("not really a key")
    code, out, _ = run(capsys, "host", "update-ssh", "node1", "-u", "ops", "-p", "2222", "-k", str(key))
    assert code == ExitCode.OK
    code, out, _ = run(capsys, "host", "update-ssh", "node1", "-u", "ops", "-p", "2222", "--password-env", "N1_PW")
    assert code == ExitCode.OK
    node1 = tomllib.loads(config.read_text())["hosts"]["node1"]
    assert node1 == {
        "uri": "qemu+tcp://10.1.2.3/system",
        "address": "10.1.2.3",
        "ssh_user": "ops",
        "ssh_port": 2222,
        "ssh_key": str(key.resolve()),
        "ssh_password_env": "N1_PW",
    }

    code, out, _ = run(capsys, "host", "list", "--json")
    data = json.loads(out)
    assert [h["id"] for h in data["hosts"]] == ["t", "node1"]
    assert data["hosts"][1]["default"] is True
    code, out, _ = run(capsys, "host", "list")
    assert "ops@port 2222" in out
    assert "password from $N1_PW" in out

    assert run(capsys, "host", "remove", "node1")[0] == ExitCode.OK
    saved = tomllib.loads(config.read_text())
    assert list(saved["hosts"]) == ["t"]
    assert "defaults" not in saved  # the default went with its host
    code, out, _ = run(capsys, "host", "remove", "t")
    assert code == ExitCode.OK
    assert "implicit host 'local' applies again" in out


def test_add_errors_exit_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "host", "add", "t", "test:///default")[0] == ExitCode.OK
    code, _, err = run(capsys, "host", "add", "t", "test:///other")
    assert code == ExitCode.ERROR
    assert "host 't' is already in" in err and "--replace" in err
    assert run(capsys, "host", "add", "t", "test:///other", "--replace")[0] == ExitCode.OK
    assert tomllib.loads(config.read_text())["hosts"]["t"]["uri"] == "test:///other"
    code, _, err = run(capsys, "host", "add", "bad id", "test:///default")
    assert code == ExitCode.ERROR
    assert "Host id 'bad id' is not allowed" in err
    code, _, err = run(capsys, "host", "add", "x", "qemu+tcp://h/system", "--uri", "qemu:///system")
    assert code == ExitCode.ERROR
    assert "not both" in err
    code, _, err = run(capsys, "host", "add", "x", "h", "--uri", "no-scheme")
    assert code == ExitCode.ERROR
    assert "is not a libvirt URI" in err


def test_remove_and_update_ssh_of_unknown_hosts_exit_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "host", "remove", "local")
    assert code == ExitCode.ERROR
    assert "implicit host" in err
    run(capsys, "host", "add", "lab-01", "test:///default")
    code, _, err = run(capsys, "host", "remove", "lab-1")
    assert code == ExitCode.ERROR
    assert "No host 'lab-1'" in err and "Did you mean 'lab-01'?" in err
    code, _, err = run(capsys, "host", "update-ssh", "lab-1")
    assert code == ExitCode.ERROR
    code, _, err = run(capsys, "host", "update-ssh", "lab-01", "-k", "/no/such/key")
    assert code == ExitCode.ERROR
    assert "SSH key file /no/such/key does not exist" in err
    code, _, err = run(capsys, "host", "update-ssh", "lab-01", "--password-env", "not a name")
    assert code == ExitCode.ERROR
    assert "never the password" in err


def test_update_ssh_refuses_a_password_without_repeating_it(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "host", "add", "n", "qemu+ssh://n/system")
    with pytest.raises(SystemExit) as done:
        main(["host", "update-ssh", "n", "--password", "Pa55-word-x"])
    assert done.value.code == ExitCode.ERROR
    out, err = capsys.readouterr()
    assert "passwords are never stored" in err
    assert "Pa55-word-x" not in out + err
    assert "Pa55-word-x" not in config.read_text()


def test_original_format_file_is_refused_for_writing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = tmp_path / "config" / "atp.toml"
    original.parent.mkdir()
    original.write_text('[libvirt]\nuri = "test:///default"\n')
    code, out, _ = run(capsys, "host", "list", "--config", str(original))
    assert code == ExitCode.OK
    assert "original system's format, read-only" in out
    assert "default  test:///default" in out
    code, _, err = run(capsys, "host", "add", "x", "test:///default", "--config", str(original))
    assert code == ExitCode.ERROR
    assert "only read, never written" in err
    assert original.read_text() == '[libvirt]\nuri = "test:///default"\n'


def test_bad_config_file_exit_2_naming_file_and_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config.write_text('version = 1\n[hosts.a]\nuri = "test:///default"\nport = 22\n')
    code, out, err = run(capsys, "host", "list")
    assert code == ExitCode.ERROR
    assert out == ""
    assert f"{config}, line 4: unknown key 'port'" in err
    assert len(err.strip().splitlines()) == 1


def test_check_prints_versions_and_vm_count(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "host", "add", "t", "test:///default")
    code, out, _ = run(capsys, "host", "check")
    assert code == ExitCode.OK
    assert "libvirt " in out and "TEST 0.0.2" in out and "1 VMs (1 running)" in out
    code, out, _ = run(capsys, "host", "check", "t", "--json")
    row = json.loads(out)[0]
    assert row["ok"] is True
    assert row["hypervisor"] == "TEST"
    assert row["vms"] == 1
    assert row["libvirt_version"].count(".") == 2


def test_check_unreachable_host_exit_2_with_one_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"qemu+tcp://127.0.0.1:{refused_port()}/system"
    run(capsys, "host", "add", "gone", uri)
    code, out, err = run(capsys, "host", "check", "gone", "--timeout", "10")
    assert code == ExitCode.ERROR
    assert "UNREACHABLE" in out
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("atp host check: error: host 'gone'")
    assert "Traceback" not in err


def test_check_times_out_on_a_silent_host(config: Path, silent_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "host", "add", "silent", f"qemu+tcp://127.0.0.1:{silent_server}/system")
    started = time.monotonic()
    code, _, err = run(capsys, "host", "check", "--timeout", "1.5")
    assert code == ExitCode.ERROR
    assert time.monotonic() - started < 10
    assert "no answer within 1.5 seconds" in err


def test_check_some_hosts_unreachable_exit_1(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "host", "add", "t", "test:///default")
    run(capsys, "host", "add", "gone", f"qemu+tcp://127.0.0.1:{refused_port()}/system")
    code, out, _ = run(capsys, "host", "check", "--json")
    assert code == ExitCode.FAILED
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows["t"]["ok"] is True
    assert rows["gone"]["ok"] is False and rows["gone"]["error"]


def test_check_unknown_host_exit_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "host", "check", "nope")
    assert code == ExitCode.ERROR
    assert "No host 'nope'" in err


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_timeout_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(["host", "check", "--timeout", value])
    assert done.value.code == ExitCode.ERROR
    assert "--timeout" in capsys.readouterr().err
