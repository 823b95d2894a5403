"""The VM id the agent reports: ``--vm-id``, else what the machine says about itself.

- Linux: ``/sys/class/dmi/id/product_serial`` (the lab sets the SMBIOS serial to the VM name; root-only readable),
  then ``product_uuid``, then the hostname (``/etc/hostname``, then ``socket.gethostname()``).
- Windows: WMI through ``wmic bios get serialnumber``, ``wmic csproduct get uuid``, then PowerShell
  (``Get-CimInstance``; ``wmic`` is gone from recent Windows), then the hostname.

Placeholders are skipped: empty values, ``None``, all-zero (or all-F) UUIDs and the usual firmware fillers.
Every source is injectable (``root`` for a fake sysfs tree, ``run`` for the commands).
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("atp-agent.identity")

_PLACEHOLDERS = {
    "",
    "none",
    "null",
    "n/a",
    "na",
    "0",
    "default string",
    "not specified",
    "not applicable",
    "not available",
    "system serial number",
    "to be filled by o.e.m.",
    "to be filled by oem",
    "unknown",
}

Runner = Callable[[Sequence[str]], str]


def usable(value: str | None) -> str | None:
    """The value stripped, or None when it is a placeholder (empty, "None", all zeros, firmware fillers)."""
    if value is None:
        return None
    text = value.strip().strip("\0").strip()
    if text.lower() in _PLACEHOLDERS:
        return None
    if re.fullmatch(r"[0\-\s]+", text) or re.fullmatch(r"[fF\-\s]+", text):
        return None
    return text


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        log.debug("identity: cannot read %s: %s", path, exc)
        return None


def _run(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("identity: %s failed: %s", argv[0], exc)
        return ""
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else ""


def _wmic_value(output: str) -> str | None:
    """The value under the header line of ``wmic ... get X`` output."""
    lines = [line.strip() for line in output.replace("\r", "").split("\n") if line.strip()]
    for line in lines[1:]:
        value = usable(line)
        if value:
            return value
    return None


def _linux_sources(root: Path) -> list[tuple[str, Callable[[], str | None]]]:
    dmi = root / "sys/class/dmi/id"
    return [
        ("smbios-serial", lambda: _read(dmi / "product_serial")),
        ("product-uuid", lambda: _read(dmi / "product_uuid")),
        ("hostname", lambda: _read(root / "etc/hostname")),
    ]


def _windows_sources(run: Runner) -> list[tuple[str, Callable[[], str | None]]]:
    ps = ["powershell.exe", "-NoProfile", "-NonInteractive", "-Command"]
    return [
        ("smbios-serial", lambda: _wmic_value(run(["wmic", "bios", "get", "serialnumber"]))),
        ("product-uuid", lambda: _wmic_value(run(["wmic", "csproduct", "get", "uuid"]))),
        ("smbios-serial", lambda: run([*ps, "(Get-CimInstance -ClassName Win32_BIOS).SerialNumber"])),
        ("product-uuid", lambda: run([*ps, "(Get-CimInstance -ClassName Win32_ComputerSystemProduct).UUID"])),
    ]


def detect_vm_id(
    explicit: str | None = None,
    *,
    platform: str = "linux",
    root: Path = Path("/"),
    run: Runner = _run,
    hostname: Callable[[], str] = socket.gethostname,
) -> tuple[str, str]:
    """(vm id, where it came from): ``explicit`` (``--vm-id``) first, then the platform's sources."""
    if usable(explicit):
        return str(usable(explicit)), "--vm-id"
    sources = _windows_sources(run) if platform == "win32" else _linux_sources(root)
    for source, read in sources:
        value = usable(read())
        if value:
            return value, source
    value = usable(hostname())
    if value:
        return value, "hostname"
    return "unknown", "none"
