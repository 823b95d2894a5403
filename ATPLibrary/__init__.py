"""ATPLibrary: a Robot Framework library for testing virtual desktops on libvirt/QEMU."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from robot.api import logger
from robotlibcore import DynamicCore

from ATPLibrary._version import __version__
from ATPLibrary.input.transport import InputTransport
from ATPLibrary.keys import get_layout, key_names_doc
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
from ATPLibrary.keywords.qmp import QmpKeywords
from ATPLibrary.keywords.spice import SpiceKeywords
from ATPLibrary.keywords.vdi import VdiKeywords
from ATPLibrary.keywords.verification import VerificationKeywords


class ATPLibrary(DynamicCore):  # type: ignore[misc]
    """ATPLibrary drives virtual machines on libvirt/QEMU hosts for end-to-end tests of virtual desktops.

    = Hosts =

    Keywords act on the *current host*. `Connect To Host` opens a libvirt connection (any URI:
    ``qemu:///system``, ``qemu+ssh://root@10.0.0.5/system``, ``test:///default``) and makes it current;
    `Switch Host` changes the current host. Without any `Connect To Host`, the ``uri`` given at import is
    used, opened on first use. Broken connections are re-opened with exponential backoff and read operations are
    retried once.

    = VMs =

    VMs are named by their libvirt domain name. A wrong name fails with the list of defined domains, close
    matches first.

    = Input =

    Every keyboard and mouse keyword takes ``via`` and ``verify``:

    - ``via`` chooses how input reaches the VM: ``qmp`` (QEMU's ``input-send-event`` through libvirt, so
      remote hosts work; the default) or ``spice`` (the SPICE inputs channel, as a VDI client sends it,
      through the VM's session from `Open SPICE Session`).
    - ``verify=True`` checks in a closed loop that the guest received exactly what was sent (needs the
      verification agent in the guest: see `Verification`).

    Both default to the library's import arguments, so a suite chooses once:

    | =Setting= | =Value=    | =Value=   | =Value=     |
    | Library   | ATPLibrary | via=qmp   | verify=False |

    `Type Text` uses the guest's keyboard layout (``layout`` import argument, `Set Keyboard Layout`; US by
    default), adds modifiers explicitly (modifier down, key down, key up, modifier up)
    and keeps repeated characters. Keys held with `Hold Key` are released at the end of each test.

    = QMP =

    Input and monitor commands go through libvirt's QEMU monitor passthrough, so ``qemu+ssh://`` hosts work
    like local ones. For QEMU that libvirt does not manage, `Use QMP Socket` sends a VM's QMP to a unix socket
    instead (asynchronous events are kept apart from replies); `Use Libvirt QMP` switches back.

    = Mouse =

    Positions are screen pixels from the top-left corner. `Move Mouse To` scales them to QEMU's absolute
    range 0..32767 with ``round(p * 32767 / (size - 1))`` against the current screen size, so the first pixel
    is 0 and the last is 32767. `Move Mouse By` sends relative moves; buttons and the wheel go to the mouse.

    = VM pool =

    `Acquire VM` leases a VM for this process so that parallel processes (pabot) never drive the same VM;
    the lease ends with `Release VM`, at the end of the test or suite that took it, or when the process
    dies. ``${PABOTEXECUTIONPOOLID}`` alone does not guarantee that: pabot 5.2 hands it out round-robin.

    = Screens =

    `Take Screenshot` saves a PNG (through libvirt, so remote hosts work) and embeds it in log.html.
    Needles are openQA-style: a PNG with a JSON file of ``match`` and ``exclude`` areas, a similarity per
    area (default 96 percent) and an optional click point; a PNG alone is one area. `Screen Should Match`,
    `Wait Until Screen Matches` and `Click On Match` use them. `Wait Until Screen Changes` and
    `Wait Until Screen Is Still` watch the screen, or a region of it, with exclude areas. Relative needle
    names are looked up in ``${EXECDIR}`` and ``${EXECDIR}/needles``. On a mismatch the screen and the
    needle are shown side by side in the log.

    = Verification =

    With ``verify=True`` (per keyword, or for all with the ``verify`` import argument) an input keyword fails
    unless the guest received exactly what was sent: every key event in order, none missing, none extra,
    mouse buttons and movements. The *verification agent* (in the guest; not qemu-ga, the *guest agent*)
    reports what the guest's kernel received to the library's verification server, over the VM's
    virtio-serial port (no guest network needed), TCP or WebSocket. `Deploy Verification Agent` installs it
    through qemu-ga; `Input Should Be Received` checks input sent without ``verify``.

    = Guest files and channels =

    `Upload File To Guest` / `Download File From Guest` move files through qemu-ga in chunks (large files
    work). `Open Channel`, `Write To Channel` and `Read From Channel` talk to a VM's virtio-serial ports
    through libvirt (raw, line or JSON framing).

    = SPICE =

    `Open SPICE Session` connects this library's own SPICE client to a VM (from its live libvirt XML), a
    VDI VM (the platform's ``spice-key``) or a host and port, over TCP or TLS (``tls=True``, ``ca_file``).
    Input keywords with ``via=spice`` then send through it (keys as PC/AT set-1 scan codes, the mouse in
    client mode as pixels or in server mode as relative motion), with ``verify=True`` as well.
    `Take SPICE Screenshot` shows what the SPICE client sees; `Close SPICE Session` ends it. Passwords are
    ``Secret`` values and never logged. See docs/spice.md.

    = Guest agent =

    `Guest Agent Should Respond` and `Execute Command In Guest` use the QEMU guest agent (qemu-ga) through
    libvirt, so they also work on remote hosts.

    = VDI platform =

    `Connect To VDI` logs in to an OCloudView VDI platform (the password is a Robot Framework ``Secret``).
    VDI keywords say VDI: `Create Desk Pool`, `Start VDI VMs`, `Wait Until VDI VM Status`,
    `Get SPICE Connection`… They name *VDI VMs* by their VDI VM name or id, go through the platform (never
    straight to libvirt), and fail with the platform's code and message. `VDI And Libvirt Should Agree` checks
    that each VM's platform status matches its libvirt domain on its host.

    = Timeouts =

    Keywords that wait take a ``timeout`` in Robot's time format (``10s``, ``1 minute 30 seconds``). When it
    is not given, the library's default is used: the ``timeout`` import argument (30 seconds), changed at run
    time with `Set ATP Timeout`. Every timeout, given or default, is multiplied by ``timeout_scale`` (say
    ``timeout_scale=3`` on a slow host). Errors name the VM, the host and the timeout.

    = Failures =

    When an ATPLibrary keyword fails, `Take Screenshot` of the VM it acted on is embedded in the log (change
    it with the ``run_on_failure`` import argument or `Register Keyword To Run On Failure`; ``NONE`` turns
    it off).

    = Example =

    | =Setting= | =Value=    | =Value=     | =Value=            |
    | Library   | ATPLibrary | timeout=60s | uri=qemu:///system |

    | =Test Case=            | =Keyword=                | =Arguments=  |                        |
    | Typed Command Runs     | Type Text                | atp-lab-01   | echo hi > /tmp/hi\\n  |
    |                        | ${result} =              | Execute Command In Guest | atp-lab-01 | cat /tmp/hi |
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
        self._pool.leave_scope(f"test '{data.full_name}'")


ATPLibrary.__doc__ = (
    (ATPLibrary.__doc__ or "")
    + "\n    = Key names =\n\n"
    + "\n".join("    " + line for line in key_names_doc().splitlines())
)

__all__ = ["ATPLibrary", "__version__"]
