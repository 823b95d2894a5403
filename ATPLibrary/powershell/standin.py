#!/usr/bin/python3
# ======================================================================================================
#  ATP TEST STAND-IN FOR powershell.exe  --  THIS IS NOT POWERSHELL.   (marker: ATP-POWERSHELL-STAND-IN)
#
#  ATPLibrary installs this file into a *Linux* lab guest (e.g. as /tmp/atp-ps/powershell.exe) because the
#  lab cannot run Windows. It exists only to prove, end to end through qemu-ga, what ATPLibrary sends to and
#  reads from a real powershell.exe:
#    - the argument list: -NoProfile -NonInteractive -ExecutionPolicy <policy> (-EncodedCommand <b64> | -File <p>)
#    - -EncodedCommand decoded strictly as base64 of UTF-16LE, so base64 of UTF-8 runs garbage and fails
#      (failure kind 5: '"hi"' as ImhpIg== instead of IgBoAGkAIgA=), as real PowerShell does;
#    - -File <path.ps1> (only with -ExecutionPolicy Bypass/Unrestricted/RemoteSigned; BOM-less files are read
#      in the ANSI code page 1252, as Windows PowerShell 5.1 does);
#    - output written in a console code page (437 unless <this file>.codepage says otherwise, or a script sets
#      [Console]::OutputEncoding), so callers must decode GBK, CP437 or invalid UTF-8 without crashing.
#  It runs a tiny subset of PowerShell: string/number/variable expressions, $x = ..., Write-Output/echo,
#  Write-Host, Write-Error, exit N, throw, Remove-Item, $PSVersionTable, [Console]::OutputEncoding(.CodePage),
#  [Text.Encoding]::GetEncoding(N)/UTF8, and one stand-in-only command, Write-StandInBytes '<hex>' [-ToStderr].
#  Every run writes the line below (STAND_IN_LABEL) to stderr, so its output can never pass for PowerShell's.
#  Standard library only (the guest's python3).
# ======================================================================================================
"""ATP test stand-in for powershell.exe (NOT PowerShell): see the header of this file."""

from __future__ import annotations

import base64
import binascii
import os
import re
import sys
from collections.abc import Callable

STAND_IN_MARKER = "ATP-POWERSHELL-STAND-IN"
STAND_IN_LABEL = "ATP-STAND-IN: not PowerShell; ATPLibrary's test stand-in for powershell.exe"
STAND_IN_VERSION = "1"
DEFAULT_CODE_PAGE = 437
ANSI_CODE_PAGE = 1252
#: Exit code of invocation errors (bad parameters, unreadable -EncodedCommand, missing -File).
USAGE_RC = 64
_CODECS = {65001: "utf-8", 936: "gbk", 1200: "utf-16-le", 20127: "ascii", 28591: "latin-1"}
_PARAMETERS = (
    "Command",
    "EncodedCommand",
    "ExecutionPolicy",
    "File",
    "InputFormat",
    "NoExit",
    "NoLogo",
    "NonInteractive",
    "NoProfile",
    "OutputFormat",
    "WindowStyle",
    "Help",
)
_WITH_VALUE = {"EncodedCommand", "ExecutionPolicy", "InputFormat", "OutputFormat", "WindowStyle"}
_ALIASES = {"e": "EncodedCommand", "ec": "EncodedCommand", "enc": "EncodedCommand", "?": "Help", "c": "Command"}
_SCRIPT_POLICIES = {"bypass", "unrestricted", "remotesigned"}
_POLICIES = _SCRIPT_POLICIES | {"restricted", "allsigned", "default", "undefined"}
_TOKEN = re.compile(
    r"""\s+
    |'(?:[^']|'')*'
    |"(?:[^"`]|`.)*"
    |\[[A-Za-z.]+\]::[A-Za-z0-9]+(?:\([^)]*\))?(?:\.[A-Za-z]+)*
    |\$[A-Za-z_][\w:]*(?:\.[A-Za-z]+)*
    |-?\d+(?![\w-])
    |=|,
    |[^\s'",=]+""",
    re.X,
)


class Terminate(Exception):
    """exit N, throw, or a usage error: stops the run with ``rc``."""

    def __init__(self, rc: int) -> None:
        super().__init__(rc)
        self.rc = rc


def codec(code_page: int) -> str:
    return _CODECS.get(code_page, f"cp{code_page}")


