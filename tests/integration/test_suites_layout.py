"""The suites as QA engineers find them (no VMs): one folder per area, every test tagged with its area and
speed, a smoke test per area, no fixed sleeps, a clean robot --dryrun and a clean robocop."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from robot.api import TestSuiteBuilder as SuiteBuilder

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites"
RESOURCES = ROOT / "resources"
AREAS = {"keyboard", "mouse", "commands", "verification", "vdi", "spice", "lifecycle", "hosts", "screen", "data_driven"}


def test_every_area_has_a_folder_with_suites() -> None:
    folders = {p.name for p in SUITES.iterdir() if p.is_dir() and any(p.glob("*.robot"))}
    assert folders == AREAS


def test_every_test_has_its_folders_area_tag_and_one_speed_tag() -> None:
    suite = SuiteBuilder().build(str(SUITES))
    tests = list(suite.all_tests)
    assert len(tests) >= 40
    for test in tests:
        folder = Path(test.source).relative_to(SUITES).parts[0]
        areas = [t for t in test.tags if t.startswith("area:")]
        speeds = [t for t in test.tags if t.startswith("speed:")]
        assert areas == [f"area:{folder}"], f"{test.full_name}: {list(test.tags)}"
        assert len(speeds) == 1 and speeds[0] in {"speed:fast", "speed:slow"}, f"{test.full_name}: {list(test.tags)}"


def test_the_smoke_run_covers_the_areas_on_lab_guests() -> None:
    suite = SuiteBuilder().build(str(SUITES))
    smoke_areas = {Path(t.source).relative_to(SUITES).parts[0] for t in suite.all_tests if "smoke" in t.tags}
    assert {
        "keyboard",
        "mouse",
        "commands",
        "verification",
        "screen",
        "hosts",
        "lifecycle",
        "data_driven",
    } <= smoke_areas


def test_no_fixed_sleeps_in_suites_or_resources() -> None:
    """Waits are keywords with a timeout (`Wait Until ...`), never `Sleep`."""
    files = [*SUITES.rglob("*.robot"), *RESOURCES.glob("*.resource")]
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.match(r"^\s+(\$\{\w+\}=?\s+)?(BuiltIn\.)?Sleep(\s{2,}|$)", line)
    ]
    assert not offenders, offenders


def test_dryrun_of_all_suites_passes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "robot", "--dryrun", "--variablefile", str(ROOT / "variables" / "lab.py"),
         "--output", str(tmp_path / "output.xml"), "--log", "NONE", "--report", "NONE", str(SUITES)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "[ ERROR ]" not in proc.stderr, proc.stderr[-4000:]


def test_robocop_is_clean_on_suites_and_resources() -> None:
    robocop = Path(sys.executable).with_name("robocop")
    proc = subprocess.run(
        [str(robocop), "check", "suites", "resources"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
