"""Keywords about the library itself: the default timeout and what runs when a keyword fails."""

from __future__ import annotations

from datetime import timedelta

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.keywords.context import LibraryContext, to_seconds

NOTHING = ("", "NONE", "NOTHING")


class LibraryKeywords:
    """Library-wide settings that a suite may change while it runs."""

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

    @keyword("Set ATP Timeout")
    def set_atp_timeout(self, timeout: timedelta | str | float) -> str:
        """Sets the default timeout of every keyword that waits and returns the previous one.

        The library's ``timeout_scale`` still multiplies it. Returns the previous timeout as text such as
        ``30.0 seconds``, which this keyword takes back to restore it. Fails when ``timeout`` is not a time
        (``10s``, ``1 minute``) or is negative.

        | =Assignment= | =Keyword=       | =Timeout= |
        | ${old} =     | Set ATP Timeout | 2 minutes |
        | ...          | Set ATP Timeout | ${old}    |
        """
        old = self.ctx.timeout
        timeout = timedelta(seconds=to_seconds(timeout))
        self.ctx.timeout = timeout
        logger.info(f"Default timeout is now {timeout} (was {old}).")
        return str(old.total_seconds()) + " seconds"

    @keyword("Register Keyword To Run On Failure")
    def register_keyword_to_run_on_failure(self, keyword: str | None) -> str | None:
        """Sets the keyword run when an ATPLibrary keyword fails and returns the previous one.

        The default is `Take Screenshot` of the VM the failing keyword acted on. ``NONE`` turns it off.
        The keyword gets the VM as its only argument, and runs once per test, VM and failure message.
        Returns the previous keyword's name (``None`` when nothing was registered). The name is not checked
        here: when the registered keyword fails itself, that is logged as a warning and the original
        failure stands.

        | =Assignment=  | =Keyword=                          | =Keyword=       |
        | ${previous} = | Register Keyword To Run On Failure | NONE            |
        | ...           | Register Keyword To Run On Failure | ${previous}     |
        """
        previous = self.ctx.run_on_failure
        new = None if keyword is None or keyword.strip().upper() in NOTHING else keyword
        self.ctx.run_on_failure = new
        logger.info(f"Keyword to run on failure: {new or 'nothing'} (was {previous or 'nothing'}).")
        return previous
