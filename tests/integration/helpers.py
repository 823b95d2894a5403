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


# ---------------------------------------------------------------- raw evdev events in the guest

EV_SYN, EV_KEY, EV_REL, EV_ABS = 0, 1, 2, 3
READER = "/tmp/evdev_reader.py"
EVENTS = "/tmp/evdev_events.log"


class GuestEvents:
    """Runs tests/integration/evdev_reader.py in the guest; ``start()`` returns once every device is open."""

    def __init__(self, lib: Any, vm: str) -> None:
        self.lib, self.vm = lib, vm

    def start(self, seconds: float = 120.0, timeout: float = 30.0) -> str:
        from pathlib import Path

        script = (Path(__file__).with_name("evdev_reader.py")).read_text()
        self.lib.ctx.agent(self.vm).run_shell(f"cat > {READER}", timeout=30, input_data=script)
        kw(self.lib, "Execute Command In Guest", self.vm, f"rm -f {EVENTS} /tmp/evdev_reader.stop")
        kw(
            self.lib,
            "Execute Command In Guest",
            self.vm,
            f"nohup python3 {READER} {EVENTS} {seconds} > /tmp/evdev_reader.err 2>&1 &",
        )
        deadline = time.monotonic() + timeout
        while True:
            head = kw(
                self.lib, "Execute Command In Guest", self.vm, f"head -n1 {EVENTS} 2>/dev/null", expected_rc="any"
            )
            if head.stdout.startswith("READY"):
                return str(head.stdout.strip())
            if head.stdout.startswith("ERROR") or time.monotonic() > deadline:
                err = kw(self.lib, "Execute Command In Guest", self.vm, "cat /tmp/evdev_reader.err", expected_rc="any")
                raise AssertionError(f"evdev reader did not start: {head.stdout!r} {err.stdout!r}")
            time.sleep(0.2)

    def events(self) -> list[tuple[str, int, int, int]]:
        text = kw(self.lib, "Execute Command In Guest", self.vm, f"tail -n +2 {EVENTS}").stdout
        rows = []
        for line in text.splitlines():
            name, etype, code, value = line.split("\t")
            rows.append((name, int(etype), int(code), int(value)))
        return rows

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[tuple[str, int, int, int]]:
        """Events once ``predicate(events)`` holds (polls), else the last events seen."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.events()
            if predicate(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)

    def stop(self) -> None:
        kw(self.lib, "Execute Command In Guest", self.vm, "touch /tmp/evdev_reader.stop", expected_rc="any")
