"""QEMU guest agent (qemu-ga) client over libvirt's ``qemuAgentCommand`` (works on remote URIs)."""

from __future__ import annotations

import base64
import json
import logging
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import libvirt

from ATPLibrary.errors import (
    ConfigurationError,
    GuestAgentError,
    GuestAgentNotResponding,
    GuestCommandError,
    VMStateError,
)
from ATPLibrary.hosts.connection import DomainTarget, error_code
from ATPLibrary.hosts.timing import Clock, Deadline, Sleep, format_seconds, poll_intervals

log = logging.getLogger(__name__)

AgentCommandFunc = Callable[[Any, str, int, int], str]

#: libvirt codes meaning "qemu-ga is not there yet / not answering": keep waiting.
_NOT_READY_CODES = frozenset({libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_ERR_AGENT_UNSYNCED})
_NOT_READY_WORDS = (
    "agent is not connected",
    "agent not connected",
    "agent is not responding",
    "agent not responding",
    "agent not available",
)


def is_agent_not_ready(err: BaseException) -> bool:
    """True for libvirt errors that mean qemu-ga is not connected or not answering yet (code 86, ...)."""
    if not isinstance(err, libvirt.libvirtError):
        return False
    if error_code(err) in _NOT_READY_CODES:
        return True
    text = str(err).lower()
    return any(word in text for word in _NOT_READY_WORDS)


def _default_agent_command(dom: Any, cmd: str, timeout: int, flags: int) -> str:
    import libvirt_qemu

    return str(libvirt_qemu.qemuAgentCommand(dom, cmd, timeout, flags))


def _decode_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


