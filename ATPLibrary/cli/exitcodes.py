"""Exit codes of every ``atp`` command: scripts may rely on them.

| code | meaning                                                                                       |
|------|-----------------------------------------------------------------------------------------------|
| 0    | done: every target succeeded, every check passed                                              |
| 1    | done, but a check failed or at least one target failed (the output says which)               |
| 2    | nothing done: wrong arguments or settings, an unknown name, or a host or platform unreachable |
| 130  | interrupted (Ctrl+C)                                                                           |

argparse itself exits with 2 on a usage error, which agrees with the table.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    ERROR = 2
    INTERRUPTED = 130
