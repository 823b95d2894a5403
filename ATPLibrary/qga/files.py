"""Guest files through qemu-ga's ``guest-file-*`` commands, in chunks that keep every libvirt message small.

Two limits of the libvirt agent path decide the chunk sizes:

- host to guest: an agent *command* must fit in the send buffer of libvirt's socket to QEMU (212 992 bytes by
  default, ``net.core.wmem_default``).  Measured with libvirt 9.0 / QEMU 7.2: a ``guest-file-write`` of
  147 456 bytes (196 KiB of base64) works, one of 196 608 bytes never gets an answer, and the agent then stays
  "not available" for seconds.  So each write carries :data:`WRITE_CHUNK` (96 KiB, 128 KiB of base64) and never
  more than :data:`MAX_WRITE_CHUNK`;
- guest to host: libvirt accepts agent *replies* up to 10 MiB (past that the domain's agent channel stays
  broken until the domain is destroyed).  Each ``guest-file-read`` asks for :data:`MAX_CHUNK` (1 MiB, about
  1.4 MiB of base64) at most.

Every opened handle is closed, also when a transfer fails or times out half-way (qemu-ga keeps handles open
until told otherwise).  ``guest-file-*`` work on Linux and Windows guests; ``mode`` and ``checksum`` run
``chmod`` / ``sha256sum`` through ``guest-exec`` and need a Linux guest.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import libvirt

from ATPLibrary.errors import (
    ConfigurationError,
    GuestAgentError,
    GuestAgentNotResponding,
    GuestFileError,
    GuestFileNotFoundError,
    GuestFilePermissionError,
    GuestFileTransferTimeout,
    VMStateError,
)
from ATPLibrary.hosts.connection import error_code
from ATPLibrary.hosts.timing import Clock, Deadline, format_seconds
from ATPLibrary.qga.agent import GuestAgent, is_agent_not_ready

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Largest amount of file data asked for in one guest-file-read (the reply is about 4/3 of it in base64).
MAX_CHUNK = MiB
#: File data per guest-file-write by default (the command is about 4/3 of it in base64).
WRITE_CHUNK = 96 * 1024
#: Largest file data per guest-file-write: bigger commands overflow libvirt's socket buffer (see above).
MAX_WRITE_CHUNK = 144 * 1024
#: Default time for a whole transfer.
DEFAULT_TIMEOUT = 300.0
#: Transfers at least this big report progress (every 10 %).
PROGRESS_THRESHOLD = 4 * MiB

_NOT_FOUND_WORDS = ("no such file or directory", "cannot find the path", "cannot find the file")
_PERMISSION_WORDS = ("permission denied", "operation not permitted", "read-only file system", "access is denied")
_DISABLED_WORDS = ("has been disabled", "commanddisabled", "command not found", "commandnotfound")


@dataclass(frozen=True)
class TransferProgress:
    """One progress report: ``done`` of ``total`` bytes (``total`` None when the size is unknown)."""

    vm: str
    direction: str
    guest_path: str
    done: int
    total: int | None
    elapsed: float

    def __str__(self) -> str:
        verb = "Uploaded" if self.direction == "upload" else "Downloaded"
        amount = f"{_size(self.done)} of {_size(self.total)}" if self.total else _size(self.done)
        percent = f" ({100 * self.done // self.total} %)" if self.total else ""
        preposition = "to" if self.direction == "upload" else "from"
        return (
            f"{verb} {amount}{percent} {preposition} '{self.guest_path}' in VM '{self.vm}' "
            f"after {format_seconds(self.elapsed)}"
        )


ProgressCallback = Callable[[TransferProgress], None]


@dataclass(frozen=True)
class TransferResult:
    """What a finished upload or download moved.

    ``sha256`` is the hex digest of the bytes sent or received (computed on the host);
    ``checksum_verified`` is True when the guest's own ``sha256sum`` was compared with it.
    """

    vm: str
    direction: str
    guest_path: str
    size: int
    seconds: float
    chunks: int
    sha256: str
    local_path: str | None = None
    checksum_verified: bool = False

    @property
    def rate(self) -> float:
        """Bytes per second."""
        return self.size / self.seconds if self.seconds > 0 else float(self.size)

    def __str__(self) -> str:
        verb = "Uploaded" if self.direction == "upload" else "Downloaded"
        preposition = "to" if self.direction == "upload" else "from"
        local = f" ({self.local_path})" if self.local_path else ""
        return (
            f"{verb} {_size(self.size)}{local} {preposition} '{self.guest_path}' in VM '{self.vm}' in "
            f"{format_seconds(self.seconds)} ({self.chunks} chunks, {_size(round(self.rate))}/s, "
            f"sha256 {self.sha256})"
        )


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


def parse_mode(mode: int | str | None) -> int | None:
    """A permission mode from an int (``0o755``) or an octal string (``"755"``, ``"0755"``, ``"0o755"``)."""
    if mode is None:
        return None
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip().lower()
        if text in ("", "none"):
            return None
        try:
            value = int(text.removeprefix("0o"), 8)
        except ValueError:
            raise ConfigurationError(f"mode must be an octal permission such as 0644 or 755, not '{mode}'") from None
    if not 0 <= value <= 0o7777:
        raise ConfigurationError(f"mode must be between 0 and 7777 (octal), not {value:o}")
    return value


class _Progress:
    """Calls ``callback`` at every 10 % step of a big transfer (every threshold bytes if the size is unknown)."""

    def __init__(
        self,
        callback: ProgressCallback | None,
        vm: str,
        direction: str,
        guest_path: str,
        total: int | None,
        threshold: int,
        deadline: Deadline,
    ) -> None:
        self.callback, self.vm, self.direction, self.guest_path = callback, vm, direction, guest_path
        self.total, self.threshold, self.deadline = total, threshold, deadline
        self.next_mark = 0

    def update(self, done: int) -> None:
        if self.callback is None:
            return
        if self.total:
            if self.total < self.threshold:
                return
            step = max(1, self.total // 10)
        else:
            step = max(1, self.threshold)
        if done < self.next_mark + step:
            return
        self.next_mark = done - done % step
        self.callback(
            TransferProgress(self.vm, self.direction, self.guest_path, done, self.total, self.deadline.elapsed())
        )


def _log_progress(progress: TransferProgress) -> None:
    log.info("%s", progress)


@contextlib.contextmanager
def _open_source(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> Iterator[tuple[IO[bytes], int]]:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        yield io.BytesIO(data), len(data)
        return
    path = Path(source)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise ConfigurationError(f"Local file '{path}' does not exist (to upload to a guest).") from None
    except IsADirectoryError:
        raise ConfigurationError(f"Local path '{path}' is a directory; upload a file.") from None
    except PermissionError:
        raise ConfigurationError(f"Local file '{path}' cannot be read: permission denied.") from None
    with handle:
        yield handle, os.fstat(handle.fileno()).st_size


class GuestFiles:
    """Upload and download files of one guest through its :class:`GuestAgent`.

    ``read_chunk_size`` (at most :data:`MAX_CHUNK`) and ``write_chunk_size`` (at most :data:`MAX_WRITE_CHUNK`)
    are the file data per ``guest-file-read`` / ``guest-file-write``; ``call_timeout_cap`` bounds
    each agent command (the whole transfer is bounded by each method's ``timeout``); ``progress`` receives a
    :class:`TransferProgress` at every 10 % of transfers of at least ``progress_threshold`` bytes (default: the
    module's logger).
    """

    def __init__(
        self,
        agent: GuestAgent,
        *,
        read_chunk_size: int = MAX_CHUNK,
        write_chunk_size: int = WRITE_CHUNK,
        call_timeout_cap: float = 30.0,
        progress: ProgressCallback | None = _log_progress,
        progress_threshold: int = PROGRESS_THRESHOLD,
        clock: Clock = time.monotonic,
    ) -> None:
        for what, value, limit in (
            ("read_chunk_size", read_chunk_size, MAX_CHUNK),
            ("write_chunk_size", write_chunk_size, MAX_WRITE_CHUNK),
        ):
            if not 1 <= int(value) <= limit:
                raise ConfigurationError(
                    f"{what} must be between 1 and {limit} bytes (libvirt limits agent messages), not {value}"
                )
        self.agent = agent
        self.read_chunk_size = int(read_chunk_size)
        self.write_chunk_size = int(write_chunk_size)
        self.call_timeout_cap = call_timeout_cap
        self.progress = progress
        self.progress_threshold = progress_threshold
        self._clock = clock

    @property
    def vm(self) -> str:
        return self.agent.vm

    def _where(self) -> str:
        return f"VM '{self.agent.vm}' ({self.agent.target.uri})"

    # -- one agent command ---------------------------------------------------------------------------------
    def _call(
        self,
        name: str,
        arguments: Mapping[str, Any],
        guest_path: str,
        call_timeout: int,
        *,
        idempotent: bool = False,
    ) -> Any:
        try:
            return self.agent.raw(name, arguments, timeout=call_timeout, idempotent=idempotent)
        except (libvirt.libvirtError, GuestAgentError) as err:
            raise self._file_error(name, guest_path, err) from err

    def _file_error(self, name: str, guest_path: str, err: BaseException) -> Exception:
        text = str(err)
        lower = text.lower()
        where = self._where()
        if is_agent_not_ready(err):
            return GuestAgentNotResponding(
                f"{where}: guest agent not responding to {name} on '{guest_path}': {text}. Check that qemu-ga "
                f"runs in the guest (Guest Agent Should Respond) and try again."
            )
        if error_code(err) == libvirt.VIR_ERR_OPERATION_INVALID:
            return VMStateError(f"{where}: cannot use guest file '{guest_path}': {text}. Is the VM running?")
        if any(word in lower for word in _NOT_FOUND_WORDS):
            return GuestFileNotFoundError(
                f"{where}: guest path '{guest_path}' does not exist (or its directory does not): {text}. "
                f"Check the path; the guest agent does not create directories."
            )
        if any(word in lower for word in _PERMISSION_WORDS):
            return GuestFilePermissionError(
                f"{where}: permission denied for guest path '{guest_path}': {text}. Use a path the guest "
                f"agent's user may access (qemu-ga usually runs as root / LocalSystem) on a writable file system."
            )
        if any(word in lower for word in _DISABLED_WORDS):
            return GuestFileError(
                f"{where}: the guest agent refused {name} for '{guest_path}': {text}. The guest-file-* commands "
                f"are disabled in this qemu-ga; allow them (qemu-ga --allow-rpcs, or drop them from --block-rpcs)."
            )
        if "no space left" in lower or "disk quota" in lower:
            return GuestFileError(f"{where}: guest file system is full writing '{guest_path}': {text}.")
        return GuestFileError(f"{where}: {name} on guest path '{guest_path}' failed: {text}")

    def _call_timeout(self, deadline: Deadline) -> int:
        return deadline.agent_timeout(self.call_timeout_cap)

    def _open(self, guest_path: str, mode: str, deadline: Deadline) -> int:
        handle = self._call(
            "guest-file-open", {"path": guest_path, "mode": mode}, guest_path, self._call_timeout(deadline)
        )
        if not isinstance(handle, int):
            raise GuestFileError(
                f"{self._where()}: guest-file-open of '{guest_path}' returned {handle!r}, not a handle"
            )
        return handle

    def _close(self, handle: int, guest_path: str, deadline: Deadline, *, quiet: bool) -> None:
        """Close ``handle``; even after the deadline it gets a few seconds.  ``quiet``: log failures only."""
        call_timeout = max(5, self._call_timeout(deadline)) if not deadline.expired else 5
        try:
            self._call("guest-file-close", {"handle": handle}, guest_path, call_timeout, idempotent=True)
        except Exception as err:
            if not quiet:
                raise
            log.warning(
                "could not close guest file handle %s of '%s' in %s: %s", handle, guest_path, self._where(), err
            )

    def _seek(self, handle: int, guest_path: str, offset: int, whence: str, deadline: Deadline) -> int:
        reply = self._call(
            "guest-file-seek",
            {"handle": handle, "offset": offset, "whence": whence},
            guest_path,
            self._call_timeout(deadline),
            idempotent=whence != "cur",
        )
        return int(reply["position"])

    def _timeout(self, direction: str, guest_path: str, done: int, total: int | None, timeout: float) -> Exception:
        preposition = "to" if direction == "upload" else "from"
        return GuestFileTransferTimeout(
            f"{self._where()}: {direction} {preposition} guest path '{guest_path}' did not finish within "
            f"{format_seconds(timeout)} ({_size(done)} of {_size(total)} transferred). Raise the timeout for "
            f"big files or check that the guest is not overloaded."
        )

    # -- upload ----------------------------------------------------------------------------------------------
    def upload(
        self,
        source: str | os.PathLike[str] | bytes | bytearray | memoryview,
        guest_path: str,
        *,
        mode: int | str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        checksum: bool = False,
    ) -> TransferResult:
        """Write ``source`` (a local path, or bytes) to ``guest_path``, replacing the file.

        The file is written in chunks of at most ``write_chunk_size`` bytes, flushed, and its size in the guest is
        checked against the bytes sent.  ``mode`` (``0o644``, ``"755"``) is applied with ``chmod``;
        ``checksum=True`` compares the guest's ``sha256sum`` with the host's (both Linux only).
        Raises :class:`GuestFileTransferTimeout` when the whole transfer takes longer than ``timeout``.
        """
        perms = parse_mode(mode)
        deadline = Deadline(timeout, self._clock)
        local = None if isinstance(source, bytes | bytearray | memoryview) else str(source)
        with _open_source(source) as (stream, total):
            progress = _Progress(self.progress, self.vm, "upload", guest_path, total, self.progress_threshold, deadline)
            digest = hashlib.sha256()
            done = chunks = 0
            handle = self._open(guest_path, "wb", deadline)
            try:
                while True:
                    chunk = stream.read(self.write_chunk_size)
                    if not chunk:
                        break
                    if deadline.expired:
                        raise self._timeout("upload", guest_path, done, total, timeout)
                    chunks += self._write_all(handle, guest_path, chunk, deadline)
                    digest.update(chunk)
                    done += len(chunk)
                    progress.update(done)
                self._call("guest-file-flush", {"handle": handle}, guest_path, self._call_timeout(deadline))
                in_guest = self._seek(handle, guest_path, 0, "end", deadline)
            except BaseException:
                self._close(handle, guest_path, deadline, quiet=True)
                raise
            self._close(handle, guest_path, deadline, quiet=False)
        if in_guest != done:
            raise GuestFileError(
                f"{self._where()}: guest file '{guest_path}' has {in_guest} bytes after uploading {done}. "
                f"Something else writes to it, or the guest file system is full."
            )
        if perms is not None:
            self._chmod(guest_path, perms, deadline, timeout)
        sha = digest.hexdigest()
        if checksum:
            guest_sha = self.sha256(guest_path, timeout=max(deadline.remaining(), 10.0))
            if guest_sha != sha:
                raise GuestFileError(
                    f"{self._where()}: checksum mismatch after uploading '{guest_path}': the host sent sha256 "
                    f"{sha}, the guest has {guest_sha}."
                )
        return TransferResult(
            self.vm, "upload", guest_path, done, deadline.elapsed(), chunks, sha, local, checksum_verified=checksum
        )

    def _write_all(self, handle: int, guest_path: str, chunk: bytes, deadline: Deadline) -> int:
        """Write ``chunk`` (short writes are continued); returns the number of guest-file-write commands."""
        view = memoryview(chunk)
        commands = zero_writes = 0
        while view:
            reply = self._call(
                "guest-file-write",
                {"handle": handle, "buf-b64": base64.b64encode(view).decode("ascii")},
                guest_path,
                self._call_timeout(deadline),
            )
            commands += 1
            count = int(reply.get("count", 0)) if isinstance(reply, Mapping) else 0
            if count <= 0:
                zero_writes += 1
                if zero_writes >= 3:
                    raise GuestFileError(
                        f"{self._where()}: the guest agent wrote nothing to '{guest_path}' three times in a row "
                        f"(is the guest file system full?)."
                    )
                continue
            zero_writes = 0
            view = view[count:]
        return commands

    def _chmod(self, guest_path: str, perms: int, deadline: Deadline, timeout: float) -> None:
        try:
            result = self.agent.exec("chmod", [f"{perms:o}", guest_path], timeout=max(deadline.remaining(), 10.0))
        except GuestAgentError as err:
            raise GuestFileError(
                f"{self._where()}: could not set mode {perms:o} on '{guest_path}' (chmod needs a Linux guest): {err}"
            ) from err
        if result.rc != 0:
            raise GuestFileError(
                f"{self._where()}: chmod {perms:o} '{guest_path}' failed (rc {result.rc}): {result.stderr.strip()}"
            )

    # -- download --------------------------------------------------------------------------------------------
    def download(self, guest_path: str, *, timeout: float = DEFAULT_TIMEOUT, max_size: int | None = None) -> bytes:
        """The content of ``guest_path`` (read in chunks; ``max_size`` bytes at most, else GuestFileError)."""
        parts: list[bytes] = []
        self._download(guest_path, parts.append, timeout, max_size, None)
        return b"".join(parts)

    def download_to(
        self,
        guest_path: str,
        local_path: str | os.PathLike[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_size: int | None = None,
    ) -> TransferResult:
        """Copy ``guest_path`` to ``local_path`` (parent directories are created).

        The data goes to ``<local_path>.part`` first and replaces ``local_path`` only when the whole file
        arrived, so a failed download never leaves a truncated file under the wanted name.
        """
        target = Path(local_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        try:
            with partial.open("wb") as sink:
                result = self._download(guest_path, sink.write, timeout, max_size, str(target))
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        return result

    def _download(
        self,
        guest_path: str,
        sink: Callable[[bytes], Any],
        timeout: float,
        max_size: int | None,
        local: str | None,
    ) -> TransferResult:
        deadline = Deadline(timeout, self._clock)
        digest = hashlib.sha256()
        done = chunks = 0
        total: int | None = None
        handle = self._open(guest_path, "rb", deadline)
        try:
            total = self._guest_size(handle, guest_path, deadline)
            if max_size is not None and total is not None and total > max_size:
                raise GuestFileError(
                    f"{self._where()}: guest file '{guest_path}' has {_size(total)}, more than max_size "
                    f"{_size(max_size)}."
                )
            progress = _Progress(
                self.progress, self.vm, "download", guest_path, total, self.progress_threshold, deadline
            )
            while True:
                if deadline.expired:
                    raise self._timeout("download", guest_path, done, total, timeout)
                reply = self._call(
                    "guest-file-read",
                    {"handle": handle, "count": self.read_chunk_size},
                    guest_path,
                    self._call_timeout(deadline),
                )
                chunks += 1
                data = self._decode_read(reply, guest_path)
                if data:
                    done += len(data)
                    if max_size is not None and done > max_size:
                        raise GuestFileError(
                            f"{self._where()}: guest file '{guest_path}' is bigger than max_size {_size(max_size)}."
                        )
                    digest.update(data)
                    sink(data)
                    progress.update(done)
                if not data or bool(reply.get("eof", False)):
                    break
        except BaseException:
            self._close(handle, guest_path, deadline, quiet=True)
            raise
        self._close(handle, guest_path, deadline, quiet=False)
        return TransferResult(
            self.vm, "download", guest_path, done, deadline.elapsed(), chunks, digest.hexdigest(), local
        )

    def _guest_size(self, handle: int, guest_path: str, deadline: Deadline) -> int | None:
        """The file's size from seeking to its end (None for files that cannot seek or report 0: /proc)."""
        try:
            size = self._seek(handle, guest_path, 0, "end", deadline)
        except GuestFileError as err:
            log.debug("no size for %s: %s", guest_path, err)
            return None
        self._seek(handle, guest_path, 0, "set", deadline)
        return size or None

    def _decode_read(self, reply: Any, guest_path: str) -> bytes:
        if not isinstance(reply, Mapping):
            raise GuestFileError(f"{self._where()}: guest-file-read of '{guest_path}' returned {reply!r}")
        try:
            data = base64.b64decode(reply.get("buf-b64", "") or "", validate=True)
        except (binascii.Error, ValueError) as err:
            raise GuestFileError(
                f"{self._where()}: guest-file-read of '{guest_path}' returned invalid base64: {err}"
            ) from err
        count = reply.get("count")
        if count is not None and int(count) != len(data):
            raise GuestFileError(
                f"{self._where()}: guest-file-read of '{guest_path}' said {count} bytes but sent {len(data)}"
            )
        if len(data) > self.read_chunk_size:
            raise GuestFileError(
                f"{self._where()}: guest-file-read of '{guest_path}' sent {len(data)} bytes, more than asked"
            )
        return data

    # -- checks ----------------------------------------------------------------------------------------------
    def exists(self, guest_path: str, *, timeout: float = 10.0) -> bool:
        """Whether ``guest_path`` can be opened for reading (a missing directory counts as missing)."""
        deadline = Deadline(timeout, self._clock)
        try:
            handle = self._open(guest_path, "rb", deadline)
        except GuestFileNotFoundError:
            return False
        self._close(handle, guest_path, deadline, quiet=True)
        return True

    def size(self, guest_path: str, *, timeout: float = 10.0) -> int:
        """Size in bytes of ``guest_path`` (by seeking to its end)."""
        deadline = Deadline(timeout, self._clock)
        handle = self._open(guest_path, "rb", deadline)
        try:
            return self._seek(handle, guest_path, 0, "end", deadline)
        finally:
            self._close(handle, guest_path, deadline, quiet=True)

    def sha256(self, guest_path: str, *, timeout: float = 60.0) -> str:
        """Hex sha256 of ``guest_path`` computed in the guest with ``sha256sum`` (Linux guests)."""
        try:
            result = self.agent.exec("sha256sum", ["--", guest_path], timeout=timeout)
        except GuestAgentError as err:
            raise GuestFileError(
                f"{self._where()}: could not run sha256sum on '{guest_path}' (needs a Linux guest): {err}"
            ) from err
        if result.rc != 0:
            detail = result.stderr.strip()
            if any(word in detail.lower() for word in _NOT_FOUND_WORDS):
                raise GuestFileNotFoundError(f"{self._where()}: guest path '{guest_path}' does not exist: {detail}")
            raise GuestFileError(f"{self._where()}: sha256sum '{guest_path}' failed (rc {result.rc}): {detail}")
        digest = result.stdout.split(maxsplit=1)[0].lstrip("\\") if result.stdout.strip() else ""
        if len(digest) != 64:
            raise GuestFileError(f"{self._where()}: unexpected sha256sum output for '{guest_path}': {result.stdout!r}")
        return digest.lower()
