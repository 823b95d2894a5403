"""How a PowerShell script becomes a ``guest-exec`` call: ``-EncodedCommand`` or a guest script file.

``-EncodedCommand`` takes base64 of the script's **UTF-16LE** bytes, without a byte order mark. Base64 of UTF-8
bytes (failure kind 5: ``"hi"`` as ``ImhpIg==`` instead of ``IgBoAGkAIgA=``) is read by PowerShell as UTF-16LE
too, so it runs garbage (``"hi"`` becomes the two characters U+6822 U+2269) and fails.

Windows caps one command line (``CreateProcessW``'s ``lpCommandLine``) at 32 767 characters *including* its
terminating NUL. qemu-ga on Windows joins ``path`` and ``arg`` into that line with the Microsoft C runtime's
quoting rules (as :func:`subprocess.list2cmdline` does), so the whole line is measured: the executable's path,
the switches, the spaces and any quotes. Because qemu-ga captures the output, GLib starts the process through
its spawn helper (glib/gspawn-win32.c needs the helper whenever stdout/stderr are redirected), and the
helper's own command line is its path and ten short arguments in front of ours; :data:`HELPER_RESERVE`
characters are kept free for them. Base64 of UTF-16LE is 8/3 (about 2.67) characters per script character, so
scripts above roughly 12 000 characters cannot go on the command line; they are written to a guest file
(``.ps1``, UTF-8 with a BOM so that Windows PowerShell 5.1 does not read it in the ANSI code page) and run with
``-File``, then the file is deleted.
"""

from __future__ import annotations

import base64
import binascii
import ntpath
import posixpath
import subprocess
import uuid
from dataclasses import dataclass
from enum import StrEnum

from ATPLibrary.errors import ConfigurationError

#: Where Windows keeps PowerShell 5.1 (the original system's path; present on every Windows since 7 / 2008 R2).
DEFAULT_POWERSHELL = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
#: ``CreateProcessW``: "The maximum length of this string is 32,767 characters, including the Unicode
#: terminating null character."
MAX_COMMAND_LINE = 32767
#: Characters kept free for GLib's spawn helper in front of our command line: its quoted path (up to MAX_PATH,
#: 260) and its ten arguments (file descriptor numbers and one-character flags).
HELPER_RESERVE = 300
#: Switches before ``-EncodedCommand`` / ``-File``: no profile scripts (they are slow and change the
#: environment), never prompt (a prompt would hang until the timeout), and let ``-File`` run a script whatever
#: the machine's execution policy is (``Restricted`` on Windows clients).
COMMON_SWITCHES: tuple[str, ...] = ("-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass")
#: UTF-8 byte order mark written at the start of guest script files.
UTF8_BOM = b"\xef\xbb\xbf"
#: Folder for guest script files on Windows (qemu-ga runs as SYSTEM, whose %TEMP% is this folder).
WINDOWS_SCRIPT_DIR = r"C:\Windows\Temp"
#: Folder for guest script files on other guests (the stand-in on a Linux lab guest).
POSIX_SCRIPT_DIR = "/tmp"


class Route(StrEnum):
    """How the script reaches PowerShell."""

    ENCODED_COMMAND = "encoded-command"
    GUEST_FILE = "guest-file"


def encode_command(script: str) -> str:
    """The ``-EncodedCommand`` value of ``script``: base64 of its UTF-16LE bytes, no BOM.

    >>> encode_command('"hi"')
    'IgBoAGkAIgA='
    """
    if not isinstance(script, str):
        raise ConfigurationError(f"a PowerShell script must be text, not {type(script).__name__}")
    # 'utf-16-le' never writes a BOM ('utf-16' would put FF FE in front).
    return base64.b64encode(script.encode("utf-16-le", errors="surrogatepass")).decode("ascii")


