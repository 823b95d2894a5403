"""Shared (PabotLib) leases: expiry, renewal, lost leases, the lock always released, a stuck lock moved past.

The store talks to pabot's own ``_PabotLib`` in-process (the object ``python -m pabot.pabotlib`` serves) through
a thin adapter, with a fake clock; one test goes through a real XML-RPC server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pabot.pabotlib import _PabotLib
from pabot.robotremoteserver import RobotRemoteServer

from ATPLibrary.errors import ConfigurationError, WaitTimeoutError
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.keywords.pool import PoolKeywords
from ATPLibrary.pool.identity import Holder, machine_id, process_start
from ATPLibrary.pool.leases import LeaseStore
from ATPLibrary.pool.pabotlib import PabotLibError, RemotePabotLib
from ATPLibrary.pool.pool import Backend, PoolSettings, VmPool, choose_backend
from ATPLibrary.pool.shared import LeaseLostError, LeaseRecord, SharedLeaseStore

HOST = "qemu:///system"


class Clock:
    """Wall clock for the store; ``sleep`` advances it."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class InProcessPabotLib:
    """pabot's ``_PabotLib`` behind the LockService interface; ``fail_on`` makes one method raise."""

    def __init__(self, lib: _PabotLib | None = None) -> None:
        self.lib = lib or _PabotLib()
        self.fail_on: set[str] = set()
        self.calls: list[str] = []

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail_on:
            raise PabotLibError(f"injected failure of {name}")

    def acquire_lock(self, name: str, caller_id: str) -> bool:
        self._check("acquire_lock")
        return bool(self.lib.acquire_lock(name, caller_id))

    def release_lock(self, name: str, caller_id: str) -> None:
        self._check("release_lock")
        self.lib.release_lock(name, caller_id)

    def release_locks(self, caller_id: str) -> None:
        self._check("release_locks")
        self.lib.release_locks(caller_id)

    def get_value(self, key: str) -> str:
        self._check("get_value")
        return str(self.lib.get_parallel_value_for_key(key))

    def set_value(self, key: str, value: str) -> None:
        self._check("set_value")
        self.lib.set_parallel_value_for_key(key, value)


def holder(scope: str, machine: str | None = None, pid: int | None = None) -> Holder:
    pid = os.getpid() if pid is None else pid
    return Holder(machine or machine_id(), pid, process_start(pid), "run-1", scope)


def store(service: InProcessPabotLib, clock: Clock, name: str, **kw: Any) -> SharedLeaseStore:
    return SharedLeaseStore(
        service,
        expiry=kw.pop("expiry", 60),
        heartbeat=kw.pop("heartbeat", 15),
        clock=clock,
        sleep=clock.sleep,
        caller_id=name,
        start_heartbeat=False,
        **kw,
    )


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def service() -> InProcessPabotLib:
    return InProcessPabotLib()


def test_a_held_lease_is_refused_naming_its_holder_and_expiry(service: InProcessPabotLib, clock: Clock) -> None:
    a, b = store(service, clock, "A"), store(service, clock, "B")
    lease, _ = a.try_take(HOST, "vm1", holder("suite A", machine="runner-a"))
    assert lease is not None
    taken, who = b.try_take(HOST, "vm1", holder("suite B", machine="runner-b"))
    assert taken is None
    assert "suite A" in who and "machine runner-a" in who and "expires in 60 s" in who
    record = b.read(HOST, "vm1")
    assert record is not None and record.token == lease.token and record.expires == clock.now + 60


def test_an_expired_lease_is_taken_over_and_its_old_holder_finds_it_lost(
    service: InProcessPabotLib, clock: Clock
) -> None:
    a, b = store(service, clock, "A"), store(service, clock, "B")
    old, _ = a.try_take(HOST, "vm1", holder("suite A", machine="dead-machine"))
    assert old is not None
    clock.now += 59
    assert b.try_take(HOST, "vm1", holder("suite B", machine="runner-b"))[0] is None
    clock.now += 2  # 61 s without renewal: expired
    new, _ = b.try_take(HOST, "vm1", holder("suite B", machine="runner-b"))
    assert new is not None
    assert any("took over the lease of suite A" in n and "expired" in n for n in b.notices())
    a.renew()
    assert old.lost.startswith("the lease was taken by suite B")
    assert a.lost() == [old]
    assert a.release(old).startswith("the lease was taken by suite B")
    record = b.read(HOST, "vm1")
    assert record is not None and record.token == new.token  # the old holder's release left B's lease alone


