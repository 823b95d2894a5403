"""PowerShell in Windows guests through qemu-ga: ``-EncodedCommand`` (UTF-16LE base64) or a guest script file,
output decoded in the console's code page; plus a clearly labelled stand-in for ``powershell.exe`` that proves
all of it on Linux lab guests (see docs/powershell.md)."""

from ATPLibrary.powershell.command import (
    DEFAULT_POWERSHELL,
    MAX_COMMAND_LINE,
    Invocation,
    Route,
    decode_command,
    encode_command,
    plan,
    windows_command_line,
)
from ATPLibrary.powershell.decoding import DecodedOutput, decode_output, normalize_encoding
from ATPLibrary.powershell.runner import PowerShellResult, PowerShellRunner

__all__ = [
    "DEFAULT_POWERSHELL",
    "MAX_COMMAND_LINE",
    "DecodedOutput",
    "Invocation",
    "PowerShellResult",
    "PowerShellRunner",
    "Route",
    "decode_command",
    "decode_output",
    "encode_command",
    "normalize_encoding",
    "plan",
    "windows_command_line",
]
