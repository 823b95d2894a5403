"""Helpers for integration tests on lab guests."""

from __future__ import annotations

import time
from typing import Any

CONSOLE_READY_FILE = "/run/atp-console-ready"


def kw(lib: Any, name: str, *args: Any, **kwargs: Any) -> Any:
    """Run one ATPLibrary keyword the way Robot does (by name, through PythonLibCore)."""
    return lib.run_keyword(name, list(args), kwargs)


def wait_console_ready(lib: Any, vm: str, timeout: float = 90.0) -> None:
    kw(lib, "Start VM", vm)
    kw(lib, "Guest Agent Should Respond", vm, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        result = kw(lib, "Execute Command In Guest", vm, f"test -e {CONSOLE_READY_FILE}", expected_rc="any")
        if result.rc == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{vm}: console not ready within {timeout} s")
        time.sleep(0.3)


def wait_for_file(lib: Any, vm: str, path: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while kw(lib, "Execute Command In Guest", vm, f"test -e {path}", expected_rc="any").rc != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{vm}: {path} did not appear within {timeout} s")
        time.sleep(0.1)


def read_file_when(lib: Any, vm: str, path: str, expected: str, timeout: float = 15.0) -> str:
    """Read ``path`` through the guest agent until it equals ``expected`` or the timeout passes."""
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        result = kw(lib, "Execute Command In Guest", vm, f"cat {path}", expected_rc="any")
        content = result.stdout
        if result.rc == 0 and content == expected:
            return content
        time.sleep(0.2)
    return content


def type_into_file(lib: Any, vm: str, text: str, path: str = "/tmp/typed.txt") -> str:
    """Type ``text`` into ``cat > path`` on the console and return what the guest wrote."""
    kw(lib, "Execute Command In Guest", vm, f"rm -f {path}")
    kw(lib, "Type Text", vm, f"cat > {path}\n")
    # Keys typed while bash's readline still owns the tty are translated with readline's settings (Enter
    # stays \r). The redirect creates the file after bash has restored the tty, so wait for the file first.
    wait_for_file(lib, vm, path)
    kw(lib, "Type Text", vm, text + "\n")
    kw(lib, "Press Keys", vm, "ctrl+d")
    return read_file_when(lib, vm, path, text + "\n")