#: The most stdin a guest-exec may carry: a bigger agent command (base64 adds a third) does not fit libvirt's
#: socket buffer to QEMU and qemu-ga never answers it (measured: 147 456 bytes worked, 196 608 never did).
MAX_INPUT_DATA = 96 * 1024


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a command run with ``guest-exec``.

    ``stdout``/``stderr`` are UTF-8 text (undecodable bytes replaced); the raw bytes are in
    ``stdout_bytes``/``stderr_bytes``.  ``rc`` is None when the process was killed by ``signal``.
    """

    command: str
    rc: int | None
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    signal: int | None = None
    duration: float = 0.0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    pid: int | None = field(default=None, compare=False)

    @property
    def stdout(self) -> str:
        return _decode_text(self.stdout_bytes)

    @property
    def stderr(self) -> str:
        return _decode_text(self.stderr_bytes)

    @property
    def truncated(self) -> bool:
        return self.stdout_truncated or self.stderr_truncated

    def __str__(self) -> str:
        status = f"rc={self.rc}" if self.rc is not None else f"signal={self.signal}"
        return f"ExecResult({self.command!r}, {status}, stdout={self.stdout!r}, stderr={self.stderr!r})"


class GuestAgent:
    """qemu-ga of one domain.

    ``agent_command`` defaults to ``libvirt_qemu.qemuAgentCommand`` (looked up per call); tests pass a fake.
    """

    def __init__(
        self,
        target: DomainTarget,
        *,
        agent_command: AgentCommandFunc | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        call_timeout_cap: float = 10.0,
    ) -> None:
        self.target = target
        self._agent_command = agent_command or _default_agent_command
        self._clock = clock
        self._sleep = sleep
        self.call_timeout_cap = call_timeout_cap

    @property
    def vm(self) -> str:
        return self.target.name

    def _where(self) -> str:
        return f"VM '{self.target.name}' ({self.target.uri})"

    # -- raw commands ----------------------------------------------------------------------------------------
    def raw(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: int = 5,
        idempotent: bool = False,
    ) -> Any:
        """Send one agent command and return its ``return`` value; libvirt errors propagate unchanged."""
        request: dict[str, Any] = {"execute": name}
        if arguments:
            request["arguments"] = dict(arguments)
        payload = json.dumps(request)
        reply_text = self.target.run(
            lambda dom: self._agent_command(dom, payload, int(timeout), 0),
            what=f"guest agent command {name}",
            idempotent=idempotent,
        )
        try:
            reply = json.loads(reply_text)
        except (TypeError, ValueError) as err:
            raise GuestAgentError(
                f"{self._where()}: guest agent sent a reply that is not JSON to {name}: {reply_text!r}"
            ) from err
        if isinstance(reply, dict) and "error" in reply:
            error = reply["error"] or {}
            raise GuestAgentError(
                f"{self._where()}: guest agent command {name} failed: "
                f"{error.get('class', 'GenericError')}: {error.get('desc', error)}"
            )
        if isinstance(reply, dict) and "return" in reply:
            return reply["return"]
        return reply

    def command(
        self,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float = 10.0,
        idempotent: bool = False,
    ) -> Any:
        """Send one agent command; libvirt errors become GuestAgentError / GuestAgentNotResponding."""
        try:
            return self.raw(name, arguments, timeout=max(1, round(timeout)), idempotent=idempotent)
        except libvirt.libvirtError as err:
            raise self._map_error(name, err, timeout) from err

    def _map_error(self, name: str, err: libvirt.libvirtError, timeout: float) -> Exception:
        if is_agent_not_ready(err):
            return GuestAgentNotResponding(f"{self._where()}: guest agent not responding to {name}: {err}")
        if error_code(err) == libvirt.VIR_ERR_OPERATION_INVALID:
            return VMStateError(f"{self._where()}: cannot talk to the guest agent: {err}")
        return GuestAgentError(f"{self._where()}: guest agent command {name} failed: {err}")

    # -- ping ------------------------------------------------------------------------------------------------
    def ping(self, timeout: float = 30.0) -> float:
        """Wait until qemu-ga answers ``guest-ping``; returns the seconds waited.

        "Not connected / not responding" errors (libvirt code 86, ...) are retried until ``timeout``, then
        GuestAgentNotResponding is raised.  A domain that is not running fails at once (VMStateError).
        """
        deadline = Deadline(timeout, self._clock)
        delays = poll_intervals(0.05, 2.0, 0.5)
        last: libvirt.libvirtError | None = None
        attempts = 0
        while True:
            attempts += 1
            try:
                self.raw("guest-ping", timeout=deadline.agent_timeout(self.call_timeout_cap), idempotent=True)
                return deadline.elapsed()
            except libvirt.libvirtError as err:
                if not is_agent_not_ready(err):
                    raise self._map_error("guest-ping", err, timeout) from err
                last = err
            remaining = deadline.remaining()
            if remaining <= 0:
                raise GuestAgentNotResponding(
                    f"{self._where()}: guest agent not responding within {format_seconds(timeout)} "
                    f"({attempts} pings; last error: {last}). Is qemu-ga running in the guest and is the "
                    f"org.qemu.guest_agent.0 channel defined?"
                )
            self._sleep(min(next(delays), remaining))

    # -- exec ------------------------------------------------------------------------------------------------
    def exec(
        self,
        path: str,
        args: Sequence[str] = (),
        timeout: float = 30.0,
        input_data: bytes | str | None = None,
        env: Mapping[str, str] | Sequence[str] | None = None,
        *,
        display: str | None = None,
    ) -> ExecResult:
        """Run ``path args...`` in the guest with ``guest-exec``; wait at most ``timeout`` for it to exit.

        ``guest-exec-status`` is polled (10 ms growing to 200 ms) until ``exited`` is true, and never again
        after that.  On timeout the guest process is killed and GuestCommandError is raised.
        """
        shown = display or shlex.join([path, *args])
        deadline = Deadline(timeout, self._clock)
        arguments: dict[str, Any] = {"path": path, "arg": list(args), "capture-output": True}
        if env:
            arguments["env"] = (
                [f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping) else [str(e) for e in env]
            )
        if input_data is not None:
            raw_in = input_data.encode("utf-8") if isinstance(input_data, str) else bytes(input_data)
            if len(raw_in) > MAX_INPUT_DATA:
                raise ConfigurationError(
                    f"{self._where()}: input_data of {len(raw_in)} bytes for '{shown}' is more than one guest agent "
                    f"command can carry (about 150 KB through libvirt; ATPLibrary allows {MAX_INPUT_DATA}); "
                    "upload it with Upload File To Guest and let the command read the file"
                )
            arguments["input-data"] = base64.b64encode(raw_in).decode("ascii")
        started = self._start(arguments, deadline, shown, timeout)
        pid = int(started["pid"])
        status = self._wait_exited(pid, deadline, shown, timeout)
        return ExecResult(
            command=shown,
            rc=status.get("exitcode"),
            signal=status.get("signal"),
            stdout_bytes=base64.b64decode(status.get("out-data", "") or ""),
            stderr_bytes=base64.b64decode(status.get("err-data", "") or ""),
            stdout_truncated=bool(status.get("out-truncated", False)),
            stderr_truncated=bool(status.get("err-truncated", False)),
            duration=deadline.elapsed(),
            pid=pid,
        )

    def _start(self, arguments: dict[str, Any], deadline: Deadline, shown: str, timeout: float) -> Any:
        """``guest-exec``; if qemu-ga is not connected (nothing delivered), wait for it and send once more."""
        for attempt in (1, 2):
            try:
                return self.raw("guest-exec", arguments, timeout=deadline.agent_timeout(self.call_timeout_cap))
            except libvirt.libvirtError as err:
                undelivered = is_agent_not_ready(err) and "not connected" in str(err).lower()
                if attempt == 2 or not undelivered or deadline.expired:
                    raise self._map_error("guest-exec", err, timeout) from err
                try:
                    self.ping(deadline.remaining())
                except GuestAgentNotResponding as not_responding:
                    raise GuestAgentNotResponding(
                        f"{self._where()}: could not run '{shown}': guest agent not responding within "
                        f"{format_seconds(timeout)}"
                    ) from not_responding
            except GuestAgentError as err:
                raise GuestCommandError(f"{self._where()}: could not start '{shown}': {err}") from err
        raise AssertionError("unreachable")  # pragma: no cover

    def run_shell(
        self,
        command: str,
        timeout: float = 30.0,
        input_data: bytes | str | None = None,
        env: Mapping[str, str] | Sequence[str] | None = None,
    ) -> ExecResult:
        """Run ``/bin/sh -c command`` in the guest (see :meth:`exec`)."""
        return self.exec("/bin/sh", ["-c", command], timeout, input_data, env, display=command)

    def _status(self, pid: int, call_timeout: int) -> dict[str, Any]:
        status = self.raw("guest-exec-status", {"pid": pid}, timeout=call_timeout, idempotent=True)
        return dict(status) if isinstance(status, Mapping) else {}

    def _wait_exited(self, pid: int, deadline: Deadline, shown: str, timeout: float) -> dict[str, Any]:
        delays = poll_intervals()
        while True:
            try:
                status = self._status(pid, deadline.agent_timeout(self.call_timeout_cap))
            except libvirt.libvirtError as err:
                if not (is_agent_not_ready(err) and not deadline.expired):
                    raise self._map_error("guest-exec-status", err, timeout) from err
                status = {}
            if status.get("exited"):
                return status  # qemu-ga has freed the entry: never ask again
            remaining = deadline.remaining()
            if remaining <= 0:
                note = self._kill(pid)
                raise GuestCommandError(
                    f"{self._where()}: command '{shown}' did not finish within {format_seconds(timeout)}; {note}"
                )
            self._sleep(min(next(delays), remaining))

    def _kill(self, pid: int) -> str:
        """Best effort: kill the guest process and reap both status entries.  Returns a note for the error."""
        # Linux: kill the process and its descendants (via /proc/PID/task/*/children; no procps needed).
        script = (
            'k() { local c; for c in $(cat /proc/$1/task/*/children 2>/dev/null); do k "$c"; done; '
            f'kill -9 "$1" 2>/dev/null; }}; k {pid}'
        )
        attempts = (("/bin/sh", ["-c", script]), ("taskkill", ["/F", "/T", "/PID", str(pid)]))
        for path, args in attempts:
            try:
                killer = self.raw("guest-exec", {"path": path, "arg": args, "capture-output": True}, timeout=2)
            except (libvirt.libvirtError, GuestAgentError) as err:
                log.debug("kill via %s failed: %s", path, err)
                continue
            self._reap(int(killer["pid"]), 1.0)
            self._reap(pid, 1.0)
            return f"the guest process (pid {pid}) was killed."
        return f"the guest process (pid {pid}) could not be killed and may still be running."

    def _reap(self, pid: int, seconds: float) -> None:
        deadline = Deadline(seconds, self._clock)
        delays = poll_intervals()
        while not deadline.expired:
            try:
                if self._status(pid, 1).get("exited"):
                    return
            except (libvirt.libvirtError, GuestAgentError):
                return
            self._sleep(min(next(delays), deadline.remaining()))
