"""``atp report``: the runs recorded in the results archive (see docs/archive.md).

Subcommands: ``list``, ``show``, ``export``, ``stats``, ``cleanup``, ``delete``.  Every one takes ``--db PATH``
(default ``$ATP_ARCHIVE_DB``, else ``~/.local/share/atp/archive.db``).  Exit codes: 0 done, 2 nothing done (no
archive, an unknown run id, wrong arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.output import add_json_option, print_json, print_table


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="the archive file (default: $ATP_ARCHIVE_DB, else ~/.local/share/atp/archive.db)",
    )


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {value}")
    return number


def _days(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more days, not {value}")
    return number


def add_parser(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="runs recorded in the results archive (list, show, export, stats, cleanup, delete)",
        description="Runs recorded by `--listener ATPLibrary.archive.ArchiveListener` (see docs/archive.md).",
    )
    rsub = report.add_subparsers(
        dest="report_command", required=True, metavar="{list,show,export,stats,cleanup,delete}"
    )

    p = rsub.add_parser("list", help="recent runs, newest first")
    add_db_option(p)
    p.add_argument("--suite", "-s", help="only runs that ran this suite (name or long name; parents match)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--passed", "-p", action="store_true", help="only runs whose tests all passed")
    which.add_argument("--failed", "-f", action="store_true", help="only runs with a failed test")
    p.add_argument("--limit", "-l", type=_positive, default=20, help="at most N runs (default 20)")
    add_json_option(p)
    p.set_defaults(func=_list)

    p = rsub.add_parser("show", help="one run: counts per area and suite, failed tests, VMs used, latencies")
    add_db_option(p)
    p.add_argument("run", metavar="ID", help="a run id from `atp report list`, `latest`, or a run key")
    add_json_option(p)
    p.set_defaults(func=_show)

    p = rsub.add_parser("export", help="everything stored about one run, as JSON or YAML")
    add_db_option(p)
    p.add_argument("run", metavar="ID", help="a run id, `latest`, or a run key")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write (- for stdout)")
    p.add_argument("--format", "-f", choices=("json", "yaml"), default=None, help="default: from FILE's suffix")
    p.set_defaults(func=_export)

    p = rsub.add_parser("stats", help="pass rate, durations and verification latency p50/p99 over recent runs")
    add_db_option(p)
    p.add_argument("suite", nargs="?", metavar="SUITE", help="only this suite (name or long name; parents match)")
    p.add_argument("--days", "-d", type=_days, default=30, help="runs started in the last N days (default 30)")
    add_json_option(p)
    p.set_defaults(func=_stats)

    p = rsub.add_parser("cleanup", help="delete runs older than N days (lists them only, unless --force)")
    add_db_option(p)
    p.add_argument("--days", "-d", type=_days, default=180, help="runs started more than N days ago (default 180)")
    p.add_argument("--force", action="store_true", help="delete them (without it: only list them)")
    add_json_option(p)
    p.set_defaults(func=_cleanup)

    p = rsub.add_parser("delete", help="delete one run and everything recorded in it")
    add_db_option(p)
    p.add_argument("run", metavar="ID", help="a run id or run key (not `latest`)")
    p.set_defaults(func=_delete)


# -- commands -------------------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> Any:
    from ATPLibrary.archive.store import ArchiveStore

    return ArchiveStore(args.db, create=False, migrate=False)


RUN_COLUMNS = ("id", "started", "status", "tests", "passed", "failed", "skipped", "duration_s", "state", "output_dir")


def _state(run: dict[str, Any]) -> str:
    return "incomplete" if run["incomplete"] else "complete"


def _list(args: argparse.Namespace) -> int:
    status = "PASS" if args.passed else "FAIL" if args.failed else None
    with _store(args) as store:
        runs = store.list_runs(suite=args.suite, status=status, limit=args.limit)
    for run in runs:
        run["state"] = _state(run)
    if args.json:
        print_json(runs)
    else:
        print_table(runs, RUN_COLUMNS, empty="(no runs)")
    return ExitCode.OK


def _show(args: argparse.Namespace) -> int:
    with _store(args) as store:
        summary = store.summary(store.resolve_run(args.run))
    if args.json:
        print_json(summary)
        return ExitCode.OK
    run, counts = summary["run"], summary["counts"]
    print(f"run {run['id']}  {run['status'] or 'no test ended'}  ({_state(run)})")
    print(f"  key:      {run['run_key']}")
    print(f"  started:  {run['started']}   ended: {run['ended'] or '-'}   duration: {run['duration_s'] or '-'} s")
    print(f"  host:     {run['host']}   processes: {len(summary['processes'])}")
    print(f"  output:   {run['output_dir']}")
    print(f"  command:  {run['command']}")
    print(f"  tests:    {counts['tests']} ({counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped)")
    if run["incomplete"]:
        open_processes = [p for p in summary["processes"] if not p["ended"]]
        pids = ", ".join(f"{p['pid']}@{p['host']}" for p in open_processes)
        print(f"  INCOMPLETE: {len(open_processes)} process(es) never ended ({pids}): still running, or killed")
    print("\nper area")
    print_table(summary["areas"], ("area", "tests", "PASS", "FAIL", "SKIP"))
    print("\nper suite")
    print_table(summary["suites"], ("suite", "tests", "PASS", "FAIL", "SKIP"))
    print("\nfailed tests")
    if not summary["failed"]:
        print("(none)")
    for failed in summary["failed"]:
        on = f" [vm {failed['vm']}]" if failed["vm"] else ""
        print(f"- {failed['longname']}{on}")
        for line in (failed["message"] or "(no message)").splitlines() or [""]:
            print(f"    {line}")
    print("\nVMs used")
    print_table(summary["vms"], ("vm", "tests", "FAIL"), ("vm", "tests", "failed"), empty="(no test had a vm: tag)")
    print("\nVM overlaps (two tests on one VM at the same time, from the stored start and end times)")
    print_table(summary["vm_overlaps"], ("vm", "first", "second", "overlap_s"), empty="(none)")
    lat = summary["latency"]
    print("\nverification latency (ms)")
    if lat["count"]:
        rows = [{"kind": "all", **_rounded(lat)}] + [{"kind": k, **_rounded(v)} for k, v in lat["by_kind"].items()]
        print_table(rows, ("kind", "count", "p50", "p99", "max"))
    else:
        print("(no verified input)")
    return ExitCode.OK


def _rounded(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in stats.items() if k != "by_kind"}


def _export(args: argparse.Namespace) -> int:
    fmt = args.format or ("yaml" if str(args.output).lower().endswith((".yaml", ".yml")) else "json")
    with _store(args) as store:
        data = store.export(store.resolve_run(args.run))
    if fmt == "yaml":
        import yaml

        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        out = Path(args.output).expanduser()
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"atp: error: cannot write {out}: {exc}", file=sys.stderr)
            return ExitCode.ERROR
        print(f"run {data['run']['id']}: {len(data['tests'])} tests written to {out} ({fmt})")
    return ExitCode.OK


def _stats(args: argparse.Namespace) -> int:
    with _store(args) as store:
        stats = store.stats(args.suite, days=args.days)
    if args.json:
        print_json(stats)
        return ExitCode.OK
    what = f"suite {args.suite!r}" if args.suite else "all suites"
    print(f"{what}, runs started in the last {args.days:g} days (since {stats['since']})")
    rate = "-" if stats["pass_rate"] is None else f"{stats['pass_rate']:.1f} %"
    print(f"  runs: {stats['runs']}   tests: {stats['tests']}")
    print(f"  passed: {stats['PASS']}   failed: {stats['FAIL']}   skipped: {stats['SKIP']}   pass rate: {rate}")
    d = stats["duration_ms"]
    print(f"  test duration ms: mean {d['mean']}  p50 {d['p50']}  p99 {d['p99']}  max {d['max']}")
    lat = stats["latency"]
    if lat["count"]:
        print("  verification latency ms:")
        rows = [{"kind": "all", **_rounded(lat)}] + [{"kind": k, **_rounded(v)} for k, v in lat["by_kind"].items()]
        print_table(
            rows,
            ("kind", "count", "p50", "p99", "max"),
            out=lambda s: print("\n".join("    " + x for x in s.splitlines())),
        )
    else:
        print("  verification latency: (no verified input)")
    return ExitCode.OK


def _indented(text: str) -> None:
    print("\n".join("    " + line for line in text.splitlines()))


def _cleanup(args: argparse.Namespace) -> int:
    with _store(args) as store:
        old = store.runs_before(args.days)
        removed = store.delete_runs([r["id"] for r in old]) if args.force else 0
    for run in old:
        run["state"] = _state(run)
    if args.json:
        print_json({"days": args.days, "deleted": bool(args.force), "runs": old})
        return ExitCode.OK
    print_table(old, RUN_COLUMNS, empty=f"(no run started more than {args.days:g} days ago)")
    if old and args.force:
        print(f"deleted {removed} run(s)")
    elif old:
        print(f"{len(old)} run(s) would be deleted: run again with --force to delete them")
    return ExitCode.OK


def _delete(args: argparse.Namespace) -> int:
    from ATPLibrary.archive.store import ArchiveNotFound

    if str(args.run).strip().lower() == "latest":
        raise ArchiveNotFound("`atp report delete` takes a run id (see `atp report list`), never `latest`.")
    with _store(args) as store:
        run_id = store.resolve_run(args.run)
        run = store.run(run_id)
        store.delete_runs([run_id])
    print(f"deleted run {run_id} ({run['run_key']}, started {run['started']})")
    return ExitCode.OK
