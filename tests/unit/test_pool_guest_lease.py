"""The in-guest lease's shell scripts, run by a real /bin/sh on a temp path instead of the guest's /run/atp-lease."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from ATPLibrary.pool import guest
from ATPLibrary.pool.guest import GuestLeaseHeldError, GuestLeaseRecord
from ATPLibrary.pool.identity import Holder, machine_id, process_start


@dataclass
class Result:
    stdout: str
    stderr: str
    rc: int


class ShellAgent:
    """Runs the lease scripts with /bin/sh, the lease file moved to ``path``."""

    vm = "vm1"

    def __init__(self, path: Path) -> None:
        self.path = path

    def run_shell(
        self,
        command: str,
        timeout: float = 30.0,
        input_data: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        script = command.replace(guest.LEASE_FILE, str(self.path))
        done = subprocess.run(
            ["/bin/sh", "-c", script],
            input=input_data if isinstance(input_data, str) else (input_data or b"").decode(),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        return Result(done.stdout, done.stderr, done.returncode)


def record(scope: str, pid: int | None = None, caller: str = "") -> GuestLeaseRecord:
    pid = os.getpid() if pid is None else pid
    return GuestLeaseRecord(Holder(machine_id(), pid, process_start(pid), "run", scope), scope, "vm1", caller)


def never(_: GuestLeaseRecord) -> None:
    return None


def test_take_then_another_take_fails_naming_the_holder(tmp_path: Path) -> None:
    agent = ShellAgent(tmp_path / "atp-lease")
    mine = record("test A")
    assert guest.take(agent, mine, stale_reason=never, timeout=10) == ""
    assert GuestLeaseRecord.parse((tmp_path / "atp-lease").read_text()) == mine
    with pytest.raises(GuestLeaseHeldError, match=r"VM 'vm1' is in use by another holder: .*test A .*PID"):
        guest.take(agent, record("test B"), stale_reason=never, timeout=10)
    assert guest.take(agent, mine, stale_reason=never, timeout=10) == "already held by this test"
    assert list(tmp_path.iterdir()) == [tmp_path / "atp-lease"]  # no temp files left behind


def test_release_removes_only_our_own_lease(tmp_path: Path) -> None:
    agent = ShellAgent(tmp_path / "atp-lease")
    mine, theirs = record("test A"), record("test B")
    guest.take(agent, theirs, stale_reason=never, timeout=10)
    with pytest.raises(GuestLeaseHeldError, match=r"our in-guest lease was replaced: .* names test B"):
        guest.release(agent, mine.token, timeout=10)
    assert (tmp_path / "atp-lease").exists()
    assert guest.release(agent, theirs.token, timeout=10) == "released"
    assert guest.release(agent, theirs.token, timeout=10) == "missing"
    assert guest.read(agent, timeout=10) is None


def test_racing_takers_get_exactly_one_lease(tmp_path: Path) -> None:
    agent = ShellAgent(tmp_path / "atp-lease")
    outcomes: list[str] = []

    def taker(i: int) -> None:
        try:
            guest.take(agent, record(f"taker {i}"), stale_reason=never, timeout=30)
            outcomes.append("won")
        except GuestLeaseHeldError:
            outcomes.append("refused")

    threads = [threading.Thread(target=taker, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["refused"] * 11 + ["won"]
    current = GuestLeaseRecord.parse((tmp_path / "atp-lease").read_text())
    assert current is not None and current.test.startswith("taker ")


def test_a_stale_lease_of_a_dead_local_process_is_broken_only_with_the_pool_lease(tmp_path: Path) -> None:
    agent = ShellAgent(tmp_path / "atp-lease")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=10)
    stale = record("killed test", pid=child.pid)
    guest.take(agent, stale, stale_reason=never, timeout=10)

    def without_pool_lease(current: GuestLeaseRecord) -> str | None:
        return guest.stale_reason(current, pool_lease_held=False, caller_alive=None)

    with pytest.raises(GuestLeaseHeldError, match="killed test"):
        guest.take(agent, record("test B"), stale_reason=without_pool_lease, timeout=10)

    def with_pool_lease(current: GuestLeaseRecord) -> str | None:
        return guest.stale_reason(current, pool_lease_held=True, caller_alive=None)

    note = guest.take(agent, record("test B"), stale_reason=with_pool_lease, timeout=10)
    assert note.startswith("broke the stale in-guest lease of killed test") and f"PID {child.pid}" in note
    current = guest.read(agent, timeout=10)
    assert current is not None and current.test == "test B"


def test_a_live_holder_is_never_broken_even_when_the_pool_says_the_vm_is_ours(tmp_path: Path) -> None:
    agent = ShellAgent(tmp_path / "atp-lease")
    guest.take(agent, record("live test", caller="runner-a:1"), stale_reason=never, timeout=10)

    def pool_says_ours(current: GuestLeaseRecord) -> str | None:
        return guest.stale_reason(current, pool_lease_held=True, caller_alive=lambda caller: True)

    with pytest.raises(GuestLeaseHeldError, match="live test"):
        guest.take(agent, record("test B"), stale_reason=pool_says_ours, timeout=10)


def test_a_holder_whose_pabotlib_liveness_expired_is_broken(tmp_path: Path) -> None:
    agent = ShellAgent(tmp_path / "atp-lease")
    remote = GuestLeaseRecord(Holder("dead-machine", 4242, "9", "run", "remote test"), "remote test", "vm1", "c-1")
    guest.take(agent, remote, stale_reason=never, timeout=10)
    seen: list[str] = []

    def liveness(caller: str) -> bool:
        seen.append(caller)
        return False

    def rule(current: GuestLeaseRecord) -> str | None:
        return guest.stale_reason(current, pool_lease_held=True, caller_alive=liveness)

    note = guest.take(agent, record("test B"), stale_reason=rule, timeout=10)
    assert seen == ["c-1"] and "stopped renewing its liveness" in note


def test_force_remove_and_unreadable_files(tmp_path: Path) -> None:
    agent = ShellAgent(tmp_path / "atp-lease")
    (tmp_path / "atp-lease").write_text("hand-made\n")
    with pytest.raises(GuestLeaseHeldError, match="unreadable record 'hand-made'"):
        guest.take(agent, record("test A"), stale_reason=lambda c: "always", timeout=10)
    assert guest.force_remove(agent, timeout=10) == "hand-made\n"
    assert not (tmp_path / "atp-lease").exists()
