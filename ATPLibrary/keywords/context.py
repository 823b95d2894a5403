"""State shared by the keyword classes: the host registry and the library defaults."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit
from xml.etree import ElementTree

from ATPLibrary.errors import ConfigurationError, VerificationError
from ATPLibrary.hosts.connection import DomainHandle, HostConnection
from ATPLibrary.hosts.registry import HostRegistry
from ATPLibrary.input.mouse import coerce_enum
from ATPLibrary.input.pointer import QmpPointer
from ATPLibrary.input.recording import EventSink, RecordingSink
from ATPLibrary.input.transport import InputTransport, require_available
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KeyMap, KeyRecord
from ATPLibrary.keys.layout import US, Layout
from ATPLibrary.qga.agent import GuestAgent
from ATPLibrary.qmp.keyboard import QmpKeyboard
from ATPLibrary.qmp.monitor import MonitorClient
from ATPLibrary.qmp.socket_transport import SocketQmpTransport
from ATPLibrary.qmp.transport import LibvirtQmpTransport, QmpTransport
from ATPLibrary.screen.capture import take_screenshot
from ATPLibrary.verification.matcher import qmp_events
from ATPLibrary.verification.protocol import VIRTIO_PORT_NAME
from ATPLibrary.verification.server import VerificationServer
from ATPLibrary.verification.session import SessionInfo

if TYPE_CHECKING:
    from ATPLibrary.keywords.vdi import VdiSession
    from ATPLibrary.spice.session import SpiceSession

T = TypeVar("T")
Sleep = Callable[[float], None]
#: How long after unverified input a verified keyword waits before it starts collecting events (the guest's
#: reports of the earlier input take a few ms, tens under load).
SETTLE_AFTER_UNVERIFIED = 0.3


class LibraryContext:
    """Holds the :class:`HostRegistry`, the default timeout and URI, and the keyboard layout.

    Nothing here does I/O when created; hosts open on first use.
    """

    def __init__(
        self,
        timeout: timedelta | float | str = timedelta(seconds=30),
        uri: str = "qemu:///system",
        registry: HostRegistry | None = None,
        *,
        timeout_scale: float = 1.0,
        via: InputTransport = InputTransport.QMP,
        verify: bool = False,
    ) -> None:
        if timeout_scale <= 0:
            raise ConfigurationError(f"timeout_scale must be a positive number, got {timeout_scale}")
        self.timeout = timedelta(seconds=to_seconds(timeout))
        self.timeout_scale = float(timeout_scale)
        #: Library-wide input defaults; every input keyword's ``via=``/``verify=`` falls back to these.
        self.via = via
        self.verify = verify
        #: The VM the last keyword acted on (run-on-failure screenshots it).
        self.last_vm: str | None = None
        #: Keyword run with that VM when an ATPLibrary keyword fails (None: nothing).
        self.run_on_failure: str | None = "Take Screenshot"
        #: The verification server (started by the first verified keyword or `Start Verification Server`).
        self.verification: VerificationServer | None = None
        #: Per VM, the verification server's mark taken when the last input keyword started.
        self.input_marks: dict[str, int] = {}
        #: Per VM, when the last unverified input was sent (a verified keyword right after it waits a moment).
        self.unverified_sent: dict[str, float] = {}
        #: Keys held down with `Hold Key`, per VM, released at the end of each test.
        self.held_keys: dict[str, list[KeyRecord]] = {}
        self.default_uri = uri
        self.registry = registry or HostRegistry()
        self.layout: Layout = US
        self.keymap: KeyMap = DEFAULT_KEYMAP
        #: VMs whose QMP goes to a unix socket instead of libvirt (`Use QMP Socket`), one connection each.
        self.qmp_sockets: dict[str, SocketQmpTransport] = {}
        #: The VDI platform `Connect To VDI` logged in to (closed by `Disconnect From VDI` or at the end of the run).
        self.vdi: VdiSession | None = None
        #: SPICE client sessions by name (`Open SPICE Session`): a VM's name routes its via=spice input.
        self.spice_sessions: dict[str, SpiceSession] = {}

    def seconds(self, timeout: timedelta | float | str | None) -> float:
        """A keyword's timeout in seconds (None: the library default), times the library's timeout scale."""
        base = self.timeout.total_seconds() if timeout is None else to_seconds(timeout)
        return base * self.timeout_scale

    @property
    def host(self) -> HostConnection:
        """The current host; without any Connect To Host, the import URI (opened lazily)."""
        current = self.registry.current
        if current is None:
            current = self.registry.add(self.default_uri)
        return current

    def domain(self, vm: str) -> DomainHandle:
        self.last_vm = vm
        return self.host.domain(vm)

    def agent(self, vm: str) -> GuestAgent:
        return GuestAgent(self.domain(vm))

    def qmp_transport(self, vm: str) -> QmpTransport:
        """The VM's QMP socket if `Use QMP Socket` set one, else libvirt's passthrough on the current host."""
        socket_transport = self.qmp_sockets.get(vm)
        if socket_transport is not None:
            self.last_vm = vm
            return socket_transport
        return LibvirtQmpTransport(self.domain(vm))

    def monitor(self, vm: str) -> MonitorClient:
        return MonitorClient(self.qmp_transport(vm), timeout=self.seconds(None))

    def keyboard(self, vm: str, sink: EventSink | None = None, sleep: Sleep | None = None) -> QmpKeyboard:
        """The VM's keyboard; ``sink``/``sleep`` replace the monitor and the pauses (recording for verify)."""
        monitor: Any = sink if sink is not None else self.monitor(vm)
        return QmpKeyboard(monitor, layout=self.layout, keymap=self.keymap, sleep=sleep or time.sleep)

    def pointer(self, vm: str, sink: EventSink | None = None, sleep: Sleep | None = None) -> QmpPointer:
        domain = self.domain(vm)

        def screen_size() -> tuple[int, int]:
            shot = take_screenshot(domain)
            return shot.width, shot.height

        return QmpPointer(sink if sink is not None else self.monitor(vm), screen_size, sleep=sleep or time.sleep)

    # ------------------------------------------------------------ SPICE

    def spice_session(self, name: str) -> SpiceSession:
        """The open SPICE session called ``name`` (a VM or an alias), or a clear error."""
        session = self.spice_sessions.get(name)
        if session is None:
            opened = ", ".join(sorted(self.spice_sessions)) or "none"
            raise ConfigurationError(
                f"No SPICE session is open for '{name}' (open: {opened}). Use Open SPICE Session    {name} first; "
                "via=spice sends input through it."
            )
        if session.closed:
            raise ConfigurationError(f"The SPICE session '{name}' was closed; use Open SPICE Session again.")
        return session

    def input_sink(self, vm: str, via: InputTransport) -> EventSink:
        """Where ``vm``'s input goes: its QMP monitor, or its SPICE session's inputs channel."""
        if via is InputTransport.SPICE:
            from ATPLibrary.spice.sink import SpiceInputSink

            self.last_vm = vm
            return SpiceInputSink(self.spice_session(vm), self.keymap)
        return self.monitor(vm)

    # ------------------------------------------------------------ verification

    def verification_server(self) -> VerificationServer:
        """The library's verification server, started on first use (no network listener until asked)."""
        if self.verification is None:
            # Keywords register every expectation before they send anything, so no event can come early;
            # an early window would only let late events of the previous (unverified) keyword in.
            self.verification = VerificationServer(early_window=0.0)
        if not self.verification.running:
            self.verification.start()
        return self.verification

    def verifier_socket(self, vm: str) -> str | None:
        """The host-side unix socket of ``vm``'s verification channel, when the host is this machine."""
        if urlsplit(self.host.uri).hostname:
            return None
        xml = self.domain(vm).run(lambda d: d.XMLDesc(0), what=f"reading the XML of '{vm}'", idempotent=True)
        for channel in ElementTree.fromstring(xml).iter("channel"):
            target, source = channel.find("target"), channel.find("source")
            if (
                channel.get("type") == "unix"
                and target is not None
                and target.get("name") == VIRTIO_PORT_NAME
                and source is not None
                and source.get("path")
            ):
                return source.get("path")
        return None

    def connect_verification(self, vm: str, timeout: float) -> SessionInfo:
        """Connect the host side of ``vm``'s verification channel (if not yet) and wait for its agent."""
        server = self.verification_server()
        if server.is_connected(vm):
            info = server.session(vm)
            if info is not None:
                return info
        path = self.verifier_socket(vm)
        if path is not None:
            return server.connect_unix(vm, path, timeout=timeout)
        domain = self.domain(vm)
        return server.connect_libvirt_channel(
            vm, lambda: domain.run(lambda d: d, what="channel", idempotent=True), timeout=timeout
        )

    def perform_input(
        self,
        vm: str,
        action: Callable[[EventSink, Sleep], T],
        *,
        via: InputTransport | str | None,
        verify: bool | None,
        text: str | None = None,
        secret: bool = False,
        what: str = "",
    ) -> T:
        """Run one input action on ``vm``: straight to the VM, or (``verify``) recorded, expected, replayed
        and checked against what the guest's verification agent reports."""
        chosen_via, verified = self.input_options(via, verify)
        # A missing SPICE session fails before anything is sent or expected.
        sink = self.input_sink(vm, chosen_via)
        server = self.verification
        watched = server is not None and server.running and server.is_connected(vm)
        if verified or watched:
            # Reports of unverified input sent just before may still be on their way from the guest: let them
            # arrive before this keyword starts collecting (or marks where `Input Should Be Received` starts),
            # or they would count as this keyword's input.
            since = time.monotonic() - self.unverified_sent.pop(vm, float("-inf"))
            if since < SETTLE_AFTER_UNVERIFIED:
                time.sleep(SETTLE_AFTER_UNVERIFIED - since)
        if watched and server is not None:
            self.input_marks[vm] = server.mark(vm)  # Input Should Be Received compares from here
        if not verified:
            try:
                return action(sink, time.sleep)
            finally:
                self.unverified_sent[vm] = time.monotonic()
        recorder = RecordingSink()
        result = action(recorder, recorder.sleep)
        timeout = self.seconds(None)
        try:
            self.connect_verification(vm, timeout)
        except VerificationError as exc:
            raise type(exc)(
                f"{exc} Nothing was sent to VM '{vm}'. Start the verification agent in the guest (the lab's "
                "image starts one at boot; `Deploy Verification Agent` installs and starts this library's), "
                "or send the input without verify=True."
            ) from exc
        server = self.verification_server()
        self.input_marks[vm] = server.mark(vm)
        sent = recorder.events
        if chosen_via is InputTransport.SPICE:
            from ATPLibrary.spice.sink import expected_events

            sent = expected_events(sent)  # absolute positions: QEMU's client-mode scaling of the pixel
        handle = server.expect(vm, qmp_events(sent), timeout, text=text, layout=self.layout, secret=secret, what=what)
        handle.sending()
        try:
            recorder.replay(sink, time.sleep)
        except BaseException:
            handle.cancel()
            raise
        handle.sent()
        handle.check()
        return result

    def input_options(self, via: InputTransport | str | None, verify: bool | None) -> tuple[InputTransport, bool]:
        """The transport and verification an input keyword uses: its own arguments, else the library's."""
        chosen_via = self.via if via is None else coerce_enum(InputTransport, via)
        chosen_verify = self.verify if verify is None else verify
        require_available(chosen_via)
        return chosen_via, bool(chosen_verify)

    @staticmethod
    def output_dir() -> Path:
        """Robot's ``${OUTPUT DIR}`` (the current directory outside a Robot run)."""
        return Path(_robot_variable("${OUTPUT DIR}") or ".").resolve()

    @staticmethod
    def log_dir() -> Path:
        """Directory of log.html (falls back to the output dir when there is no log file)."""
        log_file = _robot_variable("${LOG FILE}")
        if log_file and log_file.upper() != "NONE":
            return Path(log_file).resolve().parent
        return LibraryContext.output_dir()


def to_seconds(value: timedelta | float | str) -> float:
    """Seconds from a timedelta, a number or Robot's time format (``10s``, ``1 minute``).

    Robot converts ``timedelta`` arguments itself; this also serves Python callers and ``Run Keyword``.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        from robot.utils import timestr_to_secs

        try:
            seconds = float(timestr_to_secs(value))
        except ValueError:
            raise ConfigurationError(
                f"'{value}' is not a time: use Robot's time format such as '10s', '1.5 seconds' or '1 minute'"
            ) from None
    if seconds < 0:
        raise ConfigurationError(f"a timeout cannot be negative, got {value!r}")
    return seconds


def _robot_variable(name: str) -> str | None:
    try:
        from robot.libraries.BuiltIn import BuiltIn, RobotNotRunningError
    except ImportError:  # pragma: no cover
        return None
    try:
        value = BuiltIn().get_variable_value(name)
    except RobotNotRunningError:
        return None
    return None if value is None else str(value)