def decode_command(value: str) -> str:
    """The script inside an ``-EncodedCommand`` value (strict: the value must be base64 of UTF-16LE)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ConfigurationError(f"-EncodedCommand value is not base64: {err}") from None
    if len(raw) % 2:
        raise ConfigurationError(
            f"-EncodedCommand value decodes to {len(raw)} bytes, an odd number: it is not UTF-16LE "
            "(was it made from UTF-8 bytes?)"
        )
    return raw.decode("utf-16-le", errors="strict")


def windows_command_line(path: str, args: list[str] | tuple[str, ...]) -> str:
    """The command line Windows gets for ``path args...`` (Microsoft C runtime quoting, as qemu-ga builds it)."""
    return subprocess.list2cmdline([path, *args])


def is_windows_path(path: str) -> bool:
    """Whether ``path`` is a Windows path (a drive letter, a UNC path or backslashes)."""
    return (len(path) >= 2 and path[1] == ":") or path.startswith("\\\\") or "\\" in path


@dataclass(frozen=True)
class Invocation:
    """One planned PowerShell run: the executable, its arguments, the route and (guest file route) the file."""

    powershell: str
    args: tuple[str, ...]
    route: Route
    command_line_length: int
    script_path: str | None = None
    script_bytes: bytes = b""

    @property
    def command_line(self) -> str:
        return windows_command_line(self.powershell, self.args)

    def display(self, limit: int = 160) -> str:
        """A short, loggable form (the base64 value cut in the middle)."""
        line = self.command_line
        return line if len(line) <= limit else f"{line[: limit - 40]}...({len(line)} characters)...{line[-20:]}"


def encoded_args(script: str) -> tuple[str, ...]:
    """``-NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand <UTF-16LE base64>``."""
    return (*COMMON_SWITCHES, "-EncodedCommand", encode_command(script))


def file_args(script_path: str) -> tuple[str, ...]:
    """``-NoProfile -NonInteractive -ExecutionPolicy Bypass -File <path>`` (``-File`` must come last)."""
    return (*COMMON_SWITCHES, "-File", script_path)


def script_file_bytes(script: str) -> bytes:
    """What a guest ``.ps1`` file holds: UTF-8 with a BOM (PowerShell 5.1 reads BOM-less files as ANSI)."""
    return UTF8_BOM + script.encode("utf-8", errors="surrogatepass")


def default_script_dir(powershell: str) -> str:
    """Where guest script files go when no folder is given: Windows' temp folder, else ``/tmp``."""
    return WINDOWS_SCRIPT_DIR if is_windows_path(powershell) else POSIX_SCRIPT_DIR


def script_file_path(script_dir: str, name: str | None = None) -> str:
    """A fresh ``.ps1`` path in ``script_dir`` (Windows or POSIX joining, from the folder's form)."""
    file_name = name or f"atp-ps-{uuid.uuid4().hex}.ps1"
    join = ntpath.join if is_windows_path(script_dir) else posixpath.join
    return join(script_dir, file_name)


def fits(command_line_length: int, max_command_line: int = MAX_COMMAND_LINE, reserve: int = HELPER_RESERVE) -> bool:
    """Whether a command line of that length (plus its NUL and the helper's ``reserve``) fits Windows' limit."""
    return command_line_length + 1 + reserve <= max_command_line


def plan(
    script: str,
    powershell: str = DEFAULT_POWERSHELL,
    *,
    script_dir: str | None = None,
    max_command_line: int = MAX_COMMAND_LINE,
    reserve: int = HELPER_RESERVE,
    force_route: Route | str | None = None,
) -> Invocation:
    """Decide the route for ``script``: ``-EncodedCommand`` when the whole command line, its NUL and ``reserve``
    characters for the spawn helper fit ``max_command_line``, else a guest script file run with ``-File``.

    ``force_route`` chooses the route regardless (tests, or a guest that refuses one of them).
    """
    if not powershell or not powershell.strip():
        raise ConfigurationError("the PowerShell path is empty: give the guest path of powershell.exe")
    if not script.strip():
        raise ConfigurationError("the PowerShell script is empty: give at least one command")
    forced = Route(force_route) if force_route is not None else None
    args = encoded_args(script)
    length = len(windows_command_line(powershell, args))
    if forced is Route.ENCODED_COMMAND or (forced is None and fits(length, max_command_line, reserve)):
        return Invocation(powershell, args, Route.ENCODED_COMMAND, length)
    path = script_file_path(script_dir or default_script_dir(powershell))
    args = file_args(path)
    return Invocation(
        powershell,
        args,
        Route.GUEST_FILE,
        len(windows_command_line(powershell, args)),
        script_path=path,
        script_bytes=script_file_bytes(script),
    )


def cleanup_script(script_path: str) -> str:
    """The PowerShell that deletes a guest script file (run with ``-EncodedCommand`` after ``-File``)."""
    quoted = script_path.replace("'", "''")
    return f"Remove-Item -LiteralPath '{quoted}' -Force"
