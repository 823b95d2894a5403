"""VM leases: one holder per VM across processes; released on release, on close and on process death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ATPLibrary.errors import ConfigurationError, WaitTimeoutError
from ATPLibrary.pool.leases import LeaseStore

HOST = "qemu:///system"


def test_preferred_vm_first_then_the_next_free_one(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    a = store.acquire(HOST, ["vm1", "vm2", "vm3"], "t1", timeout=1, prefer=1)
    b = store.acquire(HOST, ["vm1", "vm2", "vm3"], "t2", timeout=1, prefer=1)
    c = store.acquire(HOST, ["vm1", "vm2", "vm3"], "t3", timeout=1, prefer=1)
    assert [a.vm, b.vm, c.vm] == ["vm2", "vm3", "vm1"]


def test_a_held_vm_is_not_given_twice_and_the_wait_is_bounded(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    held = store.acquire(HOST, ["vm1"], "suite A", timeout=1)  # a lease lives as long as its object
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError, match=r"(?s)vm1.*suite A"):
        LeaseStore(tmp_path).acquire(HOST, ["vm1"], "suite B", timeout=0.5)
    assert time.monotonic() - started < 3
    assert held.vm == "vm1"


def test_release_frees_the_vm_at_once(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    lease = store.acquire(HOST, ["vm1"], "a", timeout=1)
    lease.release()
    lease.release()  # twice is harmless
    assert store.acquire(HOST, ["vm1"], "b", timeout=0.2).vm == "vm1"


def test_the_same_vm_name_on_two_hosts_are_two_leases(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    held = store.acquire("qemu:///system", ["vm1"], "a", timeout=1)
    assert held.vm == "vm1"
    assert store.acquire("qemu+ssh://root@10.0.0.5/system", ["vm1"], "b", timeout=0.2).vm == "vm1"


def test_bad_vm_lists_fail_clearly(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path)
    with pytest.raises(ConfigurationError, match="at least one"):
        store.acquire(HOST, [], "a", timeout=1)
    with pytest.raises(ConfigurationError, match="twice"):
        store.acquire(HOST, ["vm1", "vm1"], "a", timeout=1)


def test_a_killed_holder_releases_its_vm(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ATPLibrary.pool.leases import LeaseStore\n"
        f"lease = LeaseStore(Path({str(tmp_path)!r})).acquire({HOST!r}, ['vm1'], 'child', timeout=5)\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(WaitTimeoutError, match="child"):
            LeaseStore(tmp_path).acquire(HOST, ["vm1"], "parent", timeout=0.3)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        assert LeaseStore(tmp_path).acquire(HOST, ["vm1"], "parent", timeout=2).vm == "vm1"
    finally:
        if child.poll() is None:
            child.kill()
