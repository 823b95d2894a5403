"""``atp summary OUTPUT.XML``: one screen about a finished Robot or pabot run.

Passed / failed / skipped per area (a test's ``area:<name>`` tag; untagged tests count under the folder of
their suite), the total and the run's wall time, the failed tests (one line each), where ``log.html`` and
``report.html`` are, and the run in the results archive when ``--run-id`` (default ``$ATP_RUN_ID``) names one.

Exit codes: 0 every test passed, 1 a test failed (or no test ran), 2 the output file cannot be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.output import add_json_option, print_json, render_table

AREA_TAG = "area:"
NO_AREA = "(no area)"
ENV_RUN_ID = "ATP_RUN_ID"
#: Failed tests listed in full before the rest are only counted (the summary fits one screen).
MAX_FAILED_LINES = 10
MESSAGE_WIDTH = 100


@dataclass
class AreaCounts:
    tests: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def add(self, status: str, seconds: float) -> None:
        self.tests += 1
        self.passed += status == "PASS"
        self.failed += status == "FAIL"
        self.skipped += status == "SKIP"
        self.seconds += seconds


@dataclass
class RunSummary:
    output: Path
    areas: dict[str, AreaCounts] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    wall_seconds: float = 0.0
    log: Path | None = None
    report: Path | None = None

    @property
    def total(self) -> AreaCounts:
        total = AreaCounts()
        for counts in self.areas.values():
            total.tests += counts.tests
            total.passed += counts.passed
            total.failed += counts.failed
            total.skipped += counts.skipped
            total.seconds += counts.seconds
        return total


def area_of(tags: list[str], longname: str) -> str:
    """The test's ``area:`` tag, else its suite folder (``Suites.Keyboard.Typing.Test`` → ``keyboard``)."""
    for tag in tags:
        if tag.lower().startswith(AREA_TAG):
            return tag[len(AREA_TAG) :].strip() or NO_AREA
    parts = longname.split(".")
    return parts[1].lower().replace(" ", "_") if len(parts) > 2 else NO_AREA


def summarize(output: Path) -> RunSummary:
    """Reads ``output`` (a robot or merged pabot output.xml) into counts per area."""
    from robot.api import ExecutionResult

    result = ExecutionResult(str(output))
    summary = RunSummary(output=output.resolve(), wall_seconds=result.suite.elapsed_time.total_seconds())
    for test in result.suite.all_tests:
        area = area_of(list(test.tags), test.full_name)
        summary.areas.setdefault(area, AreaCounts()).add(test.status, test.elapsed_time.total_seconds())
        if test.status == "FAIL":
            vm = next((t[3:] for t in test.tags if t.startswith("vm:")), "")
            summary.failed.append({"test": test.full_name, "area": area, "vm": vm, "message": test.message})
    folder = summary.output.parent
    summary.log = folder / "log.html" if (folder / "log.html").exists() else None
    summary.report = folder / "report.html" if (folder / "report.html").exists() else None
    return summary


def archived_run(run_key: str, db: str | None) -> dict[str, Any]:
    """The archive's run for ``run_key``: ``{"id", "status", "tests"}``, or ``{"error": why not}``."""
    try:
        from ATPLibrary.archive.store import ArchiveStore
    except ImportError:
        return {"error": "this installation has no results archive"}
    try:
        with ArchiveStore(db, create=False, migrate=False) as store:
            run_id = store.resolve_run(run_key)
            counts = store.summary(run_id)["counts"]
            run = store.run(run_id)
    except Exception as exc:  # the archive is optional here: say why it is missing, keep the summary
        return {"error": str(exc)}
    return {"id": run_id, "status": run.get("status"), "tests": counts["tests"], "incomplete": run["incomplete"]}


def _clip(text: str, width: int = MESSAGE_WIDTH) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _atp() -> str:
    """How to call `atp` from here: the path of the running one when it is not on PATH (e.g. .venv/bin/atp)."""
    import shutil

    exe = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if exe is None or exe.name != "atp" or shutil.which("atp") == str(exe.resolve()):
        return "atp"
    try:
        return str(exe.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def render(summary: RunSummary, archive: dict[str, Any] | None, run_key: str | None) -> str:
    rows = [
        {
            "area": area,
            "tests": c.tests,
            "passed": c.passed,
            "failed": c.failed,
            "skipped": c.skipped,
            "time_s": f"{c.seconds:.1f}",
        }
        for area, c in sorted(summary.areas.items())
    ]
    total = summary.total
    verdict = "PASS" if total.tests and not total.failed else "FAIL"
    lines = [
        render_table(rows, ("area", "tests", "passed", "failed", "skipped", "time_s")) if rows else "(no tests ran)",
        "",
        f"{verdict}: {total.tests} tests, {total.passed} passed, {total.failed} failed, {total.skipped} skipped"
        f" in {summary.wall_seconds:.1f} s wall ({total.seconds:.1f} s of test time)",
    ]
    if summary.failed:
        lines.append("")
        lines.append("failed:")
        for failed in summary.failed[:MAX_FAILED_LINES]:
            on = f" [{failed['vm']}]" if failed["vm"] else ""
            lines.append(f"  {failed['test']}{on}")
            lines.append(f"    {_clip(failed['message'] or '(no message)')}")
        if len(summary.failed) > MAX_FAILED_LINES:
            lines.append(f"  ... and {len(summary.failed) - MAX_FAILED_LINES} more (see the log)")
    lines.append("")
    lines.append(f"output: {summary.output}")
    lines.append(f"log:    {summary.log or '(none written)'}")
    lines.append(f"report: {summary.report or '(none written)'}")
    if run_key:
        if archive and "error" not in archive:
            state = ", incomplete" if archive.get("incomplete") else ""
            lines.append(
                f"archive: run {archive['id']} ({archive['tests']} tests{state}): {_atp()} report show {archive['id']}"
            )
        else:
            lines.append(f"archive: run {run_key} not found: {(archive or {}).get('error', '')}")
    return "\n".join(lines)


def _summary(args: argparse.Namespace) -> int:
    from robot.errors import DataError

    output = Path(args.output)
    try:
        summary = summarize(output)
    except DataError as exc:
        print(
            f"atp summary: cannot read {output}: {exc}. Give the output.xml of a robot or pabot run.", file=sys.stderr
        )
        return ExitCode.ERROR
    run_key = args.run_id if args.run_id is not None else os.environ.get(ENV_RUN_ID) or None
    archive = archived_run(run_key, args.db) if run_key else None
    if args.json:
        total = summary.total
        print_json(
            {
                "output": str(summary.output),
                "log": str(summary.log) if summary.log else None,
                "report": str(summary.report) if summary.report else None,
                "wall_seconds": round(summary.wall_seconds, 3),
                "total": vars(total),
                "areas": {area: vars(c) for area, c in sorted(summary.areas.items())},
                "failed": summary.failed,
                "run_key": run_key,
                "archive": archive,
            }
        )
    else:
        print(render(summary, archive, run_key))
    total = summary.total
    return ExitCode.OK if total.tests and not total.failed else ExitCode.FAILED


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "summary",
        help="one screen about a robot/pabot run: passed/failed per area, time, failures, log, archive run",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("output", metavar="OUTPUT.XML", help="output.xml of a robot run or a merged pabot run")
    parser.add_argument(
        "--run-id",
        default=None,
        help=f"the run key the archive recorded it under (default: ${ENV_RUN_ID}; empty: do not look it up)",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="the results archive (default: $ATP_ARCHIVE_DB, else ~/.local/share/atp/archive.db)",
    )
    add_json_option(parser)
    parser.set_defaults(func=_summary)
