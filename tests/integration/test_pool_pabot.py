"""The VM pool under real pabot on real lab guests: failure kind 10, SIGKILL, and two runners sharing one
PabotLib server (``--shard 1/2`` and ``--shard 2/2``) with different lease dirs.

The module holds two lab guests in the machine-wide lease store for its whole run, and its pabot runs lease
them again in private lease dirs (``ATP_LEASE_DIR``): nobody else drives them meanwhile, and inside the runs
only the store under test protects them.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from robot.api import ExecutionResult, ResultVisitor
from robot.result import Message

from ATPLibrary.pool.leases import LeaseStore
from ATPLibrary.pool.pabotlib import RemotePabotLib
from ATPLibrary.pool.shared import SharedLeaseStore

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
LAB_RESOURCE = ROOT / "resources" / "lab.resource"
BIN = Path(sys.executable).parent


# ---------------------------------------------------------------- helpers


@dataclass(frozen=True)
class RobotTest:
    name: str
    suite: str
    status: str
    message: str
    vm: str
    start: datetime
    end: datetime


def robot_tests_in(output: Path) -> list[RobotTest]:
    result = ExecutionResult(str(output))
    found: list[RobotTest] = []

    def walk(suite: Any) -> None:
        for test in suite.tests:
            vm = next((t[3:] for t in test.tags if t.startswith("vm:")), "")
            # A test that leases its VM in its body (got:<epoch>) holds it from then on, not from its start.
            got = next((float(t[4:]) for t in test.tags if t.startswith("got:")), None)
            start = datetime.fromtimestamp(got) if got is not None else test.start_time
            found.append(RobotTest(test.name, suite.name, test.status, test.message, vm, start, test.end_time))
        for child in suite.suites:
            walk(child)

    walk(result.suite)
    return found


def messages(output: Path, level: str | None = None) -> list[str]:
    collected: list[str] = []

    class Collect(ResultVisitor):  # type: ignore[misc]
        def visit_message(self, msg: Message) -> None:
            if level is None or msg.level == level:
                collected.append(msg.message)

    ExecutionResult(str(output)).visit(Collect())
    return collected


def no_overlap_per_vm(runs: list[RobotTest]) -> dict[str, int]:
    by_vm: dict[str, list[RobotTest]] = defaultdict(list)
    for run in runs:
        assert run.vm, f"test '{run.name}' has no vm: tag"
        by_vm[run.vm].append(run)
    for vm, on_vm in by_vm.items():
        on_vm.sort(key=lambda r: r.start)
        for before, after in itertools.pairwise(on_vm):
            assert before.end <= after.start, (
                f"{vm} was used by two tests at once: '{before.name}' ({before.start}..{before.end}) and "
                f"'{after.name}' ({after.start}..{after.end})"
            )
    return {vm: len(on_vm) for vm, on_vm in by_vm.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_env(lease_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATP_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", ATP_LEASE_DIR=str(lease_dir), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def pabot(args: list[str], outdir: Path, env: dict[str, str], vms: list[str], uri: str) -> list[str]:
    return [
        str(BIN / "pabot"),
        *args,
        "--outputdir",
        str(outdir),
        "--variable",
        f"LAB_URI:{uri}",
        "--variable",
        f"LAB_VMS:{','.join(vms)}",
        "--loglevel",
        "DEBUG",
    ]


def wait_for(path: Path, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {path.name} appeared")
        time.sleep(0.2)
    raise AssertionError(f"{path} did not appear within {timeout} s")


@pytest.fixture(scope="module")
def lab_vars(running_lab: dict[str, Any]) -> dict[str, Any]:
    """The running lab's variables (these tests need just their two guests ready, not every guest of a lab
    shared with others)."""
    return running_lab


@pytest.fixture(scope="module")
def pool_vms(lab_vars: dict[str, Any]) -> Iterator[list[str]]:
    """Two running lab guests held in the machine-wide store while this module runs."""
    lab = lab_vars
    from ATPLibrary import ATPLibrary

    store = LeaseStore()
    vms = [str(v) for v in lab["vms"]]
    first = store.acquire(lab["uri"], vms, "pytest test_pool_pabot", timeout=900)
    second = store.acquire(lab["uri"], [v for v in vms if v != first.vm], "pytest test_pool_pabot", timeout=900)
    held = [first.vm, second.vm]
    lib = ATPLibrary()
    lib.run_keyword("Connect To Host", [lab["uri"]], {})
    for vm in held:
        lib.run_keyword("Start VM", [vm], {})
        lib.run_keyword("Guest Agent Should Respond", [vm], {"timeout": 120})
    try:
        yield held
    finally:
        for vm in held:  # a lease file left by a killed run of this module would block later tests
            lib.run_keyword("Execute Command In Guest", [vm, "rm -f /run/atp-lease /run/atp-lease.take.*"], {})
        second.release()
        first.release()


# ---------------------------------------------------------------- failure kind 10

HOLDER_FAILS = """\
*** Settings ***
Resource    {resource}
Library    OperatingSystem

