"""State shared by the keyword classes: the host registry and the library defaults."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ATPLibrary.errors import ConfigurationError
from ATPLibrary.hosts.connection import DomainHandle, HostConnection
from ATPLibrary.hosts.registry import HostRegistry
from ATPLibrary.input.mouse import coerce_enum
from ATPLibrary.input.pointer import QmpPointer
from ATPLibrary.input.transport import InputTransport, require_available, require_verification_available
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KeyMap, KeyRecord
from ATPLibrary.keys.layout import US, Layout
from ATPLibrary.qga.agent import GuestAgent
from ATPLibrary.qmp.keyboard import QmpKeyboard
from ATPLibrary.qmp.monitor import MonitorClient
from ATPLibrary.qmp.socket_transport import SocketQmpTransport
from ATPLibrary.qmp.transport import LibvirtQmpTransport, QmpTransport
from ATPLibrary.screen.capture import take_screenshot


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
        #: Keys held down with `Hold Key`, per VM, released at the end of each test.
        self.held_keys: dict[str, list[KeyRecord]] = {}
        self.default_uri = uri
        self.registry = registry or HostRegistry()
        self.layout: Layout = US
        self.keymap: KeyMap = DEFAULT_KEYMAP
        #: VMs whose QMP goes to a unix socket instead of libvirt (`Use QMP Socket`), one connection each.
        self.qmp_sockets: dict[str, SocketQmpTransport] = {}

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

    def keyboard(self, vm: str) -> QmpKeyboard:
        return QmpKeyboard(self.monitor(vm), layout=self.layout, keymap=self.keymap)

    def pointer(self, vm: str) -> QmpPointer:
        domain = self.domain(vm)

        def screen_size() -> tuple[int, int]:
            shot = take_screenshot(domain)
            return shot.width, shot.height

        return QmpPointer(self.monitor(vm), screen_size)

    def input_options(self, via: InputTransport | None, verify: bool | None) -> tuple[InputTransport, bool]:
        """The transport and verification an input keyword uses: its own arguments, else the library's."""
        chosen_via = self.via if via is None else coerce_enum(InputTransport, via)
        chosen_verify = self.verify if verify is None else verify
        require_available(chosen_via)
        require_verification_available(chosen_verify)
        return chosen_via, chosen_verify

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
