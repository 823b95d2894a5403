"""Backups of the results archive: ``<dbdir>/backups/backup_YYYYmmdd_HHMMSS.db`` made with SQLite's backup API.

The backup API copies a consistent snapshot while other processes keep writing (in WAL mode a reader never
blocks the writer), so a backup is safe during a test run.  Plain Python.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ATPLibrary.archive.store import (
    SCHEMA_VERSION,
    ArchiveError,
    ArchiveNotFound,
    ArchiveSchemaError,
    resolve_path,
)
from ATPLibrary.errors import ConfigurationError

BACKUP_PREFIX = "backup_"
BACKUP_SUFFIX = ".db"


def backup_dir(db: Path, chosen: str | os.PathLike[str] | None = None) -> Path:
    """``chosen``, else the ``backups`` folder beside the archive."""
    return Path(chosen).expanduser().absolute() if chosen else db.parent / "backups"


def backup_name(now: datetime | None = None) -> str:
    return f"{BACKUP_PREFIX}{(now or datetime.now()).strftime('%Y%m%d_%H%M%S')}{BACKUP_SUFFIX}"


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    size: int
    modified: datetime
    schema_version: int | None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.path.name,
            "path": str(self.path),
            "size": self.size,
            "modified": self.modified.isoformat(timespec="seconds"),
            "schema_version": self.schema_version,
        }


def _schema_version(path: Path) -> int | None:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return None


def create_backup(
    db: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    directory: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
) -> Path:
    """Copy the archive into a new backup file and return its path; an existing file is never overwritten."""
    source = resolve_path(db)
    if not source.exists():
        raise ArchiveNotFound(f"No results archive at {source} to back up (choose it with --db or $ATP_ARCHIVE_DB).")
    folder = backup_dir(source, directory)
    filename = name or backup_name(now)
    if "/" in filename or filename in (".", ".."):
        raise ConfigurationError(f"Backup name {filename!r} must be a file name; choose the folder with -b DIR.")
    if not filename.endswith(BACKUP_SUFFIX):
        filename += BACKUP_SUFFIX
    target = folder / filename
    if target.exists():
        raise ConfigurationError(f"Backup {target} already exists: choose another name with -n NAME.")
    folder.mkdir(parents=True, exist_ok=True)
    with _raw(source) as src:
        try:
            with closing(sqlite3.connect(target)) as dest:
                src.backup(dest)
        except sqlite3.Error as exc:
            target.unlink(missing_ok=True)
            raise ArchiveError(f"Backing up {source} to {target} failed: {exc}") from exc
    return target


def _raw(path: Path) -> closing[sqlite3.Connection]:
    try:
        conn = sqlite3.connect(path, timeout=30)
    except sqlite3.Error as exc:
        raise ArchiveError(f"Cannot open the results archive {path}: {exc}") from exc
    return closing(conn)


def list_backups(directory: Path) -> list[BackupInfo]:
    """Backups in ``directory``, newest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.glob(f"*{BACKUP_SUFFIX}"):
        if not path.is_file():
            continue
        stat = path.stat()
        found.append(BackupInfo(path, stat.st_size, datetime.fromtimestamp(stat.st_mtime), _schema_version(path)))
    return sorted(found, key=lambda b: (b.modified, b.path.name), reverse=True)


def find_backup(directory: Path, ref: str) -> Path:
    """A backup by file name (in ``directory``) or by path; it must be inside ``directory``."""
    candidate = Path(ref).expanduser()
    path = candidate.absolute() if candidate.parent != Path(".") else directory / candidate
    if not path.is_file():
        raise ArchiveNotFound(f"No backup {ref!r} in {directory}: `atp db list` shows the backups there.")
    if path.resolve().parent != directory.resolve():
        raise ConfigurationError(
            f"{path} is not in the backup folder {directory}; only backups there are deleted (choose the folder "
            "with -b DIR)."
        )
    return path


def delete_backup(directory: Path, ref: str) -> Path:
    path = find_backup(directory, ref)
    path.unlink()
    return path


def cleanup_backups(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; returns the deleted files."""
    if keep < 0:
        raise ConfigurationError(f"--keep must be 0 or more, not {keep}.")
    removed = []
    for info in list_backups(directory)[keep:]:
        info.path.unlink()
        removed.append(info.path)
    return removed


def restore_backup(
    file: str | os.PathLike[str],
    db: str | os.PathLike[str] | None = None,
    *,
    safety_backup: bool = False,
    directory: str | os.PathLike[str] | None = None,
) -> Path | None:
    """Replace the archive's content with ``file`` (an archive or a backup of one); returns the safety backup.

    The file is checked first (SQLite integrity check, a schema this ATPLibrary knows), so a wrong file never
    replaces the archive."""
    source = Path(file).expanduser().absolute()
    target = resolve_path(db)
    if not source.is_file():
        raise ArchiveNotFound(f"No file {source} to restore from (`atp db list` shows the backups).")
    if target.exists() and source.resolve() == target.resolve():
        raise ConfigurationError(f"{source} is the archive itself; restore from a backup file.")
    try:
        with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)) as src:
            check = src.execute("PRAGMA integrity_check").fetchone()[0]
            version = int(src.execute("PRAGMA user_version").fetchone()[0])
            has_runs = src.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'").fetchone()
    except sqlite3.Error as exc:
        raise ArchiveError(f"{source} is not an SQLite database ({exc}); nothing was restored.") from exc
    if check != "ok":
        raise ArchiveError(f"{source} fails SQLite's integrity check ({check}); nothing was restored.")
    if not has_runs or not 1 <= version <= SCHEMA_VERSION:
        raise ArchiveSchemaError(
            f"{source} is not a results archive this ATPLibrary can read (schema version {version}, "
            f"known 1..{SCHEMA_VERSION}); nothing was restored."
        )
    safety = None
    if safety_backup and target.exists():
        safety = create_backup(target, directory=directory, name=f"{backup_name()[:-3]}_before_restore")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _raw(source) as src, _raw(target) as dest:
        try:
            src.backup(dest)
        except sqlite3.Error as exc:
            raise ArchiveError(f"Restoring {target} from {source} failed: {exc}") from exc
    return safety
