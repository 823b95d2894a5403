"""VM leases on this machine, held with ``flock`` on one file per VM.

A lease is an exclusive ``flock`` on ``<root>/<host key>/<vm>.lock`` held by an open file.  The kernel ends
it when the holder closes the file or its process dies for any reason (a failed test, a crash, ``kill -9``),
so a lease can never outlive its holder and nobody waits forever for a dead one.  Locks from two open files
exclude each other even inside one process.  The file also records who holds the lease, for messages.

pabot's ``${PABOTEXECUTIONPOOLID}`` is not enough on its own: pabot 5.2.2 hands those ids out round-robin,
so two live processes can get the same id.  It is used only as the preferred VM to try first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ATPLibrary.errors import ConfigurationError, WaitTimeoutError


def default_root() -> Path:
    """``$ATP_LEASE_DIR``, else ``<temp dir>/atp-leases``."""
    env = os.environ.get("ATP_LEASE_DIR")
    return Path(env) if env else Path(tempfile.gettempdir()) / "atp-leases"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "default"


def candidate_order(candidates: Sequence[str], prefer: int = 0) -> list[str]:
    """The VMs to try, ``candidates[prefer]`` first and then round the list; empty names are dropped.

    Raises ConfigurationError when no VM is left or one is named twice.
    """
    vms = [v for v in candidates if v]
    if not vms:
        raise ConfigurationError("no VMs to acquire: give at least one VM name")
    if len(set(vms)) != len(vms):
        raise ConfigurationError(f"the VM list names a VM twice: {', '.join(vms)}")
    start = prefer % len(vms)
    return vms[start:] + vms[:start]


@dataclass
class Lease:
    vm: str
    host: str
    path: Path
    file: IO[str] = field(repr=False)
    acquired_at: float = field(default_factory=time.time)

    def release(self) -> None:
        if self.file.closed:
            return
        with contextlib.suppress(OSError):
            self.file.truncate(0)
        with contextlib.suppress(OSError):
            fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


class LeaseStore:
    """Acquire and release VM leases under ``root`` (default: :func:`default_root`)."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.root = root or default_root()
        self._clock, self._sleep = clock, sleep

    def _path(self, host: str, vm: str) -> Path:
        return self.root / _safe(host) / f"{_safe(vm)}.lock"

    def try_acquire(self, host: str, vm: str, holder: str) -> Lease | None:
        path = self._path(host, vm)
        path.parent.mkdir(parents=True, exist_ok=True)
        f = path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return None
        f.seek(0)
        f.truncate(0)
        f.write(json.dumps({"holder": holder, "pid": os.getpid(), "since": time.time()}))
        f.flush()
        return Lease(vm=vm, host=host, path=path, file=f)

    def holder(self, host: str, vm: str) -> str:
        """Who holds ``vm`` now, as recorded in its lock file (empty when free or unknown)."""
        try:
            data = json.loads(self._path(host, vm).read_text() or "{}")
        except (OSError, ValueError):
            return ""
        return f"{data.get('holder', '?')} (PID {data.get('pid', '?')})" if data else ""

    def acquire(
        self,
        host: str,
        candidates: Sequence[str],
        holder: str,
        timeout: float,
        prefer: int = 0,
        poll: float = 0.1,
    ) -> Lease:
        """Lease the first free VM of ``candidates``, trying ``candidates[prefer]`` first; wait up to ``timeout``."""
        order = candidate_order(candidates, prefer)
        deadline = self._clock() + timeout
        while True:
            for vm in order:
                lease = self.try_acquire(host, vm, holder)
                if lease is not None:
                    return lease
            if self._clock() >= deadline:
                held = "; ".join(f"{vm}: {self.holder(host, vm) or 'busy'}" for vm in order)
                raise WaitTimeoutError(
                    f"no free VM among {', '.join(order)} on {host} within {timeout:g} s ({held}). "
                    "Run fewer parallel processes than VMs, or add VMs."
                )
            self._sleep(poll)
