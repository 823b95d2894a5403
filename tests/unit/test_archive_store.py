"""The results archive's store, latency hook, run-grouping helpers and backups (tmp files, no Robot run)."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ATPLibrary.archive import backup, metrics
from ATPLibrary.archive.listener import pabot_output_dir, redact_command, run_identity, vm_of
from ATPLibrary.archive.store import (
    DEFAULT_DB,
    ENV_DB,
    MIGRATIONS,
    SCHEMA_VERSION,
    ArchiveNotFound,
    ArchiveSchemaError,
    ArchiveStore,
    LatencyRecord,
    ProcessInfo,
    TestRecord,
    area_of,
    percentile,
    resolve_path,
    utc,
)
from ATPLibrary.errors import ConfigurationError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "archive.db"


@pytest.fixture()
def store(db: Path) -> Iterator[ArchiveStore]:
    with ArchiveStore(db) as s:
        yield s


def _process(key: str = "k", pid: int = 1, started: str | None = None) -> ProcessInfo:
    return ProcessInfo(run_key=key, host="h", pid=pid, command="robot x", output_dir="/o", started=started or utc())


def _fill(
    store: ArchiveStore, key: str = "k", statuses: tuple[str, ...] = ("PASS", "FAIL"), started: str | None = None
) -> int:
    run_id, proc = store.begin_process(_process(key, started=started))
    top = store.start_suite(run_id, proc, None, "Suites", "Suites")
    suite = store.start_suite(run_id, proc, top, "Typing", "Suites.Keyboard.Typing")
    for i, status in enumerate(statuses):
        store.add_test(
            run_id,
            suite,
            proc,
            TestRecord(
                f"T{i}",
                f"Suites.Keyboard.Typing.T{i}",
                status,
                "it broke" if status == "FAIL" else "",
                duration_ms=100 * (i + 1),
                tags=["smoke", f"vm:atp-lab-0{i + 1}"],
                vm=f"atp-lab-0{i + 1}",
            ),
            [LatencyRecord(f"atp-lab-0{i + 1}", 5.0 + i, "key", "Type Text")],
        )
    store.end_suite(suite, "FAIL" if "FAIL" in statuses else "PASS", "", utc(), 300)
    store.end_process(proc, "FAIL" if "FAIL" in statuses else "PASS")
    return run_id


# -- path, schema -----------------------------------------------------------------------------------------------


def test_path_rule_argument_then_environment_then_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_DB, str(tmp_path / "env.db"))
    assert resolve_path(tmp_path / "arg.db") == tmp_path / "arg.db"
    assert resolve_path(None) == tmp_path / "env.db"
    monkeypatch.delenv(ENV_DB)
    assert resolve_path(None) == DEFAULT_DB.expanduser().absolute()
    assert str(resolve_path(None)).endswith(".local/share/atp/archive.db")


def test_new_file_is_created_with_its_folder_in_wal_mode_at_the_current_schema(db: Path) -> None:
    with ArchiveStore(db) as store:
        assert db.is_file()
        assert store.version() == SCHEMA_VERSION
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
        assert store.integrity() == "ok"
        tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"runs", "processes", "suites", "tests", "latencies"} <= tables


def test_missing_file_is_refused_when_not_creating(db: Path) -> None:
    with pytest.raises(ArchiveNotFound, match=r"No results archive at .*ArchiveListener"):
        ArchiveStore(db, create=False)
    assert not db.exists()


def test_older_schema_is_refused_for_reading_and_migrated_for_writing_keeping_rows(db: Path) -> None:
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as raw:  # a file an ATPLibrary with schema 1 wrote
        raw.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
        raw.execute("INSERT INTO runs (run_key, started) VALUES ('v1-run', '2026-01-01T00:00:00+00:00')")
    run_id = 1
    with pytest.raises(ArchiveSchemaError, match=r"schema version 1.*needs 2.*atp db upgrade"):
        ArchiveStore(db, create=False, migrate=False)
    with ArchiveStore(db, create=False, migrate=False, allow_older=True) as old:
        assert old.pending() == [2]
        assert old.migrate() == (1, 2)
        assert old.pending() == []
        assert [r["id"] for r in old.list_runs()] == [run_id]
        old.add_latencies(run_id, None, [LatencyRecord("vm", 1.0, "key")])
    with ArchiveStore(db, create=False, migrate=False) as current:
        assert current.version() == 2


def test_newer_schema_is_refused(db: Path) -> None:
    with ArchiveStore(db) as store:
        store.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ArchiveSchemaError, match="newer than this ATPLibrary"):
        ArchiveStore(db)


def test_a_file_that_is_not_sqlite_is_named(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_text("not a database " * 100)
    with pytest.raises(Exception, match="not a usable results archive"):
        ArchiveStore(db)


# -- writing --------------------------------------------------------------------------------------------------


def test_processes_with_one_run_key_share_one_run_that_is_complete_when_all_ended(store: ArchiveStore) -> None:
    run_a, proc_a = store.begin_process(_process("pabot:x", pid=10))
    run_b, proc_b = store.begin_process(_process("pabot:x", pid=11))
    assert run_a == run_b and proc_a != proc_b
    store.end_process(proc_a, "PASS")
    assert store.run(run_a)["incomplete"] is True
    store.end_process(proc_b, "FAIL")
    run = store.run(run_a)
    assert run["incomplete"] is False and run["ended"] is not None
    other, _ = store.begin_process(_process("pabot:y"))
    assert other != run_a


def test_run_status_is_the_worst_test_status_as_tests_end(store: ArchiveStore) -> None:
    run_id, proc = store.begin_process(_process())
    assert store.run(run_id)["status"] is None
    for status, expected in (("SKIP", "SKIP"), ("PASS", "PASS"), ("FAIL", "FAIL"), ("PASS", "FAIL")):
        store.add_test(run_id, None, proc, TestRecord("t", "S.t", status))
        assert store.run(run_id)["status"] == expected


def test_test_rows_keep_tags_vm_message_duration_and_latencies(store: ArchiveStore) -> None:
    run_id = _fill(store)
    tests = store.tests(run_id)
    assert [(t["name"], t["status"], t["vm"], t["duration_ms"]) for t in tests] == [
        ("T0", "PASS", "atp-lab-01", 100),
        ("T1", "FAIL", "atp-lab-02", 200),
    ]
    assert tests[1]["tags"] == ["smoke", "vm:atp-lab-02"] and tests[1]["message"] == "it broke"
    assert tests[0]["suite"] == "Suites.Keyboard.Typing"
    lat = store.query("SELECT test_id, vm, latency_ms, kind, action FROM latencies ORDER BY id")
    assert lat == [
        {"test_id": tests[0]["id"], "vm": "atp-lab-01", "latency_ms": 5.0, "kind": "key", "action": "Type Text"},
        {"test_id": tests[1]["id"], "vm": "atp-lab-02", "latency_ms": 6.0, "kind": "key", "action": "Type Text"},
    ]


# -- reading --------------------------------------------------------------------------------------------------


def test_list_filters_by_status_and_suite_and_limits(store: ArchiveStore) -> None:
    failed = _fill(store, "a", ("PASS", "FAIL"))
    passed = _fill(store, "b", ("PASS",))
    assert [r["id"] for r in store.list_runs()] == [passed, failed]
    assert [r["id"] for r in store.list_runs(status="FAIL")] == [failed]
    assert [r["id"] for r in store.list_runs(status="pass")] == [passed]
    assert [r["id"] for r in store.list_runs(limit=1)] == [passed]
    row = store.list_runs(status="FAIL")[0]
    assert (row["tests"], row["passed"], row["failed"], row["skipped"], row["processes"]) == (2, 1, 1, 0, 1)
    for name in ("Typing", "suites.keyboard.typing", "Suites.Keyboard", "Suites"):
        assert len(store.list_runs(suite=name)) == 2, name
    assert store.list_runs(suite="Suites.Key") == []
    assert store.list_runs(suite="Mouse") == []


def test_resolve_run_by_id_latest_or_key_and_unknown_ids(store: ArchiveStore) -> None:
    with pytest.raises(ArchiveNotFound, match="holds no run"):
        store.resolve_run("latest")
    first = _fill(store, "key-1")
    second = _fill(store, "key-2")
    assert store.resolve_run("latest") == second
    assert store.resolve_run(str(first)) == first
    assert store.resolve_run("key-1") == first
    with pytest.raises(ArchiveNotFound, match=r"No run '77'.*atp report list"):
        store.resolve_run("77")
    with pytest.raises(ArchiveNotFound):
        store.resolve_run("no-such-key")


def test_summary_counts_per_area_and_suite_failed_tests_vms_and_latency(store: ArchiveStore) -> None:
    run_id = _fill(store, statuses=("PASS", "FAIL", "SKIP"))
    summary = store.summary(run_id)
    assert summary["counts"] == {"tests": 3, "PASS": 1, "FAIL": 1, "SKIP": 1}
    assert summary["areas"] == [{"area": "Keyboard", "tests": 3, "PASS": 1, "FAIL": 1, "SKIP": 1}]
    assert summary["suites"][0]["suite"] == "Suites.Keyboard.Typing"
    assert [(f["longname"], f["message"], f["vm"]) for f in summary["failed"]] == [
        ("Suites.Keyboard.Typing.T1", "it broke", "atp-lab-02")
    ]
    assert [v["vm"] for v in summary["vms"]] == ["atp-lab-01", "atp-lab-02", "atp-lab-03"]
    assert summary["latency"]["count"] == 3 and summary["latency"]["p50"] == 6.0
    assert summary["latency"]["by_kind"]["key"]["max"] == 7.0


def test_area_is_the_suite_below_the_top_suite() -> None:
    assert area_of("Suites.Keyboard.Typing And Keys") == "Keyboard"
    assert area_of("Suites.Vdi") == "Vdi"
    assert area_of("Tiny") == "Tiny"


def test_stats_pass_rate_durations_latency_percentiles_and_window(store: ArchiveStore) -> None:
    old = utc(datetime.now(UTC) - timedelta(days=40))
    _fill(store, "old", ("FAIL", "FAIL"), started=old)
    _fill(store, "new", ("PASS", "FAIL", "PASS", "SKIP"))
    stats = store.stats(days=30)
    assert (stats["runs"], stats["tests"], stats["PASS"], stats["FAIL"], stats["SKIP"]) == (1, 4, 2, 1, 1)
    assert stats["pass_rate"] == pytest.approx(66.67)
    assert stats["duration_ms"] == {"mean": 250.0, "p50": 200.0, "p99": 400.0, "max": 400.0}
    assert stats["latency"]["count"] == 4 and stats["latency"]["p50"] == 6.0 and stats["latency"]["p99"] == 8.0
    assert store.stats(days=60)["tests"] == 6
    assert store.stats("Suites.Keyboard", days=60)["tests"] == 6
    assert store.stats("Mouse", days=60)["tests"] == 0
    assert store.stats("Mouse", days=60)["pass_rate"] is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0


def test_export_holds_everything_of_one_run_as_json(store: ArchiveStore) -> None:
    run_id = _fill(store)
    _fill(store, "other")
    data = store.export(run_id)
    assert data["run"]["id"] == run_id and data["schema_version"] == SCHEMA_VERSION
    assert len(data["processes"]) == 1 and len(data["suites"]) == 2 and len(data["tests"]) == 2
    assert len(data["latencies"]) == 2
    json.dumps(data)


def test_cleanup_selects_old_runs_and_delete_cascades(store: ArchiveStore) -> None:
    old = _fill(store, "old", started=utc(datetime.now(UTC) - timedelta(days=200)))
    new = _fill(store, "new")
    assert [r["id"] for r in store.runs_before(180)] == [old]
    assert store.delete_runs([old]) == 1
    assert [r["id"] for r in store.list_runs()] == [new]
    for table in ("processes", "suites", "tests", "latencies"):
        ids = {r["run_id"] for r in store.query(f"SELECT run_id FROM {table}")}
        assert ids == {new}, table


# -- the latency hook -----------------------------------------------------------------------------------------


def test_latency_hook_keeps_nothing_without_a_listener_and_drains_while_one_is_active() -> None:
    assert not metrics.active()
    metrics.record_latency("vm1", 3.0, "key")
    assert metrics.drain() == []
    metrics.activate()
    try:
        metrics.record_latency("vm1", 3.0, "key", "Type Text")
        metrics.record_latency("vm2", 4.5, "abs+button")
        taken = metrics.drain()
        assert [(s.vm, s.latency_ms, s.kind, s.action) for s in taken] == [
            ("vm1", 3.0, "key", "Type Text"),
            ("vm2", 4.5, "abs+button", ""),
        ]
        assert metrics.drain() == []
    finally:
        metrics.deactivate()
    assert not metrics.active()


def test_matcher_reports_each_successful_verified_match_to_the_hook() -> None:
    from ATPLibrary.keys import US
    from ATPLibrary.verification.matcher import VMInbox, text_events

    timers: list[tuple[float, object]] = []
    now = [100.0]
    inbox = VMInbox("vm-a", call_later=lambda d, fn: timers.append((now[0] + d, fn)), clock=lambda: now[0])

    def run_timers(until: float) -> None:
        now[0] = until
        for due, fn in sorted(timers, key=lambda t: t[0]):
            if due <= until:
                fn()  # type: ignore[operator]

    metrics.activate()
    try:
        exp = inbox.expect(text_events("ab", US), timeout=5, text="ab", layout=US, what="Type Text")
        now[0] += 0.012
        for event in text_events("ab", US):
            inbox.add({"message_type": "raw_input_event", "kind": "key", "code": event.code, "value": event.value})
        run_timers(now[0] + 1)
        assert exp.result is not None and exp.result.ok
        failing = inbox.expect(text_events("c", US), timeout=1, text="c", layout=US, what="Type Text")
        run_timers(now[0] + 5)
        assert failing.result is not None and not failing.result.ok
        taken = metrics.drain()
    finally:
        metrics.deactivate()
    assert [(s.vm, s.kind, s.action) for s in taken] == [("vm-a", "key", "Type Text")]
    assert taken[0].latency_ms == pytest.approx(12.0)


# -- run grouping and secrets ---------------------------------------------------------------------------------


def test_pabot_output_dir_is_the_folder_above_pabot_results(tmp_path: Path) -> None:
    assert pabot_output_dir(tmp_path / "results" / "pabot_results" / "3") == tmp_path / "results"
    assert pabot_output_dir(tmp_path / "results" / "pabot_results" / "1" / "4") == tmp_path / "results"
    assert pabot_output_dir(tmp_path / "results") is None


def test_run_key_is_atp_run_id_when_set_else_this_robot_process(tmp_path: Path) -> None:
    key, run_dir, _ = run_identity(tmp_path, env={"ATP_RUN_ID": "demo-42"})
    assert key == "demo-42" and run_dir == str(tmp_path)
    key, _, command = run_identity(tmp_path, env={}, host="hostx")
    assert key.startswith(f"robot:hostx:{os.getpid()}:")
    assert command
    assert run_identity(tmp_path, env={}, host="hostx")[0] == key  # stable within the process


def test_pabot_processes_of_one_parent_share_the_key(tmp_path: Path) -> None:
    first = run_identity(tmp_path / "pabot_results" / "0", env={}, host="h")
    second = run_identity(tmp_path / "pabot_results" / "1", env={}, host="h")
    assert first[0] == second[0] and first[0].startswith(f"pabot:h:{os.getppid()}:")
    assert first[0].endswith(str(tmp_path))
    assert first[1] == str(tmp_path)


def test_variable_values_and_variable_file_arguments_never_reach_the_command_line() -> None:
    argv = [
        "robot",
        "--variable",
        "VDI_PASSWORD:hunter2",
        "-v",
        "TOKEN:abc123",
        "--variable=PW:zzz999",
        "-vX:yyy777",
        "--variablefile",
        "vars.py:s3cr3t",
        "-V",
        "plain.py",
        "suites/",
    ]
    text = redact_command(argv)
    for secret in ("hunter2", "abc123", "zzz999", "yyy777", "s3cr3t"):
        assert secret not in text
    for kept in ("VDI_PASSWORD:<redacted>", "TOKEN:<redacted>", "vars.py:<redacted>", "plain.py", "suites/"):
        assert kept in text


def test_vm_of_reads_the_vm_tag() -> None:
    assert vm_of(["smoke", "vm:atp-lab-02"]) == "atp-lab-02"
    assert vm_of(["VM:atp-lab-05"]) == "atp-lab-05"
    assert vm_of(["smoke", "vm:"]) is None
    assert vm_of([]) is None


# -- backups --------------------------------------------------------------------------------------------------


def test_backup_restore_list_delete_cleanup(db: Path, tmp_path: Path) -> None:
    with ArchiveStore(db) as store:
        first = _fill(store, "one")
    made = backup.create_backup(db, now=datetime(2026, 1, 2, 3, 4, 5))
    assert made == db.parent / "backups" / "backup_20260102_030405.db"
    with pytest.raises(ConfigurationError, match="already exists"):
        backup.create_backup(db, now=datetime(2026, 1, 2, 3, 4, 5))
    with ArchiveStore(db) as store:
        _fill(store, "two")
        assert len(store.list_runs()) == 2
    safety = backup.restore_backup(made, db, safety_backup=True)
    assert safety is not None and safety.exists()
    with ArchiveStore(db) as store:
        assert [r["id"] for r in store.list_runs()] == [first]
        assert store.integrity() == "ok"
    folder = db.parent / "backups"
    names = [b.path.name for b in backup.list_backups(folder)]
    assert set(names) == {made.name, safety.name}
    assert all(b.schema_version == SCHEMA_VERSION for b in backup.list_backups(folder))
    named = backup.create_backup(db, name="before-upgrade")
    assert named.name == "before-upgrade.db"
    removed = backup.cleanup_backups(folder, keep=1)
    assert len(removed) == 2 and len(backup.list_backups(folder)) == 1
    left = backup.list_backups(folder)[0].path
    assert backup.delete_backup(folder, left.name) == left and not left.exists()
    with pytest.raises(ArchiveNotFound):
        backup.delete_backup(folder, left.name)


def test_restore_refuses_a_file_that_is_not_an_archive(db: Path, tmp_path: Path) -> None:
    with ArchiveStore(db) as store:
        _fill(store)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE x (a)")
    with pytest.raises(ArchiveSchemaError, match="nothing was restored"):
        backup.restore_backup(other, db)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\0junk" * 1000)
    with pytest.raises(Exception, match="nothing was restored"):
        backup.restore_backup(junk, db)
    with ArchiveStore(db) as store:
        assert len(store.list_runs()) == 1


def test_delete_refuses_files_outside_the_backup_folder(db: Path, tmp_path: Path) -> None:
    outside = tmp_path / "keep.db"
    outside.write_text("x")
    with pytest.raises(ConfigurationError, match="not in the backup folder"):
        backup.delete_backup(db.parent / "backups", str(outside))
    assert outside.exists()


def test_vm_overlaps_finds_two_tests_on_one_vm_at_once_and_nothing_else() -> None:
    from ATPLibrary.archive.store import vm_overlaps

    def row(name: str, vm: str | None, start: str, end: str) -> dict[str, object]:
        return {
            "longname": name,
            "vm": vm,
            "start_time": f"2026-12-04T10:00:{start}+00:00",
            "end_time": f"2026-12-04T10:00:{end}+00:00",
        }

    back_to_back = [row("S.A", "vm1", "00.000", "05.000"), row("S.B", "vm1", "05.000", "09.000")]
    other_vm_or_none = [row("S.C", "vm2", "01.000", "08.000"), row("S.D", None, "01.000", "08.000")]
    assert vm_overlaps(back_to_back + other_vm_or_none) == []
    # A long test covers two later ones: both overlaps are named against it.
    long = [
        row("S.L", "vm1", "00.000", "30.000"),
        row("S.M", "vm1", "10.000", "12.000"),
        row("S.N", "vm1", "20.500", "40.000"),
    ]
    assert vm_overlaps(long) == [
        {"vm": "vm1", "first": "S.L", "second": "S.M", "overlap_s": 2.0},
        {"vm": "vm1", "first": "S.L", "second": "S.N", "overlap_s": 9.5},
    ]
