"""`atp vm …` without lab guests: --help, argument checks, host choice and exit codes (libvirt's test driver)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from PIL import Image

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.main import main

pytestmark = pytest.mark.timeout(60)

SUBCOMMANDS = ["list", "keys", "type", "click", "exec", "screenshot"]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config with one host: libvirt's test driver (domain 'test', running; no QMP, no guest agent)."""
    path = tmp_path / "atp.toml"
    path.write_text('version = 1\n[hosts.t]\nuri = "test:///default"\n')
    monkeypatch.setenv("ATP_CONFIG", str(path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in ("ATP_TEST_CONFIG", "XDG_CONFIG_HOME", "ATP_TIMEOUT", "ATP_TEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused_uri() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"qemu+tcp://127.0.0.1:{s.getsockname()[1]}/system"


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_of_every_vm_command(capsys: pytest.CaptureFixture[str], sub: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(["vm", sub, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: atp vm {sub}" in out
    assert "--host ID" in out and "--timeout SECONDS" in out and "--config PATH" in out
    assert "implicit host 'local'" in out
    assert "Exit codes: 0 done; 1 the target failed" in out


def test_vm_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["vm", "--help"])
    out = capsys.readouterr().out
    for sub in SUBCOMMANDS:
        assert sub in out


def test_list(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "vm", "list")
    assert code == ExitCode.OK
    assert out.splitlines() == ["NAME  STATE    HOST", "test  running  t"]
    code, out, _ = run(capsys, "vm", "list", "--host", "t", "--json")
    assert json.loads(out) == [{"name": "test", "state": "running", "host": "t", "uri": "test:///default"}]


def test_list_with_an_unreachable_host(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config.write_text(config.read_text() + f'[hosts.gone]\nuri = "{refused_uri()}"\n')
    code, out, err = run(capsys, "vm", "list", "--json", "--timeout", "10")
    assert code == ExitCode.FAILED  # one of two hosts failed
    assert [r["host"] for r in json.loads(out)] == ["t"]
    assert "host 'gone'" in err and "unreachable" in err
    code, out, err = run(capsys, "vm", "list", "--host", "gone", "--timeout", "10")
    assert code == ExitCode.ERROR  # nothing listed
    assert "unreachable" in err


def test_several_hosts_without_a_choice_exit_2_listing_them(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config.write_text(config.read_text() + '[hosts.u]\nuri = "test:///default"\n')
    code, out, err = run(capsys, "vm", "screenshot", "test", "-o", "x.png")
    assert code == ExitCode.ERROR
    assert out == ""
    assert "Several hosts" in err and "t (test:///default), u (test:///default)" in err and "--host" in err
    code, out, _ = run(capsys, "vm", "screenshot", "test", "-o", "x.png", "--host", "u")
    assert code == ExitCode.OK
    config.write_text('version = 1\n[defaults]\nhost = "u"\n' + config.read_text().split("\n", 1)[1])
    assert run(capsys, "vm", "screenshot", "test", "-o", "y.png")[0] == ExitCode.OK


def test_screenshot_writes_a_png(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "vm", "screenshot", "test", "-o", str(tmp_path / "shot.png"), "--json")
    assert code == ExitCode.OK
    info = json.loads(out)
    with Image.open(tmp_path / "shot.png") as image:
        assert image.format == "PNG"
        assert image.size == (info["width"], info["height"])
    code, out, _ = run(capsys, "vm", "screenshot", "test", "-o", str(tmp_path))
    assert code == ExitCode.OK
    assert (tmp_path / "test.png").is_file()
    code, _, err = run(capsys, "vm", "screenshot", "test", "-o", str(tmp_path / "no/such/dir/x.png"))
    assert code == ExitCode.ERROR
    assert "does not exist" in err


def test_unknown_vm_exit_2_listing_domains(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "vm", "screenshot", "tset", "-o", "x.png")
    assert code == ExitCode.ERROR
    assert "VM 'tset' not found" in err and "Did you mean 'test'?" in err


def test_unknown_key_and_untypable_text_fail_before_connecting(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config.write_text(f'version = 1\n[hosts.gone]\nuri = "{refused_uri()}"\n')
    code, _, err = run(capsys, "vm", "keys", "test", "ctrl+alt+delet")
    assert code == ExitCode.ERROR
    assert "Unknown key name 'delet'" in err
    assert "unreachable" not in err  # the name was checked first
    code, _, err = run(capsys, "vm", "type", "test", "naïve")
    assert code == ExitCode.ERROR
    assert "cannot type the character 'ï'" in err
    code, _, err = run(capsys, "vm", "type", "test", "x", "--layout", "fr")
    assert code == ExitCode.ERROR
    assert "fr" in err


def test_input_to_an_unreachable_host_exit_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config.write_text(f'version = 1\n[hosts.gone]\nuri = "{refused_uri()}"\n')
    for argv in (
        ["keys", "vm1", "ctrl+c"],
        ["type", "vm1", "x"],
        ["click", "vm1", "1", "1"],
        ["exec", "vm1", "--", "true"],
    ):
        code, _, err = run(capsys, "vm", *argv, "--timeout", "10")
        assert code == ExitCode.ERROR, argv
        assert err.startswith(f"atp vm {argv[0]}: error: host 'gone'")
        assert len(err.strip().splitlines()) == 1


def test_click_argument_checks(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["vm", "click", "test", "1", "2", "--button", "wheel"])
    assert done.value.code == ExitCode.ERROR
    with pytest.raises(SystemExit) as done:
        main(["vm", "click", "test", "x", "2"])
    assert done.value.code == ExitCode.ERROR
    capsys.readouterr()


def test_exec_needs_a_command(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "vm", "exec", "test")
    assert code == ExitCode.ERROR
    assert "no command given" in err
    code, _, err = run(capsys, "vm", "exec", "test", "--")
    assert code == ExitCode.ERROR
    with pytest.raises(SystemExit) as done:
        main(["vm", "exec", "test", "--bogus", "--", "true"])
    assert done.value.code == ExitCode.ERROR
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_exec_without_a_guest_agent_exit_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "vm", "exec", "test", "--", "true")
    assert code == ExitCode.ERROR
    assert out == ""
    assert "guest agent" in err


def test_options_between_vm_and_the_double_dash_are_atp_options(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ATPLibrary.cli.main import build_parser
    from ATPLibrary.cli.vm import _exec_argv

    parser = build_parser()
    args = parser.parse_args(["vm", "exec", "test", "--shell", "--timeout", "5", "--", "echo", "-n", "--", "x"])
    assert _exec_argv(args) == ["echo", "-n", "--", "x"]
    assert (args.shell, args.timeout) == (True, 5.0)
    args = parser.parse_args(["vm", "exec", "test", "ls", "--", "-x"])
    assert _exec_argv(args) == ["ls", "--", "-x"]
    assert args.shell is False
    args = parser.parse_args(["vm", "exec", "--json", "test", "--", "uname", "-a"])
    assert _exec_argv(args) == ["uname", "-a"]
    assert args.json is True


def test_vm_not_running_exit_2(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = tmp_path / "node.xml"
    node.write_text(
        "<node><domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>off</name>"
        "<memory>65536</memory><os><type>hvm</type></os><test:runstate>5</test:runstate></domain></node>"
    )
    config.write_text(f'version = 1\n[hosts.n]\nuri = "test://{node}"\n')
    code, _, err = run(capsys, "vm", "keys", "off", "enter")
    assert code == ExitCode.ERROR
    assert "VM 'off'" in err and "is shut off, not running" in err
