"""Installing the PowerShell stand-in (``standin.py``) into a Linux guest, and telling guests apart.

The stand-in is a test double for ``powershell.exe`` (see the header of ``standin.py``): it is NOT PowerShell.
It goes into the guest through qemu-ga's ``guest-file-*`` commands (so no network is needed), with mode 755,
and a ``<path>.codepage`` file next to it holds the console code page its output uses.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from importlib import resources

from ATPLibrary.errors import ConfigurationError, GuestAgentError, GuestCommandError, GuestFileNotFoundError
from ATPLibrary.powershell.command import encoded_args, is_windows_path
from ATPLibrary.powershell.decoding import normalize_encoding
from ATPLibrary.powershell.standin import STAND_IN_MARKER
from ATPLibrary.qga.agent import GuestAgent
from ATPLibrary.qga.files import GuestFiles

#: Where the lab tests put the stand-in: the lab guests' root is read-only, /tmp is a tmpfs.
DEFAULT_STAND_IN_PATH = "/tmp/atp-ps/powershell.exe"
#: How much of a file is read to recognise the stand-in (its marker is in the first lines).
_HEAD = 4096


def stand_in_source() -> bytes:
    """The stand-in script's bytes, as shipped in this package."""
    return resources.files("ATPLibrary.powershell").joinpath("standin.py").read_bytes()


@dataclass(frozen=True)
class StandInInstall:
    vm: str
    path: str
    code_page: int
    sha256: str
    edition: str

    def __str__(self) -> str:
        return (
            f"Installed the ATP PowerShell STAND-IN (not PowerShell) at '{self.path}' in VM '{self.vm}' "
            f"(code page {self.code_page}, sha256 {self.sha256[:12]}...; it answers PSEdition {self.edition})"
        )


def install_stand_in(
    agent: GuestAgent, path: str = DEFAULT_STAND_IN_PATH, *, code_page: int = 437, timeout: float = 60.0
) -> StandInInstall:
    """Put the stand-in at ``path`` in a Linux guest (its folder is created), write ``<path>.codepage``, and
    check that it runs and answers as the stand-in."""
    if not path.startswith("/") or is_windows_path(path):
        raise ConfigurationError(
            f"the PowerShell stand-in goes into Linux guests only, at an absolute POSIX path, not '{path}' "
            f"(e.g. {DEFAULT_STAND_IN_PATH}; the lab guests' root is read-only, /tmp is writable)"
        )
    normalize_encoding(code_page)  # a code page Python (so the stand-in) knows, else a clear error
    folder = posixpath.dirname(path)
    made = agent.exec("/bin/mkdir", ["-p", folder], timeout=timeout)
    if made.rc != 0:
        raise GuestCommandError(f"VM '{agent.vm}': could not create '{folder}' for the stand-in: {made.stderr.strip()}")
    files = GuestFiles(agent, progress=None)
    source = stand_in_source()
    files.upload(source, path, mode=0o755, timeout=timeout)
    files.upload(f"{int(code_page)}\n".encode("ascii"), path + ".codepage", timeout=timeout)
    check = agent.exec(path, list(encoded_args("$PSVersionTable.PSEdition")), timeout=timeout)
    edition = check.stdout.strip()
    if check.rc != 0 or edition != "ATP-Stand-In":
        raise GuestCommandError(
            f"VM '{agent.vm}': the stand-in at '{path}' does not run (rc {check.rc}, stdout {check.stdout!r}, "
            f"stderr {check.stderr.strip()!r}); does the guest have /usr/bin/python3?"
        )
    return StandInInstall(agent.vm, path, int(code_page), hashlib.sha256(source).hexdigest(), edition)


@dataclass(frozen=True)
class GuestKind:
    """What a guest is for PowerShell: ``windows`` (qemu-ga says ``mswindows``), ``stand-in`` (another OS with
    the ATP stand-in at the PowerShell path), ``powershell-path`` (another OS with some other file at that path,
    e.g. PowerShell 7 for Linux) or ``not-windows`` (no PowerShell there); ``os`` is qemu-ga's OS id and name."""

    kind: str
    os: str
    detail: str

    @property
    def runs_powershell(self) -> bool:
        return self.kind in ("windows", "stand-in", "powershell-path")


def guest_kind(agent: GuestAgent, powershell: str, *, timeout: float = 10.0) -> GuestKind:
    """Ask qemu-ga for the OS (``guest-get-osinfo``); for a non-Windows guest, look at ``powershell``."""
    try:
        info = agent.command("guest-get-osinfo", timeout=timeout, idempotent=True)
    except GuestAgentError as error:
        info = {}
        os_error: str | None = str(error)
    else:
        os_error = None
    info = info if isinstance(info, dict) else {}
    os_id = str(info.get("id") or "unknown")
    os_name = str(info.get("pretty-name") or info.get("name") or os_id)
    if os_id == "mswindows":
        return GuestKind("windows", os_name, "qemu-ga guest-get-osinfo id is 'mswindows'")
    files = GuestFiles(agent, progress=None)
    try:
        head = files.download(powershell, timeout=timeout, max_size=256 * 1024)[:_HEAD]
    except GuestFileNotFoundError:
        why = f" (guest-get-osinfo failed: {os_error})" if os_error else ""
        return GuestKind("not-windows", os_name, f"OS id '{os_id}'{why}; no file at '{powershell}'")
    except GuestAgentError as error:
        if "bigger than max_size" in str(error) or "more than max_size" in str(error):
            return GuestKind("powershell-path", os_name, f"OS id '{os_id}'; a big file at '{powershell}'")
        return GuestKind("not-windows", os_name, f"OS id '{os_id}'; cannot read '{powershell}': {error}")
    if STAND_IN_MARKER.encode("ascii") in head:
        return GuestKind(
            "stand-in", os_name, f"OS id '{os_id}'; '{powershell}' is ATPLibrary's PowerShell stand-in (not PowerShell)"
        )
    return GuestKind("powershell-path", os_name, f"OS id '{os_id}'; a file (not the ATP stand-in) at '{powershell}'")
