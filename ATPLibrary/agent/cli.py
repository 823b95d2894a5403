"""The verification agent's command line (``atp-agent``); the original agent's option names where sensible.

Examples (in a guest)::

    python3 atp-agent.pyz                                   # virtio-serial, the lab default
    python3 atp-agent.pyz --transport tcp -s 10.0.2.2:8766 --token-file /run/atp-agent.token
    python3 atp-agent.pyz --transport websocket -s ws://10.0.2.2:8765/ --token-file ...
    python3 atp-agent.pyz --list-devices                    # what the agent can read, then exit

The token (for TCP and WebSocket) comes from ``--token-file`` (preferred: a command line is visible to every user
of the guest), the environment variable ``ATP_AGENT_TOKEN`` or ``--token``; it is never logged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ATPLibrary._version import __version__
from ATPLibrary.agent.capture import Capture
from ATPLibrary.agent.identity import detect_vm_id
from ATPLibrary.agent.transports import DEFAULT_VIRTIO_PORT, make_transport, parse_server
from ATPLibrary.verification import protocol

log = logging.getLogger("atp-agent")

TOKEN_ENV = "ATP_AGENT_TOKEN"
KINDS_OF_VERIFIER = {
    "keyboard": (protocol.KIND_KEY,),
    "mouse": (protocol.KIND_BUTTON, protocol.KIND_REL, protocol.KIND_ABS),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atp-agent",
        description="ATPLibrary verification agent: reports the input the guest's kernel received to the "
        "verification server, and runs command verifications.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "-t", "--transport", choices=("virtio", "tcp", "websocket"), default="virtio", help="default: virtio"
    )
    parser.add_argument(
        "--port",
        help=f"virtio-serial device (virtio default: {DEFAULT_VIRTIO_PORT}); for tcp/websocket without --server: "
        "a virtio port whose host side is a libvirt tcp channel to the server",
    )
    parser.add_argument(
        "-s", "--server", help="HOST:PORT of the server for tcp and websocket (ws://HOST:PORT/PATH too)"
    )
    parser.add_argument("--vm-id", help="the VM id to report (default: SMBIOS serial, product UUID, hostname)")
    parser.add_argument("--token", help=f"the per-VM token (prefer --token-file or ${TOKEN_ENV}; never logged)")
    parser.add_argument("--token-file", type=Path, help="a file holding the per-VM token")
    parser.add_argument(
        "-v",
        "--verifiers",
        action="append",
        choices=("keyboard", "mouse", "all"),
        help="what to capture; repeatable (default: all)",
    )
    parser.add_argument(
        "-l", "--log-level", default="info", type=str.lower, choices=("debug", "info", "warning", "error")
    )
    parser.add_argument("--log-file", type=Path, help="log to this file (default: stderr)")
    parser.add_argument(
        "--reconnect-interval", type=float, default=1.0, help="first reconnect delay in s; doubles, at most 30"
    )
    parser.add_argument(
        "--heartbeat", type=float, default=protocol.HEARTBEAT_INTERVAL, help="heartbeat interval in s (timeout: 3x)"
    )
    parser.add_argument("--write-timeout", type=float, default=5.0, help=argparse.SUPPRESS)
    parser.add_argument("--list-devices", action="store_true", help="print the input devices as JSON and exit")
    return parser


class RedactSecret(logging.Filter):
    """Replaces a secret in every log record (defence in depth: the agent never logs its token anyway)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secret:
            text = record.getMessage()
            if self._secret in text:
                record.msg = text.replace(self._secret, "***")
                record.args = None
        return True


def setup_logging(level: str, log_file: Path | None, secret: str | None) -> logging.Handler:
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if secret:
        handler.addFilter(RedactSecret(secret))
    logger = logging.getLogger("atp-agent")
    logger.setLevel(level.upper())
    logger.addHandler(handler)
    logger.propagate = False
    return handler


def read_token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        return args.token_file.read_text(encoding="utf-8").strip() or None
    return os.environ.get(TOKEN_ENV) or args.token or None


def kinds_of(verifiers: Sequence[str] | None) -> tuple[list[str], frozenset[str]]:
    chosen = list(verifiers or ["all"])
    names = ["keyboard", "mouse"] if "all" in chosen else sorted(set(chosen))
    return names, frozenset(kind for name in names for kind in KINDS_OF_VERIFIER[name])


def make_capture(kinds: frozenset[str]) -> Capture:
    if sys.platform == "win32":
        from ATPLibrary.agent.windows import WindowsCapture

        return WindowsCapture(kinds=kinds)
    from ATPLibrary.agent.linux import LinuxCapture

    return LinuxCapture(kinds=kinds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        token = read_token(args)
    except OSError as exc:
        parser.error(f"cannot read --token-file: {exc.strerror or exc}")
    if args.transport != "virtio":
        if not args.server and not args.port:
            parser.error(f"--transport {args.transport} needs --server HOST:PORT or --port DEVICE")
        if args.server:
            try:
                parse_server(args.server)
            except ValueError as exc:
                parser.error(str(exc))
    if args.heartbeat <= 0 or args.reconnect_interval <= 0:
        parser.error("--heartbeat and --reconnect-interval must be positive")
    handler = setup_logging(args.log_level, args.log_file, token)
    verifiers, kinds = kinds_of(args.verifiers)
    capture = make_capture(kinds)

    if args.list_devices:
        capture.start(lambda messages: None)
        report: dict[str, Any] = {"devices": capture.devices(), "ready": capture.ready, "error": capture.error}
        capture.stop()
        print(json.dumps(report, indent=2))
        return 0 if report["ready"] else 1

    from ATPLibrary.agent.runner import Agent

    vm_id, source = detect_vm_id(args.vm_id, platform=sys.platform)
    log.info(
        "verification agent %s starting: transport %s (%s), vm_id %r (from %s), verifiers %s, token %s",
        __version__,
        args.transport,
        args.server or args.port or DEFAULT_VIRTIO_PORT,
        vm_id,
        source,
        "+".join(verifiers),
        "from file" if args.token_file else ("given" if token else "none"),
    )
    agent = Agent(
        transport_factory=lambda: make_transport(
            args.transport, port=args.port, server=args.server, write_timeout=args.write_timeout
        ),
        capture=capture,
        vm_id=vm_id,
        token=token,
        platform="windows" if sys.platform == "win32" else "linux",
        verifiers=verifiers,
        heartbeat=args.heartbeat,
        reconnect_interval=args.reconnect_interval,
        hello_extra={"vm_id_source": source, "transport": args.transport},
    )

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        agent.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    try:
        agent.run()
    finally:
        handler.flush()
    return 0
