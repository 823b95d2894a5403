"""The results archive: one SQLite file holding runs, suites, tests and verification latencies.

Plain Python (no Robot Framework): the archive listener writes through it, ``atp report`` and ``atp db`` read
and maintain it.

Path
    The ``path`` argument, else ``$ATP_ARCHIVE_DB``, else ``~/.local/share/atp/archive.db`` (folders are created
    when the store creates the file).

Concurrency
    WAL journal (readers never block the writer), a busy timeout, and every write is one short ``BEGIN
    IMMEDIATE`` transaction retried with backoff while SQLite says the database is busy or locked, up to
    ``retry_for`` seconds.  Many processes (e.g. 16 pabot processes) can therefore write at once without losing a
    row; each test's row is committed the moment it is written.

Schema versions
    ``PRAGMA user_version`` holds the schema version; :data:`MIGRATIONS` lists the steps from an empty file.
    Opening an older file with ``migrate=True`` (what the listener and ``atp db init`` do) applies the pending
    steps at once, inside one write transaction, so concurrent openers migrate it exactly once; with
    ``migrate=False`` (what ``atp report`` does) an older file is refused with an :class:`ArchiveSchemaError`
    telling you to run ``atp db upgrade``.  A file written by a newer ATPLibrary is always refused.
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from ATPLibrary.errors import ATPError, ConfigurationError

ENV_DB = "ATP_ARCHIVE_DB"
DEFAULT_DB = Path("~/.local/share/atp/archive.db")
#: SQLite's own wait for a lock, per statement (milliseconds).
BUSY_TIMEOUT_MS = 10_000
#: How long a write keeps retrying after SQLite still says busy/locked.
DEFAULT_RETRY_FOR = 120.0

T = TypeVar("T")

STATUSES = ("PASS", "FAIL", "SKIP", "NOT RUN")


class ArchiveError(ATPError):
    """The results archive could not be opened, read or written."""


class ArchiveSchemaError(ArchiveError):
    """The archive file has another schema version than this ATPLibrary (older: upgrade it; newer: refused)."""


class ArchiveNotFound(ArchiveError, ConfigurationError):
    """No archive file, or no run with the given id."""


# -- schema ---------------------------------------------------------------------------------------------------

#: Migration N (1-based) takes a file from version N-1 to N.  Never edit a released step: add one.
MIGRATIONS: tuple[str, ...] = (
    # 1: runs, the processes that wrote them, suites and tests
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_key TEXT NOT NULL UNIQUE,
        started TEXT NOT NULL,
        ended TEXT,
        status TEXT,
        incomplete INTEGER NOT NULL DEFAULT 1,
        command TEXT,
        host TEXT,
        output_dir TEXT
    );
    CREATE TABLE processes (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        output_dir TEXT,
        started TEXT NOT NULL,
        ended TEXT,
        status TEXT
    );
    CREATE TABLE suites (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,
        parent_id INTEGER REFERENCES suites(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        longname TEXT NOT NULL,
        source TEXT,
        status TEXT,
        message TEXT,
        start_time TEXT,
        end_time TEXT,
        duration_ms INTEGER
    );
    CREATE TABLE tests (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        suite_id INTEGER REFERENCES suites(id) ON DELETE CASCADE,
        process_id INTEGER REFERENCES processes(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        longname TEXT NOT NULL,
        status TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        start_time TEXT,
        end_time TEXT,
        duration_ms INTEGER,
        tags TEXT NOT NULL DEFAULT '[]',
        vm TEXT
    );
    CREATE INDEX tests_run ON tests(run_id);
    CREATE INDEX suites_run ON suites(run_id);
    CREATE INDEX processes_run ON processes(run_id);
    CREATE INDEX runs_started ON runs(started);
    """,
    # 2: verification latencies
    """
    CREATE TABLE latencies (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        test_id INTEGER REFERENCES tests(id) ON DELETE CASCADE,
        vm TEXT NOT NULL,
        latency_ms REAL NOT NULL,
        kind TEXT NOT NULL,
        action TEXT NOT NULL DEFAULT '',
        recorded TEXT NOT NULL
    );
    CREATE INDEX latencies_run ON latencies(run_id);
    CREATE INDEX latencies_test ON latencies(test_id);
    CREATE INDEX tests_longname ON tests(longname);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def resolve_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The archive file: ``path``, else ``$ATP_ARCHIVE_DB``, else ``~/.local/share/atp/archive.db``."""
    chosen = os.fspath(path) if path not in (None, "") else os.environ.get(ENV_DB) or str(DEFAULT_DB)
    return Path(chosen).expanduser().absolute()


