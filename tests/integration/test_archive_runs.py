"""The archive listener inside real ``robot`` and ``pabot`` runs of tiny generated suites (no lab needed):
rows, tags, statuses, durations, one run per pabot invocation, and a run killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(300)

LISTENER = "ATPLibrary.archive.ArchiveListener"
SECRET = "Sup3r-S3cret-Value"
BIN = Path(sys.executable).parent

TYPING = """\
*** Settings ***
Test Tags    area:keyboard

*** Test Cases ***
Sleeps And Passes
    [Tags]    smoke    vm:atp-lab-07
    Sleep    0.3s

Fails With A Message
    Set Tags    vm:atp-lab-02
    Fail    the guest typed 'X' instead of 'd'

Is Skipped
    Skip    no SPICE here
"""

MOUSE = """\
*** Test Cases ***
Clicks
    Log    click
"""


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATP_RUN_ID", "ATP_ARCHIVE_DB")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # pabot starts `robot` from PATH
    env["ATP_ARCHIVE_DB"] = str(db)
    env.update(extra)
    return env


def _robot(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "robot", "--listener", LISTENER, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params)]


def _suites(tmp_path: Path) -> Path:
    root = tmp_path / "Suites"
    root.mkdir()
    (root / "typing.robot").write_text(TYPING)
    (root / "mouse.robot").write_text(MOUSE)
    return root


def test_robot_run_stores_suites_tests_tags_statuses_and_durations(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    root = _suites(tmp_path)
    started = time.time()
    result = _robot(["--variable", f"VDI_PASSWORD:{SECRET}", "--outputdir", "out", str(root)], _env(db), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr  # one failed test
    assert "ArchiveListener" not in result.stderr, result.stderr  # the listener raised nothing

    runs = _rows(db, "SELECT * FROM runs")
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "FAIL" and run["incomplete"] == 0 and run["ended"] >= run["started"]
    assert run["output_dir"] == str(tmp_path / "out")
    assert run["run_key"].startswith("robot:")
    assert "VDI_PASSWORD:<redacted>" in run["command"] and SECRET not in run["command"]

    suites = _rows(db, "SELECT * FROM suites ORDER BY id")
    assert [s["longname"] for s in suites] == ["Suites", "Suites.Mouse", "Suites.Typing"]
    assert suites[1]["parent_id"] == suites[0]["id"] and suites[2]["parent_id"] == suites[0]["id"]
    assert [s["status"] for s in suites] == ["FAIL", "PASS", "FAIL"]

    tests = {t["name"]: t for t in _rows(db, "SELECT * FROM tests")}
    assert set(tests) == {"Clicks", "Sleeps And Passes", "Fails With A Message", "Is Skipped"}
    slept = tests["Sleeps And Passes"]
    assert slept["status"] == "PASS" and slept["message"] == ""
    assert slept["longname"] == "Suites.Typing.Sleeps And Passes"
    assert slept["vm"] == "atp-lab-07"
    assert sorted(json.loads(slept["tags"])) == ["area:keyboard", "smoke", "vm:atp-lab-07"]
    assert 300 <= slept["duration_ms"] < 10_000
    span = datetime.fromisoformat(slept["end_time"]) - datetime.fromisoformat(slept["start_time"])
    assert abs(span.total_seconds() * 1000 - slept["duration_ms"]) <= 2
    assert datetime.fromisoformat(slept["start_time"]).timestamp() >= started - 1
    failed = tests["Fails With A Message"]
    assert failed["status"] == "FAIL" and failed["message"] == "the guest typed 'X' instead of 'd'"
    assert failed["vm"] == "atp-lab-02"  # set by Set Tags during the test
    assert tests["Is Skipped"]["status"] == "SKIP" and tests["Is Skipped"]["vm"] is None
    assert tests["Clicks"]["suite_id"] == suites[1]["id"]

    for path in (db, Path(f"{db}-wal")):  # the secret is nowhere in the files
        if path.exists():
            assert SECRET.encode() not in path.read_bytes()

    show = subprocess.run(
        [str(BIN / "atp"), "report", "show", "latest", "--db", str(db)], capture_output=True, text=True, timeout=60
    )
    assert show.returncode == 0, show.stderr
    assert "tests:    4 (2 passed, 1 failed, 1 skipped)" in show.stdout
    assert "Suites.Typing.Fails With A Message [vm atp-lab-02]" in show.stdout


def test_listener_path_argument_and_atp_run_id_group_two_robot_runs(tmp_path: Path) -> None:
    db = tmp_path / "chosen" / "x.db"
    root = _suites(tmp_path)
    env = _env(tmp_path / "not-this.db", ATP_RUN_ID="nightly-2026-12-04")
    for suite in ("typing.robot", "mouse.robot"):
        command = [sys.executable, "-m", "robot", "--listener", f"{LISTENER}:path={db}", "--outputdir", f"out-{suite}"]
        result = subprocess.run(
            [*command, str(root / suite)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert "ArchiveListener" not in result.stderr, result.stderr
    assert not (tmp_path / "not-this.db").exists()
    runs = _rows(db, "SELECT * FROM runs")
    assert [(r["run_key"], r["status"], r["incomplete"]) for r in runs] == [("nightly-2026-12-04", "FAIL", 0)]
    assert len(_rows(db, "SELECT * FROM processes WHERE ended IS NOT NULL")) == 2
    assert len(_rows(db, "SELECT * FROM tests")) == 4


def test_pabot_run_with_two_processes_lands_in_one_run_and_the_next_pabot_run_in_another(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    root = _suites(tmp_path)
    pabot = [sys.executable, "-m", "pabot.pabot", "--processes", "2", "--listener", LISTENER, "--outputdir", "res"]
    for attempt in (1, 2):
        result = subprocess.run(
            [*pabot, str(root)], env=_env(db), cwd=tmp_path, capture_output=True, text=True, timeout=240
        )
        assert "4 tests, 2 passed, 1 failed, 1 skipped" in result.stdout, result.stdout + result.stderr
        runs = _rows(db, "SELECT * FROM runs ORDER BY id")
        assert len(runs) == attempt
        run = runs[-1]
        assert run["run_key"].startswith("pabot:") and run["run_key"].endswith(str(tmp_path / "res"))
        assert run["output_dir"] == str(tmp_path / "res")
        assert run["status"] == "FAIL" and run["incomplete"] == 0
        assert "pabot" in run["command"]
        processes = _rows(db, "SELECT * FROM processes WHERE run_id = ?", (run["id"],))
        assert len(processes) == 2 and len({p["pid"] for p in processes}) == 2
        assert all(p["ended"] for p in processes)
        assert {Path(p["output_dir"]).parent.name for p in processes} == {"pabot_results"}
        tests = _rows(db, "SELECT name, status, process_id FROM tests WHERE run_id = ?", (run["id"],))
        assert sorted(t["name"] for t in tests) == ["Clicks", "Fails With A Message", "Is Skipped", "Sleeps And Passes"]
        assert len({t["process_id"] for t in tests}) == 2


KILLED = """\
*** Test Cases ***
First Passes
    [Tags]    vm:atp-lab-05
    Log    ok

