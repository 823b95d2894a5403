"""``atp db``: create, upgrade, back up and restore the results archive (see docs/archive.md).

Subcommands: ``init``, ``upgrade``, ``backup``, ``restore``, ``list``, ``delete``, ``cleanup``.  Every one takes
``--db PATH``; backups go to ``<dbdir>/backups/backup_YYYYmmdd_HHMMSS.db`` (``-b DIR`` chooses another folder).
Exit codes: 0 done, 2 nothing done (no archive, an unknown backup, a file that is not an archive).
"""

from __future__ import annotations

import argparse
from typing import Any

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.output import add_json_option, print_json, print_table
from ATPLibrary.cli.report import add_db_option


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-b", "--backup-dir", metavar="DIR", help="the backup folder (default: <dbdir>/backups)")


def _keep(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return number


def add_parser(sub: Any) -> None:
    db = sub.add_parser(
        "db",
        help="the results archive file: init, upgrade, backup, restore, list, delete, cleanup",
        description="Maintain the results archive (SQLite) that `atp report` reads (see docs/archive.md).",
    )
    dsub = db.add_subparsers(
        dest="db_command", required=True, metavar="{init,upgrade,backup,restore,list,delete,cleanup}"
    )

    p = dsub.add_parser("init", help="create the archive (or check an existing one is current)")
    add_db_option(p)
    p.set_defaults(func=_init)

    p = dsub.add_parser("upgrade", help="apply pending schema migrations (after a backup)")
    add_db_option(p)
    _dir_option(p)
    p.set_defaults(func=_upgrade)

    p = dsub.add_parser("backup", help="copy the archive into a backup file (safe while runs write to it)")
    add_db_option(p)
    p.add_argument("-n", "--name", help="backup file name (default backup_YYYYmmdd_HHMMSS.db)")
    _dir_option(p)
    p.set_defaults(func=_backup)

    p = dsub.add_parser("restore", help="replace the archive's content with a backup")
    add_db_option(p)
    p.add_argument("file", metavar="FILE", help="the backup file (a path, or a name in the backup folder)")
    p.add_argument("--safety-backup", action="store_true", help="back up the current archive first")
    _dir_option(p)
    p.set_defaults(func=_restore)

    p = dsub.add_parser("list", help="the backups, newest first")
    add_db_option(p)
    _dir_option(p)
    add_json_option(p)
    p.set_defaults(func=_list)

    p = dsub.add_parser("delete", help="delete one backup file")
    add_db_option(p)
    p.add_argument("file", metavar="FILE", help="a backup's name (or path) in the backup folder")
    _dir_option(p)
    p.set_defaults(func=_delete)

    p = dsub.add_parser("cleanup", help="delete all but the newest backups")
    add_db_option(p)
    p.add_argument("-k", "--keep", type=_keep, default=10, help="backups to keep (default 10)")
    _dir_option(p)
    p.set_defaults(func=_cleanup)


def _init(args: argparse.Namespace) -> int:
    from ATPLibrary.archive.store import ArchiveStore, resolve_path

    path = resolve_path(args.db)
    existed = path.exists()
    with ArchiveStore(path, create=True, migrate=not existed) as store:
        version, check = store.version(), store.integrity()
    print(f"{'archive ready' if existed else 'created'}: {path} (schema version {version}, integrity {check})")
    return ExitCode.OK if check == "ok" else ExitCode.FAILED


def _upgrade(args: argparse.Namespace) -> int:
    from ATPLibrary.archive.backup import backup_dir, create_backup
    from ATPLibrary.archive.store import SCHEMA_VERSION, ArchiveNotFound, ArchiveStore, resolve_path

    path = resolve_path(args.db)
    if not path.exists():
        raise ArchiveNotFound(f"No results archive at {path}: create it with `atp db init` (or choose --db).")
    with ArchiveStore(path, create=False, migrate=False, allow_older=True) as store:
        pending = store.pending()
        if not pending:
            print(f"{path} is up to date (schema version {SCHEMA_VERSION})")
            return ExitCode.OK
        saved = create_backup(path, directory=backup_dir(path, args.backup_dir))
        start, end = store.migrate()
    print(f"upgraded {path}: schema version {start} -> {end} (backup before: {saved})")
    return ExitCode.OK


def _backup(args: argparse.Namespace) -> int:
    from ATPLibrary.archive.backup import create_backup

    target = create_backup(args.db, name=args.name, directory=args.backup_dir)
    print(f"backup written: {target} ({target.stat().st_size} bytes)")
    return ExitCode.OK


def _restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ATPLibrary.archive.backup import backup_dir, restore_backup
    from ATPLibrary.archive.store import resolve_path

    db = resolve_path(args.db)
    folder = backup_dir(db, args.backup_dir)
    file = Path(args.file).expanduser()
    if not file.exists() and file.parent == Path(".") and (folder / file).exists():
        file = folder / file
    safety = restore_backup(file, db, safety_backup=args.safety_backup, directory=folder)
    if safety:
        print(f"safety backup of the archive before restoring: {safety}")
    print(f"restored {db} from {file.absolute()}")
    return ExitCode.OK


def _list(args: argparse.Namespace) -> int:
    from ATPLibrary.archive.backup import backup_dir, list_backups
    from ATPLibrary.archive.store import resolve_path

    folder = backup_dir(resolve_path(args.db), args.backup_dir)
    backups = [b.as_dict() for b in list_backups(folder)]
    if args.json:
        print_json(backups)
    else:
        print_table(backups, ("name", "size", "modified", "schema_version"), empty=f"(no backups in {folder})")
    return ExitCode.OK


def _delete(args: argparse.Namespace) -> int:
    from ATPLibrary.archive.backup import backup_dir, delete_backup
    from ATPLibrary.archive.store import resolve_path

    removed = delete_backup(backup_dir(resolve_path(args.db), args.backup_dir), args.file)
    print(f"deleted {removed}")
    return ExitCode.OK


def _cleanup(args: argparse.Namespace) -> int:
    from ATPLibrary.archive.backup import backup_dir, cleanup_backups
    from ATPLibrary.archive.store import resolve_path

    folder = backup_dir(resolve_path(args.db), args.backup_dir)
    removed = cleanup_backups(folder, args.keep)
    for path in removed:
        print(f"deleted {path}")
    print(f"{len(removed)} backup(s) deleted, at most {args.keep} kept in {folder}")
    return ExitCode.OK
