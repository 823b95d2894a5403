"""pabot speed-up on the lab: the same suites with 1 process and with N processes (default 8).

Run with ``make bench-pabot`` (brings 8 lab guests up).  Prints figures, never asserts them.

For each run it measures the wall time and the CPU seconds spent on it:

- robot: ``getrusage(RUSAGE_CHILDREN)`` of this process before and after (pabot and every robot process it
  started and waited for);
- QEMU: the ``utime + stime`` of the lab's QEMU processes (``-name guest=atp-…``: the lab guests and any VDI
  guest a suite boots) read from ``/proc/<pid>/stat`` every 0.2 s, as deltas from the run's start (a QEMU
  started during the run counts from 0; one that ends counts up to its last reading).

Then: ``S = wall(1) / wall(N)``; ``ideal = min(N, wall(1) x cores / cpu(1))`` with ``cpu(1)`` = robot + QEMU
CPU seconds of the 1-process run (the most a machine of ``cores`` cores could speed that work up); ``S/ideal``
(goal >= 0.8).  The lab is shared: other work on the guests counts as QEMU CPU of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GUEST_PREFIX = "guest=atp-"
DEFAULT_SUITES = ["suites"]


@dataclass
class RunFigures:
    processes: int
    wall_s: float
    robot_cpu_s: float
    qemu_cpu_s: float
    tests: int
    failed: int
    output: str

    @property
    def cpu_s(self) -> float:
        return self.robot_cpu_s + self.qemu_cpu_s


def qemu_cpu_ticks() -> dict[int, int]:
    """utime + stime (clock ticks) of every lab QEMU process now."""
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            if b"qemu-system" not in command or GUEST_PREFIX.encode() not in command:
                continue
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks


class QemuMeter:
    """Samples the lab's QEMU CPU in a thread while a run goes on."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.start = qemu_cpu_ticks()
        self.last = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.last.update(qemu_cpu_ticks())

    def __enter__(self) -> QemuMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.last.update(qemu_cpu_ticks())

    def seconds(self) -> float:
        return sum(max(0, now - self.start.get(pid, 0)) for pid, now in self.last.items()) / CLOCK_TICKS


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pabot(processes: int, suites: list[str], outdir: Path, extra: list[str]) -> RunFigures:
    from robot.api import ExecutionResult

    out = outdir / f"p{processes}"
    shutil.rmtree(out, ignore_errors=True)
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "pabot"), "--processes", str(processes), "--pabotlib", "--pabotlibport", "0", *extra,
        "--variablefile", str(ROOT / "variables" / "lab.py"), "--outputdir", str(out), *suites,
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    print(f"running: {' '.join(command)}", file=sys.stderr, flush=True)
    cpu_before = children_cpu()
    started = time.monotonic()
    with QemuMeter() as meter:
        subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, timeout=3600, check=False)
    wall = time.monotonic() - started
    robot_cpu = children_cpu() - cpu_before
    tests = failed = 0
    if (out / "output.xml").exists():
        stats = ExecutionResult(str(out / "output.xml")).suite.statistics
        tests, failed = stats.total, stats.failed
    return RunFigures(processes, wall, robot_cpu, meter.seconds(), tests, failed, str(out / "output.xml"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, default=8, help="pabot processes of the parallel run (8)")
    parser.add_argument(
        "--outputdir", default="results/bench-pabot", help="where both runs write (results/bench-pabot)"
    )
    parser.add_argument("--testlevelsplit", action="store_true", help="give pabot --testlevelsplit in both runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("suites", nargs="*", default=DEFAULT_SUITES, help="suite files or folders (suites)")
    args = parser.parse_args()
    if args.processes < 2:
        parser.error("--processes must be 2 or more (it is compared with 1 process)")
    extra = ["--testlevelsplit"] if args.testlevelsplit else []
    outdir = (ROOT / args.outputdir).resolve()
    cores = os.cpu_count() or 1

    one = run_pabot(1, args.suites, outdir, extra)
    many = run_pabot(args.processes, args.suites, outdir, extra)
    speedup = one.wall_s / many.wall_s if many.wall_s else 0.0
    ideal = min(float(args.processes), one.wall_s * cores / one.cpu_s) if one.cpu_s else float(args.processes)
    ratio = speedup / ideal if ideal else 0.0
    report = {
        "cores": cores,
        "suites": args.suites,
        "runs": [{**asdict(r), "cpu_s": r.cpu_s} for r in (one, many)],
        "speedup": speedup,
        "ideal": ideal,
        "speedup_over_ideal": ratio,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"pabot speed-up on {cores} cores, suites: {' '.join(args.suites)}")
        print(
            f"{'run':<13} {'wall s':>8} {'robot cpu s':>12} {'qemu cpu s':>11} {'cpu s':>8} {'tests':>6} {'failed':>7}"
        )
        for r in (one, many):
            label = f"{r.processes} process{'es' if r.processes > 1 else ''}"
            print(
                f"{label:<13} {r.wall_s:8.1f} {r.robot_cpu_s:12.1f} {r.qemu_cpu_s:11.1f} {r.cpu_s:8.1f} "
                f"{r.tests:6d} {r.failed:7d}"
            )
        print(f"S = wall(1) / wall({args.processes}) = {speedup:.2f}")
        print(
            f"ideal = min({args.processes}, wall(1) x {cores} cores / cpu(1)) = "
            f"min({args.processes}, {one.wall_s:.1f} x {cores} / {one.cpu_s:.1f}) = {ideal:.2f}"
        )
        print(f"S / ideal = {ratio:.2f} (goal >= 0.8)")
    if one.failed or many.failed or not one.tests or one.tests != many.tests:
        print(
            f"note: the runs are not comparable as they stand: {one.tests} tests ({one.failed} failed) with 1 process, "
            f"{many.tests} ({many.failed} failed) with {args.processes}; see {one.output} and {many.output}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
