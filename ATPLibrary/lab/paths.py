"""Where the lab keeps its files: outside the checkout, shared by every checkout on the machine."""

from __future__ import annotations

import os
from pathlib import Path

#: The domains the lab owns are named ``atp-lab-01`` ... ``atp-lab-NN``.
VM_PREFIX = "atp-lab-"


def vm_name(index: int) -> str:
    return f"{VM_PREFIX}{index:02d}"


def lab_dir() -> Path:
    """``$ATP_LAB_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/atp/lab``."""
    env = os.environ.get("ATP_LAB_DIR")
    if env:
        return Path(env).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser().resolve() / "atp" / "lab"


def vars_file() -> Path:
    """The file `atp lab up` writes and ``variables/lab.py`` reads."""
    return lab_dir() / "lab-vars.json"


def state_file() -> Path:
    """What the lab started (daemon PIDs), so `atp lab down` stops only that."""
    return lab_dir() / "state.json"
