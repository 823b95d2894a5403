"""`atp host` and `atp vm` run as subprocesses against the lab, each with its own temporary ATP_CONFIG.

What the commands did is read back from the guest itself: typed text from the file `cat` wrote, keys and
clicks from the guest kernel's evdev events, command results from the guest agent, screenshots as PNGs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
import urllib.parse
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import libvirt
import pytest
from PIL import Image

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.input.mouse import pixel_to_abs
from tests.integration.helpers import EV_ABS, EV_KEY, GuestEvents, wait_console_ready, wait_for_file
from tests.integration.test_remote_ssh import ssh_uri  # noqa: F401  (the private sshd fixture)

pytestmark = pytest.mark.lab

ATP = Path(sys.executable).with_name("atp")
KEYBOARD, TABLET, MOUSE = "QEMU Virtio Keyboard", "QEMU Virtio Tablet", "QEMU Virtio Mouse"
KEY_LEFTCTRL, KEY_LEFTALT, KEY_LEFTSHIFT, KEY_A, KEY_B, KEY_U, KEY_ENTER = 29, 56, 42, 30, 48, 22, 28
BTN_LEFT, BTN_RIGHT = 0x110, 0x111
ABS_X, ABS_Y = 0, 1


class Cli:
    """Runs ``atp`` in a subprocess with ATP_CONFIG pointing at a file of this test only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "atp.toml"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ATP_") or k == "ATP_LAB_DIR"}
        self.env |= {"ATP_CONFIG": str(self.config), "HOME": str(folder), "XDG_CONFIG_HOME": str(folder / "xdg")}

    def __call__(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(ATP), *argv] if ATP.exists() else [sys.executable, "-m", "ATPLibrary.cli.main", *argv]
        return subprocess.run(cmd, env=self.env, cwd=self.folder, capture_output=True, text=True, timeout=timeout)

    def ok(self, *argv: str, timeout: float = 120) -> str:
        done = self(*argv, timeout=timeout)
        assert done.returncode == ExitCode.OK, f"atp {' '.join(argv)} -> {done.returncode}: {done.stderr}"
        return done.stdout


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def vm(library: Any, typing_vm: str) -> str:
    wait_console_ready(library, typing_vm)
    return typing_vm


@pytest.fixture
def guest_events(library: Any, vm: str) -> Iterator[GuestEvents]:
    reader = GuestEvents(library, vm)
    ready = reader.start()
    assert KEYBOARD in ready and TABLET in ready and MOUSE in ready, ready
    yield reader
    reader.stop()


def _on(rows: list[tuple[str, int, int, int]], device: str, etype: int) -> list[tuple[int, int]]:
    return [(code, value) for name, t, code, value in rows if name == device and t == etype]


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


# ---------------------------------------------------------------- atp host


def test_host_add_list_check_remove_on_the_lab(cli: Cli, lab: dict[str, Any]) -> None:
    listed = json.loads(cli.ok("host", "list", "--json"))
    assert [(h["id"], h["uri"], h["implicit"]) for h in listed["hosts"]] == [("local", "qemu:///system", True)]
    checked = json.loads(cli.ok("host", "check", "--json", "--timeout", "60"))
    conn = libvirt.open(lab["uri"])
    try:
        want_libvirt, want_qemu = _version(conn.getLibVersion()), _version(conn.getVersion())
    finally:
        conn.close()
    assert [r["id"] for r in checked] == ["local"]
    assert checked[0]["ok"] is True
    assert (checked[0]["libvirt_version"], checked[0]["hypervisor"]) == (want_libvirt, "QEMU")
    assert checked[0]["hypervisor_version"] == want_qemu
    assert checked[0]["vms"] >= len(lab["vms"])
    assert checked[0]["running"] >= 1

    out = cli.ok("host", "add", "lab", lab["uri"], "--default")
    assert f"saved in {cli.config}" in out
    assert tomllib.loads(cli.config.read_text())["hosts"] == {"lab": {"uri": lab["uri"]}}
    table = cli.ok("host", "check", "lab", "--timeout", "60")
    assert f"libvirt {want_libvirt}, QEMU {want_qemu}" in table
    listed = json.loads(cli.ok("host", "list", "--json"))
    assert [(h["id"], h["default"]) for h in listed["hosts"]] == [("lab", True)]

    cli.ok("host", "add", "gone", "qemu+tcp://127.0.0.1:1/system")
    partly = cli("host", "check", "--json", "--timeout", "30")
    assert partly.returncode == ExitCode.FAILED
    assert {r["id"]: r["ok"] for r in json.loads(partly.stdout)} == {"lab": True, "gone": False}
    alone = cli("host", "check", "gone", "--timeout", "30")
    assert alone.returncode == ExitCode.ERROR
    assert alone.stderr.startswith("atp host check: error: host 'gone'") and "unreachable" in alone.stderr
    assert len(alone.stderr.strip().splitlines()) == 1

    cli.ok("host", "remove", "gone")
    cli.ok("host", "remove", "lab")
    listed = json.loads(cli.ok("host", "list", "--json"))
    assert [h["id"] for h in listed["hosts"]] == ["local"]


