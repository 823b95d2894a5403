"""PowerShell: the -EncodedCommand encoding (failure kind 5), the length rule, output decoding, the stand-in, and
the runner end to end against the stand-in run on this machine through a qemu-ga double."""

from __future__ import annotations

import base64
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import libvirt
import pytest
from fakes import FakeAgentCommand, FakeTarget, libvirt_error

from ATPLibrary.errors import ConfigurationError, GuestCommandError
from ATPLibrary.powershell.command import (
    COMMON_SWITCHES,
    DEFAULT_POWERSHELL,
    HELPER_RESERVE,
    MAX_COMMAND_LINE,
    UTF8_BOM,
    Route,
    cleanup_script,
    decode_command,
    encode_command,
    encoded_args,
    file_args,
    fits,
    plan,
    script_file_bytes,
    windows_command_line,
)
from ATPLibrary.powershell.decoding import clixml_to_text, decode_output, normalize_encoding
from ATPLibrary.powershell.runner import PowerShellResult, PowerShellRunner, describe_script, expect_rc
from ATPLibrary.powershell.standin import STAND_IN_LABEL, STAND_IN_MARKER
from ATPLibrary.powershell.standin_install import guest_kind, stand_in_source
from ATPLibrary.qga import GuestAgent

# ---------------------------------------------------------------- encoding: known vectors


def test_kind_5_hi_is_utf16le_base64_without_bom_never_utf8() -> None:
    assert encode_command('"hi"') == "IgBoAGkAIgA="
    assert encode_command('"hi"') != "ImhpIg=="  # base64 of the UTF-8 bytes: the failure of kind 5
    raw = base64.b64decode(encode_command('"hi"'))
    assert raw == b'"\x00h\x00i\x00"\x00'
    assert not raw.startswith((b"\xff\xfe", b"\xfe\xff"))  # no byte order mark


def test_powershell_help_example_and_non_ascii_scripts() -> None:
    # the -EncodedCommand example script of powershell.exe -?; its UTF-16LE bytes built by hand
    example = 'dir "c:\\program files" '
    assert base64.b64decode(encode_command(example)) == bytes(b for c in example.encode("ascii") for b in (c, 0))
    assert encode_command(example) == "ZABpAHIAIAAiAGMAOgBcAHAAcgBvAGcAcgBhAG0AIABmAGkAbABlAHMAIgAgAA=="
    assert base64.b64decode(encode_command("中文")) == b"\x2d\x4e\x87\x65"  # U+4E2D U+6587, little-endian
    assert base64.b64decode(encode_command("é")) == b"\xe9\x00"
    assert base64.b64decode(encode_command("😀")) == b"\x3d\xd8\x00\xde"  # a surrogate pair, low byte first
    for script in ('"hi"', "Write-Output 'naïve \u2013 中文 \u2013 😀'\r\nexit 3", "x" * 1000):
        assert decode_command(encode_command(script)) == script


def test_decode_command_rejects_utf8_base64_and_non_base64() -> None:
    with pytest.raises(ConfigurationError, match="odd number"):
        decode_command(base64.b64encode(b"hi!").decode())  # 3 UTF-8 bytes cannot be UTF-16LE
    with pytest.raises(ConfigurationError, match="not base64"):
        decode_command("not base64!")
    assert decode_command("ImhpIg==") == "\u6822\u2269"  # what PowerShell runs instead of "hi": garbage


def test_encoded_argument_list_is_the_original_systems() -> None:
    assert encoded_args('"hi"') == (
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-EncodedCommand",
        "IgBoAGkAIgA=",
    )
    assert file_args(r"C:\Windows\Temp\a.ps1")[-2:] == ("-File", r"C:\Windows\Temp\a.ps1")
    assert file_args("/tmp/a.ps1")[:4] == COMMON_SWITCHES


def test_encode_refuses_a_non_text_script() -> None:
    with pytest.raises(ConfigurationError, match="must be text"):
        encode_command(b"hi")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the length rule


