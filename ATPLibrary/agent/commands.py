"""Command verification, as in the original system: ``verify_command`` → run it → ``command_result``.

Request (server → agent)::

    {"message_type": "verify_command", "request_id": "...", "command": "ls" | ["ls", "-l"], "args": ["/tmp"],
     "shell": false, "expected_exit_code": 0, "expected_stdout_contains": "...",
     "expected_stderr_contains": "...", "timeout": 30}

Reply (agent → server)::

    {"message_type": "command_result", "request_id": "...", "exit_code": 0 | null, "stdout": "...",
     "stderr": "...", "verified": true, "details": "...", "duration_ms": 12.3, "timed_out": false}

**No shell** by default: the program is ``command`` (one program name or path, never split) followed by ``args``;
a list ``command`` is the whole argv.  Only ``"shell": true`` runs a string ``command`` through the guest's shell
(``/bin/sh -c`` on Linux, ``cmd.exe /c`` on Windows) and takes no ``args``.
``expected_exit_code`` defaults to 0; an explicit ``null`` skips that check; the ``*_contains`` checks are
substring checks, skipped when absent or null.  The command is killed at ``timeout`` seconds (default 30; its
whole process group on Linux) and the result then says so.  Output is decoded as UTF-8 (invalid bytes replaced)
and cut at ``MAX_OUTPUT`` characters per stream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from ATPLibrary.verification import protocol

DEFAULT_TIMEOUT = 30.0
MAX_OUTPUT = 256 * 1024


def _argv(request: dict[str, Any]) -> tuple[list[str] | str, bool]:
    command = request.get("command")
    args = request.get("args") or []
    shell = bool(request.get("shell", False))
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ValueError("'args' must be a list of strings")
    if shell:
        if not isinstance(command, str) or not command.strip():
            raise ValueError("'shell': true needs 'command' as one non-empty string")
        if args:
            raise ValueError("'shell': true takes no 'args' (put everything in the command string)")
        return command, True
    if isinstance(command, list):
        if not command or not all(isinstance(c, str) for c in command):
            raise ValueError("'command' as a list must be a non-empty list of strings")
        return [*command, *args], False
    if isinstance(command, str) and command.strip():
        return [command, *args], False
    raise ValueError("'command' must be a program name, or a list of strings (argv)")


def _text(data: bytes | None) -> tuple[str, bool]:
    text = (data or b"").decode("utf-8", "replace")
    if len(text) > MAX_OUTPUT:
        return text[:MAX_OUTPUT], True
    return text, False


def run_verify_command(request: dict[str, Any]) -> dict[str, Any]:
    """Run one ``verify_command`` request and return its ``command_result`` (never raises)."""
    request_id = request.get("request_id", request.get("event_id"))
    result: dict[str, Any] = {
        "message_type": protocol.COMMAND_RESULT,
        "request_id": request_id,
        "exit_code": None,
        "stdout": "",
        "stderr": "",
        "verified": False,
        "details": "",
        "duration_ms": 0.0,
        "timed_out": False,
    }
    try:
        argv, shell = _argv(request)
        timeout = float(request.get("timeout") or DEFAULT_TIMEOUT)
    except (TypeError, ValueError) as exc:
        result["details"] = f"bad verify_command request: {exc}"
        return result
    started = time.monotonic()
    posix = sys.platform != "win32"
    try:
        proc = subprocess.Popen(
            argv,
            shell=shell,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=posix,
        )
    except OSError as exc:
        result["details"] = f"could not start {argv!r}: {exc}"
        result["stderr"] = str(exc)
        result["duration_ms"] = (time.monotonic() - started) * 1000
        return result
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc, posix)
        stdout, stderr = proc.communicate()
        result["timed_out"] = True
    result["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
    result["stdout"], cut_out = _text(stdout)
    result["stderr"], cut_err = _text(stderr)
    if result["timed_out"]:
        result["details"] = f"timed out after {timeout:g} s and was killed"
        return result
    result["exit_code"] = proc.returncode
    failures = []
    expected_exit = request.get("expected_exit_code", 0)
    if expected_exit is not None and proc.returncode != int(expected_exit):
        failures.append(f"exit code {proc.returncode}, expected {int(expected_exit)}")
    for stream in ("stdout", "stderr"):
        wanted = request.get(f"expected_{stream}_contains")
        if wanted is not None and str(wanted) not in result[stream]:
            failures.append(f"{stream} does not contain {str(wanted)!r}")
    result["verified"] = not failures
    notes = [n for n, cut in (("stdout", cut_out), ("stderr", cut_err)) if cut]
    details = "; ".join(failures) if failures else "all checks passed"
    if notes:
        details += f" ({' and '.join(notes)} cut at {MAX_OUTPUT} characters)"
    result["details"] = details
    return result


def _kill(proc: subprocess.Popen[bytes], posix: bool) -> None:
    try:
        if posix:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except OSError:
        pass
