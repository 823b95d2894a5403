"""Which VMs a multi-target scenario (``target_domains``) runs on.

Converted suites import this module as a library (``Library    ATPLibrary.scenario.targets``) for its one
keyword, `Select Scenario Targets`; it is plain Python and never imports Robot Framework.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from ATPLibrary.errors import ConfigurationError

__all__ = ["select_scenario_targets"]

MODES = ("single", "all", "pattern", "list", "regex")


def _names(values: Iterable[object]) -> list[str]:
    """Names from arguments; one argument may hold several separated by commas (``--variable X:a,b``)."""
    out: list[str] = []
    for value in values:
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        out.extend(str(i).strip() for i in items if str(i).strip())
    return out


def select_scenario_targets(
    *candidates: str,
    mode: str = "pattern",
    pattern: str | None = None,
    names: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
    limit: int | None = None,
) -> list[str]:
    """Returns the VMs of ``candidates`` a scenario's ``target_domains`` selects, in candidate order.

    ``mode``: ``pattern`` (glob with ``*`` and ``?``), ``regex`` (matches anywhere in the name), ``list``
    (the ``names`` that are candidates, in the order of ``names``), ``all``, or ``single`` (the first VM
    that ``pattern``/``names`` select, or the first candidate). ``exclude``: globs removed afterwards;
    ``limit``: at most that many. Fails naming the candidates when nothing is selected (the original
    executor stopped with "no matching target VM" too).

    | =Assignment= | =Keyword=               | =Candidates=   | =Options=      |
    | @{vms} =     | Select Scenario Targets | @{LAB_VMS}     | pattern=atp-*  |
    """
    pool = _names(candidates)
    if not pool:
        raise ConfigurationError(
            "Select Scenario Targets: no candidate VMs. Give them with --variable TARGET_CANDIDATES:vm1,vm2 "
            "(or run the suite with --variablefile variables/lab.py for the lab's VMs)."
        )
    kind = str(mode).strip().lower()
    if kind not in MODES:
        raise ConfigurationError(f"Select Scenario Targets: unknown mode '{mode}'; use {', '.join(MODES)}.")
    wanted = _names([names] if isinstance(names, str) else names or [])
    if kind == "all":
        chosen = list(pool)
    elif kind == "list" or (kind == "single" and wanted and not pattern):
        chosen = [n for n in wanted if n in pool]
    elif kind == "regex":
        if not pattern:
            raise ConfigurationError("Select Scenario Targets: mode regex needs pattern=.")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigurationError(
                f"Select Scenario Targets: '{pattern}' is not a regular expression: {exc}"
            ) from None
        chosen = [n for n in pool if regex.search(n)]
    elif pattern:
        chosen = [n for n in pool if fnmatch.fnmatchcase(n, pattern)]
    elif kind == "single":
        chosen = list(pool)
    else:
        raise ConfigurationError("Select Scenario Targets: mode pattern needs pattern=.")
    globs = _names([exclude] if isinstance(exclude, str) else exclude or [])
    chosen = [n for n in chosen if not any(fnmatch.fnmatchcase(n, g) for g in globs)]
    if kind == "single":
        chosen = chosen[:1]
    if limit is not None and int(limit) >= 0:
        chosen = chosen[: int(limit)]
    if not chosen:
        rule = (
            f"mode={kind}"
            + (f" pattern={pattern}" if pattern else "")
            + (f" names={','.join(wanted)}" if wanted else "")
        )
        rule += f" exclude={','.join(globs)}" if globs else ""
        raise ConfigurationError(
            f"Select Scenario Targets: no VM matches {rule} among {len(pool)} candidate(s): {', '.join(pool)}."
        )
    return chosen
