"""Keywords that run PowerShell in (Windows) guests through the QEMU guest agent."""

from __future__ import annotations

from datetime import timedelta

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.errors import ConfigurationError
from ATPLibrary.hosts.timing import format_seconds
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.keywords.guest import _expected_rc
from ATPLibrary.powershell.command import DEFAULT_POWERSHELL, Route
from ATPLibrary.powershell.runner import PowerShellResult, PowerShellRunner, describe_script, expect_rc
from ATPLibrary.powershell.standin_install import DEFAULT_STAND_IN_PATH, install_stand_in


def _route(value: str | None) -> Route | None:
    if value is None or not str(value).strip() or str(value).strip().lower() == "auto":
        return None
    try:
        return Route(str(value).strip().lower())
    except ValueError:
        raise ConfigurationError(f"route must be 'auto', 'encoded-command' or 'guest-file', not '{value}'.") from None


class PowerShellKeywords:
    """Run PowerShell in guests: ``-EncodedCommand`` (UTF-16LE base64) or, for long scripts, a guest script file."""

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx
        #: The library-wide guest path of powershell.exe (`Set PowerShell Path`).
        self.powershell = DEFAULT_POWERSHELL
        self._code_pages: dict[str, str | None] = {}

    @keyword("Set PowerShell Path")
    def set_powershell_path(self, path: str) -> str:
        """Sets the guest path of ``powershell.exe`` that `Execute PowerShell In Guest` uses and returns the old one.

        The default is ``C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe``. The lab's tests point
        it at the PowerShell stand-in (see `Install PowerShell Stand-In`). Fails when ``path`` is empty; the
        path itself is checked only when a script runs.

        | =Keyword / Assignment= | =Argument=          | =Argument=                 |
        | ${old} =               | Set PowerShell Path | /tmp/atp-ps/powershell.exe |
        """
        if not str(path).strip():
            raise ConfigurationError("Set PowerShell Path needs the guest path of powershell.exe.")
        old, self.powershell = self.powershell, str(path).strip()
        logger.info(f"PowerShell path is now '{self.powershell}' (was '{old}').")
        return old

    @keyword("Execute PowerShell In Guest")
    def execute_powershell_in_guest(
        self,
        vm: str,
        script: str,
        timeout: timedelta | None = None,
        encoding: str = "auto",
        expected_rc: int | str | None = 0,
        powershell: str | None = None,
        script_dir: str | None = None,
        route: str = "auto",
    ) -> PowerShellResult:
        """Runs the PowerShell ``script`` in ``vm`` through the guest agent and returns the result.

        The script goes as ``powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand
        <base64 of its UTF-16LE bytes>``. When that whole command line would be longer than Windows allows
        (32 767 characters with its terminating NUL, less 300 kept for the spawn helper qemu-ga starts it through;
        base64 of UTF-16LE is about 2.67 characters per script character, so from roughly 12 000 script
        characters on) the script is written to a ``.ps1`` file in the guest (UTF-8 with a byte order mark), run
        with ``-File`` and deleted afterwards.

        Arguments:
        - ``script``: PowerShell code; several lines are fine.
        - ``timeout``: for the upload and the run together (default: the library timeout). On timeout the guest
          process is killed and the keyword fails naming the VM and the timeout.
        - ``encoding``: the code page of the output when it is not UTF-8: ``936`` (GBK), ``cp437``, ``1252``...
          or ``auto`` (default: ask the guest's ``[Console]::OutputEncoding`` once per VM, only when needed).
          Decoding never fails: bytes that do not decode are replaced with U+FFFD and the log says so.
        - ``expected_rc``: exit code that passes (default ``0``); ``any`` or ``None`` accepts every code.
        - ``powershell``: the guest path of powershell.exe (default: `Set PowerShell Path`'s).
        - ``script_dir``: guest folder for the script file (default ``C:\\Windows\\Temp``, ``/tmp`` for a
          POSIX PowerShell path).
        - ``route``: ``auto`` (default), ``encoded-command`` or ``guest-file`` to force one.

        Returns the same kind of result as `Execute Command In Guest` (``rc``, ``stdout``, ``stderr``, raw bytes
        in ``stdout_bytes`` and ``stderr_bytes``, ``duration``...), plus ``route``, ``command_line_length``,
        ``stdout_encoding``, ``decoding_notes`` and ``cleanup_error``.

        Fails when the exit code is not ``expected_rc`` (with stderr in the message), when the script does not
        finish within ``timeout`` (the guest process is killed), when the guest agent does not respond or
        cannot start ``powershell``, and at once for an empty script or an unknown ``encoding``. A script file
        that cannot be deleted afterwards is only a warning.

        | =Keyword / Assignment= | =Argument=                  | =Argument= | =Argument=        | =Argument=   |
        | ${result} =            | Execute PowerShell In Guest | win-01     | Write-Output "hi" |              |
        | Should Be Equal        | ${result.stdout}            | hi\\r\\n   |                   |              |
        | ${result} =            | Execute PowerShell In Guest | win-01     | ${long script}    | encoding=936 |
        """
        wanted = _expected_rc(expected_rc)
        seconds = self.ctx.seconds(timeout)
        runner = PowerShellRunner(
            self.ctx.agent(vm),
            powershell=(powershell or self.powershell).strip(),
            script_dir=script_dir or None,
            code_pages=self._code_pages,
        )
        logger.info(f"Running in VM '{vm}': {describe_script(script)}")
        logger.debug(f"Script:\n{script}")
        result = runner.run(script, timeout=seconds, encoding=encoding, route=_route(route))
        status = f"rc {result.rc}" if result.rc is not None else f"killed by signal {result.signal}"
        logger.info(
            f"{status} after {format_seconds(result.duration)} via {result.route} "
            f"(command line {result.command_line_length} characters)\n"
            f"stdout ({result.stdout_encoding}):\n{result.stdout}\nstderr ({result.stderr_encoding}):\n{result.stderr}"
        )
        for note in result.decoding_notes:
            logger.info(f"Decoding: {note}")
        if result.cleanup_error:
            logger.warn(f"VM '{vm}': {result.cleanup_error}")
        if result.truncated:
            logger.warn(f"PowerShell output in VM '{vm}' was truncated by the guest agent (16 MiB cap).")
        expect_rc(result, wanted, vm)
        return result

    @keyword("Install PowerShell Stand-In")
    def install_powershell_stand_in(
        self,
        vm: str,
        path: str = DEFAULT_STAND_IN_PATH,
        code_page: int = 437,
        timeout: timedelta | None = None,
    ) -> str:
        """Installs the PowerShell STAND-IN (a python3 script, NOT PowerShell) in a Linux guest and returns its path.

        For labs without Windows: the stand-in accepts powershell.exe's argument list, decodes
        ``-EncodedCommand`` strictly as UTF-16LE base64, runs ``-File`` scripts and a tiny subset of PowerShell,
        and writes its output in console code page ``code_page`` (``437``, ``936``...). Every run also writes a
        line saying it is the stand-in to stderr. See docs/powershell.md. Point `Execute PowerShell In Guest`
        at it with ``powershell=`` or `Set PowerShell Path`.

        ``path`` must be an absolute POSIX path (its folder is created; the lab guests' root is read-only, so
        use ``/tmp``). ``timeout`` bounds each step (upload, chmod, the check run; default: the library
        timeout). Fails when the path is not a POSIX path, the code page is unknown, the upload fails, or the
        installed stand-in does not answer as the stand-in (no ``/usr/bin/python3`` in the guest).

        | =Keyword / Assignment= | =Argument=                  | =Argument= | =Argument=    | =Argument=       |
        | ${ps} =                | Install PowerShell Stand-In | atp-lab-01 | code_page=936 |                  |
        | ${result} =            | Execute PowerShell In Guest | atp-lab-01 | "hi"          | powershell=${ps} |
        """
        done = install_stand_in(self.ctx.agent(vm), path, code_page=int(code_page), timeout=self.ctx.seconds(timeout))
        logger.info(str(done))
        return done.path
