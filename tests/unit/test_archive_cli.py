"""``atp report`` and ``atp db`` on a tmp archive: output, --json, exit codes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from ATPLibrary.archive.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ArchiveStore,
    LatencyRecord,
    ProcessInfo,
    TestRecord,
    utc,
)
from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.main import main

pytestmark = pytest.mark.timeout(60)


def _record(db: Path, key: str, statuses: list[str], started: str | None = None) -> int:
    with ArchiveStore(db) as store:
        run_id, proc = store.begin_process(
            ProcessInfo(run_key=key, host="h", pid=1, command="robot suites/", started=started or utc())
        )
        suite = store.start_suite(run_id, proc, None, "Keyboard", "Suites.Keyboard")
        for i, status in enumerate(statuses):
            store.add_test(
                run_id,
                suite,
                proc,
                TestRecord(
                    f"T{i}",
                    f"Suites.Keyboard.T{i}",
                    status,
                    f"failure {i}\nsecond line" if status == "FAIL" else "",
                    duration_ms=10,
                    tags=[f"vm:lab-{i}"],
                    vm=f"lab-{i}",
                ),
                [LatencyRecord(f"lab-{i}", 4.0 + i, "key", "Type Text")],
            )
        store.end_suite(suite, "PASS", "", utc(), 10)
        store.end_process(proc, "PASS")
    return run_id


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return tmp_path / "a" / "archive.db"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_table_json_and_filters(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _record(db, "one", ["PASS", "FAIL"])
    good = _record(db, "two", ["PASS"])
    code, out, _ = run(capsys, "report", "list", "--db", str(db))
    assert code == ExitCode.OK
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STARTED", "STATUS"]
    assert [line.split()[0] for line in lines[1:]] == [str(good), str(bad)]
    code, out, _ = run(capsys, "report", "list", "--db", str(db), "--failed", "--json")
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [bad] and rows[0]["failed"] == 1 and rows[0]["state"] == "complete"
    code, out, _ = run(capsys, "report", "list", "--db", str(db), "--passed", "--json", "--limit", "5")
    assert [r["id"] for r in json.loads(out)] == [good]
    code, out, _ = run(capsys, "report", "list", "--db", str(db), "--suite", "Mouse")
    assert out.strip() == "(no runs)"


def test_list_rejects_a_zero_limit_and_both_status_filters(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _record(db, "one", ["PASS"])
    for argv in (["--limit", "0"], ["--passed", "--failed"]):
        with pytest.raises(SystemExit) as info:
            main(["report", "list", "--db", str(db), *argv])
        assert info.value.code == 2
    capsys.readouterr()


def test_show_prints_counts_failures_vms_latency(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = _record(db, "one", ["PASS", "FAIL"])
    code, out, _ = run(capsys, "report", "show", "latest", "--db", str(db))
    assert code == ExitCode.OK
    assert f"run {run_id}  FAIL  (complete)" in out
    assert "tests:    2 (1 passed, 1 failed, 0 skipped)" in out
    assert "- Suites.Keyboard.T1 [vm lab-1]" in out and "    failure 1" in out and "    second line" in out
    assert "per area" in out and "Keyboard" in out
    assert "lab-0" in out and "lab-1" in out
    assert "verification latency (ms)" in out and "key" in out
    code, out, _ = run(capsys, "report", "show", str(run_id), "--db", str(db), "--json")
    data = json.loads(out)
    assert data["counts"]["FAIL"] == 1 and data["latency"]["count"] == 2


def test_unknown_run_and_missing_archive_exit_2_with_one_line(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "report", "show", "1", "--db", str(db))
    assert code == ExitCode.ERROR and out == "" and "No results archive at" in err
    assert not db.exists()  # reading never creates the file
    _record(db, "one", ["PASS"])
    for argv in (["show", "42"], ["delete", "42"], ["export", "42", "-o", "x.json"], ["delete", "latest"]):
        code, out, err = run(capsys, "report", *argv, "--db", str(db))
        assert code == ExitCode.ERROR, argv
        assert err.startswith("atp: error:") and len(err.strip().splitlines()) == 1, err


def test_export_json_and_yaml(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = _record(db, "one", ["PASS", "FAIL"])
    out_json, out_yaml = tmp_path / "r.json", tmp_path / "r.yaml"
    assert run(capsys, "report", "export", str(run_id), "-o", str(out_json), "--db", str(db))[0] == 0
    assert run(capsys, "report", "export", "latest", "-o", str(out_yaml), "--db", str(db))[0] == 0
    from_json = json.loads(out_json.read_text())
    from_yaml = yaml.safe_load(out_yaml.read_text())
    assert from_json == from_yaml
    assert from_json["run"]["id"] == run_id and len(from_json["tests"]) == 2
    assert from_json["tests"][1]["tags"] == ["vm:lab-1"]
    code, out, _ = run(capsys, "report", "export", "latest", "-o", "-", "--format", "yaml", "--db", str(db))
    assert code == 0
    assert yaml.safe_load(out)["run"]["run_key"] == "one"


def test_stats_text_and_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _record(db, "one", ["PASS", "FAIL", "PASS", "PASS"])
    code, out, _ = run(capsys, "report", "stats", "Keyboard", "--days", "7", "--db", str(db))
    assert code == 0 and "pass rate: 75.0 %" in out and "p50" in out
    data = json.loads(run(capsys, "report", "stats", "--json", "--db", str(db))[1])
    assert data["pass_rate"] == 75.0 and data["latency"]["p50"] == 5.0 and data["latency"]["p99"] == 7.0


def test_cleanup_lists_without_force_and_deletes_with_it(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _record(db, "old", ["PASS"], started=utc(datetime.now(UTC) - timedelta(days=200)))
    new = _record(db, "new", ["PASS"])
    code, out, _ = run(capsys, "report", "cleanup", "--db", str(db))
    assert code == 0 and "1 run(s) would be deleted" in out and "--force" in out
    with ArchiveStore(db) as store:
        assert len(store.list_runs()) == 2
    code, out, _ = run(capsys, "report", "cleanup", "--days", "100", "--force", "--db", str(db))
    assert code == 0 and "deleted 1 run(s)" in out
    with ArchiveStore(db) as store:
        assert [r["id"] for r in store.list_runs()] == [new]
    assert old != new


def test_delete_one_run(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _record(db, "one", ["PASS"])
    second = _record(db, "two", ["FAIL"])
    code, out, _ = run(capsys, "report", "delete", str(first), "--db", str(db))
    assert code == 0 and f"deleted run {first}" in out
    with ArchiveStore(db) as store:
        assert [r["id"] for r in store.list_runs()] == [second]


def test_db_init_backup_list_restore_delete_cleanup(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "db", "init", "--db", str(db))
    assert code == 0 and out.startswith("created:") and f"schema version {SCHEMA_VERSION}" in out
    code, out, _ = run(capsys, "db", "init", "--db", str(db))
    assert code == 0 and out.startswith("archive ready:")
    _record(db, "kept", ["PASS"])
    code, out, _ = run(capsys, "db", "backup", "--db", str(db), "-n", "first")
    assert code == 0 and str(db.parent / "backups" / "first.db") in out
    _record(db, "later", ["PASS"])
    code, out, _ = run(capsys, "db", "backup", "--db", str(db))
    assert code == 0 and "backup_" in out
    assert run(capsys, "db", "backup", "--db", str(db), "-n", "first")[0] == ExitCode.ERROR
    listed = json.loads(run(capsys, "db", "list", "--db", str(db), "--json")[1])
    assert {b["name"] for b in listed} >= {"first.db"} and len(listed) == 2
    code, out, _ = run(capsys, "db", "restore", "first.db", "--safety-backup", "--db", str(db))
    assert code == 0 and "safety backup" in out
    with ArchiveStore(db) as store:
        assert [r["run_key"] for r in store.list_runs()] == ["kept"]
    assert len(json.loads(run(capsys, "db", "list", "--db", str(db), "--json")[1])) == 3
    assert run(capsys, "db", "delete", "first.db", "--db", str(db))[0] == 0
    assert run(capsys, "db", "delete", "first.db", "--db", str(db))[0] == ExitCode.ERROR
    code, out, _ = run(capsys, "db", "cleanup", "--keep", "1", "--db", str(db))
    assert code == 0 and "1 backup(s) deleted" in out
    assert len(json.loads(run(capsys, "db", "list", "--db", str(db), "--json")[1])) == 1


def test_db_backup_to_a_chosen_folder(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _record(db, "one", ["PASS"])
    folder = tmp_path / "elsewhere"
    assert run(capsys, "db", "backup", "--db", str(db), "-b", str(folder), "-n", "x")[0] == 0
    assert (folder / "x.db").is_file()
    listed = json.loads(run(capsys, "db", "list", "--db", str(db), "-b", str(folder), "--json")[1])
    assert [b["name"] for b in listed] == ["x.db"]


def test_db_upgrade_migrates_an_older_file_after_a_backup(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as raw:
        raw.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
        raw.execute("INSERT INTO runs (run_key, started) VALUES ('old', '2026-01-01T00:00:00+00:00')")
    code, _, err = run(capsys, "report", "list", "--db", str(db))
    assert code == ExitCode.ERROR and "atp db upgrade" in err
    code, out, _ = run(capsys, "db", "upgrade", "--db", str(db))
    assert code == 0 and f"schema version 1 -> {SCHEMA_VERSION}" in out and "backup before" in out
    assert len(list((db.parent / "backups").glob("*.db"))) == 1
    code, out, _ = run(capsys, "db", "upgrade", "--db", str(db))
    assert code == 0 and "up to date" in out
    assert json.loads(run(capsys, "report", "list", "--db", str(db), "--json")[1])[0]["run_key"] == "old"


def test_environment_variable_chooses_the_archive(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _record(db, "env", ["PASS"])
    monkeypatch.setenv("ATP_ARCHIVE_DB", str(db))
    assert json.loads(run(capsys, "report", "list", "--json")[1])[0]["run_key"] == "env"


def test_help_of_every_subcommand_runs() -> None:
    for argv in (["report", "--help"], ["db", "--help"], ["report", "show", "--help"], ["db", "restore", "--help"]):
        result = subprocess.run(
            [sys.executable, "-m", "ATPLibrary.cli.main", *argv], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (argv, result.stderr)
        assert "usage: atp" in result.stdout
        assert argv[1] == "--help" or "--db" in result.stdout
