"""The `atp` entry point: commands are discovered, a reader that goes away ends the command quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ATPLibrary.cli.main import build_parser, command_modules

ATP = [sys.executable, "-m", "ATPLibrary.cli.main"]


def test_every_command_module_is_a_subcommand() -> None:
    names = {m.__name__.rsplit(".", 1)[1] for m in command_modules()}
    assert {"host", "vm", "ps", "vdi", "scenario", "report", "db", "summary"} <= names
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"lab", "vdi-sim", "host", "vm", "ps", "scenario", "report", "db"} <= set(choices)


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    config = tmp_path / "atp.toml"
    config.write_text(
        "".join(f'[hosts.h{i:04d}]\nuri = "qemu+tcp://10.0.{i // 250}.{i % 250}/system"\n' for i in range(3000))
    )
    proc = subprocess.Popen(
        [*ATP, "host", "list", "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    assert first and "Traceback" not in err and "BrokenPipe" not in err
