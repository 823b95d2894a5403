"""Output of ``atp`` commands: aligned tables for people, ``--json`` for scripts, progress on long operations.

Tables and JSON go to stdout; errors and progress go to stderr, so ``atp ... --json | jq`` always reads clean
JSON.  Progress shows a rich bar on a terminal and nothing otherwise (CI, pipes).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

Out = Callable[[str], None]


def add_json_option(parser: Any) -> None:
    """The ``--json`` flag every listing or batch command takes."""
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")


def print_json(data: Any, out: Out = print) -> None:
    out(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def render_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None
) -> str:
    """``rows`` as an aligned text table with the given ``columns`` (``headers`` default: the column names)."""
    heads = [h.upper() for h in (headers or columns)]
    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    headers: Sequence[str] | None = None,
    out: Out = print,
    empty: str = "(none)",
) -> None:
    out(render_table(rows, columns, headers) if rows else empty)


class _Bar:
    def __init__(self, advance: Callable[[str], None]) -> None:
        self._advance = advance

    def advance(self, message: str = "") -> None:
        self._advance(message)


@contextlib.contextmanager
def progress(description: str, total: int, interactive: bool | None = None) -> Iterator[_Bar]:
    """A progress bar on stderr for ``total`` steps when stderr is a terminal; silent otherwise."""
    if not (sys.stderr.isatty() if interactive is None else interactive):
        yield _Bar(lambda message: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total, last="")
        yield _Bar(lambda message: bar.update(task, advance=1, last=message))
