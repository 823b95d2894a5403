"""The original system's keyboard (01) and command (02) scenarios, converted with ``--adapt lab`` and run by
``atp scenario run`` on a lab guest that the converted suite leases from the pool: the keywords in output.xml
match the YAML steps one to one, in order, with their data, and pass. The error-handling scenario (05) fails
at its failing command and, as in the original executor, runs the steps after it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from robot.api import ExecutionResult
from robot.result import Keyword

from ATPLibrary.scenario import load_scenario
from ATPLibrary.scenario.model import ActionType, Step

pytestmark = pytest.mark.lab

SCENARIOS = Path(__file__).resolve().parents[3] / "shared" / "notes" / "original-scenarios"
CONTINUE = "Run Keyword And Continue On Failure"

#: The keyword each action type of these scenarios becomes, and the argument that carries the step's data.
EXPECTED: dict[ActionType, tuple[str, str | None]] = {
    ActionType.SEND_KEY: ("Press Keys", "key"),
    ActionType.SEND_TEXT: ("Type Text", "text"),
    ActionType.EXEC_COMMAND: ("Execute Command In Guest", "command"),
    ActionType.WAIT: ("Sleep", None),
}


def run_scenario(name: str, outdir: Path, *options: str) -> tuple[int, Any]:
    """``atp scenario run <scenario> --adapt lab`` (the suite leases a lab VM itself); exit code and result."""
    command = [sys.executable, "-m", "ATPLibrary.cli.main", "scenario", "run", str(SCENARIOS / name)]
    command += ["--adapt", "lab", "--outputdir", str(outdir), *options, "--", "--console", "none"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert (outdir / "output.xml").is_file(), done.stderr
    return done.returncode, ExecutionResult(str(outdir / "output.xml"))


def step_keywords(result: Any) -> tuple[Any, list[Keyword]]:
    """The single test and the keywords of its body (comments are not in output.xml)."""
    tests = list(result.suite.all_tests)
    assert len(tests) == 1
    return tests[0], [item for item in tests[0].body if isinstance(item, Keyword)]


def effective(kw: Keyword) -> Keyword:
    """The keyword a step ran: the one inside `Run Keyword And Continue On Failure`, if wrapped."""
    if kw.name == CONTINUE:
        inner = [item for item in kw.body if isinstance(item, Keyword)]
        assert len(inner) == 1, f"{CONTINUE} should run one keyword, ran {[k.name for k in inner]}"
        return inner[0]
    return kw


def assert_matches(steps: tuple[Step, ...], keywords: list[Keyword]) -> None:
    assert len(keywords) == len(steps), [k.name for k in keywords]
    for step, kw in zip(steps, keywords, strict=True):
        ran = effective(kw)
        name, field = EXPECTED[step.action.type]
        assert ran.name == name, f"step {step.index} ({step.label}) ran {ran.name}, expected {name}"
        if field is not None:
            assert ran.args[1] == step.action[field], f"step {step.index}: {ran.args!r}"
            assert ran.args[0] == "${VM}"
        else:
            assert ran.args[0] == f"{int(step.action['duration'])}s"
        if step.timeout is not None and step.action.type is ActionType.EXEC_COMMAND:
            assert f"timeout={int(step.timeout)}s" in ran.args
        if step.action.type is ActionType.EXEC_COMMAND:
            assert kw.name == CONTINUE, "a failed command was recorded and the original went on"


@pytest.mark.parametrize("name", ["01-basic-keyboard.yaml", "02-command-execution.yaml"])
def test_converted_scenario_passes_on_the_lab_step_for_step(lab: dict[str, Any], tmp_path: Path, name: str) -> None:
    code, result = run_scenario(name, tmp_path)
    test, keywords = step_keywords(result)
    assert test.status == "PASS", test.message
    assert code == 0
    assert_matches(load_scenario(SCENARIOS / name).steps, keywords)
    assert all(effective(kw).status == "PASS" for kw in keywords)
    leased = _setup_vms(result)
    assert len(leased) == 1 and leased[0] in lab["vms"], leased


def _setup_vms(result: Any) -> list[str]:
    """The lab VM the suite setup leased (from `Acquire VM`'s message)."""
    found: list[str] = []

    def visit(kw: Any) -> None:
        for item in getattr(kw, "body", []):
            if isinstance(item, Keyword):
                if item.name == "Acquire VM":
                    messages = [m.message for m in item.body.filter(messages=True)]
                    found.extend(m.split("'")[1] for m in messages if m.startswith("Acquired VM '"))
                visit(item)

    visit(result.suite.setup)
    return found


def test_commands_output_reaches_the_log(lab: dict[str, Any], tmp_path: Path) -> None:
    """02's commands really ran in the guest: ``echo 'Hello from QGA'`` printed its text."""
    _, result = run_scenario("02-command-execution.yaml", tmp_path)
    _, keywords = step_keywords(result)
    messages = [m.message for m in effective(keywords[0]).body.filter(messages=True)]
    assert any("Hello from QGA" in m for m in messages), messages


def test_error_handling_fails_and_goes_on_like_the_original(lab: dict[str, Any], tmp_path: Path) -> None:
    code, result = run_scenario("05-error-handling.yaml", tmp_path)
    test, keywords = step_keywords(result)
    assert code == 1
    assert test.status == "FAIL"
    assert "exited with rc 1" in test.message
    assert [effective(k).status for k in keywords] == ["PASS", "FAIL", "PASS", "PASS"]


def test_stop_on_failure_stops_at_the_failing_command(lab: dict[str, Any], tmp_path: Path) -> None:
    code, result = run_scenario("05-error-handling.yaml", tmp_path, "--stop-on-failure")
    test, keywords = step_keywords(result)
    assert code == 1
    assert test.status == "FAIL"
    assert [k.status for k in keywords] == ["PASS", "FAIL", "NOT RUN", "NOT RUN"]
