"""The results archive: an SQLite file of runs, suites, tests and verification latencies.

- :mod:`ATPLibrary.archive.store`: the store (plain Python), path rule, schema versions, concurrency;
- :mod:`ATPLibrary.archive.listener`: ``--listener ATPLibrary.archive.ArchiveListener`` fills it;
- :mod:`ATPLibrary.archive.metrics`: the in-process hook verification latencies go through;
- :mod:`ATPLibrary.archive.backup`: backups with SQLite's backup API.

``ArchiveListener`` is imported on first use, so the store can be used without Robot Framework loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ATPLibrary.archive.listener import ArchiveListener

__all__ = ["ArchiveListener"]


def __getattr__(name: str) -> Any:
    if name == "ArchiveListener":
        from ATPLibrary.archive.listener import ArchiveListener

        return ArchiveListener
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