*** Test Cases ***
Holder Fails While Holding A VM
    Connect To Host    ${{LAB_URI}}
    ${{vm}}=    Acquire VM    ${{LAB_VMS}}    timeout=60s
    Take Guest Lease    ${{vm}}
    ${{got}}=    Evaluate    time.time()    modules=time
    Set Tags    vm:${{vm}}    got:${{got}}
    Create File    {marks}/holder.started    ${{vm}}
    Sleep    3s
    Fail    deliberate failure while holding ${{vm}} (its Release VM would come after this line)
    Release VM    ${{vm}}
"""

WAITER = """\
*** Settings ***
Resource    {resource}
Library    OperatingSystem
Suite Setup    Wait Until Created    {marks}/holder.started    timeout=120s

*** Test Cases ***
Waiter {i} Gets A VM Within Its Timeout
    Connect To Host    ${{LAB_URI}}
    ${{vm}}=    Acquire VM    ${{LAB_VMS}}    timeout=150s
    Take Guest Lease    ${{vm}}
    ${{got}}=    Evaluate    time.time()    modules=time
    Set Tags    vm:${{vm}}    got:${{got}}
    Execute Command In Guest    ${{vm}}    echo waiter-{i} > /tmp/pool-waiter; sleep 2
    Guest File Should Be    /tmp/pool-waiter    waiter-{i}\\n    ${{vm}}
"""


def test_failure_kind_10_a_failed_holder_never_blocks_the_others(
    lab_vars: dict[str, Any], pool_vms: list[str], tmp_path: Path
) -> None:
    """pabot --processes 4 --pabotlib --exitonfailure --skipteardownonexit, PabotLib backend: the test that holds
    a VM fails before its Release VM; the three others (two VMs for four processes) all get a VM in time."""
    suites, marks = tmp_path / "suites", tmp_path / "marks"
    suites.mkdir()
    marks.mkdir()
    (suites / "a_holder.robot").write_text(HOLDER_FAILS.format(resource=LAB_RESOURCE, marks=marks))
    for i in (1, 2, 3):
        (suites / f"b_waiter_{i}.robot").write_text(WAITER.format(resource=LAB_RESOURCE, marks=marks, i=i))
    out = tmp_path / "out"
    args = ["--processes", "4", "--pabotlib", "--pabotlibport", "0", "--exitonfailure", "--skipteardownonexit"]
    env = run_env(tmp_path / "leases", ATP_POOL="pabotlib")
    started = time.monotonic()
    proc = subprocess.run(
        [*pabot(args, out, env, pool_vms, lab_vars["uri"]), str(suites)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,  # the outer bound: nothing may hang
    )
    elapsed = time.monotonic() - started
    runs = {r.name: r for r in robot_tests_in(out / "output.xml")}
    waiters = {f"Waiter {i} Gets A VM Within Its Timeout" for i in (1, 2, 3)}
    assert set(runs) == {"Holder Fails While Holding A VM"} | waiters, proc.stdout[-3000:]
    holder = runs.pop("Holder Fails While Holding A VM")
    assert holder.status == "FAIL" and "deliberate failure" in holder.message
    for run in runs.values():
        assert run.status == "PASS", f"{run.name}: {run.message}\n{proc.stdout[-3000:]}"
    assert proc.returncode == 1  # exactly one failed test
    counts = no_overlap_per_vm([holder, *runs.values()])
    assert sum(counts.values()) == 4 and set(counts) <= set(pool_vms)
    assert elapsed < 240, f"the run took {elapsed:.0f} s"
    print(f"failure kind 10: 1 failed holder, 3 waiters passed, {elapsed:.0f} s")
    logged = messages(out / "output.xml")
    assert any("VM pool backend: pabotlib" in m for m in logged)


# ---------------------------------------------------------------- SIGKILL

VICTIM = """\
*** Settings ***
Resource    {resource}
Library    OperatingSystem
Suite Setup    Use A Lab VM For This Suite
Test Setup    Log Test VM