def test_renewal_keeps_a_lease_past_its_first_expiry(service: InProcessPabotLib, clock: Clock) -> None:
    a, b = store(service, clock, "A"), store(service, clock, "B")
    lease, _ = a.try_take(HOST, "vm1", holder("A", machine="runner-a"))
    assert lease is not None
    for _ in range(10):  # 150 s of heartbeats: far beyond one expiry
        clock.now += 15
        a.renew()
        assert b.try_take(HOST, "vm1", holder("B", machine="runner-b"))[0] is None
    assert lease.lost == "" and lease.expires == clock.now + 60
    assert b.caller_alive("A") and not b.caller_alive("nobody")
    clock.now += 61
    assert not b.caller_alive("A")


def test_a_lease_that_cannot_be_renewed_is_lost_only_after_its_expiry(service: InProcessPabotLib, clock: Clock) -> None:
    a = store(service, clock, "A")
    lease, _ = a.try_take(HOST, "vm1", holder("A"))
    assert lease is not None
    service.fail_on = {"acquire_lock"}  # the server is unreachable
    clock.now += 30
    a.renew()
    assert lease.lost == ""
    assert any("failed (retrying)" in n for n in a.notices())
    clock.now += 31
    a.renew()
    assert "could not be renewed before it expired" in lease.lost
    assert "injected failure" in lease.lost


def test_a_release_frees_the_vm_and_twice_is_harmless(service: InProcessPabotLib, clock: Clock) -> None:
    a, b = store(service, clock, "A"), store(service, clock, "B")
    lease, _ = a.try_take(HOST, "vm1", holder("A", machine="runner-a"))
    assert lease is not None
    assert a.release(lease) == ""
    assert a.release(lease) == ""
    assert b.try_take(HOST, "vm1", holder("B", machine="runner-b"))[0] is not None


@pytest.mark.parametrize("failing", ["get_value", "set_value"])
def test_the_pabotlib_lock_is_released_whatever_fails_inside(
    service: InProcessPabotLib, clock: Clock, failing: str
) -> None:
    a = store(service, clock, "A")
    # Let the lock be taken first, then fail the call made while it is held (failure kind 10).
    original = getattr(service, failing)

    def flaky(*args: Any) -> Any:
        if service.lib._locks:  # inside the critical section
            raise PabotLibError(f"injected failure of {failing}")
        return original(*args)

    setattr(service, failing, flaky)
    with pytest.raises(PabotLibError, match="injected"):
        a.try_take(HOST, "vm1", holder("A"))
    assert service.lib._locks == {}  # nobody waits forever
    setattr(service, failing, original)
    assert store(service, clock, "B").try_take(HOST, "vm1", holder("B", machine="other"))[0] is not None


def test_a_lock_left_by_a_dead_holder_is_moved_past_after_stuck_after(service: InProcessPabotLib, clock: Clock) -> None:
    # A process took the PabotLib lock and was killed before it could write anything or release it.
    assert service.lib.acquire_lock("atp-pool:qemu:///system:mutex:0", "killed-process")
    b = store(service, clock, "B", stuck_after=30)
    start = clock.now
    lease, _ = b.try_take(HOST, "vm1", holder("B"), timeout=120)
    assert lease is not None
    assert 30 <= clock.now - start < 35
    assert any("moved to 'atp-pool:qemu:///system:mutex:1'" in n for n in b.notices())
    assert "atp-pool:qemu:///system:mutex:1" not in service.lib._locks  # released after use


def test_a_busy_lock_that_changes_hands_is_not_moved_past_and_the_wait_is_bounded(
    service: InProcessPabotLib, clock: Clock
) -> None:
    assert service.lib.acquire_lock("atp-pool:qemu:///system:mutex:0", "slow-but-alive")
    b = store(service, clock, "B", stuck_after=30)
    original = service.get_value

    def owner_changes(key: str) -> str:
        if key.endswith("mutex-owner:0"):
            return f"slow-but-alive#{int(clock.now)}"  # a new holder every second: progress
        return original(key)

    service.get_value = owner_changes  # type: ignore[method-assign]
    with pytest.raises(WaitTimeoutError, match="could not take PabotLib lock"):
        b.try_take(HOST, "vm1", holder("B"), timeout=10)
    assert original("atp-pool:qemu:///system:mutex-epoch") == ""