# -- time -----------------------------------------------------------------------------------------------------


def utc(moment: datetime | float | None = None) -> str:
    """An ISO 8601 UTC timestamp (sortable as text); naive datetimes are local time, as Robot gives them."""
    if moment is None:
        value = datetime.now(UTC)
    elif isinstance(moment, int | float):
        value = datetime.fromtimestamp(moment, UTC)
    else:
        value = moment.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (the value at rank ceil(p/100 * n) of the sorted values); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)]


def worst_status(statuses: Iterable[str | None]) -> str | None:
    """FAIL over PASS over SKIP over NOT RUN; None when there is none."""
    seen = {s for s in statuses if s}
    for status in ("FAIL", "PASS", "SKIP", "NOT RUN"):
        if status in seen:
            return status
    return None


# -- records --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessInfo:
    """One process (robot, or one of pabot's) that writes into a run."""

    run_key: str
    host: str
    pid: int
    command: str = ""
    output_dir: str = ""
    run_output_dir: str = ""
    started: str = field(default_factory=utc)


@dataclass(frozen=True)
class TestRecord:
    """One finished test as the archive stores it."""

    __test__ = False  # not a pytest class

    name: str
    longname: str
    status: str
    message: str = ""
    start_time: str | None = None
    end_time: str | None = None
    duration_ms: int | None = None
    tags: Sequence[str] = ()
    vm: str | None = None


