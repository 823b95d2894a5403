"""The DataDriver typing table under pabot on lab guests: every CSV row runs exactly once in the merged
output.xml, with and without ``--testlevelsplit`` (with it, DataDriver hands groups of rows to the pabot
processes through PabotLib, so ``--pabotlib`` is given)."""

from __future__ import annotations

import collections
import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from robot.api import ExecutionResult

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "suites" / "data_driven" / "typing_table.robot"
TABLE = SUITE.with_name("typing_table.csv")
PROCESSES = 3


def table_rows() -> list[str]:
    """The test names of the table, read the way the suite states it: UTF-8, dialect excel."""
    with TABLE.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, dialect="excel"))
    assert rows[0][0] == "*** Test Cases ***"
    return [row[0] for row in rows[1:] if row]


@pytest.mark.parametrize("testlevelsplit", [False, True], ids=["suitelevel", "testlevelsplit"])
def test_each_row_runs_exactly_once_under_pabot(lab: dict[str, Any], tmp_path: Path, testlevelsplit: bool) -> None:
    out = tmp_path / "out"
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "pabot"), "--processes", str(PROCESSES), "--pabotlib"]
    if testlevelsplit:
        command.append("--testlevelsplit")
    command += ["--variablefile", str(ROOT / "variables" / "lab.py"), "--outputdir", str(out), str(SUITE)]
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert (out / "output.xml").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]

    result = ExecutionResult(str(out / "output.xml"))
    ran = collections.Counter(test.name for test in result.suite.all_tests)
    expected = table_rows()
    assert len(expected) >= 10
    # Each row exactly once, nothing else (not the template test, no row twice), and each one passed.
    assert ran == collections.Counter(expected), proc.stdout[-3000:]
    failed = [(t.name, t.message) for t in result.suite.all_tests if t.status != "PASS"]
    assert not failed, failed
    assert proc.returncode == 0, proc.stdout[-3000:]

    # How pabot split it: one robot process for the whole suite, or several groups of rows.
    runs = sorted((out / "pabot_results").glob("*/output.xml"))
    with_tests = [p for p in runs if ExecutionResult(str(p)).suite.test_count]
    if testlevelsplit:
        assert len(with_tests) > 1, f"--testlevelsplit ran all rows in {len(with_tests)} process(es)"
    else:
        assert len(with_tests) == 1