def test_a_dead_local_holder_frees_its_vm_at_once(service: InProcessPabotLib, clock: Clock, tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    a, b = store(service, clock, "A"), store(service, clock, "B")
    dead = Holder(machine_id(), child.pid, "1", "run", "killed suite")
    assert a.try_take(HOST, "vm1", dead)[0] is not None
    lease, _ = b.try_take(HOST, "vm1", holder("B"))
    assert lease is not None
    assert any("PID" in n and "is gone" in n for n in b.notices())
    # The same PID on another machine proves nothing: held until it expires.
    c = store(service, clock, "C")
    remote = Holder("another-machine", child.pid, "1", "run", "remote suite")
    assert c.try_take(HOST, "vm2", remote)[0] is not None
    assert b.try_take(HOST, "vm2", holder("B"))[0] is None


def test_records_round_trip_and_junk_is_replaced(service: InProcessPabotLib, clock: Clock) -> None:
    record = LeaseRecord("t", holder("x"), 1.0, 2.0)
    assert LeaseRecord.parse(record.dump()) == record
    assert LeaseRecord.parse("not json") is None
    service.set_value(SharedLeaseStore.lease_key(HOST, "vm1"), "garbage")
    a = store(service, clock, "A")
    assert a.try_take(HOST, "vm1", holder("A"))[0] is not None
    assert any("unreadable lease record" in n for n in a.notices())


def test_times_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="at most half"):
        SharedLeaseStore(InProcessPabotLib(), expiry=20, heartbeat=15)
    with pytest.raises(ConfigurationError, match="positive"):
        SharedLeaseStore(InProcessPabotLib(), expiry=0, heartbeat=0)


def test_the_heartbeat_thread_renews_for_real(service: InProcessPabotLib) -> None:
    a = SharedLeaseStore(service, expiry=0.6, heartbeat=0.1, caller_id="A")
    lease, _ = a.try_take(HOST, "vm1", holder("A"))
    assert lease is not None
    first = lease.expires
    threading.Event().wait(0.5)
    assert lease.expires > first and lease.lost == ""
    a.release(lease)
    a.stop()


# ---------------------------------------------------------------- the pool: local flock + shared record


def test_the_pool_keeps_the_local_flock_and_frees_it_when_the_shared_lease_is_held_elsewhere(
    service: InProcessPabotLib, clock: Clock, tmp_path: Path
) -> None:
    def pool(name: str) -> VmPool:
        shared = store(service, clock, name)
        return VmPool(Backend.PABOTLIB, LeaseStore(tmp_path / "a"), shared, clock=clock, sleep=clock.sleep)

    elsewhere = store(service, clock, "runner-b")
    assert elsewhere.try_take(HOST, "vm1", holder("B", machine="runner-b"))[0] is not None
    lease = pool("A").acquire(HOST, ["vm1", "vm2"], holder("A"), timeout=5)
    assert lease.vm == "vm2" and lease.backend is Backend.PABOTLIB
    # vm1's local flock was given back: a local-only store on the same dir gets it at once.
    probe = LeaseStore(tmp_path / "a").try_acquire(HOST, "vm1", "probe")
    assert probe is not None
    probe.release()
    with pytest.raises(WaitTimeoutError, match=r"(?s)vm1: B \(machine runner-b.*vm2: .*local lock"):
        pool("C").acquire(HOST, ["vm1", "vm2"], holder("C"), timeout=1)
    assert lease.release() == ""


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_backend(PoolSettings(Backend.LOCAL, pabotlib_uri="127.0.0.1:1"))[0] is Backend.LOCAL
    backend, why = choose_backend(PoolSettings(Backend.AUTO))
    assert backend is Backend.LOCAL and "no PabotLib URI" in why
    backend, why = choose_backend(PoolSettings(Backend.AUTO, pabotlib_uri="127.0.0.1:1"), probe_timeout=1)
    assert backend is Backend.LOCAL and "no PabotLib server answers at 127.0.0.1:1" in why
    with pytest.raises(ConfigurationError, match="did not answer"):
        choose_backend(PoolSettings(Backend.PABOTLIB, pabotlib_uri="127.0.0.1:1"), probe_timeout=1)
    with pytest.raises(ConfigurationError, match="ATP_PABOTLIB_URI"):
        choose_backend(PoolSettings(Backend.PABOTLIB))
    monkeypatch.setenv("ATP_POOL", "shared")
    with pytest.raises(ConfigurationError, match="local, pabotlib or auto"):
        PoolSettings.from_env()
    monkeypatch.setenv("ATP_POOL", "PabotLib")
    monkeypatch.setenv("ATP_LEASE_EXPIRY", "2 minutes")
    monkeypatch.setenv("ATP_LEASE_HEARTBEAT", "20s")
    monkeypatch.setenv("ATP_PABOTLIB_URI", "10.0.0.5:8270")
    settings = PoolSettings.from_env(pabotlib_uri="127.0.0.1:8270")
    assert (settings.backend, settings.expiry, settings.heartbeat, settings.pabotlib_uri) == (
        Backend.PABOTLIB,
        120.0,
        20.0,
        "10.0.0.5:8270",
    )
    monkeypatch.setenv("ATP_LEASE_EXPIRY", "soon")
    with pytest.raises(ConfigurationError, match="ATP_LEASE_EXPIRY='soon' is not a time"):
        PoolSettings.from_env()


