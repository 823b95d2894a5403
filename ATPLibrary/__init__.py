"""ATPLibrary: a Robot Framework library for testing virtual desktops on libvirt/QEMU."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from robot.api import logger
from robotlibcore import DynamicCore

from ATPLibrary._intro import library_doc
from ATPLibrary._version import __version__
from ATPLibrary.input.transport import InputTransport
from ATPLibrary.keys import get_layout
from ATPLibrary.keywords import (
    GuestKeywords,
    HostKeywords,
    KeyboardKeywords,
    LibraryContext,
    LibraryKeywords,
    MouseKeywords,
    PoolKeywords,
    ScreenKeywords,
)
from ATPLibrary.keywords.channels import ChannelKeywords
from ATPLibrary.keywords.files import FilesKeywords
from ATPLibrary.keywords.powershell import PowerShellKeywords
from ATPLibrary.keywords.qmp import QmpKeywords
from ATPLibrary.keywords.spice import SpiceKeywords
from ATPLibrary.keywords.vdi import VdiKeywords
from ATPLibrary.keywords.verification import VerificationKeywords


class ATPLibrary(DynamicCore):  # type: ignore[misc]
    """Drives virtual machines on libvirt/QEMU hosts for end-to-end tests of virtual desktops.

    The documentation libdoc shows (sections, examples, key names) is in ATPLibrary/_intro.py.
    """

    ROBOT_LIBRARY_SCOPE = "GLOBAL"
    ROBOT_LIBRARY_VERSION = __version__
    ROBOT_LIBRARY_DOC_FORMAT = "ROBOT"
    ROBOT_LISTENER_API_VERSION = 3

    def __init__(
        self,
        timeout: timedelta = timedelta(seconds=30),
        uri: str = "qemu:///system",
        timeout_scale: float = 1.0,
        via: InputTransport = InputTransport.QMP,
        verify: bool = False,
        run_on_failure: str = "Take Screenshot",
        layout: str = "us",
    ) -> None:
        """Imports the library; nothing is opened until a keyword needs a host.

        - ``timeout``: default for every keyword that waits (``30s``, ``1 minute``).
        - ``uri``: libvirt URI used when no `Connect To Host` was called.
        - ``timeout_scale``: multiplies every timeout (for slow hosts, e.g. ``2.5``).
        - ``via``: default input transport of every input keyword (``qmp`` or ``spice``).
        - ``verify``: default closed-loop verification of every input keyword.
        - ``run_on_failure``: keyword run with the VM when an ATPLibrary keyword fails (``NONE``: nothing).
        - ``layout``: keyboard layout of the guests for `Type Text` (``us``, ``de``); see `Set Keyboard Layout`.

        | =Setting= | =Value=    | =Value=     | =Value=         | =Value=             |
        | Library   | ATPLibrary | timeout=60s | timeout_scale=2 | run_on_failure=NONE |
        """
        self.ctx = LibraryContext(timeout=timeout, uri=uri, timeout_scale=timeout_scale, via=via, verify=verify)
        self.ctx.layout = get_layout(layout)
        self.ctx.run_on_failure = None if run_on_failure.strip().upper() in ("", "NONE", "NOTHING") else run_on_failure
        self._keyboard = KeyboardKeywords(self.ctx)
        self._pool = PoolKeywords(self.ctx)
        self._channels = ChannelKeywords(self.ctx)
        self._vdi = VdiKeywords(self.ctx)
        self._screen = ScreenKeywords(self.ctx)
        self._spice = SpiceKeywords(self.ctx, self._vdi, self._screen)
        self._running_on_failure = False
        self._failures_shown: set[tuple[object, str, str]] = set()
        DynamicCore.__init__(
            self,
            [
                HostKeywords(self.ctx),
                GuestKeywords(self.ctx),
                self._keyboard,
                MouseKeywords(self.ctx),
                self._screen,
                LibraryKeywords(self.ctx),
                QmpKeywords(self.ctx),
                FilesKeywords(self.ctx),
                PowerShellKeywords(self.ctx),
                self._channels,
                VerificationKeywords(self.ctx),
                self._pool,
                self._vdi,
                self._spice,
            ],
        )
        self.ROBOT_LIBRARY_LISTENER = self

    def run_keyword(self, name: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> Any:
        try:
            return DynamicCore.run_keyword(self, name, args, kwargs)
        except Exception as error:
            self._run_on_failure(error)
            raise
        finally:
            self._relay_verification_notices()

    def _relay_verification_notices(self) -> None:
        """The verification server's warnings (rejected agents, lost sessions) into log.html: Robot only
        takes log messages from the thread that runs the keyword."""
        server = self.ctx.verification
        if server is not None:
            for notice in server.notices():
                logger.warn(f"Verification server: {notice}")

    def _run_on_failure(self, error: BaseException) -> None:
        keyword, vm = self.ctx.run_on_failure, self.ctx.last_vm
        if not keyword or not vm or self._running_on_failure:
            return
        self._running_on_failure = True
        try:
            from robot.libraries.BuiltIn import BuiltIn, RobotNotRunningError

            with contextlib.suppress(RobotNotRunningError):  # outside a Robot run there is no log to add to
                # Once per test, VM and error: retries (Wait Until Keyword Succeeds) add no new pictures.
                seen = (BuiltIn().get_variable_value("${TEST NAME}"), vm, str(error)[:300])
                if seen in self._failures_shown:
                    return
                self._failures_shown.add(seen)
                BuiltIn().run_keyword(keyword, vm)
        except Exception as exc:  # a failing screenshot must not hide the real failure
            logger.warn(f"Keyword '{keyword}' run on failure failed too: {exc}")
        finally:
            self._running_on_failure = False

    # Listener API 3 (the library is its own listener).
    def start_suite(self, data: Any, result: Any) -> None:
        self._pool.enter_scope(f"suite '{data.full_name}'")

    def end_suite(self, data: Any, result: Any) -> None:
        self._pool.leave_scope(f"suite '{data.full_name}'")
        if data.parent is None:  # the whole run ends: close what is still open
            self._channels.close_all_channels()
            self._vdi.disconnect_from_vdi()
            self._spice.close_spice_session()
            if self.ctx.verification is not None:
                self.ctx.verification.stop()

    def start_test(self, data: Any, result: Any) -> None:
        self._pool.enter_scope(f"test '{data.full_name}'")

    def end_test(self, data: Any, result: Any) -> None:
        self._keyboard.release_held_keys()
        self._pool.leave_scope(f"test '{data.full_name}'", result)  # a lost lease fails the test


ATPLibrary.__doc__ = library_doc()

__all__ = ["ATPLibrary", "__version__"]