@dataclass(frozen=True)
class LatencyRecord:
    vm: str
    latency_ms: float
    kind: str
    action: str = ""
    recorded: str = field(default_factory=utc)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class ArchiveStore:
    """One connection to the archive file (use one store per thread; close it, or use it as a context manager).

    ``create=False`` refuses a missing file (:class:`ArchiveNotFound`) instead of creating it; ``migrate``
    says what to do with an older schema (see the module docstring); ``allow_older=True`` with
    ``migrate=False`` opens an older file as it is (``atp db upgrade`` then calls :meth:`migrate`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        migrate: bool = True,
        allow_older: bool = False,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        retry_for: float = DEFAULT_RETRY_FOR,
    ) -> None:
        self.path = resolve_path(path)
        self.retry_for = retry_for
        #: How many times an operation was tried again because SQLite said busy/locked.
        self.retries = 0
        if not self.path.exists():
            if not create:
                raise ArchiveNotFound(
                    f"No results archive at {self.path}: no run was recorded there yet. Record runs with "
                    "`robot --listener ATPLibrary.archive.ArchiveListener ...`, or choose the file with --db "
                    f"or ${ENV_DB}."
                )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ArchiveError(f"Cannot create the folder of the results archive {self.path}: {exc}") from exc
        try:
            self.conn = sqlite3.connect(
                self.path, timeout=busy_timeout_ms / 1000.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise ArchiveError(f"Cannot open the results archive {self.path}: {exc}") from exc
        try:
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self._retry(self._set_wal)
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self._check_schema(migrate, allow_older)
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise ArchiveError(
                f"{self.path} is not a usable results archive ({exc}); choose another file with --db or "
                f"${ENV_DB}, or restore a backup (atp db restore)."
            ) from exc
        except BaseException:
            self.conn.close()
            raise

    # -- plumbing ---------------------------------------------------------------------------------------------
    def __enter__(self) -> ArchiveStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def _set_wal(self) -> None:
        mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ArchiveError(f"The results archive {self.path} cannot use WAL journaling (got {mode!r}).")

    def _retry(self, action: Callable[[], T]) -> T:
        """Run ``action`` again while SQLite says busy/locked, with jittered backoff, up to ``retry_for`` s."""
        deadline = time.monotonic() + self.retry_for
        delay = 0.01
        while True:
            try:
                return action()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise ArchiveError(
                        f"The results archive {self.path} stayed locked for {self.retry_for:g} s ({exc}); "
                        "another process holds a long write transaction on it."
                    ) from exc
                self.retries += 1
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)

    def write(self, action: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``action`` in one ``BEGIN IMMEDIATE`` transaction, committed at once; retried while busy."""

        def attempt() -> T:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                result = action(self.conn)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
            return result

        try:
            return self._retry(attempt)
        except sqlite3.Error as exc:
            raise ArchiveError(f"Writing to the results archive {self.path} failed: {exc}") from exc

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        def attempt() -> list[dict[str, Any]]:
            return [dict(row) for row in self.conn.execute(sql, params)]

        try:
            return self._retry(attempt)
        except sqlite3.Error as exc:
            raise ArchiveError(f"Reading the results archive {self.path} failed: {exc}") from exc

    # -- schema -----------------------------------------------------------------------------------------------
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_schema(self, migrate: bool, allow_older: bool) -> None:
        current = self.version()
        if current > SCHEMA_VERSION:
            raise ArchiveSchemaError(
                f"The results archive {self.path} has schema version {current}, newer than this ATPLibrary "
                f"knows ({SCHEMA_VERSION}): upgrade ATPLibrary, or choose another file with --db or ${ENV_DB}."
            )
        if current == SCHEMA_VERSION or (allow_older and not migrate):
            return
        if not migrate:
            raise ArchiveSchemaError(
                f"The results archive {self.path} has schema version {current}; this ATPLibrary needs "
                f"{SCHEMA_VERSION}. Run `atp db upgrade --db {self.path}` (it keeps a backup first)."
            )
        self.migrate()

    def pending(self) -> list[int]:
        """The migration steps this file still needs."""
        return list(range(self.version() + 1, SCHEMA_VERSION + 1))

    def migrate(self, target: int = SCHEMA_VERSION) -> tuple[int, int]:
        """Apply the pending migrations up to ``target`` in one transaction; returns (from, to)."""
        if not 0 <= target <= SCHEMA_VERSION:
            raise ArchiveSchemaError(
                f"Schema version {target} does not exist (this ATPLibrary knows 0..{SCHEMA_VERSION})."
            )

        def step(conn: sqlite3.Connection) -> tuple[int, int]:
            start = int(conn.execute("PRAGMA user_version").fetchone()[0])  # read under the write lock
            for number in range(start + 1, target + 1):
                for statement in _statements(MIGRATIONS[number - 1]):
                    conn.execute(statement)
            end = max(start, target)
            conn.execute(f"PRAGMA user_version = {end}")
            return start, end

        return self.write(step)

    def integrity(self) -> str:
        return "; ".join(str(row[0]) for row in self.conn.execute("PRAGMA integrity_check"))

    # -- writing (the listener) -------------------------------------------------------------------------------
    def begin_process(self, info: ProcessInfo) -> tuple[int, int]:
        """The run of ``info.run_key`` (created by its first process) and a new process row in it: (run, process).

        The run is marked incomplete until every process that joined it has ended."""

        def write(conn: sqlite3.Connection) -> tuple[int, int]:
            conn.execute(
                "INSERT INTO runs (run_key, started, command, host, output_dir, incomplete) VALUES (?, ?, ?, ?, ?, 1) "
                "ON CONFLICT(run_key) DO UPDATE SET incomplete = 1, started = min(started, excluded.started)",
                (info.run_key, info.started, info.command, info.host, info.run_output_dir or info.output_dir),
            )
            run_id = int(conn.execute("SELECT id FROM runs WHERE run_key = ?", (info.run_key,)).fetchone()[0])
            cur = conn.execute(
                "INSERT INTO processes (run_id, host, pid, output_dir, started) VALUES (?, ?, ?, ?, ?)",
                (run_id, info.host, info.pid, info.output_dir, info.started),
            )
            return run_id, int(cur.lastrowid or 0)

        return self.write(write)

    def end_process(self, process_id: int, status: str | None, ended: str | None = None) -> None:
        """The process ended normally: the run is complete when no other process of it is still open."""
        when = ended or utc()

        def write(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT run_id FROM processes WHERE id = ?", (process_id,)).fetchone()
            if row is None:
                return
            conn.execute("UPDATE processes SET ended = ?, status = ? WHERE id = ?", (when, status, process_id))
            conn.execute(
                "UPDATE runs SET ended = CASE WHEN ended IS NULL OR ended < ? THEN ? ELSE ended END, "
                "incomplete = EXISTS (SELECT 1 FROM processes p WHERE p.run_id = runs.id AND p.ended IS NULL) "
                "WHERE id = ?",
                (when, when, row[0]),
            )

        self.write(write)

    def start_suite(
        self,
        run_id: int,
        process_id: int | None,
        parent_id: int | None,
        name: str,
        longname: str,
        source: str | None = None,
        start_time: str | None = None,
    ) -> int:
        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO suites (run_id, process_id, parent_id, name, longname, source, start_time) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, process_id, parent_id, name, longname, source, start_time or utc()),
            )
            return int(cur.lastrowid or 0)

        return self.write(write)

    def end_suite(
        self, suite_id: int, status: str, message: str, end_time: str | None, duration_ms: int | None
    ) -> None:
        self.write(
            lambda conn: conn.execute(
                "UPDATE suites SET status = ?, message = ?, end_time = ?, duration_ms = ? WHERE id = ?",
                (status, message, end_time, duration_ms, suite_id),
            )
        )

    def add_test(
        self,
        run_id: int,
        suite_id: int | None,
        process_id: int | None,
        test: TestRecord,
        latencies: Sequence[LatencyRecord] = (),
    ) -> int:
        """One finished test (and the latencies measured during it), committed at once."""

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO tests (run_id, suite_id, process_id, name, longname, status, message, start_time, "
                "end_time, duration_ms, tags, vm) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    suite_id,
                    process_id,
                    test.name,
                    test.longname,
                    test.status,
                    test.message,
                    test.start_time,
                    test.end_time,
                    test.duration_ms,
                    json.dumps(list(test.tags), ensure_ascii=False),
                    test.vm,
                ),
            )
            test_id = int(cur.lastrowid or 0)
            _insert_latencies(conn, run_id, test_id, latencies)
            conn.execute(
                "UPDATE runs SET status = CASE "
                "WHEN status = 'FAIL' OR ?1 = 'FAIL' THEN 'FAIL' "
                "WHEN status = 'PASS' OR ?1 = 'PASS' THEN 'PASS' "
                "WHEN status = 'SKIP' OR ?1 = 'SKIP' THEN 'SKIP' "
                "ELSE ?1 END WHERE id = ?2",
                (test.status, run_id),
            )
            return test_id

        return self.write(write)

    def add_latencies(self, run_id: int, test_id: int | None, latencies: Sequence[LatencyRecord]) -> None:
        """Latencies measured outside a test (suite setup or teardown)."""
        if latencies:
            self.write(lambda conn: _insert_latencies(conn, run_id, test_id, latencies))

    # -- reading (atp report) ---------------------------------------------------------------------------------
    def resolve_run(self, ref: str | int) -> int:
        """A run's id from its id, ``latest`` (the most recently started run) or its run key."""
        text = str(ref).strip()
        if text.lower() == "latest":
            rows = self.query("SELECT id FROM runs ORDER BY started DESC, id DESC LIMIT 1")
            if not rows:
                raise ArchiveNotFound(f"The results archive {self.path} holds no run yet.")
            return int(rows[0]["id"])
        if text.isdigit():
            rows = self.query("SELECT id FROM runs WHERE id = ?", (int(text),))
        else:
            rows = self.query("SELECT id FROM runs WHERE run_key = ?", (text,))
        if not rows:
            raise ArchiveNotFound(
                f"No run {text!r} in the results archive {self.path}: give a run id from `atp report list`, "
                "`latest`, or a run key."
            )
        return int(rows[0]["id"])

    def list_runs(
        self, *, suite: str | None = None, status: str | None = None, limit: int | None = 20
    ) -> list[dict[str, Any]]:
        """Runs, newest first, with their test counts; ``suite`` keeps runs that ran that suite (name or
        long name, case-insensitive, a parent suite matches too)."""
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append("r.status = ?")
            params.append(status.upper())
        if suite:
            clause, extra = _suite_clause("s")
            where.append(f"EXISTS (SELECT 1 FROM suites s WHERE s.run_id = r.id AND {clause})")
            params.extend(extra(suite))
        sql = (
            "SELECT r.id, r.run_key, r.started, r.ended, r.status, r.incomplete, r.host, r.output_dir, "
            "(SELECT count(*) FROM tests t WHERE t.run_id = r.id) AS tests, "
            "(SELECT count(*) FROM tests t WHERE t.run_id = r.id AND t.status = 'PASS') AS passed, "
            "(SELECT count(*) FROM tests t WHERE t.run_id = r.id AND t.status = 'FAIL') AS failed, "
            "(SELECT count(*) FROM tests t WHERE t.run_id = r.id AND t.status = 'SKIP') AS skipped, "
            "(SELECT count(*) FROM processes p WHERE p.run_id = r.id) AS processes "
            "FROM runs r" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.started DESC, r.id DESC"
        )
        if limit is not None and limit > 0:
            sql += f" LIMIT {int(limit)}"
        rows = self.query(sql, params)
        for row in rows:
            row["incomplete"] = bool(row["incomplete"])
            row["duration_s"] = _seconds_between(row["started"], row["ended"])
        return rows

    def run(self, run_id: int) -> dict[str, Any]:
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise ArchiveNotFound(f"No run {run_id} in the results archive {self.path}.")
        row = rows[0]
        row["incomplete"] = bool(row["incomplete"])
        row["duration_s"] = _seconds_between(row["started"], row["ended"])
        return row

    def tests(self, run_id: int) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT t.*, s.longname AS suite FROM tests t LEFT JOIN suites s ON s.id = t.suite_id "
            "WHERE t.run_id = ? ORDER BY t.id",
            (run_id,),
        )
        for row in rows:
            row["tags"] = json.loads(row["tags"] or "[]")
        return rows

    def summary(self, run_id: int) -> dict[str, Any]:
        """What ``atp report show`` prints: the run, counts per area and per suite, failed tests, VMs used."""
        run = self.run(run_id)
        tests = self.tests(run_id)
        processes = self.query("SELECT * FROM processes WHERE run_id = ? ORDER BY id", (run_id,))
        latencies = self.query("SELECT vm, latency_ms, kind FROM latencies WHERE run_id = ?", (run_id,))
        by_area: dict[str, dict[str, int]] = {}
        by_suite: dict[str, dict[str, int]] = {}
        vms: dict[str, dict[str, int]] = {}
        for test in tests:
            suite = test["suite"] or test["longname"].rpartition(".")[0]
            for table, key in ((by_area, area_of(suite)), (by_suite, suite)):
                counts = table.setdefault(key, {"tests": 0, "PASS": 0, "FAIL": 0, "SKIP": 0})
                counts["tests"] += 1
                counts[test["status"]] = counts.get(test["status"], 0) + 1
            if test["vm"]:
                used = vms.setdefault(test["vm"], {"tests": 0, "FAIL": 0})
                used["tests"] += 1
                used["FAIL"] += test["status"] == "FAIL"
        return {
            "run": run,
            "processes": processes,
            "counts": {
                "tests": len(tests),
                "PASS": sum(t["status"] == "PASS" for t in tests),
                "FAIL": sum(t["status"] == "FAIL" for t in tests),
                "SKIP": sum(t["status"] == "SKIP" for t in tests),
            },
            "areas": [{"area": k, **v} for k, v in sorted(by_area.items())],
            "suites": [{"suite": k, **v} for k, v in sorted(by_suite.items())],
            "failed": [
                {"id": t["id"], "longname": t["longname"], "vm": t["vm"], "message": t["message"]}
                for t in tests
                if t["status"] == "FAIL"
            ],
            "vms": [{"vm": k, **v} for k, v in sorted(vms.items())],
            "vm_overlaps": vm_overlaps(tests),
            "latency": _latency_stats(latencies),
        }

    def export(self, run_id: int) -> dict[str, Any]:
        """Everything stored about one run."""
        return {
            "schema_version": SCHEMA_VERSION,
            "run": self.run(run_id),
            "processes": self.query("SELECT * FROM processes WHERE run_id = ? ORDER BY id", (run_id,)),
            "suites": self.query("SELECT * FROM suites WHERE run_id = ? ORDER BY id", (run_id,)),
            "tests": self.tests(run_id),
            "latencies": self.query("SELECT * FROM latencies WHERE run_id = ? ORDER BY id", (run_id,)),
        }

    def stats(self, suite: str | None = None, days: float = 30, now: datetime | None = None) -> dict[str, Any]:
        """Pass rate, test durations and verification latencies over the runs started in the last ``days``."""
        since = utc((now or datetime.now(UTC)) - timedelta(days=days))
        params: list[Any] = [since]
        suite_sql = ""
        if suite:
            clause, extra = _suite_clause("s")
            suite_sql = f" AND {clause}"
            params.extend(extra(suite))
        tests = self.query(
            "SELECT t.id, t.status, t.duration_ms, t.run_id FROM tests t JOIN runs r ON r.id = t.run_id "
            "LEFT JOIN suites s ON s.id = t.suite_id WHERE r.started >= ?" + suite_sql,
            params,
        )
        latencies = self.query(
            "SELECT l.vm, l.latency_ms, l.kind FROM latencies l JOIN runs r ON r.id = l.run_id "
            "LEFT JOIN tests t ON t.id = l.test_id LEFT JOIN suites s ON s.id = t.suite_id "
            "WHERE r.started >= ?" + suite_sql,
            params,
        )
        counts = {status: sum(t["status"] == status for t in tests) for status in ("PASS", "FAIL", "SKIP")}
        decided = counts["PASS"] + counts["FAIL"]
        durations = [float(t["duration_ms"]) for t in tests if t["duration_ms"] is not None]
        return {
            "suite": suite,
            "days": days,
            "since": since,
            "runs": len({t["run_id"] for t in tests}),
            "tests": len(tests),
            **counts,
            "pass_rate": round(100.0 * counts["PASS"] / decided, 2) if decided else None,
            "duration_ms": {
                "mean": round(sum(durations) / len(durations), 1) if durations else None,
                "p50": percentile(durations, 50),
                "p99": percentile(durations, 99),
                "max": max(durations) if durations else None,
            },
            "latency": _latency_stats(latencies),
        }

    def runs_before(self, days: float, now: datetime | None = None) -> list[dict[str, Any]]:
        """Runs that started more than ``days`` ago (what ``atp report cleanup`` removes)."""
        cutoff = utc((now or datetime.now(UTC)) - timedelta(days=days))
        return [r for r in self.list_runs(limit=None) if r["started"] < cutoff]

    def delete_runs(self, run_ids: Sequence[int]) -> int:
        """Delete runs with everything in them; returns how many runs went."""
        ids = list(run_ids)
        if not ids:
            return 0

        def write(conn: sqlite3.Connection) -> int:
            removed = 0
            for run_id in ids:
                removed += conn.execute("DELETE FROM runs WHERE id = ?", (run_id,)).rowcount
            return removed

        return self.write(write)


