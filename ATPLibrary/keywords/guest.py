"""Keywords that talk to the QEMU guest agent."""

from __future__ import annotations

from datetime import timedelta

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.errors import ConfigurationError, GuestCommandError
from ATPLibrary.hosts.timing import format_seconds
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.qga.agent import ExecResult


def _expected_rc(value: int | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text in ("any", "none", ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"expected_rc must be an integer, 'any' or None, not '{value}'.") from None


class GuestKeywords:
    """Run commands in guests and check the guest agent."""

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

    @keyword("Guest Agent Should Respond")
    def guest_agent_should_respond(self, vm: str, timeout: timedelta | None = None) -> None:
        """Waits until the QEMU guest agent of ``vm`` answers ``guest-ping``.

        "Not connected yet" answers are retried, so right after `Start VM` this waits for the guest to boot.
        Fails with ``guest agent not responding ... within <timeout>`` when qemu-ga does not answer in
        ``timeout`` (default: the library timeout), and at once when the VM is not running.

        | =Keyword=                  | =VM=       | =Timeout=   |
        | Start VM                   | atp-lab-03 |             |
        | Guest Agent Should Respond | atp-lab-03 | timeout=60s |
        """
        seconds = self.ctx.seconds(timeout)
        waited = self.ctx.agent(vm).ping(seconds)
        logger.info(f"Guest agent of VM '{vm}' responded after {format_seconds(waited)}.")

    @keyword("Execute Command In Guest")
    def execute_command_in_guest(
        self, vm: str, command: str, timeout: timedelta | None = None, expected_rc: int | str | None = 0
    ) -> ExecResult:
        """Runs ``command`` with ``/bin/sh -c`` in ``vm`` through the guest agent and returns the result.

        Arguments:
        - ``command``: a shell command line (Linux guests).
        - ``timeout``: how long the command may run (default: the library timeout). On timeout the guest
          process is killed and the keyword fails naming the command, the VM and the timeout.
        - ``expected_rc``: exit code that passes (default ``0``); ``any`` or ``None`` accepts every code.
          An unexpected code fails with stderr in the message.

        The result has ``rc``, ``stdout`` and ``stderr`` (text; raw bytes in ``stdout_bytes`` and
        ``stderr_bytes``), ``signal``, ``duration`` and ``stdout_truncated`` and ``stderr_truncated``
        (qemu-ga caps output at 16 MiB).

        | =Keyword / Assignment=      | =Argument=               | =Argument= | =Argument= | =Argument=      |
        | ${result} =                 | Execute Command In Guest | atp-lab-03 | echo hi    |                 |
        | Should Be Equal             | ${result.stdout}         | hi\\n      |            |                 |
        | ${result} =                 | Execute Command In Guest | atp-lab-03 | false      | expected_rc=any |
        | Should Be Equal As Integers | ${result.rc}             | 1          |            |                 |
        """
        wanted = _expected_rc(expected_rc)
        seconds = self.ctx.seconds(timeout)
        logger.info(f"Running in VM '{vm}': {command}")
        result = self.ctx.agent(vm).run_shell(command, timeout=seconds)
        status = f"rc {result.rc}" if result.rc is not None else f"killed by signal {result.signal}"
        logger.info(
            f"{status} after {format_seconds(result.duration)}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        if result.truncated:
            logger.warn(
                f"Output of '{command}' in VM '{vm}' was truncated by the guest agent "
                f"(stdout: {result.stdout_truncated}, stderr: {result.stderr_truncated})."
            )
        if wanted is not None and result.rc != wanted:
            stderr = result.stderr.strip() or "(empty)"
            raise GuestCommandError(
                f"Command '{command}' in VM '{vm}' exited with {status}, expected rc {wanted}. stderr: {stderr}"
            )
        return result
