"""Run PowerShell scripts in a guest through qemu-ga's ``guest-exec`` (the library's :class:`GuestAgent`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field

from ATPLibrary.errors import ATPError, GuestCommandError
from ATPLibrary.hosts.timing import Clock, Deadline
from ATPLibrary.powershell.command import (
    DEFAULT_POWERSHELL,
    HELPER_RESERVE,
    MAX_COMMAND_LINE,
    Invocation,
    Route,
    cleanup_script,
    encoded_args,
    plan,
)
from ATPLibrary.powershell.decoding import DecodedOutput, clixml_to_text, decode_output, normalize_encoding
from ATPLibrary.qga.agent import ExecResult, GuestAgent
from ATPLibrary.qga.files import GuestFiles

log = logging.getLogger(__name__)

#: Seconds a guest script file's deletion may take, even after the script ran out of time.
CLEANUP_TIMEOUT = 30.0
#: The PowerShell that prints the console's output code page (digits only, so it is UTF-8 whatever it is).
CODE_PAGE_QUERY = "[Console]::OutputEncoding.CodePage"


@dataclass(frozen=True)
class PowerShellResult(ExecResult):
    """An :class:`ExecResult` (``rc``, ``stdout``, ``stderr``, raw bytes, ``duration``...) of a PowerShell run.

    ``stdout``/``stderr`` are decoded with :func:`decode_output` (UTF-8, else the code page; never fails);
    ``route`` is ``encoded-command`` or ``guest-file``; ``decoding_notes`` says what was not plain UTF-8;
    ``cleanup_error`` is set when the guest script file could not be deleted.
    """

    vm: str = ""
    powershell: str = DEFAULT_POWERSHELL
    route: str = Route.ENCODED_COMMAND.value
    script_path: str | None = None
    command_line_length: int = 0
    stdout_text: str = ""
    stderr_text: str = ""
    stdout_encoding: str = "utf-8"
    stderr_encoding: str = "utf-8"
    decoding_notes: tuple[str, ...] = ()
    cleanup_error: str | None = None
    uploaded_bytes: int = field(default=0, compare=False)

    @property
    def stdout(self) -> str:
        return self.stdout_text

    @property
    def stderr(self) -> str:
        return self.stderr_text

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (no base64, no script)."""
        return {
            "vm": self.vm,
            "rc": self.rc,
            "signal": self.signal,
            "stdout": self.stdout_text,
            "stderr": self.stderr_text,
            "route": self.route,
            "command_line_length": self.command_line_length,
            "script_path": self.script_path,
            "stdout_encoding": self.stdout_encoding,
            "stderr_encoding": self.stderr_encoding,
            "decoding_notes": list(self.decoding_notes),
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "cleanup_error": self.cleanup_error,
            "duration": round(self.duration, 3),
        }