*** Test Cases ***
Victim Holds Its VM Until Killed
    ${{pid}}=    Evaluate    os.getpid()    modules=os
    Create File    {marks}/victim.pid    ${{pid}}
    Sleep    600s
"""

SURVIVOR = """\
*** Settings ***
Resource    {resource}
Library    OperatingSystem
Suite Setup    Survivor Setup
Test Setup    Log Test VM

*** Test Cases ***
Survivor Gets The Killed Holder's VM
    Execute Command In Guest    ${{VM}}    echo survivor > /tmp/pool-survivor
    Guest File Should Be    /tmp/pool-survivor    survivor\\n

*** Keywords ***
Survivor Setup
    Wait Until Created    {marks}/victim.pid    timeout=180s
    Create File    {marks}/survivor.waiting    waiting
    Use A Lab VM For This Suite
    ${{now}}=    Evaluate    repr(time.time())    modules=time
    Create File    {marks}/survivor.acquired    ${{now}}
"""


def _write_kill_suites(tmp_path: Path) -> tuple[Path, Path]:
    suites, marks = tmp_path / "suites", tmp_path / "marks"
    suites.mkdir()
    marks.mkdir()
    (suites / "a_victim.robot").write_text(VICTIM.format(resource=LAB_RESOURCE, marks=marks))
    (suites / "b_survivor.robot").write_text(SURVIVOR.format(resource=LAB_RESOURCE, marks=marks))
    return suites, marks


def _kill_victim(marks: Path, proc: subprocess.Popen[bytes]) -> float:
    pid = int(wait_for(marks / "victim.pid", 240, proc))
    wait_for(marks / "survivor.waiting", 120, proc)
    time.sleep(2)  # the survivor is now waiting in Acquire VM
    os.kill(pid, signal.SIGKILL)
    return time.time()


def _survivor(output: Path) -> RobotTest:
    runs = {r.name: r for r in robot_tests_in(output)}
    survivor = runs["Survivor Gets The Killed Holder's VM"]
    assert survivor.status == "PASS", survivor.message
    return survivor


def test_sigkill_local_flock_frees_the_vm_at_once(
    lab_vars: dict[str, Any], pool_vms: list[str], tmp_path: Path
) -> None:
    """One pabot run, local backend, one VM for two processes: the holder is killed with SIGKILL; the other
    process gets the VM at once and breaks the killed holder's in-guest lease (its PID is gone)."""
    suites, marks = _write_kill_suites(tmp_path)
    out = tmp_path / "out"
    env = run_env(tmp_path / "leases", ATP_POOL="local")
    with subprocess.Popen(
        [*pabot(["--processes", "2"], out, env, pool_vms[:1], lab_vars["uri"]), str(suites)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        try:
            killed_at = _kill_victim(marks, proc)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    delay = float(wait_for(marks / "survivor.acquired", 5)) - killed_at
    assert 0 <= delay < 10, f"the survivor got the VM {delay:.1f} s after the kill"
    print(f"SIGKILL, local flock: VM back {delay:.1f} s after the kill")
    survivor = _survivor(out / "output.xml")
    assert survivor.vm == pool_vms[0]
    warnings = messages(out / "output.xml", "WARN")
    assert any("broke the stale in-guest lease" in w and "Victim Holds Its VM" in w for w in warnings), warnings


def test_sigkill_pabotlib_backend_frees_the_vm_after_the_expiry(
    lab_vars: dict[str, Any], pool_vms: list[str], tmp_path: Path
) -> None:
    """Two runners ("machines" runner-a and runner-b: own lease dirs, own machine ids) share one PabotLib server;
    runner-a's process is killed with SIGKILL while holding the only VM: runner-b gets it once the lease
    expires (20 s, renewed every 5 s), not before, and breaks the in-guest lease whose holder stopped renewing."""
    suites, marks = _write_kill_suites(tmp_path)
    port = free_port()
    values = tmp_path / "values.dat"
    values.write_text("# no value sets: the pool keeps its leases in parallel values\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "pabot.pabotlib", str(values), "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while RemotePabotLib(uri, timeout=1).reachable() is not None:
            assert time.monotonic() < deadline, "the PabotLib server did not start"
            time.sleep(0.2)
        common = {"ATP_POOL": "pabotlib", "ATP_PABOTLIB_URI": uri, "ATP_LEASE_EXPIRY": "20", "ATP_LEASE_HEARTBEAT": "5"}
        runners = []
        for name, suite in (("runner-a", "a_victim.robot"), ("runner-b", "b_survivor.robot")):
            env = run_env(tmp_path / f"leases-{name}", ATP_MACHINE_ID=name, **common)
            args = ["--processes", "1", "--pabotlibhost", "127.0.0.1", "--pabotlibport", str(port)]
            command = [*pabot(args, tmp_path / name, env, pool_vms[:1], lab_vars["uri"]), str(suites / suite)]
            runners.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            killed_at = _kill_victim(marks, runners[1])
            for runner in runners:
                runner.wait(timeout=300)
        finally:
            for runner in runners:
                if runner.poll() is None:
                    runner.kill()
        delay = float(wait_for(marks / "survivor.acquired", 5)) - killed_at
        # The victim renewed at most 5 s before the kill, so its lease ended 15..20 s after it.
        assert 12 <= delay <= 45, f"the survivor got the VM {delay:.1f} s after the kill"
        print(f"SIGKILL, PabotLib (expiry 20 s, heartbeat 5 s): VM back {delay:.1f} s after the kill")
        output = tmp_path / "runner-b" / "output.xml"
        _survivor(output)
        warnings = messages(output, "WARN")
        assert any("took over the lease of" in w and "expired" in w and "runner-a" in w for w in warnings), warnings
        assert any("broke the stale in-guest lease" in w and "stopped renewing" in w for w in warnings), warnings
        record = SharedLeaseStore(RemotePabotLib(uri), start_heartbeat=False).read(lab_vars["uri"], pool_vms[0])
        assert record is None  # the survivor released it at the end of its suite
    finally:
        server.terminate()
        server.wait(timeout=30)


# ---------------------------------------------------------------- two runners, one PabotLib server

SHARD_SUITE = """\
*** Settings ***
Resource    {resource}
Library    OperatingSystem
Suite Setup    Use A Lab VM For This Suite
Test Setup    Log Test VM

*** Test Cases ***
Suite {i} First Test Owns The Guest
    Own The Guest For A While    s{i}-t1

Suite {i} Second Test Owns The Guest
    Own The Guest For A While    s{i}-t2

*** Keywords ***
Own The Guest For A While
    [Documentation]    Writes its id, waits, and checks that nobody else wrote meanwhile.
    [Arguments]    ${{id}}
    Execute Command In Guest    ${{VM}}    echo ${{id}} > /tmp/pool-owner; sleep 1.5
    Guest File Should Be    /tmp/pool-owner    ${{id}}\\n
"""


def _shard_suites(tmp_path: Path, count: int) -> Path:
    suites = tmp_path / "suites"
    suites.mkdir()
    for i in range(1, count + 1):
        (suites / f"s{i:02d}.robot").write_text(SHARD_SUITE.format(resource=LAB_RESOURCE, i=i))
    return suites


def _two_runners(
    lab_vars: dict[str, Any], vms: list[str], tmp_path: Path, suites: Path, port: int, pool: str
) -> list[subprocess.CompletedProcess[str]]:
    procs = []
    for index in (1, 2):
        env = run_env(
            tmp_path / f"leases-{index}",  # different lease dirs: the local flocks cannot protect them
            ATP_POOL=pool,
            ATP_PABOTLIB_URI=f"127.0.0.1:{port}",  # pabot 5.2.2 keeps ${PABOTLIBURI} at 127.0.0.1:8270
            ATP_MACHINE_ID=f"runner-{index}",
        )
        args = ["--processes", "2", "--shard", f"{index}/2", "--pabotlibhost", "127.0.0.1", "--pabotlibport", str(port)]
        procs.append(
            subprocess.Popen(
                [*pabot(args, tmp_path / f"shard{index}", env, vms, lab_vars["uri"]), str(suites)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    done = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, ""))
    return done


def test_two_shards_share_one_pabotlib_server_and_never_share_a_vm(
    lab_vars: dict[str, Any], pool_vms: list[str], tmp_path: Path
) -> None:
    """Two pabot runners (--shard 1/2, --shard 2/2; 2 processes each: 4 processes for 2 VMs) with different
    lease dirs share one PabotLib server: every in-guest lease is taken (none names another holder), per VM
    the tests never overlap in time, and rebot merges both outputs with every test exactly once."""
    suites = _shard_suites(tmp_path, 6)
    port = free_port()
    values = tmp_path / "values.dat"
    values.write_text("# no value sets\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "pabot.pabotlib", str(values), "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while RemotePabotLib(uri, timeout=1).reachable() is not None:
            assert time.monotonic() < deadline, "the PabotLib server did not start"
            time.sleep(0.2)
        started = time.monotonic()
        results = _two_runners(lab_vars, pool_vms, tmp_path, suites, port, "pabotlib")
        elapsed = time.monotonic() - started
        shard_runs = [robot_tests_in(tmp_path / f"shard{i}" / "output.xml") for i in (1, 2)]
        for result, runs in zip(results, shard_runs, strict=True):
            failed = [f"{r.name}: {r.message}" for r in runs if r.status != "PASS"]
            assert not failed and result.returncode == 0, "\n".join(failed) + result.stdout[-3000:]
        suites_1 = {r.suite for r in shard_runs[0]}
        suites_2 = {r.suite for r in shard_runs[1]}
        assert suites_1 and suites_2 and not suites_1 & suites_2  # the shards split the suites
        all_runs = shard_runs[0] + shard_runs[1]
        counts = no_overlap_per_vm(all_runs)
        assert set(counts) == set(pool_vms), counts  # both VMs were used
        for i in (1, 2):
            logged = messages(tmp_path / f"shard{i}" / "output.xml")
            assert any(f"VM pool backend: pabotlib (chosen (PabotLib at {uri})" in m for m in logged)
            assert sum("Took the in-guest lease" in m for m in logged) == len(shard_runs[i - 1])
        # Everything released: no records left, the PabotLib lock free.
        shared = SharedLeaseStore(RemotePabotLib(uri), start_heartbeat=False)
        assert [shared.read(lab_vars["uri"], vm) for vm in pool_vms] == [None, None]
        assert RemotePabotLib(uri).acquire_lock(f"atp-pool:{lab_vars['uri']}:mutex:0", "checker")
        merged = tmp_path / "merged.xml"
        rebot = subprocess.run(
            [
                str(BIN / "rebot"),
                "--output",
                str(merged),
                "--log",
                "NONE",
                "--report",
                "NONE",
                str(tmp_path / "shard1" / "output.xml"),
                str(tmp_path / "shard2" / "output.xml"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rebot.returncode == 0, rebot.stdout + rebot.stderr
        names = Counter(r.name for r in robot_tests_in(merged))
        expected = {f"Suite {i} {which} Test Owns The Guest" for i in range(1, 7) for which in ("First", "Second")}
        assert set(names) == expected and set(names.values()) == {1}, names
        print(f"two shards: {len(all_runs)} tests on {counts} in {elapsed:.0f} s")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_without_the_shared_store_the_in_guest_lease_catches_the_double_use(
    lab_vars: dict[str, Any], pool_vms: list[str], tmp_path: Path
) -> None:
    """The control: the same two shards with ATP_POOL=local and different lease dirs drive the same VMs at once;
    the in-guest lease is what notices, failing tests with the other holder's name."""
    suites = _shard_suites(tmp_path, 4)
    results = _two_runners(lab_vars, pool_vms, tmp_path, suites, free_port(), "local")
    runs = robot_tests_in(tmp_path / "shard1" / "output.xml") + robot_tests_in(tmp_path / "shard2" / "output.xml")
    refused = [r for r in runs if "is in use by another holder" in r.message]
    assert refused, [f"{r.name}: {r.status} {r.message}" for r in runs]
    assert all("/run/atp-lease in the guest names" in r.message and "runner-" in r.message for r in refused)
    assert any(result.returncode != 0 for result in results)
    print(f"control (local, two lease dirs): {len(refused)} of {len(runs)} tests refused by the in-guest lease")


def test_sixteen_processes_never_use_one_vm_at_once(
    lab_vars: dict[str, Any], pool_vms: list[str], tmp_path: Path
) -> None:
    """pabot --processes 16 --pabotlib (PabotLib backend) with 16 suites on 2 VMs: every test passes (every
    in-guest lease taken, the guest file each test writes unchanged after its pause) and per VM no two tests
    overlap in time."""
    suites = _shard_suites(tmp_path, 16)
    out = tmp_path / "out"
    archive = tmp_path / "archive.db"
    env = run_env(tmp_path / "leases", ATP_POOL="pabotlib", ATP_ARCHIVE_DB=str(archive), ATP_RUN_ID="pool-16")
    started = time.monotonic()
    proc = subprocess.run(
        [
            *pabot(["--processes", "16", "--pabotlib", "--pabotlibport", "0"], out, env, pool_vms, lab_vars["uri"]),
            "--listener",
            "ATPLibrary.archive.ArchiveListener",
            str(suites),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )
    elapsed = time.monotonic() - started
    runs = robot_tests_in(out / "output.xml")
    failed = [f"{r.name}: {r.message}" for r in runs if r.status != "PASS"]
    assert len(runs) == 32 and not failed and proc.returncode == 0, "\n".join(failed) + proc.stdout[-2000:]
    counts = no_overlap_per_vm(runs)
    assert set(counts) == set(pool_vms), counts
    # The results archive's own rows say the same: 32 tests, each with its VM, no two at once on one VM.
    from ATPLibrary.archive.store import ArchiveStore, vm_overlaps

    with ArchiveStore(archive) as store:
        stored = store.tests(store.resolve_run("pool-16"))
        assert store.integrity() == "ok"
    assert len(stored) == 32 and {t["vm"] for t in stored} == set(pool_vms)
    assert vm_overlaps(stored) == []
    print(f"16 processes: {len(runs)} tests on {counts} in {elapsed:.0f} s")
