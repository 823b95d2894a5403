"""On a lab guest: a Robot run with the archive listener stores the latency of each verified input beside
the test that sent it (the matcher reports it through ATPLibrary.archive.metrics)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]

SUITE = """\
*** Settings ***
Resource          {resources}/verification.resource
Suite Setup       Use A Lab VM With Its Verification Agent
Suite Teardown    Stop Verifying
Test Setup        Log Test VM

*** Test Cases ***
Verified Typing Stores Its Latency
    Type Text    ${{VM}}    echo archived-latency\\n    verify=True
    Press Keys    ${{VM}}    ctrl+c    verify=True

Unverified Typing Stores None
    Type Text    ${{VM}}    echo not-verified\\n
    Press Keys    ${{VM}}    ctrl+c
"""


@pytest.fixture()
def lab_vms(running_lab: dict[str, Any]) -> list[str]:
    """The running lab's guests. The suite leases one itself (`Acquire VM`)."""
    return [str(v) for v in running_lab["vms"]]


def test_verified_input_stores_its_latency_with_the_test_and_vm(lab_vms: list[str], tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    suite = tmp_path / "archive_latency.robot"
    suite.write_text(SUITE.format(resources=REPO / "resources"))
    env = {k: v for k, v in os.environ.items() if k != "ATP_RUN_ID"}
    env["ATP_ARCHIVE_DB"] = str(db)
    # The suite leases a free lab guest itself (Acquire VM), as a suite in `make demo` does.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "robot",
            "--listener",
            "ATPLibrary.archive.ArchiveListener",
            "--variablefile",
            str(REPO / "variables" / "lab.py"),
            "--outputdir",
            str(tmp_path / "out"),
            str(suite),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        tests = {r["name"]: dict(r) for r in conn.execute("SELECT * FROM tests")}
        latencies = [dict(r) for r in conn.execute("SELECT * FROM latencies ORDER BY id")]
    verified, unverified = tests["Verified Typing Stores Its Latency"], tests["Unverified Typing Stores None"]
    vm = verified["vm"]
    assert vm in lab_vms and f"vm:{vm}" in json.loads(verified["tags"])
    assert [(lat["test_id"], lat["vm"], lat["kind"], lat["action"]) for lat in latencies] == [
        (verified["id"], vm, "key", "Type Text"),
        (verified["id"], vm, "key", "Press Keys CTRL+C"),
    ]
    for lat in latencies:
        assert 0 < lat["latency_ms"] < 30_000
    assert unverified["status"] == "PASS"

    show = subprocess.run(
        [str(Path(sys.executable).parent / "atp"), "report", "show", "latest", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    summary = json.loads(show.stdout)
    assert summary["latency"]["count"] == 2 and summary["latency"]["by_kind"]["key"]["count"] == 2
    assert [v["vm"] for v in summary["vms"]] == [vm]