@pytest.mark.ssh
def test_update_ssh_settings_are_what_libvirt_uses(cli: Cli, ssh_uri: str) -> None:  # noqa: F811
    """A qemu+ssh:// host fails without its SSH settings and answers once update-ssh gave user, port and key."""
    parts = urllib.parse.urlsplit(ssh_uri)
    query = dict(urllib.parse.parse_qsl(parts.query))
    port = parts.port or 22
    cli.ok("host", "add", "remote", "qemu+ssh://127.0.0.1/system?no_verify=1&no_tty=1")
    cli.env["HOME"] = str(cli.folder)  # no ~/.ssh keys of the machine's root
    without = cli("host", "check", "remote", "--timeout", "30")
    assert without.returncode == ExitCode.ERROR, without.stdout

    with pytest.raises(AssertionError, match="passwords are never stored"):
        cli.ok("host", "update-ssh", "remote", "--password", "hunter2-secret")
    cli.ok("host", "update-ssh", "remote", "-u", "root", "-p", str(port), "-k", query["keyfile"])
    stored = tomllib.loads(cli.config.read_text())["hosts"]["remote"]
    assert (stored["ssh_user"], stored["ssh_port"], stored["ssh_key"]) == ("root", port, query["keyfile"])
    assert "hunter2" not in cli.config.read_text()

    checked = json.loads(cli.ok("host", "check", "remote", "--json", "--timeout", "60"))
    assert checked[0]["ok"] is True, checked
    assert checked[0]["hypervisor"] == "QEMU"
    log = Path(query["keyfile"]).parent / "sshd.log"
    assert "Accepted publickey for root" in log.read_text()


# ---------------------------------------------------------------- atp vm


def test_vm_list(cli: Cli, lab: dict[str, Any], typing_vm: str) -> None:
    rows = json.loads(cli.ok("vm", "list", "--json"))
    mine = [r for r in rows if r["name"] == typing_vm]
    assert mine == [{"name": typing_vm, "state": "running", "host": "local", "uri": "qemu:///system"}]
    assert {str(v) for v in lab["vms"]} <= {r["name"] for r in rows}
    cli.ok("host", "add", "lab", lab["uri"])
    table = cli.ok("vm", "list", "--host", "lab")
    assert table.splitlines()[0].split() == ["NAME", "STATE", "HOST"]
    assert [typing_vm, "running", "lab"] in [line.split() for line in table.splitlines()]


def test_vm_exec_output_and_exit_codes(cli: Cli, vm: str) -> None:
    done = cli("vm", "exec", vm, "--shell", "--", "echo out-$((6*7)); echo err >&2; exit 3")
    assert (done.returncode, done.stdout) == (ExitCode.FAILED, "out-42\n")
    assert done.stderr.startswith("err\n")
    assert f"the command in VM '{vm}' exited with rc 3" in done.stderr
    assert cli.ok("vm", "exec", vm, "--", "printf", "%s|", "a b", "<c>") == "a b|<c>|"
    result = json.loads(cli("vm", "exec", "--json", vm, "--", "sh", "-c", "echo x; exit 5").stdout)
    assert (result["rc"], result["stdout"], result["ok"]) == (5, "x\n", False)
    started = time.monotonic()
    slow = cli("vm", "exec", vm, "--timeout", "3", "--", "sleep", "30")
    assert slow.returncode == ExitCode.FAILED
    assert time.monotonic() - started < 25
    assert "did not finish within 3 seconds" in slow.stderr and "killed" in slow.stderr
    missing = cli("vm", "exec", vm, "--", "/no/such/program")
    assert missing.returncode == ExitCode.ERROR
    assert "No such file" in missing.stderr


