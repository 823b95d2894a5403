"""Guest file transfer through a fake qemu-ga (guest-file-* and guest-exec), no libvirt daemon needed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import libvirt
import pytest
from fakes import FakeClock, FakeTarget, libvirt_error

from ATPLibrary.errors import (
    ConfigurationError,
    GuestAgentNotResponding,
    GuestFileError,
    GuestFileNotFoundError,
    GuestFilePermissionError,
    GuestFileTransferTimeout,
)
from ATPLibrary.qga import GuestAgent
from ATPLibrary.qga.files import MAX_CHUNK, MAX_WRITE_CHUNK, WRITE_CHUNK, GuestFiles, TransferProgress, parse_mode

MiB = 1024 * 1024


def agent_failure(name: str, detail: str) -> libvirt.libvirtError:
    """What libvirt raises when qemu-ga answers a command with an error."""
    return libvirt_error(
        libvirt.VIR_ERR_INTERNAL_ERROR, f"internal error: unable to execute QEMU agent command '{name}': {detail}"
    )


class FakeGuestFS:
    """qemu-ga's guest-file-* (and a tiny guest-exec for chmod / sha256sum) over an in-memory file system.

    ``fail``: {command name: (nth call, exception)} raises on that call; ``max_write``: short writes;
    ``clock``/``tick``: each command advances the fake clock by ``tick`` seconds.
    """

    def __init__(
        self, files: dict[str, bytes] | None = None, clock: FakeClock | None = None, tick: float = 0.0
    ) -> None:
        self.files: dict[str, bytearray] = {k: bytearray(v) for k, v in (files or {}).items()}
        self.handles: dict[int, dict[str, Any]] = {}
        self.next_handle = 1000
        self.calls: dict[str, int] = {}
        self.fail: dict[str, tuple[int, BaseException]] = {}
        self.max_write: int | None = None
        self.write_sizes: list[int] = []
        self.read_counts: list[int] = []
        self.closed: list[int] = []
        self.execs: list[list[str]] = []
        self.modes: dict[str, int] = {}
        self.seek_lie: int | None = None
        self.clock, self.tick = clock, tick
        self.reply_sizes: list[int] = []
        self.request_sizes: list[int] = []
        self._exec: dict[int, dict[str, Any]] = {}

    def command(self, dom: Any, cmd: str, timeout: int, flags: int) -> str:
        """Stands in for ``libvirt_qemu.qemuAgentCommand``."""
        self.request_sizes.append(len(cmd))
        request = json.loads(cmd)
        reply = json.dumps({"return": self.handle(request["execute"], request.get("arguments", {}))})
        self.reply_sizes.append(len(reply))
        return reply

    def handle(self, name: str, args: dict[str, Any]) -> Any:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.clock is not None:
            self.clock.now += self.tick
        failing = self.fail.get(name)
        if failing is not None and failing[0] == self.calls[name]:
            raise failing[1]
        return getattr(self, "do_" + name.replace("-", "_"))(args)

    def do_guest_file_open(self, args: dict[str, Any]) -> int:
        path, mode = args["path"], args.get("mode", "r")
        if "w" in mode:
            if not path.startswith(("/tmp/", "/root/")):
                raise agent_failure(
                    "guest-file-open", f"failed to open file '{path}' (mode: '{mode}'): Permission denied"
                )
            self.files[path] = bytearray()
        elif path not in self.files:
            raise agent_failure(
                "guest-file-open", f"failed to open file '{path}' (mode: '{mode}'): No such file or directory"
            )
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = {"path": path, "pos": 0}
        return handle

    def _h(self, args: dict[str, Any]) -> dict[str, Any]:
        if args["handle"] not in self.handles:
            raise agent_failure("guest-file-x", f"handle '{args['handle']}' has not been found")
        return self.handles[args["handle"]]

    def do_guest_file_write(self, args: dict[str, Any]) -> dict[str, Any]:
        h = self._h(args)
        data = base64.b64decode(args["buf-b64"])
        self.write_sizes.append(len(data))
        if self.max_write is not None:
            data = data[: self.max_write]
        content = self.files[h["path"]]
        content[h["pos"] : h["pos"] + len(data)] = data
        h["pos"] += len(data)
        return {"count": len(data), "eof": False}

    def do_guest_file_read(self, args: dict[str, Any]) -> dict[str, Any]:
        h = self._h(args)
        count = args.get("count", 4096)
        self.read_counts.append(count)
        content = self.files[h["path"]]
        data = bytes(content[h["pos"] : h["pos"] + count])
        h["pos"] += len(data)
        return {"count": len(data), "buf-b64": base64.b64encode(data).decode(), "eof": h["pos"] >= len(content)}

    def do_guest_file_seek(self, args: dict[str, Any]) -> dict[str, Any]:
        h = self._h(args)
        size = len(self.files[h["path"]])
        base = {"set": 0, "cur": h["pos"], "end": size}[args["whence"]]
        h["pos"] = base + args["offset"]
        position = self.seek_lie if (self.seek_lie is not None and args["whence"] == "end") else h["pos"]
        return {"position": position, "eof": h["pos"] >= size}

    def do_guest_file_flush(self, args: dict[str, Any]) -> dict[str, Any]:
        self._h(args)
        return {}

    def do_guest_file_close(self, args: dict[str, Any]) -> dict[str, Any]:
        self._h(args)
        del self.handles[args["handle"]]
        self.closed.append(args["handle"])
        return {}

    def do_guest_exec(self, args: dict[str, Any]) -> dict[str, Any]:
        argv = [args["path"], *args.get("arg", [])]
        self.execs.append(argv)
        out, rc = b"", 0
        if argv[0] == "chmod":
            self.modes[argv[2]] = int(argv[1], 8)
        elif argv[0] == "sha256sum":
            path = argv[-1]
            if path in self.files:
                out = f"{hashlib.sha256(self.files[path]).hexdigest()}  {path}\n".encode()
            else:
                rc = 1
        pid = 4000 + len(self.execs)
        self._exec[pid] = {"exited": True, "exitcode": rc, "out-data": base64.b64encode(out).decode()}
        return {"pid": pid}

    def do_guest_exec_status(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._exec.pop(args["pid"])


def make(fs: FakeGuestFS, clock: FakeClock | None = None, **kwargs: Any) -> GuestFiles:
    clock = clock or FakeClock()
    agent = GuestAgent(FakeTarget("desk-7", "qemu:///system"), agent_command=fs.command, clock=clock, sleep=clock.sleep)
    kwargs.setdefault("progress", None)
    return GuestFiles(agent, clock=clock, **kwargs)


# -- upload ----------------------------------------------------------------------------------------------------


def test_upload_bytes_in_small_chunks_verifies_size_and_closes() -> None:
    data = os.urandom(5 * MiB + 123)
    fs = FakeGuestFS()
    result = make(fs).upload(data, "/tmp/big.bin")
    assert bytes(fs.files["/tmp/big.bin"]) == data
    assert max(fs.write_sizes) == WRITE_CHUNK <= MAX_WRITE_CHUNK < MAX_CHUNK
    assert len(fs.write_sizes) == -(-len(data) // WRITE_CHUNK)
    assert fs.calls["guest-file-flush"] == 1 and fs.calls["guest-file-seek"] == 1
    assert fs.handles == {} and fs.closed == [1000]
    assert result.size == len(data) and result.chunks == len(fs.write_sizes)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert not result.checksum_verified and result.local_path is None
    assert max(fs.reply_sizes) < 2 * MiB  # every agent reply stays far below libvirt's 10 MiB
    assert max(fs.request_sizes) < 150_000  # every command fits libvirt's 212 992-byte socket buffer


def test_upload_from_local_path_with_mode_and_checksum(tmp_path: Path) -> None:
    local = tmp_path / "tool.sh"
    local.write_bytes(b"#!/bin/sh\necho hi\n")
    fs = FakeGuestFS()
    result = make(fs).upload(local, "/tmp/tool.sh", mode="0755", checksum=True)
    assert fs.files["/tmp/tool.sh"] == b"#!/bin/sh\necho hi\n"
    assert fs.modes == {"/tmp/tool.sh": 0o755}
    assert ["chmod", "755", "/tmp/tool.sh"] in fs.execs
    assert ["sha256sum", "--", "/tmp/tool.sh"] in fs.execs
    assert result.checksum_verified and result.local_path == str(local)
    assert "tool.sh" in str(result) and "desk-7" in str(result)


def test_upload_checksum_mismatch_fails() -> None:
    fs = FakeGuestFS()
    files = make(fs)
    original = fs.do_guest_exec

    def corrupting_exec(args: dict[str, Any]) -> dict[str, Any]:
        fs.files["/tmp/x"][0:1] = b"Z"
        return original(args)

    fs.do_guest_exec = corrupting_exec  # type: ignore[method-assign]
    with pytest.raises(GuestFileError, match="checksum mismatch"):
        files.upload(b"abc", "/tmp/x", checksum=True)


def test_upload_empty_file() -> None:
    fs = FakeGuestFS({"/tmp/e": b"old content"})
    result = make(fs).upload(b"", "/tmp/e")
    assert fs.files["/tmp/e"] == b"" and result.size == 0 and result.chunks == 0 and fs.handles == {}


def test_short_writes_are_continued() -> None:
    data = os.urandom(300_000)
    fs = FakeGuestFS()
    fs.max_write = 70_000
    result = make(fs, write_chunk_size=100_000).upload(data, "/tmp/s")
    assert bytes(fs.files["/tmp/s"]) == data
    assert result.chunks > 3


def test_writes_that_write_nothing_fail_instead_of_looping() -> None:
    fs = FakeGuestFS()
    fs.max_write = 0
    with pytest.raises(GuestFileError, match="wrote nothing"):
        make(fs).upload(b"abc", "/tmp/z")
    assert fs.handles == {}


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (agent_failure("guest-file-write", "failed to write to file: No space left on device"), GuestFileError, "full"),
        (
            libvirt_error(libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "Guest agent is not responding"),
            GuestAgentNotResponding,
            "qemu-ga",
        ),
        (agent_failure("guest-file-write", "strange failure"), GuestFileError, "strange failure"),
    ],
)
def test_error_mid_upload_closes_the_handle_and_names_vm_and_path(
    error: libvirt.libvirtError, kind: type[Exception], words: str
) -> None:
    fs = FakeGuestFS()
    fs.fail["guest-file-write"] = (2, error)
    with pytest.raises(kind) as info:
        make(fs).upload(os.urandom(3 * MiB), "/tmp/mid.bin")
    message = str(info.value)
    assert "desk-7" in message and "/tmp/mid.bin" in message and words in message
    assert fs.handles == {} and fs.closed == [1000]


def test_a_failing_close_after_a_failure_does_not_hide_the_failure() -> None:
    fs = FakeGuestFS()
    fs.fail["guest-file-write"] = (1, agent_failure("guest-file-write", "boom"))
    fs.fail["guest-file-close"] = (1, agent_failure("guest-file-close", "close broke"))
    with pytest.raises(GuestFileError, match="boom"):
        make(fs).upload(b"abc", "/tmp/c")
    assert fs.calls["guest-file-close"] == 1


def test_a_failing_close_after_success_is_an_error() -> None:
    fs = FakeGuestFS()
    fs.fail["guest-file-close"] = (1, agent_failure("guest-file-close", "close broke"))
    with pytest.raises(GuestFileError, match="close broke"):
        make(fs).upload(b"abc", "/tmp/c")


def test_upload_open_errors_are_clear() -> None:
    fs = FakeGuestFS()
    with pytest.raises(GuestFilePermissionError) as info:
        make(fs).upload(b"x", "/etc/shadow")
    message = str(info.value)
    assert "desk-7" in message and "/etc/shadow" in message and "Permission denied" in message
    assert "writable" in message
    assert fs.handles == {} and "guest-file-close" not in fs.calls


def test_upload_missing_local_file_is_a_configuration_error(tmp_path: Path) -> None:
    fs = FakeGuestFS()
    with pytest.raises(ConfigurationError, match="does not exist"):
        make(fs).upload(tmp_path / "nope", "/tmp/x")
    assert fs.calls == {}


def test_upload_size_mismatch_is_reported_and_the_handle_closed() -> None:
    fs = FakeGuestFS()
    fs.seek_lie = 5
    with pytest.raises(GuestFileError, match="has 5 bytes after uploading 3"):
        make(fs).upload(b"abc", "/tmp/x")
    assert fs.handles == {}


def test_upload_timeout_covers_the_whole_transfer_and_closes_the_handle() -> None:
    clock = FakeClock()
    fs = FakeGuestFS(clock=clock, tick=4.0)
    with pytest.raises(GuestFileTransferTimeout) as info:
        make(fs, clock).upload(os.urandom(10 * MiB), "/tmp/slow.bin", timeout=10)
    message = str(info.value)
    assert "10 seconds" in message and "desk-7" in message and "/tmp/slow.bin" in message
    assert "of 10.0 MiB" in message
    assert 0 < len(fs.write_sizes) < 10
    assert fs.handles == {}


def test_progress_is_reported_for_big_files_only() -> None:
    reports: list[TransferProgress] = []
    fs = FakeGuestFS()
    files = make(fs, progress=reports.append, progress_threshold=4 * MiB)
    files.upload(os.urandom(MiB), "/tmp/small")
    assert reports == []
    files.upload(os.urandom(10 * MiB), "/tmp/big")
    assert len(reports) == 10 and reports[-1].done == 10 * MiB
    assert [r.done // MiB for r in reports] == list(range(1, 11))
    assert "100 %" in str(reports[-1]) and "/tmp/big" in str(reports[-1])


@pytest.mark.parametrize(
    "kwargs", [{"read_chunk_size": MAX_CHUNK + 1}, {"write_chunk_size": MAX_WRITE_CHUNK + 1}, {"read_chunk_size": 0}]
)
def test_chunk_sizes_are_limited(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError, match="chunk_size"):
        make(FakeGuestFS(), **kwargs)


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), (0o644, 0o644), ("755", 0o755), ("0755", 0o755), ("0o600", 0o600)]
)
def test_parse_mode(value: Any, expected: int | None) -> None:
    assert parse_mode(value) == expected


@pytest.mark.parametrize("value", ["rwx", "9", "77777"])
def test_parse_mode_rejects_bad_values(value: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_mode(value)


# -- download --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, MiB, 2 * MiB, 2 * MiB + 7])
def test_download_reads_chunks_of_at_most_one_mib(size: int) -> None:
    data = os.urandom(size)
    fs = FakeGuestFS({"/var/log/x": data})
    assert make(fs).download("/var/log/x") == data
    assert max(fs.read_counts) <= MAX_CHUNK
    assert fs.handles == {}
    assert max(fs.reply_sizes) < 2 * MiB


def test_download_to_writes_the_file_and_leaves_no_part_file(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    fs = FakeGuestFS({"/tmp/d": data})
    target = tmp_path / "sub" / "d.bin"
    result = make(fs).download_to("/tmp/d", target)
    assert target.read_bytes() == data
    assert result.local_path == str(target) and result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in target.parent.iterdir()) == ["d.bin"]


def test_download_error_mid_read_closes_handle_and_leaves_no_file(tmp_path: Path) -> None:
    fs = FakeGuestFS({"/tmp/d": os.urandom(3 * MiB)})
    fs.fail["guest-file-read"] = (2, libvirt_error(libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "Guest agent is not responding"))
    target = tmp_path / "d.bin"
    with pytest.raises(GuestAgentNotResponding, match="/tmp/d"):
        make(fs).download_to("/tmp/d", target)
    assert fs.handles == {} and fs.closed == [1000]
    assert list(tmp_path.iterdir()) == []


def test_download_missing_file_names_vm_path_and_fix() -> None:
    fs = FakeGuestFS()
    with pytest.raises(GuestFileNotFoundError) as info:
        make(fs).download("/tmp/nothing")
    message = str(info.value)
    assert "desk-7" in message and "/tmp/nothing" in message and "does not exist" in message
    assert "Check the path" in message


def test_download_max_size() -> None:
    fs = FakeGuestFS({"/tmp/d": b"x" * 100})
    with pytest.raises(GuestFileError, match="max_size"):
        make(fs).download("/tmp/d", max_size=10)
    assert fs.handles == {}


def test_download_of_a_file_without_size_reads_until_eof() -> None:
    fs = FakeGuestFS({"/proc/x": b"line\n" * 10})
    fs.seek_lie = 0  # /proc files report size 0
    assert make(fs, read_chunk_size=7).download("/proc/x") == b"line\n" * 10


def test_download_timeout() -> None:
    clock = FakeClock()
    fs = FakeGuestFS({"/tmp/d": os.urandom(8 * MiB)}, clock=clock, tick=3.0)
    with pytest.raises(GuestFileTransferTimeout, match="download from guest path '/tmp/d'"):
        make(fs, clock).download("/tmp/d", timeout=10)
    assert fs.handles == {}


def test_download_rejects_a_reply_whose_count_does_not_match() -> None:
    fs = FakeGuestFS({"/tmp/d": b"abc"})
    fs.do_guest_file_read = lambda args: {"count": 5, "buf-b64": base64.b64encode(b"abc").decode(), "eof": True}  # type: ignore[method-assign]
    with pytest.raises(GuestFileError, match="said 5 bytes"):
        make(fs).download("/tmp/d")
    assert fs.handles == {}


# -- checks ----------------------------------------------------------------------------------------------------


def test_exists_size_and_sha256() -> None:
    fs = FakeGuestFS({"/tmp/a": b"hello"})
    files = make(fs)
    assert files.exists("/tmp/a") is True
    assert files.exists("/tmp/b") is False
    assert files.size("/tmp/a") == 5
    assert files.sha256("/tmp/a") == hashlib.sha256(b"hello").hexdigest()
    with pytest.raises(GuestFileError):
        files.sha256("/tmp/b")
    assert fs.handles == {}


def test_disabled_file_commands_say_how_to_enable_them() -> None:
    fs = FakeGuestFS()
    fs.fail["guest-file-open"] = (
        1,
        agent_failure("guest-file-open", "The command guest-file-open has been disabled for this instance"),
    )
    with pytest.raises(GuestFileError, match="allow-rpcs"):
        make(fs).download("/tmp/a")