class Shell:
    """The tiny interpreter; output goes through ``write(stream, bytes)`` in the current code page."""

    def __init__(self, code_page: int, write: Callable[[str, bytes], None]) -> None:
        self.code_page = code_page
        self.write = write
        self.variables: dict[str, object] = {"true": True, "false": False, "null": None}
        self.last_failed = False
        self._bom_pending = False

    # -- output ------------------------------------------------------------------------------------------
    def emit(self, stream: str, text: str) -> None:
        data = (text + "\r\n").encode(codec(self.code_page), errors="replace")
        if self._bom_pending and stream == "stdout":
            data = b"\xef\xbb\xbf" + data  # .NET Framework's Console writes UTF8's preamble first
            self._bom_pending = False
        self.write(stream, data)

    def error(self, message: str, line: int) -> None:
        self.emit("stderr", message)
        self.emit("stderr", f"At line:{line} char:1")
        self.last_failed = True

    # -- values ------------------------------------------------------------------------------------------
    def expand(self, text: str) -> str:
        escapes = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "a": "\a", "`": "`", '"': '"', "$": "\0DOLLAR"}
        text = re.sub(r"`(.)", lambda m: escapes.get(m.group(1), m.group(1)), text)
        text = re.sub(r"\$([A-Za-z_][\w:]*)", lambda m: self.show(self.variable(m.group(1))), text)
        return text.replace("\0DOLLAR", "$")

    def variable(self, name: str) -> object:
        if name.lower().startswith("env:"):
            return os.environ.get(name[4:])
        if name.lower() == "psversiontable":
            return {
                "PSVersion": "5.1 (ATP stand-in, not PowerShell)",
                "PSEdition": "ATP-Stand-In",
                "StandInVersion": STAND_IN_VERSION,
            }
        return self.variables.get(name.lower())

    def value(self, token: str) -> object:
        if token.startswith("'"):
            return token[1:-1].replace("''", "'")
        if token.startswith('"'):
            return self.expand(token[1:-1])
        if re.fullmatch(r"-?\d+", token):
            return int(token)
        if token.startswith("$"):
            name, *props = token[1:].split(".")
            current = self.variable(name)
            for prop in props:
                current = current.get(prop) if isinstance(current, dict) else None
            return current
        if token.startswith("["):
            return self.static_member(token)
        return token  # a bare word as an argument: PowerShell passes it as a string

    def static_member(self, token: str) -> object:
        lowered = token.lower()
        if lowered == "[console]::outputencoding.codepage":
            return self.code_page
        if lowered == "[console]::outputencoding":
            return f"System.Text.Encoding (CodePage {self.code_page})"
        found = re.fullmatch(r"\[(?:system\.)?text\.encoding\]::getencoding\((\d+)\)", lowered)
        if found:
            return ("encoding", int(found.group(1)))
        if re.fullmatch(r"\[(?:system\.)?text\.encoding\]::utf8", lowered):
            return ("encoding", 65001)
        raise ValueError(f"Unable to find type or member {token}.")

    @staticmethod
    def show(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "True" if value else "False"
        if isinstance(value, dict):
            width = 30
            rows = [f"{'Name':<{width}} Value", f"{'----':<{width}} -----"]
            rows += [f"{k:<{width}} {v}" for k, v in value.items()]
            return "\r\n".join(rows)
        return str(value)

    def expression(self, tokens: list[str]) -> list[object]:
        return [self.value(t) for t in tokens if t != ","]

    # -- statements --------------------------------------------------------------------------------------
    def run(self, script: str) -> None:
        script = re.sub(r"<#.*?#>", "", script, flags=re.S)
        for number, line in enumerate(script.replace("\r\n", "\n").split("\n"), start=1):
            for statement in split_statements(line):
                self.statement(statement, number)

    def statement(self, text: str, line: int) -> None:
        try:
            tokens = [t for t in _TOKEN.findall(text) if not t.isspace()]
        except re.error:  # pragma: no cover - the pattern matches every character
            tokens = []
        if not tokens:
            return
        try:
            self._statement(tokens, text, line)
        except ValueError as problem:
            self.error(f"{text} : {problem}", line)

    def _statement(self, tokens: list[str], text: str, line: int) -> None:
        head = tokens[0].lower()
        self.last_failed = False
        if len(tokens) >= 2 and tokens[1] == "=" and (head.startswith("$") or head == "[console]::outputencoding"):
            value = self.expression(tokens[2:])
            single = value[0] if len(value) == 1 else value
            if head == "[console]::outputencoding":
                if not (isinstance(single, tuple) and single[0] == "encoding"):
                    raise ValueError('Exception setting "OutputEncoding": not an encoding')
                self.code_page = int(single[1])
                self._bom_pending = self.code_page == 65001
            else:
                self.variables[head[1:]] = single
            return
        if head == "exit":
            values = self.expression(tokens[1:])
            raise Terminate(int(str(values[0])) if values else 0)
        if head == "throw":
            message = " ".join(self.show(v) for v in self.expression(tokens[1:])) or "ScriptHalted"
            self.emit("stderr", message)
            self.emit("stderr", f"At line:{line} char:1")
            raise Terminate(1)
        command = COMMANDS.get(head)
        if command is not None:
            command(self, tokens[1:], line)
            return
        if re.fullmatch(r"[A-Za-z][\w-]*|[^$'\"\[\d-].*", tokens[0]):
            name = tokens[0]
            self.error(
                f"{name} : The term '{name}' is not recognized as the name of a cmdlet, function, script file, or "
                "operable program. Check the spelling of the name, or if a path was included, verify that the "
                "path is correct and try again.",
                line,
            )
            return
        for item in self.expression(tokens):
            if item is not None:
                self.emit("stdout", self.show(item))


def _switches(tokens: list[str]) -> tuple[list[str], dict[str, str | bool]]:
    positional: list[str] = []
    named: dict[str, str | bool] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if re.fullmatch(r"-[A-Za-z]\w*", token):
            key = token[1:].lower()
            if key in {"force", "tostderr", "recurse", "nonewline"}:
                named[key] = True
            elif index + 1 < len(tokens):
                named[key] = tokens[index + 1]
                index += 1
        elif token != ",":
            positional.append(token)
        index += 1
    return positional, named


def _write_output(shell: Shell, args: list[str], line: int) -> None:
    for value in shell.expression(args):
        if value is not None:
            shell.emit("stdout", shell.show(value))


def _write_error(shell: Shell, args: list[str], line: int) -> None:
    positional, named = _switches(args)
    message = " ".join(shell.show(shell.value(t)) for t in positional)
    if isinstance(named.get("message"), str):
        message = shell.show(shell.value(str(named["message"])))
    shell.error(f"Write-Error: {message}" if message else "Write-Error", line)


def _remove_item(shell: Shell, args: list[str], line: int) -> None:
    positional, named = _switches(args)
    target = named.get("literalpath") or named.get("path") or (positional[0] if positional else None)
    if not isinstance(target, str):
        shell.error("Remove-Item : Cannot bind argument to parameter 'Path' because it is null.", line)
        return
    path = shell.show(shell.value(target))
    try:
        os.remove(path)
    except FileNotFoundError:
        shell.error(f"Remove-Item : Cannot find path '{path}' because it does not exist.", line)
    except OSError as problem:
        shell.error(f"Remove-Item : {problem}", line)


def _write_stand_in_bytes(shell: Shell, args: list[str], line: int) -> None:
    """Stand-in only: write the given hex bytes as they are (e.g. 'ff fe 41' for invalid UTF-8)."""
    positional, named = _switches(args)
    text = " ".join(shell.show(shell.value(t)) for t in positional)
    try:
        data = bytes.fromhex(text)
    except ValueError:
        shell.error(f"Write-StandInBytes : '{text}' is not hex bytes (e.g. 'c4 e3 ba c3')", line)
        return
    shell.write("stderr" if named.get("tostderr") else "stdout", data)


COMMANDS: dict[str, Callable[[Shell, list[str], int], None]] = {
    "write-output": _write_output,
    "echo": _write_output,
    "write-host": _write_output,
    "write-error": _write_error,
    "remove-item": _remove_item,
    "del": _remove_item,
    "write-standinbytes": _write_stand_in_bytes,
}


def split_statements(line: str) -> list[str]:
    """``line`` cut at ``;`` outside quotes, a ``#`` comment outside quotes dropped."""
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    index = 0
    while index < len(line):
        char = line[index]
        if quote:
            current.append(char)
            if char == "`" and quote == '"' and index + 1 < len(line):
                current.append(line[index + 1])
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == ";":
            parts.append("".join(current))
            current = []
        elif char == "#":
            break
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


# -- the command line -----------------------------------------------------------------------------------------
def parameter_name(arg: str) -> str | None:
    """The powershell.exe parameter ``arg`` names (``-nop``, ``-NoProfile``, ``/File``...), None if unknown."""
    if not arg or arg[0] not in "-/" or len(arg) < 2:
        return None
    word = arg[1:].lower()
    if word in _ALIASES:
        return _ALIASES[word]
    matches = [p for p in _PARAMETERS if p.lower().startswith(word)]
    exact = [p for p in matches if p.lower() == word]
    if exact:
        return exact[0]
    return matches[0] if len(matches) == 1 else None


def load_code_page(program: str) -> int:
    """The stand-in's console code page: ``<program>.codepage`` (a number) next to it, else 437."""
    try:
        with open(program + ".codepage", encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return DEFAULT_CODE_PAGE


def read_script_file(path: str) -> str:
    """A ``.ps1`` file as Windows PowerShell 5.1 reads it: by its BOM, else in the ANSI code page."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    return data.decode(codec(ANSI_CODE_PAGE), errors="replace")


def main(argv: list[str], write: Callable[[str, bytes], None], program: str) -> int:
    shell = Shell(load_code_page(program), write)
    shell.emit("stderr", STAND_IN_LABEL)
    policy = "restricted"
    script: str | None = None
    file_path: str | None = None
    index = 0
    while index < len(argv):
        arg = argv[index]
        name = parameter_name(arg)
        if name is None:
            shell.emit("stderr", f"ATP-STAND-IN: unknown parameter '{arg}' (real powershell.exe: see -Help)")
            return USAGE_RC
        if name == "Help":
            shell.emit("stdout", f"{STAND_IN_LABEL}. Parameters: " + ", ".join(f"-{p}" for p in _PARAMETERS))
            return 0
        if name in _WITH_VALUE:
            if index + 1 >= len(argv):
                shell.emit("stderr", f"Missing argument for parameter {name}.")
                return USAGE_RC
            value = argv[index + 1]
            index += 1
            if name == "ExecutionPolicy":
                if value.lower() not in _POLICIES:
                    shell.emit("stderr", f"Invalid argument '{value}' to the -ExecutionPolicy parameter.")
                    return USAGE_RC
                policy = value.lower()
            elif name == "EncodedCommand":
                try:
                    raw = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    shell.emit(
                        "stderr",
                        "Cannot process the command because the value specified with -EncodedCommand is not "
                        "properly encoded. The value must be Base64 encoded.",
                    )
                    return USAGE_RC
                # .NET's Encoding.Unicode.GetString: UTF-16LE, a dangling odd byte becomes U+FFFD.
                script = raw.decode("utf-16-le", errors="replace")
        elif name == "File":
            if index + 1 >= len(argv):
                shell.emit("stderr", "Missing argument for parameter File.")
                return USAGE_RC
            file_path = argv[index + 1]
            break  # -File takes the rest of the line as the script's own arguments
        elif name == "Command":
            script = " ".join(argv[index + 1 :])
            break
        index += 1
    try:
        if file_path is not None:
            return run_file(shell, file_path, policy)
        if script is None:
            shell.emit("stderr", "ATP-STAND-IN: no -EncodedCommand, -Command or -File given (no interactive shell).")
            return USAGE_RC
        shell.run(script)
    except Terminate as stop:
        return stop.rc
    return 1 if shell.last_failed else 0


def run_file(shell: Shell, path: str, policy: str) -> int:
    if not path.lower().endswith(".ps1"):
        shell.emit(
            "stderr",
            f"Processing -File '{path}' failed because the file does not have a '.ps1' extension. Specify a valid "
            "Windows PowerShell script file name, and then try again.",
        )
        return USAGE_RC
    if not os.path.isfile(path):
        shell.emit(
            "stderr",
            f"The argument '{path}' to the -File parameter does not exist. Provide the path to an existing '.ps1' "
            "file as an argument to the -File parameter.",
        )
        return USAGE_RC
    if policy not in _SCRIPT_POLICIES:
        shell.emit(
            "stderr",
            f"File {path} cannot be loaded because running scripts is disabled on this system. (execution "
            f"policy {policy}; give -ExecutionPolicy Bypass)",
        )
        return 1
    shell.run(read_script_file(path))
    return 0


def _write(stream: str, data: bytes) -> None:
    target = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
    target.write(data)
    target.flush()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:], _write, os.path.realpath(sys.argv[0])))
    except Terminate as final:
        sys.exit(final.rc)