def test_vm_type_is_received_exactly(cli: Cli, vm: str) -> None:
    """Text with Shift characters and '<' typed by the CLI into `cat` comes back exactly."""
    path = "/tmp/cli-typed.txt"
    text = 'Hello <World> & "Q" ~|{x}: it\'s 100% @CLI_2'
    cli.ok("vm", "exec", vm, "--", "rm", "-f", path)
    cli.ok("vm", "type", vm, f"cat > {path}", "--enter")
    deadline = time.monotonic() + 20
    while cli("vm", "exec", vm, "--", "test", "-e", path).returncode != ExitCode.OK:
        assert time.monotonic() < deadline, f"{path} was not created by the typed command"
        time.sleep(0.2)
    out = cli.ok("vm", "type", vm, text, "--enter")
    assert f"typed {len(text) + 1} characters" in out
    cli.ok("vm", "keys", vm, "ctrl+d")
    deadline = time.monotonic() + 20
    got = ""
    while time.monotonic() < deadline:
        got = cli.ok("vm", "exec", vm, "--", "cat", path)
        if got == text + "\n":
            break
        time.sleep(0.2)
    assert got == text + "\n"


def test_vm_keys_reach_the_guest_kernel_in_order(cli: Cli, vm: str, library: Any) -> None:
    """Combos pressed by the CLI into `cat` on the console: the guest kernel sees modifiers down, key, reverse."""
    cli.ok("vm", "exec", vm, "--", "rm", "-f", "/tmp/cli-keys.txt")
    cli.ok("vm", "type", vm, "cat > /tmp/cli-keys.txt", "--enter")
    wait_for_file(library, vm, "/tmp/cli-keys.txt")
    reader = GuestEvents(library, vm)
    reader.start()
    try:
        cli.ok("vm", "keys", vm, "shift+a", "ctrl+shift+u", "alt+b", "ENTER")
        want = [
            (KEY_LEFTSHIFT, 1),
            (KEY_A, 1),
            (KEY_A, 0),
            (KEY_LEFTSHIFT, 0),
            (KEY_LEFTCTRL, 1),
            (KEY_LEFTSHIFT, 1),
            (KEY_U, 1),
            (KEY_U, 0),
            (KEY_LEFTSHIFT, 0),
            (KEY_LEFTCTRL, 0),
            (KEY_LEFTALT, 1),
            (KEY_B, 1),
            (KEY_B, 0),
            (KEY_LEFTALT, 0),
            (KEY_ENTER, 1),
            (KEY_ENTER, 0),
        ]
        rows = reader.wait_for(lambda r: len(_on(r, KEYBOARD, EV_KEY)) >= len(want))
        assert _on(rows, KEYBOARD, EV_KEY) == want
    finally:
        reader.stop()
        cli.ok("vm", "keys", vm, "ctrl+c")


def test_vm_click_reaches_the_guest_kernel(cli: Cli, vm: str, guest_events: GuestEvents) -> None:
    out = cli.ok("vm", "click", vm, "457", "233")
    assert f"({pixel_to_abs(457, 720)}, {pixel_to_abs(233, 400)}) of 0..32767" in out
    cli.ok("vm", "click", vm, "611", "97", "--button", "right")
    rows = guest_events.wait_for(lambda r: len(_on(r, MOUSE, EV_KEY)) >= 4 and len(_on(r, TABLET, EV_ABS)) >= 4)
    assert _on(rows, MOUSE, EV_KEY) == [(BTN_LEFT, 1), (BTN_LEFT, 0), (BTN_RIGHT, 1), (BTN_RIGHT, 0)]
    assert _on(rows, TABLET, EV_ABS) == [
        (ABS_X, pixel_to_abs(457, 720)),
        (ABS_Y, pixel_to_abs(233, 400)),
        (ABS_X, pixel_to_abs(611, 720)),
        (ABS_Y, pixel_to_abs(97, 400)),
    ]
    ordered = [(n, t, c, v) for n, t, c, v in rows if t in (EV_KEY, EV_ABS) and n in (MOUSE, TABLET)]
    first_press = ordered.index((MOUSE, EV_KEY, BTN_LEFT, 1))
    assert (TABLET, EV_ABS, ABS_Y, pixel_to_abs(233, 400)) in ordered[:first_press]  # moved, then pressed


def test_vm_screenshot_is_a_720x400_png(cli: Cli, vm: str, tmp_path: Path) -> None:
    target = tmp_path / "shots" / "console.png"
    target.parent.mkdir()
    info = json.loads(cli.ok("vm", "screenshot", vm, "-o", str(target), "--json"))
    assert info == {"vm": vm, "path": str(target), "width": 720, "height": 400}
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(BytesIO(data)) as image:
        image.load()
        assert (image.format, image.size) == ("PNG", (720, 400))
        low, high = image.convert("L").getextrema()
        assert low != high  # the console has text on it, not a blank frame
