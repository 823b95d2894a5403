"""Progress for long lab steps: a rich progress bar on a terminal, plain lines otherwise (CI, pipes)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Protocol


class Task(Protocol):
    def advance(self, message: str) -> None: ...


class _LineTask:
    def __init__(self, log: Callable[[str], None], description: str, total: int) -> None:
        self.log, self.description, self.total, self.done = log, description, total, 0

    def advance(self, message: str) -> None:
        self.done += 1
        self.log(f"[{self.done}/{self.total}] {message}")


class Progress:
    def __init__(self, log: Callable[[str], None], interactive: bool | None = None) -> None:
        self.log = log
        self.interactive = sys.stdout.isatty() if interactive is None else interactive

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Task]:
        if not self.interactive or total == 0:
            yield _LineTask(self.log, description, total)
            return
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        with RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=False,
        ) as bar:
            tid = bar.add_task(description, total=total)

            class _RichTask:
                def advance(self, message: str) -> None:
                    bar.console.log(message)
                    bar.advance(tid)

            yield _RichTask()
