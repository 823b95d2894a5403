"""`atp lab down` leaves no lab domain defined and no process the lab started.

Not part of `make test` (it would take down the lab that the tests and the demo share): `.ci/run` runs it
last, with ``pytest tests/lab_down``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ATPLibrary.lab import paths, system
from ATPLibrary.lab.lab import LabState

ATP = [sys.executable, "-m", "ATPLibrary.cli.main"]


def _qemu_processes_of_lab() -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            args
            and args[0].endswith(b"qemu-system-x86_64")
            and any(b"guest=" + paths.VM_PREFIX.encode() in a for a in args)
        ):
            found.append(cmdline.parent.name)
    return found


def test_lab_down_removes_domains_and_stops_what_it_started() -> None:
    before = LabState.load()
    if not paths.vars_file().exists() and not before.daemons:
        pytest.fail("no lab to take down: run `atp lab up` first (this test runs after the demo in .ci/run)")
    started_pids = dict(before.daemons)

    proc = subprocess.run([*ATP, "lab", "down"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr

    for name, pid in started_pids.items():
        assert not system.pid_alive(pid), f"{name} (PID {pid}) started by the lab still runs after `atp lab down`"
    assert _qemu_processes_of_lab() == [], "QEMU processes of lab guests still run"
    leftover_configs = sorted(p.name for p in Path("/etc/libvirt/qemu").glob(f"{paths.VM_PREFIX}*.xml"))
    assert leftover_configs == [], f"lab domains still defined: {leftover_configs}"
    status = json.loads(
        subprocess.run([*ATP, "lab", "status", "--json"], capture_output=True, text=True, timeout=60, check=True).stdout
    )
    assert status["guests"] == {}
    assert not paths.vars_file().exists()