def describe_script(script: str, limit: int = 60) -> str:
    """``PowerShell: <first line>`` for logs and errors (never the base64, never the whole script)."""
    lines = [line.strip() for line in script.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    more = f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""
    return f"PowerShell: {first}{more}"


class PowerShellRunner:
    """Runs PowerShell scripts in one guest.

    - ``powershell``: the guest path of ``powershell.exe`` (a stand-in's path on a Linux lab guest).
    - ``script_dir``: guest folder for script files of the guest-file route (default: Windows' temp folder for
      a Windows path, else ``/tmp``).
    - ``code_pages``: a cache of detected code pages shared by runners (key: host URI, VM and PowerShell path).
    """

    def __init__(
        self,
        agent: GuestAgent,
        *,
        powershell: str = DEFAULT_POWERSHELL,
        script_dir: str | None = None,
        max_command_line: int = MAX_COMMAND_LINE,
        reserve: int = HELPER_RESERVE,
        files: Callable[[GuestAgent], GuestFiles] | None = None,
        code_pages: MutableMapping[str, str | None] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.agent = agent
        self.powershell = powershell
        self.script_dir = script_dir
        self.max_command_line = max_command_line
        self.reserve = reserve
        self._files = files or (lambda a: GuestFiles(a, progress=None))
        self._code_pages: MutableMapping[str, str | None] = {} if code_pages is None else code_pages
        self._clock = clock

    def plan(self, script: str, route: Route | str | None = None) -> Invocation:
        return plan(
            script,
            self.powershell,
            script_dir=self.script_dir,
            max_command_line=self.max_command_line,
            reserve=self.reserve,
            force_route=route,
        )

    def run(
        self,
        script: str,
        *,
        timeout: float = 60.0,
        encoding: str | int | None = "auto",
        route: Route | str | None = None,
    ) -> PowerShellResult:
        """Run ``script``; ``timeout`` bounds the upload (guest-file route) and the run together.

        ``encoding``: the output's code page when it is not UTF-8 (``936``, ``cp437``...), or ``auto`` to ask
        the guest (``[Console]::OutputEncoding.CodePage``, once per VM) only when the output is not UTF-8.
        On timeout the guest process is killed and GuestCommandError is raised (the script file, if any, is
        still deleted).
        """
        code_page = normalize_encoding(encoding)
        invocation = self.plan(script, route)
        shown = f"{describe_script(script)} [{invocation.route.value}]"
        deadline = Deadline(timeout, self._clock)
        uploaded = 0
        cleanup_error: str | None = None
        try:
            if invocation.script_path is not None:
                self._files(self.agent).upload(
                    invocation.script_bytes, invocation.script_path, timeout=max(deadline.remaining(), 1.0)
                )
                uploaded = len(invocation.script_bytes)
            raw = self.agent.exec(
                invocation.powershell, list(invocation.args), timeout=max(deadline.remaining(), 1.0), display=shown
            )
        finally:
            if invocation.script_path is not None:
                cleanup_error = self._delete(invocation.script_path)
        source = "given"
        if code_page is None and not _is_utf8(raw.stdout_bytes, raw.stderr_bytes):
            code_page, source = self.detect_code_page(timeout=max(deadline.remaining(), 10.0)), "detected"
        out = decode_output(raw.stdout_bytes, code_page, stream="stdout", source=source)
        err = decode_output(raw.stderr_bytes, code_page, stream="stderr", source=source)
        notes = tuple(d.note for d in (out, err) if d.note)
        readable = clixml_to_text(err.text)
        if readable is not None:
            err = DecodedOutput(readable, err.encoding, err.replaced, err.note)
            notes += ("stderr: PowerShell's CLIXML turned into text (the raw bytes are in stderr_bytes)",)
        return self._result(raw, invocation, out, err, notes, cleanup_error, uploaded)

    def _result(
        self,
        raw: ExecResult,
        invocation: Invocation,
        out: DecodedOutput,
        err: DecodedOutput,
        notes: tuple[str, ...],
        cleanup_error: str | None,
        uploaded: int,
    ) -> PowerShellResult:
        return PowerShellResult(
            command=raw.command,
            rc=raw.rc,
            stdout_bytes=raw.stdout_bytes,
            stderr_bytes=raw.stderr_bytes,
            signal=raw.signal,
            duration=raw.duration,
            stdout_truncated=raw.stdout_truncated,
            stderr_truncated=raw.stderr_truncated,
            pid=raw.pid,
            vm=self.agent.vm,
            powershell=invocation.powershell,
            route=invocation.route.value,
            script_path=invocation.script_path,
            command_line_length=invocation.command_line_length,
            stdout_text=out.text,
            stderr_text=err.text,
            stdout_encoding=out.encoding,
            stderr_encoding=err.encoding,
            decoding_notes=notes,
            cleanup_error=cleanup_error,
            uploaded_bytes=uploaded,
        )

    def _delete(self, script_path: str) -> str | None:
        """Delete the guest script file with PowerShell's Remove-Item; a sentence when that failed, else None."""
        try:
            done = self.agent.exec(
                self.powershell,
                list(encoded_args(cleanup_script(script_path))),
                timeout=CLEANUP_TIMEOUT,
                display=f"PowerShell: Remove-Item {script_path}",
            )
        except ATPError as error:
            log.warning("could not delete guest script %s in %s: %s", script_path, self.agent.vm, error)
            return f"could not delete the guest script file {script_path}: {error}"
        if done.rc != 0:
            detail = done.stderr.strip() or done.stdout.strip() or "(no output)"
            return f"deleting the guest script file {script_path} exited with rc {done.rc}: {detail}"
        return None

    def _cache_key(self) -> str:
        return f"{self.agent.target.uri}|{self.agent.vm}|{self.powershell}"

    def detect_code_page(self, timeout: float = 30.0) -> str | None:
        """The guest console's output code page as a codec name (cached per VM and PowerShell path); None when
        PowerShell does not say (the caller then replaces undecodable bytes and says so)."""
        key = self._cache_key()
        if key in self._code_pages:
            return self._code_pages[key]
        found: str | None = None
        try:
            answer = self.agent.exec(
                self.powershell,
                list(encoded_args(CODE_PAGE_QUERY)),
                timeout=timeout,
                display=f"PowerShell: {CODE_PAGE_QUERY}",
            )
            text = answer.stdout_bytes.decode("ascii", errors="replace").strip()
            if answer.rc == 0 and text.isdigit():
                found = normalize_encoding(int(text))
        except (ATPError, ValueError) as error:
            log.warning("could not read the code page of %s: %s", self.agent.vm, error)
        self._code_pages[key] = found
        return found


def _is_utf8(*streams: bytes) -> bool:
    for data in streams:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def expect_rc(result: PowerShellResult, expected: int | None, vm: str) -> None:
    """Raise GuestCommandError unless ``result.rc`` is ``expected`` (None accepts any)."""
    if expected is None or result.rc == expected:
        return
    status = f"rc {result.rc}" if result.rc is not None else f"killed by signal {result.signal}"
    stderr = result.stderr.strip() or "(empty)"
    raise GuestCommandError(
        f"{result.command} in VM '{vm}' exited with {status}, expected rc {expected}. stderr: {stderr}"
    )
