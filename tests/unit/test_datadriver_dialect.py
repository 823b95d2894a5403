"""Failure kind 9: DataDriver's default CSV dialect is semicolon-separated (Excel-EU), so a comma CSV is read
as one column. The project's CSV tables state their dialect and encoding, and that reading gives the columns.

No VMs: the reader is DataDriver's own, configured exactly as a ``Library  DataDriver  ...`` import would be,
and two small Robot runs show what a suite sees.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from DataDriver.csv_reader import csv_reader
from DataDriver.DataDriver import DataDriver
from robot.api import ExecutionResult

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "suites"
#: The kind's exact input.
KIND_9_CSV = "*** Test Cases ***,${vm_name},${user}\r\nLogin one,vm-a,demo\r\n"


def read_rows(path: Path, **library_args: str) -> list[Any]:
    """The rows DataDriver makes of ``path`` when imported with ``library_args`` (its ``TestCaseData``)."""
    driver = DataDriver(file=str(path), **library_args)
    return list(csv_reader(driver.reader_config).get_data_from_source())


@pytest.fixture()
def kind_9_csv(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_bytes(KIND_9_CSV.encode("utf-8"))
    return path


def test_datadrivers_default_dialect_is_still_semicolons() -> None:
    """The reason every table must state its dialect: the default is not a comma."""
    default = inspect.signature(DataDriver.__init__).parameters["dialect"].default
    assert default == "Excel-EU"


def test_default_dialect_reads_the_comma_line_as_one_column(kind_9_csv: Path) -> None:
    (row,) = read_rows(kind_9_csv)
    assert row.test_case_name == "Login one,vm-a,demo"
    assert row.arguments == {}


@pytest.mark.parametrize(
    "library_args",
    [{"dialect": "excel"}, {"dialect": "UserDefined", "delimiter": ","}],
    ids=["excel", "userdefined-comma"],
)
def test_a_stated_comma_dialect_gives_the_two_argument_columns(kind_9_csv: Path, library_args: dict[str, str]) -> None:
    (row,) = read_rows(kind_9_csv, **library_args)
    assert row.test_case_name == "Login one"
    assert row.arguments == {"${vm_name}": "vm-a", "${user}": "demo"}


ROBOT_SUITE = """\
*** Settings ***
Library    DataDriver    data.csv{options}
Test Template    Log In To VM

*** Test Cases ***
Template    ${{EMPTY}}    ${{EMPTY}}

*** Keywords ***
Log In To VM
    [Arguments]    ${{vm_name}}    ${{user}}
    Should Be Equal    ${{vm_name}}    vm-a
    Should Be Equal    ${{user}}    demo
"""


def run_robot(folder: Path, options: str) -> tuple[ExecutionResult, str]:
    """Runs the login suite importing DataDriver with ``options``; its result and the console's errors."""
    (folder / "login.robot").write_text(ROBOT_SUITE.format(options=options))
    proc = subprocess.run(
        [sys.executable, "-m", "robot", "--output", "output.xml", "--log", "NONE", "--report", "NONE", "login.robot"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return ExecutionResult(str(folder / "output.xml")), proc.stderr


def test_in_a_robot_run_the_default_dialect_fails_and_excel_passes(kind_9_csv: Path) -> None:
    folder = kind_9_csv.parent
    default, errors = run_robot(folder, "")
    # One column: the header names no argument, so ${vm_name} never gets a value and no row becomes a test.
    assert "${vm_name}" in errors
    assert [t.status for t in default.suite.all_tests] == ["FAIL"]
    assert "Login one" not in [t.name for t in default.suite.all_tests]

    excel, errors = run_robot(folder, "    dialect=excel    encoding=utf_8")
    assert [(t.name, t.status) for t in excel.suite.all_tests] == [("Login one", "PASS")], errors


def datadriver_imports() -> list[tuple[Path, dict[str, str]]]:
    """Every ``Library  DataDriver`` import under suites/, with its named arguments."""
    found = []
    for suite in sorted(SUITES.rglob("*.robot")):
        for line in suite.read_text(encoding="utf-8").splitlines():
            cells = re.split(r" {2,}|\t", line.strip())
            if len(cells) >= 2 and cells[0] == "Library" and cells[1] == "DataDriver":
                args = dict(cell.split("=", 1) for cell in cells[2:] if "=" in cell)
                found.append((suite, args))
    return found


def test_the_project_has_a_datadriver_suite() -> None:
    assert datadriver_imports(), "no suite imports DataDriver"


@pytest.mark.parametrize("suite,args", datadriver_imports(), ids=lambda v: getattr(v, "name", ""))
def test_every_datadriver_suite_states_its_dialect_and_encoding_and_reads_all_columns(
    suite: Path, args: dict[str, str]
) -> None:
    assert "dialect" in args, f"{suite}: the DataDriver import must state dialect= (the default is Excel-EU)"
    assert "encoding" in args, f"{suite}: the DataDriver import must state encoding= (the default is cp1252)"
    table = suite.parent / args["file"]
    header = table.read_text(encoding=args["encoding"]).splitlines()[0]
    columns = header.split(",")
    arguments = [c for c in columns if c.startswith("${")]
    assert arguments, f"{table}: the header names no ${{argument}} columns"

    options = {k: v for k, v in args.items() if k != "file"}
    rows = read_rows(table, **options)
    assert rows, f"{table}: no rows"
    for row in rows:
        assert set(row.arguments) == set(arguments), row.test_case_name
    names = [row.test_case_name for row in rows]
    assert len(names) == len(set(names)), "two rows with one test name: pabot would run one of them twice"
    # The same table read with DataDriver's default dialect would be one column: no arguments at all.
    default_rows = read_rows(table, encoding=args["encoding"])
    assert all(row.arguments == {} for row in default_rows)


def test_the_typing_table_is_utf8_with_non_ascii_names() -> None:
    """The table keeps a row whose name is not ASCII, so a wrong encoding (DataDriver's cp1252) shows."""
    table = SUITES / "data_driven" / "typing_table.csv"
    names = [row.test_case_name for row in read_rows(table, dialect="excel", encoding="utf_8")]
    assert any("Grüße ☃" in name for name in names)
    with pytest.raises(UnicodeDecodeError):
        read_rows(table, dialect="excel", encoding="ascii")
    mojibake = [row.test_case_name for row in read_rows(table, dialect="excel", encoding="cp1252")]
    assert not any("Grüße" in name for name in mojibake)
