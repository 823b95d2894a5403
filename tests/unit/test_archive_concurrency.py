"""16 OS processes write into one new archive file at the same moment: no row is lost, nothing raises
"database is locked", and SQLite's integrity check passes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(300)

PROCESSES = 16
TESTS_EACH = 40
LATENCIES_EACH = 2

# Each worker: open the (possibly not yet existing) archive, join a run (even workers share one run key, as
# pabot's processes do; odd ones have their own), write its tests one transaction each, end its process.
WORKER = """
import json, os, sys
from ATPLibrary.archive.store import ArchiveStore, LatencyRecord, ProcessInfo, TestRecord
db, n, tests, lats, busy_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print("ready", flush=True)
sys.stdin.read()  # the parent closes the gate pipe (their stdin) once all are ready: they start together
with ArchiveStore(db, busy_timeout_ms=busy_ms) as store:
    key = "shared-run" if n % 2 == 0 else f"own-run-{n}"
    run_id, proc = store.begin_process(ProcessInfo(run_key=key, host="h", pid=os.getpid()))
    suite = store.start_suite(run_id, proc, None, f"S{n}", f"Top.S{n}")
    for i in range(tests):
        store.add_test(
            run_id, suite, proc,
            TestRecord(f"t{i}", f"Top.S{n}.t{i}", "FAIL" if i % 7 == 0 else "PASS", tags=[f"w:{n}"], vm=f"vm{n}"),
            [LatencyRecord(f"vm{n}", float(i + j), "key") for j in range(lats)],
        )
    store.end_suite(suite, "FAIL", "", None, 1)
    store.end_process(proc, "FAIL")
    retries = store.retries
print(json.dumps({"worker": n, "run": run_id, "retries": retries}))
"""


@pytest.mark.parametrize(
    "busy_ms",
    [pytest.param(10_000, id="default-busy-timeout"), pytest.param(1, id="1ms-busy-timeout-so-the-retries-work")],
)
def test_16_processes_write_at_once_without_losing_a_row(tmp_path: Path, busy_ms: int) -> None:
    db = tmp_path / "deep" / "archive.db"  # neither the folder nor the file exist: creation races too
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    gate_read, gate_write = os.pipe()  # every worker reads the gate; closing its write end releases them all
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(db), str(n), str(TESTS_EACH), str(LATENCIES_EACH), str(busy_ms)],
            stdin=gate_read,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        for n in range(PROCESSES)
    ]
    os.close(gate_read)
    for worker in workers:  # every worker has imported the library and waits at the gate
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    started = time.monotonic()
    os.close(gate_write)
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        assert "locked" not in err.lower() and "Traceback" not in err, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    elapsed = time.monotonic() - started
    retries = sum(r["retries"] for r in results)
    print(f"{PROCESSES} processes x {TESTS_EACH} tests (busy timeout {busy_ms} ms): {elapsed:.1f} s, {retries} retries")

    with sqlite3.connect(db) as conn:

        def count(sql: str) -> Any:
            return conn.execute(sql).fetchone()[0]

        assert count("PRAGMA integrity_check") == "ok"
        assert count("SELECT count(*) FROM tests") == PROCESSES * TESTS_EACH
        assert count("SELECT count(*) FROM latencies") == PROCESSES * TESTS_EACH * LATENCIES_EACH
        assert count("SELECT count(*) FROM processes") == PROCESSES
        assert count("SELECT count(*) FROM suites") == PROCESSES
        assert count("SELECT count(*) FROM runs") == 1 + PROCESSES // 2
        assert count("SELECT count(DISTINCT longname) FROM tests") == PROCESSES * TESTS_EACH
        assert count("SELECT count(*) FROM runs WHERE incomplete = 1 OR ended IS NULL") == 0
        assert count("SELECT count(*) FROM runs WHERE status != 'FAIL'") == 0
        assert count("PRAGMA user_version") >= 1
        shared = conn.execute(
            "SELECT r.id, count(DISTINCT p.id), count(t.id) FROM runs r JOIN processes p ON p.run_id = r.id "
            "JOIN tests t ON t.process_id = p.id WHERE r.run_key = 'shared-run'"
        ).fetchone()
    assert shared[1] == PROCESSES // 2 and shared[2] == PROCESSES // 2 * TESTS_EACH
    assert {r["run"] for r in results if r["worker"] % 2 == 0} == {shared[0]}
    if busy_ms == 1:  # SQLite gave up at once, many times: the store's own retries carried every write through
        assert retries > 0