# -- helpers --------------------------------------------------------------------------------------------------


def _statements(script: str) -> Iterator[str]:
    for statement in script.split(";"):
        if statement.strip():
            yield statement.strip()


def _insert_latencies(
    conn: sqlite3.Connection, run_id: int, test_id: int | None, latencies: Sequence[LatencyRecord]
) -> None:
    conn.executemany(
        "INSERT INTO latencies (run_id, test_id, vm, latency_ms, kind, action, recorded) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(run_id, test_id, lat.vm, float(lat.latency_ms), lat.kind, lat.action, lat.recorded) for lat in latencies],
    )


def _suite_clause(alias: str) -> tuple[str, Callable[[str], list[str]]]:
    """SQL matching a suite by name or long name (case-insensitive); a parent's long name matches its children."""
    clause = (
        f"(lower({alias}.name) = lower(?) OR lower({alias}.longname) = lower(?) "
        f"OR lower({alias}.longname) LIKE lower(?) ESCAPE '\\')"
    )

    def params(suite: str) -> list[str]:
        escaped = suite.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [suite, suite, escaped + ".%"]

    return clause, params


def area_of(suite_longname: str) -> str:
    """The area of a suite: the suite right below the top suite (``Suites.Keyboard.Typing`` → ``Keyboard``);
    a top suite with no child suite is its own area."""
    parts = suite_longname.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def vm_overlaps(tests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pairs of tests that ran on the same VM at overlapping times (start to end, setup and teardown included).

    This is the archive's own check that no VM served two tests at once; it reads only the stored rows, not the
    pool's bookkeeping.  Each pair names both tests and the overlap in seconds.
    """
    by_vm: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for test in tests:
        if test.get("vm") and test.get("start_time") and test.get("end_time"):
            start = datetime.fromisoformat(test["start_time"])
            end = datetime.fromisoformat(test["end_time"])
            by_vm.setdefault(test["vm"], []).append((start, end, test["longname"]))
    overlaps: list[dict[str, Any]] = []
    for vm, spans in sorted(by_vm.items()):
        spans.sort()
        latest_end, latest_name = spans[0][1], spans[0][2]
        for start, end, name in spans[1:]:
            if start < latest_end:
                overlaps.append(
                    {
                        "vm": vm,
                        "first": latest_name,
                        "second": name,
                        "overlap_s": round((min(end, latest_end) - start).total_seconds(), 3),
                    }
                )
            if end > latest_end:
                latest_end, latest_name = end, name
    return overlaps


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


def _latency_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    values = [float(r["latency_ms"]) for r in rows]
    by_kind: dict[str, list[float]] = {}
    for row in rows:
        by_kind.setdefault(str(row["kind"]), []).append(float(row["latency_ms"]))

    def stats(v: Sequence[float]) -> dict[str, Any]:
        return {"count": len(v), "p50": percentile(v, 50), "p99": percentile(v, 99), "max": max(v) if v else None}

    return {**stats(values), "by_kind": {k: stats(v) for k, v in sorted(by_kind.items())}}


@contextmanager
def open_store(path: str | os.PathLike[str] | None = None, **options: Any) -> Iterator[ArchiveStore]:
    with closing(ArchiveStore(path, **options)) as store:
        yield store