Second Fails
    Fail    expected failure

Third Hangs Until Killed
    Sleep    600s

Fourth Never Runs
    Log    never
"""


def test_robot_killed_with_sigkill_keeps_finished_tests_and_the_run_stays_incomplete(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    suite = tmp_path / "killed.robot"
    suite.write_text(KILLED)
    proc = subprocess.Popen(
        [sys.executable, "-m", "robot", "--listener", LISTENER, "--outputdir", "out", str(suite)],
        env=_env(db),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # the two finished tests are committed while the third one runs
            if db.exists():
                try:
                    if len(_rows(db, "SELECT id FROM tests")) >= 2:
                        break
                except sqlite3.OperationalError:
                    pass  # the schema is being created
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the first two tests never reached the archive within 120 s"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    tests = _rows(db, "SELECT name, status, vm FROM tests ORDER BY id")
    assert tests == [
        {"name": "First Passes", "status": "PASS", "vm": "atp-lab-05"},
        {"name": "Second Fails", "status": "FAIL", "vm": None},
    ]
    run = _rows(db, "SELECT * FROM runs")[0]
    assert run["incomplete"] == 1 and run["ended"] is None and run["status"] == "FAIL"
    assert _rows(db, "SELECT ended FROM processes") == [{"ended": None}]
    show = subprocess.run(
        [str(BIN / "atp"), "report", "show", "latest", "--db", str(db)], capture_output=True, text=True, timeout=60
    )
    assert show.returncode == 0 and "(incomplete)" in show.stdout and "INCOMPLETE: 1 process(es)" in show.stdout
    listed = subprocess.run(
        [str(BIN / "atp"), "report", "list", "--json", "--db", str(db)], capture_output=True, text=True, timeout=60
    )
    assert json.loads(listed.stdout)[0]["state"] == "incomplete"

    # The archive is still writable by the next run (the killed writer left no lock behind).
    again = _robot(["--outputdir", "out2", "--test", "First Passes", str(suite)], _env(db), tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(_rows(db, "SELECT id FROM runs")) == 2
