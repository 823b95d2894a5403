"""Closed-loop verification keywords: the server, the agent in the guest, and checks on what arrived."""

from __future__ import annotations

import base64
import shlex
import tempfile
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary._version import __version__
from ATPLibrary.agent.package import build_zip
from ATPLibrary.errors import ConfigurationError, VerificationError
from ATPLibrary.input.mouse import coerce_enum
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.qga.files import GuestFiles
from ATPLibrary.verification.matcher import text_events
from ATPLibrary.verification.server import VerificationServer


class AgentTransport(Enum):
    """How the verification agent reaches the server.

    - ``virtio``: the VM's virtio-serial port ``com.atp.verifier.0``; no guest network needed (default).
    - ``tcp``: 4-byte length-prefixed JSON frames, to ``server`` over the network, or through a virtio port
      whose host side is a libvirt ``tcp`` channel (``port``).
    - ``websocket``: one JSON message per WebSocket text frame, the same two ways.
    """

    VIRTIO = "virtio"
    TCP = "tcp"
    WEBSOCKET = "websocket"


class GuestOS(Enum):
    """The guest's operating system, for the commands that install and start the agent."""

    LINUX = "linux"
    WINDOWS = "windows"


LINUX_DIR = "/run/atp"
WINDOWS_DIR = r"C:\ProgramData\ATPLibrary"
POWERSHELL = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"


