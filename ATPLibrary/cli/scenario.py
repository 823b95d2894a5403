"""``atp scenario convert | run | list``: the original system's YAML/JSON scenarios as Robot Framework suites.

Exit codes (ATPLibrary/cli/exitcodes.py):

- ``convert``: 0 every step converted; 1 the suite was written but some steps are failing placeholders
  (listed on stderr); 2 the file could not be read or is not a valid scenario (nothing written).
- ``run``: robot's result: 0 all tests passed; 1 a test failed; 2 the scenario or robot's data/options were
  wrong (robot exit 252) or robot failed internally (255); 130 interrupted (robot 253).
- ``list``: 0 every file is a valid scenario; 1 some file is not (its error is in the table); 2 no such folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.output import add_json_option, print_json, print_table

EPILOG = "See docs/scenarios.md for the mapping of the 19 action types, targets, failure semantics and adaptations."


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scenario",
        help="convert the original system's YAML/JSON scenarios into Robot suites, run or list them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="scenario_command", required=True, metavar="{convert,run,list}")

    convert = sub.add_parser("convert", help="write the Robot suite of a scenario (stdout by default)", epilog=EPILOG)
    convert.add_argument("file", type=Path, help="scenario file (.yaml, .yml or .json)")
    convert.add_argument("-o", "--output", type=Path, help="write the suite here instead of stdout")
    _conversion_options(convert)
    convert.set_defaults(func=_convert)

    run = sub.add_parser(
        "run",
        help="convert a scenario and run it with robot",
        epilog=EPILOG + " Robot options go after '--', e.g. atp scenario run s.yaml -- --loglevel DEBUG.",
    )
    run.add_argument("file", type=Path, help="scenario file (.yaml, .yml or .json)")
    _run_options(run)
    run.add_argument(
        "robot_args",
        nargs=argparse.REMAINDER,
        metavar="-- ROBOT OPTIONS",
        help="these options may also follow FILE; robot options go after '--'",
    )
    run.set_defaults(func=_run)

    listing = sub.add_parser("list", help="list the scenarios of a folder: name, steps, tags, convertible")
    listing.add_argument("--dir", type=Path, default=Path("scenarios"), help="scenario folder (default ./scenarios)")
    add_json_option(listing)
    listing.set_defaults(func=_list)


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variablefile",
        action="append",
        default=[],
        help="robot --variablefile (repeatable); with --adapt lab the default is the checkout's variables/lab.py",
    )
    parser.add_argument("--outputdir", type=Path, default=Path("results/scenario"), help="robot's output folder")
    _conversion_options(parser)


def _split_run_args(args: argparse.Namespace) -> list[str]:
    """``run``'s own options written after FILE are read here; what follows ``--`` is robot's."""
    rest = list(args.robot_args)
    mine, robot = (rest[: rest.index("--")], rest[rest.index("--") + 1 :]) if "--" in rest else (rest, [])
    if mine:
        own = argparse.ArgumentParser(prog="atp scenario run", add_help=False)
        _run_options(own)
        extra = own.parse_args(mine, namespace=argparse.Namespace())
        for key, value in vars(extra).items():
            if key == "variablefile":
                args.variablefile = [*args.variablefile, *value]
            elif value != own.get_default(key):
                setattr(args, key, value)
    return robot


def _conversion_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--adapt",
        choices=["lab"],
        help="lab: run on a leased lab guest (target replaced, console made ready, clicks kept on its 720x400 "
        "screen); every adaptation is listed on stderr and in the suite's documentation",
    )
    parser.add_argument(
        "--stop-on-failure",
        action="store_true",
        help="a failed command or check stops the test (the original recorded it and went on)",
    )
    parser.add_argument("--resources", type=Path, help="folder with lab.resource and vdi.resource")


def _options(args: argparse.Namespace, output: Path | None) -> Any:
    from ATPLibrary.scenario import ConvertOptions

    return ConvertOptions(
        adapt=args.adapt, stop_on_failure=args.stop_on_failure, output=output, resources=args.resources
    )


def _report(conversion: Any, file: Path) -> None:
    """What was adapted and what could not be converted, on stderr."""
    for text in conversion.adaptations:
        print(f"{file}: adapted: {text}", file=sys.stderr)
    for text in conversion.notes:
        print(f"{file}: note: {text}", file=sys.stderr)
    for placeholder in conversion.placeholders:
        print(f"{file}: not converted (left as a failing placeholder): {placeholder}", file=sys.stderr)


def _convert(args: argparse.Namespace) -> int:
    from ATPLibrary.scenario import convert_scenario, load_scenario

    scenario = load_scenario(args.file)
    conversion = convert_scenario(scenario, _options(args, args.output))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(conversion.text, encoding="utf-8")
        print(f"{args.file}: wrote {args.output} ({len(scenario.steps)} step(s))", file=sys.stderr)
    else:
        sys.stdout.write(conversion.text)
    _report(conversion, args.file)
    return ExitCode.OK if conversion.complete else ExitCode.FAILED


#: robot's exit codes that are not a count of failed tests.
_ROBOT_CODES = {251: ExitCode.OK, 252: ExitCode.ERROR, 253: ExitCode.INTERRUPTED, 255: ExitCode.ERROR}


def robot_exit(code: int) -> int:
    """robot's exit code in the ``atp`` table: 0 passed, 1..250 failed tests -> 1, 252/255 -> 2, 253 -> 130."""
    if code == 0:
        return ExitCode.OK
    if code in _ROBOT_CODES:
        return _ROBOT_CODES[code]
    return ExitCode.FAILED if 0 < code <= 250 else ExitCode.ERROR


