"""A Robot Framework listener (API v3) that records every run in the results archive.

    robot --listener ATPLibrary.archive.ArchiveListener suites/
    robot --listener ATPLibrary.archive.ArchiveListener:path=/tmp/x.db suites/
    pabot --listener ATPLibrary.archive.ArchiveListener suites/     # each pabot process runs it

Run grouping (which processes share one ``runs`` row):
    1. ``$ATP_RUN_ID`` set and not empty: its value is the run key, so everything started with the same value
       is one run (``make demo`` sets it);
    2. a pabot process (its output dir is ``<outdir>/pabot_results/<n>``): the key names the host, the pabot
       process (the nearest ancestor whose command line runs pabot, else the parent) with its start time, and
       ``<outdir>``; all processes of one pabot invocation therefore share it, and a later pabot run with the
       same ``--outputdir`` gets a new one;
    3. otherwise the robot process itself (host, pid, start time).

Each test's row is committed when the test ends, so a run that is killed keeps every finished test; its run
stays marked incomplete because its process never ended.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ATPLibrary.archive import metrics
from ATPLibrary.archive.store import ArchiveStore, LatencyRecord, ProcessInfo, TestRecord, utc, worst_status

ENV_RUN_ID = "ATP_RUN_ID"
VM_TAG_PREFIX = "vm:"
PABOT_RESULTS = "pabot_results"
_VALUE_OPTIONS = {"-v", "--variable"}
_ARGUMENT_OPTIONS = {"-V", "--variablefile"}
REDACTED = "<redacted>"


# -- plain helpers (no Robot) ---------------------------------------------------------------------------------


def process_start_ticks(pid: int) -> str:
    """The kernel's start time of ``pid`` (clock ticks since boot), which tells a pid from a reused one; ``?``
    when unknown (no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return "?"


def process_command(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rpartition(")")[2].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def find_pabot_process(pid: int | None = None, levels: int = 6) -> int | None:
    """The nearest ancestor of ``pid`` (default: this process) whose command line runs pabot."""
    current = os.getpid() if pid is None else pid
    for _ in range(levels):
        parent = parent_pid(current)
        if not parent or parent <= 1:
            return None
        command = process_command(parent)
        if any("pabot" in Path(part).name.lower() for part in command[:3]):
            return parent
        current = parent
    return None


def pabot_output_dir(output_dir: str | os.PathLike[str]) -> Path | None:
    """``<outdir>`` when ``output_dir`` is pabot's ``<outdir>/pabot_results/...``; None otherwise."""
    path = Path(output_dir).absolute()
    for ancestor in path.parents:
        if ancestor.name == PABOT_RESULTS:
            return ancestor.parent
    return None


def redact_command(argv: Sequence[str]) -> str:
    """The command line with the values of ``--variable`` and the arguments of ``--variablefile`` replaced, so
    that passwords given on the command line never reach the archive."""
    out: list[str] = []
    hide_next: str | None = None
    for arg in argv:
        if hide_next is not None:
            out.append(_hide(arg, hide_next))
            hide_next = None
            continue
        name, eq, value = arg.partition("=")
        if arg in _VALUE_OPTIONS or arg in _ARGUMENT_OPTIONS:
            out.append(arg)
            hide_next = arg
        elif eq and name in _VALUE_OPTIONS | _ARGUMENT_OPTIONS:
            out.append(f"{name}={_hide(value, name)}")
        elif arg.startswith("-v") and len(arg) > 2 and not arg.startswith("--"):
            out.append("-v" + _hide(arg[2:], "-v"))
        elif arg.startswith("-V") and len(arg) > 2 and not arg.startswith("--"):
            out.append("-V" + _hide(arg[2:], "-V"))
        else:
            out.append(arg)
    return shlex.join(out)


def _hide(value: str, option: str) -> str:
    head, sep, _ = value.partition(":")
    if option in _VALUE_OPTIONS:
        return f"{head}:{REDACTED}" if sep else REDACTED
    return f"{head}:{REDACTED}" if sep else value  # a variable file's own path stays; its arguments go


def run_identity(
    output_dir: str | os.PathLike[str],
    *,
    env: dict[str, str] | None = None,
    pid: int | None = None,
    host: str | None = None,
) -> tuple[str, str, str]:
    """(run key, the run's output dir, the command line to store) for this process (rules: module docstring)."""
    environ = os.environ if env is None else env
    host = host or socket.gethostname()
    pid = os.getpid() if pid is None else pid
    pabot_dir = pabot_output_dir(output_dir)
    pabot_pid = find_pabot_process(pid) if pabot_dir is not None else None
    if pabot_dir is not None:
        leader = pabot_pid or parent_pid(pid) or pid
        command = process_command(leader) if pabot_pid else []
        key = f"pabot:{host}:{leader}:{process_start_ticks(leader)}:{pabot_dir}"
        run_dir = pabot_dir
    else:
        command = process_command(pid) or list(sys.argv)
        key = f"robot:{host}:{pid}:{process_start_ticks(pid)}"
        run_dir = Path(output_dir).absolute()
    explicit = (environ.get(ENV_RUN_ID) or "").strip()
    return (explicit or key), str(run_dir), redact_command(command or sys.argv)


def duration_ms(elapsed: timedelta | None) -> int | None:
    return None if elapsed is None else round(elapsed.total_seconds() * 1000)


def vm_of(tags: Sequence[str]) -> str | None:
    """The VM a test ran on: its ``vm:<name>`` tag (the last one when there are several)."""
    found = [t[len(VM_TAG_PREFIX) :].strip() for t in tags if t.lower().startswith(VM_TAG_PREFIX)]
    found = [f for f in found if f]
    return found[-1] if found else None


def _time(value: datetime | None) -> str | None:
    return None if value is None else utc(value)


def _latencies() -> list[LatencyRecord]:
    return [LatencyRecord(s.vm, s.latency_ms, s.kind, s.action, utc(s.at)) for s in metrics.drain()]


# -- the listener ---------------------------------------------------------------------------------------------


class ArchiveListener:
    """Records suites, tests and verification latencies into the results archive as they end.

    ``path``: the archive file (default ``$ATP_ARCHIVE_DB``, else ``~/.local/share/atp/archive.db``).
    """

    ROBOT_LISTENER_API_VERSION = 3

    def __init__(self, path: str | None = None) -> None:
        self.path = path or None
        self.store: ArchiveStore | None = None
        self.failed = False
        self.run_id: int | None = None
        self.process_id: int | None = None
        self.suites: list[int] = []
        self.statuses: list[str] = []
        self.closed = False
        metrics.activate()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def _open(self, started: str | None) -> None:
        from robot.libraries.BuiltIn import BuiltIn

        output_dir = str(BuiltIn().get_variable_value("${OUTPUT DIR}") or os.getcwd())
        run_key, run_dir, command = run_identity(output_dir)
        try:
            self.store = ArchiveStore(self.path, create=True, migrate=True)
            self.run_id, self.process_id = self.store.begin_process(
                ProcessInfo(
                    run_key=run_key,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    command=command,
                    output_dir=str(Path(output_dir).absolute()),
                    run_output_dir=run_dir,
                    started=started or utc(),
                )
            )
        except Exception:
            self.failed = True  # reported once by Robot; the run goes on without the archive
            if self.store is not None:
                self.store.close()
                self.store = None
            raise

    def _active(self) -> bool:
        return self.store is not None and self.run_id is not None and not self.failed

    def start_suite(self, data: Any, result: Any) -> None:
        if self.store is None and not self.failed and not self.closed:
            self._open(_time(result.start_time))
        if not self._active():
            return
        assert self.store is not None and self.run_id is not None
        self.suites.append(
            self.store.start_suite(
                self.run_id,
                self.process_id,
                self.suites[-1] if self.suites else None,
                str(result.name),
                str(result.full_name),
                str(data.source) if getattr(data, "source", None) else None,
                _time(result.start_time),
            )
        )

    def end_test(self, data: Any, result: Any) -> None:
        if not self._active():
            return
        assert self.store is not None and self.run_id is not None
        tags = [str(t) for t in result.tags]
        self.statuses.append(str(result.status))
        self.store.add_test(
            self.run_id,
            self.suites[-1] if self.suites else None,
            self.process_id,
            TestRecord(
                name=str(result.name),
                longname=str(result.full_name),
                status=str(result.status),
                message=str(result.message or ""),
                start_time=_time(result.start_time),
                end_time=_time(result.end_time),
                duration_ms=duration_ms(result.elapsed_time),
                tags=tags,
                vm=vm_of(tags),
            ),
            _latencies(),
        )

    def end_suite(self, data: Any, result: Any) -> None:
        if not self._active():
            return
        assert self.store is not None and self.run_id is not None
        self.store.add_latencies(self.run_id, None, _latencies())  # measured in suite setup or teardown
        if self.suites:
            self.store.end_suite(
                self.suites.pop(),
                str(result.status),
                str(result.message or ""),
                _time(result.end_time),
                duration_ms(result.elapsed_time),
            )
        if not self.suites:
            self._finish()

    def _finish(self) -> None:
        if self.store is not None and self.process_id is not None and not self.failed:
            self.store.end_process(self.process_id, worst_status(self.statuses))
            self.process_id = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.process_id is not None and self.suites == []:
                self._finish()
        finally:
            if self.store is not None:
                self.store.close()
                self.store = None
            metrics.deactivate()
