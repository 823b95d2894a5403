"""`atp summary` on a real Robot run (no VMs): counts per area from ``area:`` tags (the suite folder when a
test has none), the failed test with its message, where log and report are, the run found in the results
archive by its ``ATP_RUN_ID``; exit 1 on a failure, 2 on an unreadable file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ATPLibrary.cli.main import main

KEYBOARD = """\
*** Settings ***
Test Tags    area:keyboard    speed:fast

*** Test Cases ***
Typing Passes
    Should Be Equal    a    a

Typing Fails
    Should Be Equal    typed    received    msg=the guest received something else
"""

MOUSE = """\
*** Settings ***
Test Tags    area:mouse

*** Test Cases ***
Click Passes
    No Operation

Move Is Skipped
    Skip    no pointer here
"""

UNTAGGED = """\
*** Test Cases ***
Untagged Test Counts Under Its Folder
    No Operation
"""


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    suites = tmp_path / "suites"
    for folder, name, text in (("keyboard", "typing", KEYBOARD), ("mouse", "pointer", MOUSE), ("hosts", "h", UNTAGGED)):
        (suites / folder).mkdir(parents=True)
        (suites / folder / f"{name}.robot").write_text(text)
    env = {**os.environ, "ATP_RUN_ID": "summary-test-run", "ATP_ARCHIVE_DB": str(tmp_path / "archive.db")}
    subprocess.run(
        [sys.executable, "-m", "robot", "--listener", "ATPLibrary.archive.ArchiveListener", "--outputdir",
         str(tmp_path / "results"), str(suites)],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    return tmp_path


def test_summary_counts_per_area_and_names_the_failure_and_the_files(
    run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATP_RUN_ID", "summary-test-run")
    monkeypatch.setenv("ATP_ARCHIVE_DB", str(run / "archive.db"))
    code = main(["summary", str(run / "results" / "output.xml")])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["AREA", "TESTS", "PASSED", "FAILED", "SKIPPED", "TIME_S"]
    rows = {line.split()[0]: line.split()[1:5] for line in lines[1:4]}
    assert rows == {"hosts": ["1", "1", "0", "0"], "keyboard": ["2", "1", "1", "0"], "mouse": ["2", "1", "0", "1"]}
    assert "FAIL: 5 tests, 3 passed, 1 failed, 1 skipped" in out
    assert "Suites.Keyboard.Typing.Typing Fails" in out
    assert "the guest received something else" in out
    assert f"log:    {run / 'results' / 'log.html'}" in out
    assert f"report: {run / 'results' / 'report.html'}" in out
    assert "archive: run 1 (5 tests): atp report show 1" in out
    assert len(lines) <= 25  # one screen


def test_summary_json_and_exit_codes(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["summary", str(run / "results" / "output.xml"), "--run-id", "", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["total"]["tests"] == 5 and data["total"]["failed"] == 1
    assert data["areas"]["keyboard"]["failed"] == 1
    assert data["archive"] is None  # an empty --run-id: not looked up

    assert main(["summary", str(run / "missing.xml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_summary_of_an_all_passing_run_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "ok.robot"
    suite.write_text(UNTAGGED)
    subprocess.run(
        [sys.executable, "-m", "robot", "--outputdir", str(tmp_path), str(suite)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert main(["summary", str(tmp_path / "output.xml"), "--run-id", ""]) == 0
    assert "PASS: 1 tests, 1 passed, 0 failed" in capsys.readouterr().out