def _ascii_script(length: int) -> str:
    return ("Write-Output 'a'\n" * (length // 17 + 1))[:length]


def test_windows_command_line_quotes_like_the_c_runtime() -> None:
    assert windows_command_line(r"C:\Program Files\PowerShell\7\pwsh.exe", ["-File", "a b.ps1"]) == (
        '"C:\\Program Files\\PowerShell\\7\\pwsh.exe" -File "a b.ps1"'
    )
    assert windows_command_line(DEFAULT_POWERSHELL, ["-EncodedCommand", "IgBoAGkAIgA="]) == (
        DEFAULT_POWERSHELL + " -EncodedCommand IgBoAGkAIgA="
    )


def test_length_rule_boundary_is_the_whole_command_line_plus_its_nul_and_the_helper_reserve() -> None:
    fixed = len(DEFAULT_POWERSHELL) + len(" -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ")
    limit = MAX_COMMAND_LINE - HELPER_RESERVE
    assert (MAX_COMMAND_LINE, HELPER_RESERVE) == (32767, 300)
    # the longest ASCII script whose command line (plus NUL and reserve) fits: base64 of 2n bytes is 4*ceil(2n/3)
    fitting = max(n for n in range(11000, 12400) if fixed + 4 * -(-2 * n // 3) + 1 <= limit)
    at_limit = plan(_ascii_script(fitting))
    assert at_limit.route is Route.ENCODED_COMMAND
    assert at_limit.command_line_length == len(at_limit.command_line)
    assert at_limit.command_line_length == fixed + len(encode_command(_ascii_script(fitting)))
    assert at_limit.command_line_length + 1 + HELPER_RESERVE <= MAX_COMMAND_LINE
    over = plan(_ascii_script(fitting + 1))
    assert over.route is Route.GUEST_FILE
    assert over.args[-2] == "-File" and over.args[:4] == COMMON_SWITCHES
    assert fixed + len(encode_command(_ascii_script(fitting + 1))) + 1 + HELPER_RESERVE > MAX_COMMAND_LINE
    # about 2.67 command-line characters per script character
    assert 2.6 < len(encode_command(_ascii_script(fitting))) / fitting < 2.7


def test_length_rule_without_reserve_is_windows_raw_limit() -> None:
    assert fits(32766, reserve=0) and not fits(32767, reserve=0)  # 32 767 counts the terminating NUL
    assert fits(32466) and not fits(32467)
    fixed = len(DEFAULT_POWERSHELL) + len(" -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ")
    n = max(n for n in range(12000, 12400) if fixed + 4 * -(-2 * n // 3) + 1 <= MAX_COMMAND_LINE)
    assert plan(_ascii_script(n), reserve=0).route is Route.ENCODED_COMMAND
    assert plan(_ascii_script(n + 1), reserve=0).route is Route.GUEST_FILE


def test_length_rule_counts_the_executable_path_and_its_quotes() -> None:
    script = _ascii_script(12000)
    short = plan(script, "C:\\ps.exe", reserve=0)
    assert short.route is Route.ENCODED_COMMAND
    rest = short.command_line_length - len("C:\\ps.exe")
    room = MAX_COMMAND_LINE - 1 - rest  # the longest path that still fits (the NUL counted)
    middle = room - len("C:\\") - len("\\ps.exe")
    unspaced = "C:\\" + "x" * middle + "\\ps.exe"
    spaced = "C:\\" + ("x " * middle)[:middle] + "\\ps.exe"
    assert len(unspaced) == len(spaced) == room
    fitting = plan(script, unspaced, reserve=0)
    assert fitting.route is Route.ENCODED_COMMAND and fitting.command_line_length + 1 == MAX_COMMAND_LINE
    assert plan(script, spaced, reserve=0).route is Route.GUEST_FILE  # its two quotes push the line over


def test_guest_file_route_writes_utf8_with_bom_in_the_guest_temp_folder() -> None:
    script = "Write-Output '中文'\n" + _ascii_script(13000)
    windows = plan(script)
    assert windows.route is Route.GUEST_FILE
    assert windows.script_path is not None and windows.script_path.startswith("C:\\Windows\\Temp\\atp-ps-")
    assert windows.script_path.endswith(".ps1")
    assert windows.script_bytes == UTF8_BOM + script.encode("utf-8") == script_file_bytes(script)
    posix = plan(script, "/tmp/atp-ps/powershell.exe")
    assert posix.script_path is not None and posix.script_path.startswith("/tmp/atp-ps-")
    chosen = plan(script, "/tmp/x/powershell.exe", script_dir="/var/tmp")
    assert chosen.script_path is not None and chosen.script_path.startswith("/var/tmp/")
    assert plan('"hi"', force_route=Route.GUEST_FILE).route is Route.GUEST_FILE
    assert plan(script, force_route="encoded-command").route is Route.ENCODED_COMMAND


def test_plan_refuses_an_empty_script_or_path() -> None:
    with pytest.raises(ConfigurationError, match="script is empty"):
        plan("  \n")
    with pytest.raises(ConfigurationError, match="PowerShell path is empty"):
        plan('"hi"', " ")


def test_cleanup_script_quotes_single_quotes() -> None:
    assert cleanup_script("C:\\Temp\\it's.ps1") == "Remove-Item -LiteralPath 'C:\\Temp\\it''s.ps1' -Force"


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("given", "codec"),
    [
        ("936", "gbk"),
        ("cp936", "gbk"),
        ("CP437", "cp437"),
        ("chcp 437", "cp437"),
        ("Active code page: 65001", "utf-8"),
        ("windows-1252", "cp1252"),
        ("gbk", "gbk"),
        ("UTF-8", "utf-8"),
        (850, "cp850"),
        ("auto", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_encoding(given: str | int | None, codec: str | None) -> None:
    assert normalize_encoding(given) == codec


def test_unknown_encoding_is_named_with_examples() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown output encoding 'klingon'.*936.*auto"):
        normalize_encoding("klingon")
    with pytest.raises(ConfigurationError, match="'99999'"):
        normalize_encoding("99999")


def test_utf8_output_is_plain_and_a_utf8_bom_is_dropped() -> None:
    assert decode_output("中文 ok\r\n".encode(), "gbk").text == "中文 ok\r\n"
    assert decode_output("中文 ok\r\n".encode(), "gbk").note is None
    with_bom = decode_output(b"\xef\xbb\xbf\xc3\xa9\r\n", None)
    assert with_bom.text == "é\r\n" and "byte order mark" in (with_bom.note or "")
    assert decode_output(b"", None).text == ""


def test_gbk_output_decodes_with_the_given_code_page() -> None:
    decoded = decode_output("中文 ok\r\n".encode("gbk"), normalize_encoding("936"))
    assert decoded.text == "中文 ok\r\n" and decoded.encoding == "gbk" and decoded.replaced == 0
    assert decoded.note == "stdout: not UTF-8; decoded as gbk (given code page)"


def test_cp437_output_decodes_box_drawing() -> None:
    decoded = decode_output(b"\xc9\xcd\xbb \x82t\x82\r\n", "cp437", stream="stderr", source="detected")
    assert decoded.text == "╔═╗ été\r\n"
    assert decoded.note == "stderr: not UTF-8; decoded as cp437 (detected code page)"


def test_invalid_utf8_without_a_code_page_is_replaced_and_said() -> None:
    decoded = decode_output(b"ok \xff\xfe\x41", None)
    assert decoded.text == "ok \ufffd\ufffdA" and decoded.replaced == 2
    assert decoded.note is not None and "first bad byte at offset 3" in decoded.note and "2 byte(s)" in decoded.note


def test_bytes_not_valid_in_the_code_page_are_replaced_and_counted() -> None:
    decoded = decode_output(b"\xd6\xd0\x81", "gbk")  # 中 then a lone lead byte
    assert decoded.text == "中\ufffd" and decoded.replaced == 1
    assert "1 byte(s) not valid in gbk" in (decoded.note or "")
    cp1252 = decode_output(b"\x81\x8d\xe9", "cp1252")  # 0x81 and 0x8D are undefined in 1252
    assert cp1252.text == "\ufffd\ufffdé" and cp1252.replaced == 2


def test_decoding_never_raises_for_any_bytes() -> None:
    rng = random.Random(5)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        for code_page in (None, "utf-8", "gbk", "cp437", "cp1252", "big5", "utf-16-le"):
            decoded = decode_output(data, code_page)
            assert isinstance(decoded.text, str)
            assert decoded.replaced <= len(data)


# ---------------------------------------------------------------- the stand-in, run here


@pytest.fixture()
def stand_in(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "powershell.exe"
    path.parent.mkdir()
    path.write_bytes(stand_in_source())
    path.chmod(0o755)
    return path


def run_stand_in(path: Path, args: list[str] | tuple[str, ...]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, timeout=30, check=False)


def test_stand_in_is_labelled_in_its_header_and_on_every_run(stand_in: Path) -> None:
    head = stand_in.read_bytes()[:600].decode()
    assert "ATP TEST STAND-IN FOR powershell.exe" in head and "THIS IS NOT POWERSHELL" in head
    assert STAND_IN_MARKER in head
    done = run_stand_in(stand_in, encoded_args('"hi"'))
    assert done.stderr.decode().startswith(STAND_IN_LABEL)


def test_stand_in_accepts_our_argument_list_and_runs_kind_5s_right_value(stand_in: Path) -> None:
    done = run_stand_in(stand_in, encoded_args('"hi"'))
    assert (done.returncode, done.stdout) == (0, b"hi\r\n")


def test_stand_in_fails_kind_5s_wrong_value_like_powershell(stand_in: Path) -> None:
    wrong = (*COMMON_SWITCHES, "-EncodedCommand", "ImhpIg==")
    done = run_stand_in(stand_in, wrong)
    assert done.returncode == 1 and b"hi" not in done.stdout
    assert b"is not recognized as the name of a cmdlet" in done.stderr


def test_stand_in_rejects_what_powershell_rejects(stand_in: Path) -> None:
    assert run_stand_in(stand_in, ["-EncodedCommand", "not base64!"]).returncode == 64
    assert run_stand_in(stand_in, ["-NoProfile", "-Bogus"]).returncode == 64
    assert run_stand_in(stand_in, ["-EncodedCommand"]).returncode == 64
    assert run_stand_in(stand_in, ["-NoProfile"]).returncode == 64  # no script: no interactive shell here


def test_stand_in_file_needs_bypass_a_ps1_and_reads_bom_less_files_as_ansi(stand_in: Path, tmp_path: Path) -> None:
    script = tmp_path / "s.ps1"
    script.write_bytes(script_file_bytes("Write-Output 'héllo 中'\nexit 4\n"))
    no_policy = run_stand_in(stand_in, ["-NoProfile", "-NonInteractive", "-File", str(script)])
    assert no_policy.returncode == 1 and b"running scripts is disabled" in no_policy.stderr
    done = run_stand_in(stand_in, file_args(str(script)))
    assert done.returncode == 4 and done.stdout == "héllo ?\r\n".encode("cp437")  # 中 is not in code page 437
    script.write_bytes("Write-Output 'héllo'\n".encode())  # no BOM: Windows PowerShell reads ANSI (1252)
    Path(str(stand_in) + ".codepage").write_text("65001")  # show the mojibake in UTF-8
    assert run_stand_in(stand_in, file_args(str(script))).stdout == "hÃ©llo\r\n".encode()
    text = tmp_path / "s.txt"
    text.write_text("'x'")
    assert run_stand_in(stand_in, file_args(str(text))).returncode == 64


def test_stand_in_writes_in_its_code_page_and_raw_bytes(stand_in: Path) -> None:
    Path(str(stand_in) + ".codepage").write_text("936\n")
    done = run_stand_in(stand_in, encoded_args("[Console]::OutputEncoding.CodePage; Write-Output '中文'"))
    assert done.stdout == b"936\r\n" + "中文\r\n".encode("gbk")
    switched = run_stand_in(
        stand_in, encoded_args("[Console]::OutputEncoding = [System.Text.Encoding]::GetEncoding(437); '╔═╗'")
    )
    assert switched.stdout == b"\xc9\xcd\xbb\r\n"
    raw = run_stand_in(stand_in, encoded_args("Write-StandInBytes 'ff fe 41'; Write-StandInBytes '80' -ToStderr"))
    assert raw.stdout == b"\xff\xfeA" and raw.stderr.endswith(b"\x80")


def test_stand_in_subset(stand_in: Path) -> None:
    script = "$x = 'a b'; \"val: $x `$x\"\n# a comment\n$PSVersionTable.PSEdition; Write-Error 'bad'"
    done = run_stand_in(stand_in, encoded_args(script))
    assert done.stdout == b"val: a b $x\r\nATP-Stand-In\r\n"
    assert b"bad" in done.stderr and done.returncode == 1  # the last statement failed
    assert run_stand_in(stand_in, encoded_args("Write-Output 1; exit 7; Write-Output 2")).stdout == b"1\r\n"
    assert run_stand_in(stand_in, encoded_args("exit 7")).returncode == 7
    thrown = run_stand_in(stand_in, encoded_args("throw 'boom'; 'never'"))
    assert thrown.returncode == 1 and b"boom" in thrown.stderr and b"never" not in thrown.stdout


# ---------------------------------------------------------------- the runner against the stand-in


class LocalGuest:
    """A qemu-ga double whose guest is this machine: guest-exec runs the process here, guest-file-* use real
    files, guest-get-osinfo answers ``os_id``. ``hang`` makes every guest-exec of ``hang`` never exit."""

    def __init__(self, os_id: str = "debian", hang: str | None = None, absent: tuple[str, ...] = ()) -> None:
        self.os_id = os_id
        self.hang = hang
        self.absent = absent  # paths this guest does not have (guests of one test share this machine's files)
        self.execs: list[tuple[str, list[str]]] = []
        self.results: dict[int, dict[str, Any]] = {}
        self.handles: dict[int, Any] = {}
        self.next_id = 100
        self.killed: list[int] = []

    def __call__(self, name: str, args: dict[str, Any]) -> Any:
        self.next_id += 1
        if name == "guest-get-osinfo":
            return {"id": self.os_id, "pretty-name": f"{self.os_id} (test double)"}
        if name == "guest-exec":
            self.execs.append((args["path"], list(args.get("arg", []))))
            if self.hang is not None and self.hang in " ".join(args.get("arg", [])):
                self.results[self.next_id] = {"exited": False}
                return {"pid": self.next_id}
            if args["path"] == "/bin/sh" and "kill -9" in " ".join(args["arg"]):
                self.killed.append(self.next_id)
                self.results[self.next_id] = {"exited": True, "exitcode": 0}
                return {"pid": self.next_id}
            program = args["path"] if "/" in args["path"] else shutil.which(args["path"])  # qemu-ga searches PATH
            if args["path"] in self.absent or program is None or not os.path.exists(program):
                raise libvirt_error(
                    libvirt.VIR_ERR_INTERNAL_ERROR,
                    "internal error: unable to execute QEMU agent command 'guest-exec': Failed to execute child "
                    f"process \u201c{args['path']}\u201d (No such file or directory)",
                )
            done = subprocess.run([args["path"], *args.get("arg", [])], capture_output=True, timeout=30, check=False)
            self.results[self.next_id] = {
                "exited": True,
                "exitcode": done.returncode,
                "out-data": base64.b64encode(done.stdout).decode(),
                "err-data": base64.b64encode(done.stderr).decode(),
            }
            return {"pid": self.next_id}
        if name == "guest-exec-status":
            status = self.results[args["pid"]]
            if status.get("exited"):
                del self.results[args["pid"]]
            return status
        if name == "guest-file-open":
            try:
                if args["path"] in self.absent:
                    raise FileNotFoundError(args["path"])
                self.handles[self.next_id] = open(args["path"], args.get("mode", "r"))  # noqa: SIM115
            except FileNotFoundError:
                raise libvirt_error(
                    libvirt.VIR_ERR_INTERNAL_ERROR,
                    f"internal error: unable to execute QEMU agent command 'guest-file-open': failed to open file "
                    f"'{args['path']}' (mode: '{args.get('mode')}'): No such file or directory",
                ) from None
            return self.next_id
        handle: Any = self.handles.get(args.get("handle", -1))
        if name == "guest-file-write":
            return {"count": handle.write(base64.b64decode(args["buf-b64"])), "eof": False}
        if name == "guest-file-read":
            data = handle.read(args.get("count", 4096))
            return {"count": len(data), "buf-b64": base64.b64encode(data).decode(), "eof": not data}
        if name == "guest-file-seek":
            position = handle.seek(args["offset"], {"set": 0, "cur": 1, "end": 2}[args["whence"]])
            return {"position": position, "eof": False}
        if name == "guest-file-flush":
            handle.flush()
            return {}
        if name == "guest-file-close":
            self.handles.pop(args["handle"]).close()
            return {}
        raise AssertionError(f"unexpected agent command {name}")


def local_agent(guest: LocalGuest, name: str = "win-01") -> GuestAgent:
    return GuestAgent(FakeTarget(name, "test:///local"), agent_command=FakeAgentCommand(guest))


def test_runner_short_script_goes_encoded_and_gets_result_like_execute_command(stand_in: Path) -> None:
    guest = LocalGuest()
    result = PowerShellRunner(local_agent(guest), powershell=str(stand_in)).run('"hi"', timeout=30)
    assert isinstance(result, PowerShellResult)
    assert (result.rc, result.stdout, result.route) == (0, "hi\r\n", "encoded-command")
    assert result.stdout_bytes == b"hi\r\n" and result.stderr.startswith(STAND_IN_LABEL)
    assert guest.execs == [(str(stand_in), list(encoded_args('"hi"')))]
    assert result.command == 'PowerShell: "hi" [encoded-command]'
    assert result.to_dict()["route"] == "encoded-command" and "IgBoAGkAIgA=" not in str(result.to_dict())


def test_runner_long_script_goes_through_a_guest_file_that_is_deleted(stand_in: Path, tmp_path: Path) -> None:
    guest = LocalGuest()
    lines = [f"Write-Output 'line {i:05d} {'é' * 30}'" for i in range(400)]
    script = "\n".join(lines)
    assert len(windows_command_line(str(stand_in), encoded_args(script))) + 1 > MAX_COMMAND_LINE
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    runner = PowerShellRunner(local_agent(guest), powershell=str(stand_in), script_dir=str(scripts))
    result = runner.run(script, timeout=30, encoding="cp437")
    assert result.route == "guest-file" and result.rc == 0 and result.cleanup_error is None
    assert result.stdout.splitlines()[0] == f"line 00000 {'é' * 30}" and len(result.stdout.splitlines()) == 400
    assert result.script_path is not None and result.script_path.startswith(str(scripts))
    assert list(scripts.iterdir()) == []  # deleted afterwards
    assert guest.execs[0] == (str(stand_in), list(file_args(result.script_path)))
    assert guest.execs[1][1][-2] == "-EncodedCommand"  # the Remove-Item
    assert decode_command(guest.execs[1][1][-1]).startswith("Remove-Item -LiteralPath")
    assert result.uploaded_bytes == len(script_file_bytes(script))


def test_runner_detects_the_code_page_once_and_decodes_gbk(stand_in: Path) -> None:
    Path(str(stand_in) + ".codepage").write_text("936")
    guest = LocalGuest()
    cache: dict[str, str | None] = {}
    runner = PowerShellRunner(local_agent(guest), powershell=str(stand_in), code_pages=cache)
    first = runner.run("Write-Output '中文'", timeout=30)
    second = PowerShellRunner(local_agent(guest), powershell=str(stand_in), code_pages=cache).run("'文'", timeout=30)
    assert (first.stdout, second.stdout) == ("中文\r\n", "文\r\n")
    assert first.stdout_encoding == "gbk" and first.decoding_notes == (
        "stdout: not UTF-8; decoded as gbk (detected code page)",
    )
    queries = [e for e in guest.execs if decode_command(e[1][-1]) == "[Console]::OutputEncoding.CodePage"]
    assert len(queries) == 1  # cached for the VM


def test_runner_invalid_utf8_never_crashes(stand_in: Path) -> None:
    guest = LocalGuest()
    result = PowerShellRunner(local_agent(guest), powershell=str(stand_in)).run(
        "Write-StandInBytes 'ff fe 41 0d 0a'", timeout=30, encoding="utf-8"
    )
    assert result.rc == 0 and result.stdout == "\ufffd\ufffdA\r\n"
    assert any("2 byte(s) replaced" in note for note in result.decoding_notes)


def test_runner_timeout_kills_and_still_deletes_the_script_file(stand_in: Path, tmp_path: Path) -> None:
    guest = LocalGuest(hang="-File")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    runner = PowerShellRunner(local_agent(guest), powershell=str(stand_in), script_dir=str(scripts))
    with pytest.raises(GuestCommandError, match=r"did not finish within 1\.5 s"):
        runner.run("'x'", timeout=1.5, route="guest-file")
    assert guest.killed and list(scripts.iterdir()) == []


def test_expect_rc_names_the_script_vm_and_stderr(stand_in: Path) -> None:
    result = PowerShellRunner(local_agent(LocalGuest()), powershell=str(stand_in)).run("exit 3", timeout=30)
    expect_rc(result, None, "win-01")
    with pytest.raises(
        GuestCommandError, match=r"PowerShell: exit 3 .* in VM 'win-01' exited with rc 3, expected rc 0"
    ):
        expect_rc(result, 0, "win-01")


def test_describe_script_shows_the_first_line_only() -> None:
    assert describe_script("  \nGet-Date\nexit 1\n") == "PowerShell: Get-Date (+1 more lines)"
    assert describe_script("x" * 100).endswith("...")


def test_guest_kind_windows_stand_in_other_file_and_nothing(stand_in: Path, tmp_path: Path) -> None:
    assert guest_kind(local_agent(LocalGuest("mswindows")), DEFAULT_POWERSHELL).kind == "windows"
    linux = local_agent(LocalGuest("debian"))
    assert guest_kind(linux, str(stand_in)).kind == "stand-in"
    other = tmp_path / "pwsh"
    other.write_bytes(b"#!/bin/sh\necho real\n")
    assert guest_kind(linux, str(other)).kind == "powershell-path"
    missing = guest_kind(linux, str(tmp_path / "nothing.exe"))
    assert missing.kind == "not-windows" and "no file at" in missing.detail and not missing.runs_powershell


def test_stand_in_source_is_the_shipped_module() -> None:
    import ATPLibrary.powershell.standin as module

    assert stand_in_source() == Path(module.__file__).read_bytes()
    assert os.access(module.__file__, os.R_OK) and shutil.which("python3") is not None


CLIXML = (
    "#< CLIXML\r\n"
    '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN>'
    '<MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV></PR></MS></Obj>'
    '<S S="Error">Write-Error &quot;bad&quot; : a &lt;b&gt; &amp; c_x000D__x000A_</S>'
    '<S S="Error">    + CategoryInfo          : NotSpecified: (:) [Write-Error], WriteErrorException_x000D__x000A_</S>'
    '<S S="warning">disk 中 low_x000A_</S>'
    "</Objs>"
)


def test_clixml_on_stderr_becomes_text() -> None:
    assert clixml_to_text(CLIXML) == (
        'Write-Error "bad" : a <b> & c\r\n'
        "    + CategoryInfo          : NotSpecified: (:) [Write-Error], WriteErrorException\r\n"
        "WARNING: disk 中 low\r\n"
    )
    assert clixml_to_text("plain error\r\n") is None
    assert clixml_to_text('#< CLIXML\r\n<Objs><S S="Error">unterminated') == ""  # malformed: no crash


def test_runner_turns_clixml_stderr_into_text(tmp_path: Path) -> None:
    fake = tmp_path / "powershell.exe"
    (tmp_path / "clixml.txt").write_text(CLIXML, encoding="utf-8")
    fake.write_text(f"#!/bin/sh\nprintf 'out\\r\\n'\ncat {tmp_path / 'clixml.txt'} >&2\nexit 1\n")
    fake.chmod(0o755)
    result = PowerShellRunner(local_agent(LocalGuest()), powershell=str(fake)).run("Write-Error bad", timeout=30)
    assert result.rc == 1 and result.stdout == "out\r\n"
    assert result.stderr.startswith('Write-Error "bad" : a <b> & c\r\n')
    assert result.stderr_bytes.startswith(b"#< CLIXML")
    assert "stderr: PowerShell's CLIXML turned into text (the raw bytes are in stderr_bytes)" in result.decoding_notes


# ---------------------------------------------------------------- the keywords (thin: conversion and logging)


@pytest.fixture()
def keywords(monkeypatch: pytest.MonkeyPatch) -> Any:
    from ATPLibrary.keywords.context import LibraryContext
    from ATPLibrary.keywords.powershell import PowerShellKeywords

    ctx = LibraryContext(timeout=30)
    guest = LocalGuest()
    monkeypatch.setattr(ctx, "agent", lambda vm: local_agent(guest, vm))
    return PowerShellKeywords(ctx)


def test_keyword_runs_with_the_set_path_and_checks_rc(keywords: Any, stand_in: Path) -> None:
    assert keywords.set_powershell_path(str(stand_in)) == DEFAULT_POWERSHELL
    result = keywords.execute_powershell_in_guest("win-01", '"hi"')
    assert (result.rc, result.stdout, result.route) == (0, "hi\r\n", "encoded-command")
    with pytest.raises(GuestCommandError, match="exited with rc 2, expected rc 0"):
        keywords.execute_powershell_in_guest("win-01", "exit 2")
    assert keywords.execute_powershell_in_guest("win-01", "exit 2", expected_rc="any").rc == 2
    forced = keywords.execute_powershell_in_guest("win-01", '"hi"', route="guest-file", script_dir=str(stand_in.parent))
    assert forced.route == "guest-file" and forced.stdout == "hi\r\n"


def test_keyword_argument_errors(keywords: Any, stand_in: Path) -> None:
    with pytest.raises(ConfigurationError, match="route must be 'auto', 'encoded-command' or 'guest-file'"):
        keywords.execute_powershell_in_guest("win-01", '"hi"', powershell=str(stand_in), route="pipe")
    with pytest.raises(ConfigurationError, match="expected_rc must be an integer"):
        keywords.execute_powershell_in_guest("win-01", '"hi"', powershell=str(stand_in), expected_rc="zero")
    with pytest.raises(ConfigurationError, match="needs the guest path"):
        keywords.set_powershell_path("  ")
    with pytest.raises(ConfigurationError, match="Linux guests only"):
        keywords.install_powershell_stand_in("win-01", path=r"C:\ps\powershell.exe")


def test_install_stand_in_through_the_agent_double(tmp_path: Path) -> None:
    from ATPLibrary.powershell.standin_install import install_stand_in

    target = tmp_path / "new" / "dir" / "powershell.exe"
    done = install_stand_in(local_agent(LocalGuest(), "lin-01"), str(target), code_page=936, timeout=30)
    assert target.read_bytes() == stand_in_source() and os.access(target, os.X_OK)
    assert Path(str(target) + ".codepage").read_text() == "936\n"
    assert done.edition == "ATP-Stand-In" and "STAND-IN (not PowerShell)" in str(done)
    with pytest.raises(ConfigurationError, match="unknown output encoding"):
        install_stand_in(local_agent(LocalGuest()), str(target), code_page=99999)