def encode_powershell(script: str) -> str:
    """The ``-EncodedCommand`` form of ``script``: base64 of its UTF-16LE bytes, no BOM (failure kind 5)."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


class VerificationKeywords:
    """Start the verification server, deploy the verification agent, and check what guests received.

    The *verification agent* runs in the guest and reports what the guest's kernel (Linux evdev) or desktop
    (Windows hooks) received; it is not the QEMU *guest agent* (qemu-ga), which the library uses to deploy it.
    """

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

    def _server(self) -> VerificationServer:
        return self.ctx.verification_server()

    @keyword("Start Verification Server")
    def start_verification_server(
        self, tcp_port: int | None = None, websocket_port: int | None = None, host: str = "127.0.0.1"
    ) -> dict[str, int]:
        """Starts the library's verification server and, when asked, its network listeners.

        Agents on virtio-serial need no listener: the server connects to each VM's channel itself (the first
        verified keyword does that too, so calling this keyword is optional). ``tcp_port`` and
        ``websocket_port`` open listeners on ``host``; ``0`` picks a free port (so parallel runners never
        collide). Returns the bound ports, e.g. ``{'tcp': 40231}``; calling it again returns the ports of the
        listeners already open. Fails when a port cannot be bound (in use, or not allowed).

        | =Assignment= | =Keyword=                 | =Argument=  | =Argument=        |
        | ${ports} =   | Start Verification Server | tcp_port=0  | websocket_port=0  |
        """
        server = self._server()
        ports: dict[str, int] = {}
        if tcp_port is not None:
            ports["tcp"] = server.listen_tcp(host, int(tcp_port))
        if websocket_port is not None:
            ports["websocket"] = server.listen_websocket(host, int(websocket_port))
        logger.info(f"Verification server running; listeners: {ports or 'none (virtio-serial only)'}.")
        return ports

    @keyword("Stop Verification Server")
    def stop_verification_server(self) -> None:
        """Stops the verification server and closes every agent session and listener.

        Never fails, also when no server runs. The next verified keyword starts the server again.

        | =Keyword=                |
        | Stop Verification Server |
        """
        if self.ctx.verification is not None:
            self.ctx.verification.stop()
        self.ctx.input_marks.clear()

    @keyword("Deploy Verification Agent")
    def deploy_verification_agent(
        self,
        vm: str,
        transport: AgentTransport = AgentTransport.VIRTIO,
        server: str | None = None,
        port: str | None = None,
        guest_os: GuestOS = GuestOS.LINUX,
        python: str = "python3",
        timeout: timedelta | None = None,
    ) -> str:
        """Installs and starts this package's verification agent in ``vm`` and waits until it is connected.

        Returns the agent's version (it must equal the library's). ``timeout`` (default: the library
        timeout) bounds each guest agent call and the wait for the new agent to connect. Fails when qemu-ga
        does not answer, when ``tcp`` or ``websocket`` gets neither ``server`` nor ``port``, when the agent does
        not connect within ``timeout``, or when it reports another version than the library's.

        The agent (one zip file, standard library only) is uploaded with qemu-ga file writes and started with
        guest-exec; an agent already running is stopped first. For ``tcp`` and ``websocket`` a new per-VM
        token is registered with the server and written to a file only root can read in the guest: an agent
        with another VM's token is rejected. ``server`` is ``HOST:PORT`` of a listener (see `Start
        Verification Server`); ``port`` instead names a virtio port whose host side is a libvirt ``tcp``
        channel to the server. ``python`` is the guest's Python (``python3``; on Windows e.g. ``py``).

        Windows guests (``guest_os=windows``) get the agent in ``C:\\ProgramData\\ATPLibrary`` and are started
        through PowerShell with ``-EncodedCommand`` (UTF-16LE base64). This path is unproven: no Windows guest
        runs here. Windows hooks only see the desktop of the session the agent runs in: an agent started by
        qemu-ga (LocalSystem, session 0) sees no user input.

        | =Keyword=                 | =VM=       | =Argument=      | =Argument=                                  |
        | Deploy Verification Agent | atp-lab-01 |                 |                                             |
        | Deploy Verification Agent | atp-lab-01 | transport=tcp   | port=/dev/virtio-ports/com.atp.verifier.tcp.0 |
        | Deploy Verification Agent | win10-07   | transport=tcp   | server=10.0.0.5:8766 | guest_os=windows     |
        """
        transport, guest_os = coerce_enum(AgentTransport, transport), coerce_enum(GuestOS, guest_os)
        seconds = self.ctx.seconds(timeout)
        guest = self.ctx.agent(vm)
        files = GuestFiles(guest)
        windows = guest_os is GuestOS.WINDOWS
        folder = WINDOWS_DIR if windows else LINUX_DIR
        sep = "\\" if windows else "/"
        zip_path, token_path, log_path = (f"{folder}{sep}{n}" for n in ("atp-agent.pyz", "agent.token", "agent.log"))
        args = ["--transport", transport.value, "--log-file", log_path]
        if transport is not AgentTransport.VIRTIO:
            if not server and not port:
                raise ConfigurationError(
                    f"transport={transport.value} needs server=HOST:PORT (a listener of Start Verification Server) "
                    "or port=<virtio port whose host side is a libvirt tcp channel>"
                )
            args += ["--server", server] if server else ["--port", str(port)]
            args += ["--token-file", token_path]
        elif port:
            args += ["--port", port]
        with tempfile.TemporaryDirectory(prefix="atp-agent-") as tmp:
            package = build_zip(Path(tmp))
            if windows:
                self.ctx.agent(vm).exec(
                    POWERSHELL, _ps(f"New-Item -ItemType Directory -Force -Path '{folder}'"), timeout=seconds
                )
            else:
                guest.run_shell(f"mkdir -p {folder} && chmod 700 {folder}", timeout=seconds)
            files.upload(package, zip_path, mode=None if windows else 0o644, timeout=seconds)
        srv = self._server()
        if transport is not AgentTransport.VIRTIO:
            token = VerificationServer.new_token()
            srv.register_token(vm, token)
            files.upload(token.encode("ascii"), token_path, mode=None if windows else 0o600, timeout=seconds)
        srv.disconnect(vm)  # a new agent: the next session starts clean
        if windows:
            quoted = ",".join("'" + a.replace("'", "''") + "'" for a in [zip_path, *args])
            script = (
                "Get-CimInstance Win32_Process | Where-Object { $_.CommandLine -like '*atp-agent.pyz*' } | "
                "ForEach-Object { Stop-Process -Id $_.ProcessId -Force }; "
                f"$p = Start-Process -FilePath '{python}' -ArgumentList {quoted} -WindowStyle Hidden -PassThru; $p.Id"
            )
            guest.exec(POWERSHELL, _ps(script), timeout=seconds)
        else:
            command = shlex.join([python, zip_path, *args])
            guest.run_shell(
                # Stop every running agent; this shell's own command line names the agent too, so skip $$.
                'for p in $(pgrep -f \'atp-agent[.]pyz\'); do [ "$p" != $$ ] && kill "$p"; done; sleep 0.2; '
                f"nohup {command} </dev/null >/dev/null 2>&1 & echo $! > {folder}/agent.pid",
                timeout=seconds,
            )
        if transport is AgentTransport.VIRTIO:
            info = self.ctx.connect_verification(vm, seconds)
        else:
            info = srv.wait_connected(vm, seconds)
        logger.info(f"Verification agent {info.agent_version} connected for VM '{vm}' over {info.transport}.")
        if info.agent_version != __version__:
            raise VerificationError(
                f"VM '{vm}': the connected verification agent reports version {info.agent_version!r}, "
                f"the library is {__version__!r}"
            )
        return info.agent_version

    @keyword("Verification Agent Should Be Connected")
    def verification_agent_should_be_connected(
        self, vm: str, timeout: timedelta | None = None, version: str | None = None
    ) -> dict[str, Any]:
        """Waits until the verification agent of ``vm`` is connected and returns what it reported.

        On virtio-serial this connects the host side of the VM's ``com.atp.verifier.0`` channel first (a unix
        socket on this machine, or libvirt's channel stream for a remote host). ``version`` also checks the
        agent's version. Fails naming the VM, what was last seen and the timeout.

        | =Assignment= | =Keyword=                              | =VM=       | =Argument=  |
        | ${agent} =   | Verification Agent Should Be Connected | atp-lab-01 | timeout=30s |
        """
        seconds = self.ctx.seconds(timeout)
        server = self._server()
        info = server.session(vm) or self.ctx.connect_verification(vm, seconds)
        if version is not None and info.agent_version != version:
            raise VerificationError(
                f"VM '{vm}': the verification agent is version {info.agent_version!r}, not {version!r}"
            )
        logger.info(f"Verification agent of VM '{vm}': version {info.agent_version}, {info.transport}, {info.peer}.")
        return {
            "vm": info.vm,
            "transport": info.transport,
            "version": info.agent_version,
            "platform": info.platform,
            "devices": info.devices,
        }

    @keyword("Input Should Be Received")
    def input_should_be_received(self, vm: str, text: str, timeout: timedelta | None = None) -> None:
        """Fails unless ``vm`` received exactly ``text`` since the last input keyword started on it.

        Compares the key events the verification agent reported (every character in order, none missing,
        none extra) and fails naming the first differing position, the expected and the received character.
        Waits up to ``timeout`` (default: the library timeout) for missing events, and fails at once when no
        input keyword ran on ``vm`` while its agent was connected (connect it first with `Verification Agent
        Should Be Connected`). Use it after input sent without ``verify=True``. While an agent is connected,
        an input keyword that follows other unverified input within 0.3 s first waits out the rest of that
        time, so that late reports of the earlier input are not taken for its own.

        | =Keyword=                | =VM=       | =Text=  |
        | Type Text                | atp-lab-01 | abcdef  |
        | Input Should Be Received | atp-lab-01 | abcdef  |
        """
        server = self._server()
        mark = self.ctx.input_marks.get(vm)
        if mark is None:
            raise VerificationError(
                f"VM '{vm}': no input keyword ran while its verification agent was connected; connect it first "
                "(Verification Agent Should Be Connected), then send the input"
            )
        result = server.check_received(
            vm,
            text_events(text, self.ctx.layout),
            since=mark,
            timeout=self.ctx.seconds(timeout),
            text=text,
            layout=self.ctx.layout,
            what="Input Should Be Received",
        )
        result.raise_if_failed()
        logger.info(f"VM '{vm}' received {text!r} exactly.")

    @keyword("Get Verification Latencies")
    def get_verification_latencies(self, vm: str) -> dict[str, float | int | None]:
        """Returns the latencies of the verified input on ``vm``: ``count``, ``p50``, ``p99`` and ``max``.

        Milliseconds from sending to the last event arriving at the server, nearest-rank over the last
        10 000 verified keywords on ``vm``. Never fails: before any verified input ``count`` is 0 and the
        others are ``None``.

        | =Assignment= | =Keyword=                  | =VM=       |
        | ${lat} =     | Get Verification Latencies | atp-lab-01 |
        | Should Be True | ${lat}[p50] < 20         |            |
        """
        stats = self._server().latencies(vm)
        values = {"count": stats.count, "p50": stats.p50, "p99": stats.p99, "max": stats.max}
        logger.info(f"Verification latencies of VM '{vm}': {values}")
        return values


def _ps(script: str) -> list[str]:
    return ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-EncodedCommand", encode_powershell(script)]
