"""Running host commands for the lab: every call bounded by a timeout, failures name the command."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ATPLibrary.errors import LabError


def run(
    cmd: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; raise :class:`LabError` naming it when it fails or runs past ``timeout`` seconds."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run(
            list(cmd),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"'{' '.join(cmd)}' did not finish within {timeout:g} s") from exc
    except FileNotFoundError as exc:
        raise LabError(f"'{cmd[0]}' is not installed (needed to run '{' '.join(cmd)}')") from exc
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise LabError(f"'{' '.join(cmd)}' failed with exit code {proc.returncode}:\n" + "\n".join(tail))
    return proc


def is_root() -> bool:
    return os.geteuid() == 0
