"""Golden suites: ``atp scenario convert`` on the five original example scenarios and on the VDI-steps and
multi-target scenarios of tests/data/scenarios, plain and with ``--adapt lab``, gives exactly the committed
suites; each of them passes ``robot --dryrun`` (with variables/lab.py) and robocop.

Regenerate the goldens after an intended change with::

    ATP_REGEN_GOLDEN=1 .venv/bin/pytest tests/unit/test_scenario_golden.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ATPLibrary.cli.main import main

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
ORIGINAL = ROOT.parent / "shared" / "notes" / "original-scenarios"
DATA = ROOT / "tests" / "data" / "scenarios"
GOLDEN = DATA / "golden"
REGEN = os.environ.get("ATP_REGEN_GOLDEN") == "1"


def sources() -> list[Path]:
    originals = sorted(ORIGINAL.glob("*.yaml"))
    assert len(originals) == 5, f"the five original example scenarios are expected in {ORIGINAL}"
    return [*originals, *sorted(DATA.glob("*.yaml")), *sorted(DATA.glob("*.json"))]


CASES = [(src, adapt) for src in sources() for adapt in (None, "lab")]


def golden_path(source: Path, adapt: str | None) -> Path:
    return GOLDEN / f"{source.stem}{'_lab' if adapt else ''}.robot"


def convert(source: Path, adapt: str | None, out: Path) -> int:
    argv = ["scenario", "convert", str(source), "-o", str(out)] + (["--adapt", adapt] if adapt else [])
    return main(argv)


@pytest.mark.parametrize(("source", "adapt"), CASES, ids=lambda v: getattr(v, "stem", str(v)))
def test_conversion_matches_its_golden(source: Path, adapt: str | None, tmp_path: Path) -> None:
    golden = golden_path(source, adapt)
    # written beside the golden, so that resource paths are the golden's
    out = golden.with_suffix(".new") if not REGEN else golden
    code = convert(source, adapt, out)
    assert code == (1 if source.name == "multi-target.json" else 0)  # its custom step is a placeholder
    if REGEN:
        return
    try:
        produced = out.read_text(encoding="utf-8")
    finally:
        out.unlink()
    assert produced == golden.read_text(encoding="utf-8"), (
        f"{golden.name} differs; if the change is intended: ATP_REGEN_GOLDEN=1 .venv/bin/pytest {__file__}"
    )


def test_every_golden_passes_robot_dryrun(tmp_path: Path) -> None:
    goldens = sorted(GOLDEN.glob("*.robot"))
    assert len(goldens) == len(CASES)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "robot", "--dryrun", "--variablefile", str(ROOT / "variables" / "lab.py")),
            *("--outputdir", str(tmp_path), "--console", "quiet", "--name", "Goldens", *map(str, goldens)),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    from robot.api import ExecutionResult

    result = ExecutionResult(str(tmp_path / "output.xml"))
    assert result.statistics.total.passed == len(CASES)
    assert not [m for m in result.errors.messages if m.level in ("ERROR", "WARN")], [
        m.message for m in result.errors.messages
    ]


def test_every_golden_is_robocop_clean() -> None:
    robocop = Path(sys.executable).with_name("robocop")
    done = subprocess.run(
        [str(robocop), "check", *map(str, sorted(GOLDEN.glob("*.robot")))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
