"""Who holds a lease: this machine, this process, this run; and whether a recorded local process still lives."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def machine_id() -> str:
    """``$ATP_MACHINE_ID``, else this machine's host name (what a lease record names as its machine)."""
    return os.environ.get("ATP_MACHINE_ID") or socket.gethostname()


def process_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22), or ``""``.

    A pid and its start time name one process: a pid reused by a later process has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: count fields after its closing ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else ""


def process_alive(pid: int, start: str) -> bool:
    """Whether process ``pid`` that started at ``start`` (see :func:`process_start`) runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    now = process_start(pid)
    return not start or not now or now == start


@dataclass(frozen=True)
class Holder:
    """The holder of a lease: machine, process (pid and its start time), run, and the test or suite."""

    machine: str
    pid: int
    pid_start: str
    run: str
    scope: str

    @classmethod
    def current(cls, scope: str, run: str | None = None) -> Holder:
        pid = os.getpid()
        run = run or os.environ.get("ATP_RUN_ID") or f"{machine_id()}/ppid {os.getppid()}"
        return cls(machine_id(), pid, process_start(pid), run, scope)

    def describe(self) -> str:
        return f"{self.scope or '?'} (machine {self.machine}, PID {self.pid}, run {self.run})"

    def is_local(self) -> bool:
        return self.machine == machine_id()

    def is_dead_local(self) -> bool:
        """True only when the holder ran on this machine and its process is gone (never guesses for others)."""
        return self.is_local() and not process_alive(self.pid, self.pid_start)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Holder:
        return cls(
            machine=str(data.get("machine", "?")),
            pid=int(data.get("pid", 0) or 0),
            pid_start=str(data.get("pid_start", "")),
            run=str(data.get("run", "?")),
            scope=str(data.get("scope", "?")),
        )