@pytest.fixture()
def pabotlib_server() -> Iterator[str]:
    server = RobotRemoteServer(_PabotLib(), host="127.0.0.1", port=0, serve=False)
    port = server.activate()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{port}"
    server.stop()
    thread.join(timeout=10)


def test_the_xmlrpc_client_against_a_real_pabotlib_server(pabotlib_server: str) -> None:
    remote = RemotePabotLib(pabotlib_server, timeout=5)
    assert remote.reachable() is None
    assert remote.acquire_lock("L", "me") and not remote.acquire_lock("L", "you")
    remote.release_locks("me")  # any caller may free a caller's locks
    assert remote.acquire_lock("L", "you")
    remote.release_lock("L", "you")
    assert remote.get_value("k") == ""
    remote.set_value("k", '{"a": 1}')
    assert remote.get_value("k") == '{"a": 1}'
    with pytest.raises(PabotLibError, match="refused 'release_lock'"):
        remote.release_lock("never-taken", "me")
    backend, why = choose_backend(PoolSettings(Backend.AUTO, pabotlib_uri=pabotlib_server))
    assert backend is Backend.PABOTLIB and pabotlib_server in why
    # Two stores (two runners) over XML-RPC: one VM, one holder.
    a = SharedLeaseStore(RemotePabotLib(pabotlib_server), caller_id="A", start_heartbeat=False)
    b = SharedLeaseStore(RemotePabotLib(pabotlib_server), caller_id="B", start_heartbeat=False)
    assert a.try_take(HOST, "vm1", holder("A", machine="runner-a"))[0] is not None
    assert b.try_take(HOST, "vm1", holder("B", machine="runner-b"))[0] is None


# ---------------------------------------------------------------- keywords


def test_a_lost_lease_fails_the_next_pool_keyword_loudly(
    service: InProcessPabotLib, clock: Clock, tmp_path: Path
) -> None:
    ctx = LibraryContext(timeout=timedelta(seconds=5), uri="test:///default")
    keywords = PoolKeywords(ctx, LeaseStore(tmp_path))
    mine = store(service, clock, "mine")
    keywords._pool = VmPool(Backend.PABOTLIB, LeaseStore(tmp_path), mine, clock=clock, sleep=clock.sleep)
    keywords.enter_scope("suite 'S'")
    assert keywords.acquire_vm("vm1", "vm2", timeout=timedelta(seconds=1)) == "vm1"
    clock.now += 61  # the heartbeat could not run (process frozen): another runner takes the expired lease
    other = store(service, clock, "other")
    assert other.try_take("test:///default", "vm1", holder("thief", machine="runner-b"))[0] is not None
    mine.renew()
    with pytest.raises(LeaseLostError, match=r"VM 'vm1' .* was lost: the lease was taken by thief"):
        keywords.acquire_vm("vm2", timeout=timedelta(seconds=1))
    assert keywords.acquire_vm("vm2", timeout=timedelta(seconds=1)) == "vm2"  # said once, then usable again
    assert keywords.leave_scope("suite 'S'") == []


def test_a_lease_lost_during_a_test_fails_that_test(service: InProcessPabotLib, clock: Clock, tmp_path: Path) -> None:
    ctx = LibraryContext(timeout=timedelta(seconds=5), uri="test:///default")
    keywords = PoolKeywords(ctx, LeaseStore(tmp_path))
    mine = store(service, clock, "mine")
    keywords._pool = VmPool(Backend.PABOTLIB, LeaseStore(tmp_path), mine, clock=clock, sleep=clock.sleep)
    keywords.enter_scope("test 'S.T'")
    assert keywords.acquire_vm("vm1", timeout=timedelta(seconds=1)) == "vm1"
    clock.now += 61
    other = store(service, clock, "other")
    assert other.try_take("test:///default", "vm1", holder("thief", machine="runner-b"))[0] is not None
    mine.renew()
    result = SimpleNamespace(status="PASS", message="")
    problems = keywords.leave_scope("test 'S.T'", result)  # what the library's end_test listener does
    assert len(problems) == 1 and "vm1" in problems[0]
    assert result.status == "FAIL" and "The lease on VM 'vm1' was lost during test 'S.T'" in result.message