def _run(args: argparse.Namespace) -> int:
    from ATPLibrary.scenario import convert_scenario, load_scenario
    from ATPLibrary.scenario.convert import default_resources

    robot_args = _split_run_args(args)
    scenario = load_scenario(args.file)
    outdir: Path = args.outputdir
    outdir.mkdir(parents=True, exist_ok=True)
    suite = outdir / f"{args.file.stem}.robot"
    conversion = convert_scenario(scenario, _options(args, suite))
    suite.write_text(conversion.text, encoding="utf-8")
    print(f"{args.file}: converted to {suite}", file=sys.stderr)
    _report(conversion, args.file)
    variablefiles = list(args.variablefile)
    if not variablefiles and args.adapt == "lab":
        lab_vars = (args.resources or default_resources()).parent / "variables" / "lab.py"
        if lab_vars.is_file():
            variablefiles.append(str(lab_vars))
    command = [sys.executable, "-m", "robot", "--outputdir", str(outdir)]
    for path in variablefiles:
        command += ["--variablefile", path]
    command += [*robot_args, str(suite)]
    print("running: " + " ".join(command[2:]), file=sys.stderr)
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    return robot_exit(code)


def _list(args: argparse.Namespace) -> int:
    from ATPLibrary.scenario import ScenarioError, convert_scenario, load_scenario, scenario_files

    rows: list[dict[str, Any]] = []
    broken = 0
    with tempfile.TemporaryDirectory() as tmp:
        options = _list_options(Path(tmp))
        for path in scenario_files(args.dir):
            row: dict[str, Any] = {"file": path.name}
            try:
                scenario = load_scenario(path)
            except ScenarioError as exc:
                broken += 1
                row.update(name=None, steps=None, tags=[], convertible=False, error=str(exc), not_converted=[])
                rows.append(row)
                continue
            conversion = convert_scenario(scenario, options)
            row.update(
                name=scenario.name,
                steps=len(scenario.steps),
                tags=list(scenario.tags),
                convertible=conversion.complete,
                error=None,
                not_converted=[str(p) for p in conversion.placeholders],
            )
            rows.append(row)
    if args.json:
        print_json(rows)
    else:
        table = [
            {
                **row,
                "tags": ",".join(row["tags"]),
                "convertible": "yes"
                if row["convertible"]
                else (f"no: {len(row['not_converted'])} placeholder(s)" if row["error"] is None else "no: invalid"),
            }
            for row in rows
        ]
        print_table(table, ["file", "name", "steps", "tags", "convertible"], empty=f"(no scenarios in {args.dir})")
        for row in rows:
            if row["error"]:
                print(row["error"], file=sys.stderr)
    return ExitCode.FAILED if broken else ExitCode.OK


def _list_options(folder: Path) -> Any:
    from ATPLibrary.scenario import ConvertOptions

    return ConvertOptions(output=folder / "suite.robot")
