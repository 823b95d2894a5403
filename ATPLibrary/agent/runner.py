"""The agent's session: handshake, events, heartbeats, commands and reconnects over one transport at a time.

Threads, so that capture, transport I/O and heartbeats never wait on each other:

- the **capture** thread (:mod:`.linux` / :mod:`.windows`) puts batches of messages on the inbox queue and never
  touches the network;
- a **reader** thread per connection calls :meth:`Transport.receive` and puts what arrives on the inbox;
- the **session** thread (the caller of :meth:`Agent.run`) takes everything from the inbox in batches, answers
  the server, forwards events (one write per batch) and sends heartbeats; writes are bounded by the transport's
  ``write_timeout``;
- each ``verify_command`` runs on a thread of its own and puts its ``command_result`` on the inbox.

Session (see :mod:`ATPLibrary.verification.protocol`): the agent waits for ``sync``, answers ``hello`` with the
sync's nonce (devices open, ``ready``), and streams events once ``hello`` is sent; events captured while no
session exists are discarded (they would be stale).  A ``sync`` in any state (on virtio-serial: a new host client)
gets a new ``hello``.  ``reject`` ends the session with backoff; silence from the server for
``heartbeat_timeout`` ends it too.  Reconnects back off exponentially from ``reconnect_interval`` (x2, at most
``reconnect_cap``), reset after a session that was welcomed; every connection starts a fresh handshake.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform as platform_module
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ATPLibrary._version import __version__
from ATPLibrary.agent.capture import Capture
from ATPLibrary.agent.commands import run_verify_command
from ATPLibrary.agent.transports import HostNotConnected, Transport, TransportClosed
from ATPLibrary.verification import protocol

log = logging.getLogger("atp-agent")

WAIT_SYNC = "waiting for sync"
WAIT_WELCOME = "waiting for welcome"
LIVE = "live"

#: Inbox batches (of capture messages) beyond which new events are counted as lost and reported as ``dropped``.
MAX_QUEUED_BATCHES = 20000


class Agent:
    """The verification agent's main loop (see the module docstring)."""

    def __init__(
        self,
        *,
        transport_factory: Callable[[], Transport],
        capture: Capture,
        vm_id: str,
        token: str | None = None,
        platform: str = "linux",
        verifiers: list[str] | None = None,
        heartbeat: float = protocol.HEARTBEAT_INTERVAL,
        heartbeat_timeout: float | None = None,
        handshake_timeout: float | None = None,
        reconnect_interval: float = 1.0,
        reconnect_cap: float = 30.0,
        hello_extra: dict[str, Any] | None = None,
        command_runner: Callable[[dict[str, Any]], dict[str, Any]] = run_verify_command,
    ) -> None:
        self._factory = transport_factory
        self._capture = capture
        self.vm_id = vm_id
        self._token = token
        self.platform = platform
        self.verifiers = verifiers or ["keyboard", "mouse"]
        self.heartbeat = heartbeat
        self.heartbeat_timeout = heartbeat_timeout or 3 * heartbeat
        self.handshake_timeout = handshake_timeout or self.heartbeat_timeout
        self.reconnect_interval = reconnect_interval
        self.reconnect_cap = reconnect_cap
        self._hello_extra = dict(hello_extra or {})
        self._run_command = command_runner
        self._inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._stopping = threading.Event()
        self._conn = 0
        self._lost = 0
        self._heartbeat_seq = 0
        self.state = WAIT_SYNC
        #: Observable counters (tests, logs): connections made, sessions welcomed, events sent / discarded.
        self.connections = 0
        self.sessions = 0
        self.events_sent = 0
        self.events_discarded = 0
        self.last_end_reason = ""
        self.delays: list[float] = []

    # -- control -------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask :meth:`run` to end (from a signal handler or another thread)."""
        self._stopping.set()
        self._inbox.put(("wake",))

    def run(self) -> None:
        """Start the capture (every device open), then connect, serve and reconnect until :meth:`stop`."""
        self._capture.start(self._on_capture)
        if not self._capture.ready:
            log.error("input cannot be seen: %s", self._capture.error)
        delay = self.reconnect_interval
        try:
            while not self._stopping.is_set():
                transport = self._factory()
                try:
                    transport.connect()
                except (OSError, ValueError) as exc:
                    self._wait_before_retry(f"cannot connect ({transport.describe()}): {exc}", delay)
                    delay = min(delay * 2, self.reconnect_cap)
                    continue
                welcomed, reason = self._serve(transport)
                if self._stopping.is_set():
                    break
                if welcomed:
                    delay = self.reconnect_interval
                self._wait_before_retry(f"session ended ({transport.describe()}): {reason}", delay)
                if not welcomed:
                    delay = min(delay * 2, self.reconnect_cap)
        finally:
            self._capture.stop()
            log.info("verification agent stopped")

    def _wait_before_retry(self, why: str, delay: float) -> None:
        self.last_end_reason = why
        self.delays.append(delay)
        log.warning("%s; retrying in %.1f s", why, delay)
        self._stopping.wait(delay)

    def _on_capture(self, messages: list[dict[str, Any]]) -> None:
        """From the capture thread: never blocks."""
        if self._inbox.qsize() > MAX_QUEUED_BATCHES:
            self._lost += sum(1 for m in messages if m.get("message_type") == protocol.RAW_INPUT_EVENT)
            return
        self._inbox.put(("capture", messages))

    # -- one connection ------------------------------------------------------------------------------------------

    def _serve(self, transport: Transport) -> tuple[bool, str]:
        self._conn += 1
        self.connections += 1
        conn = self._conn
        stop_reader = threading.Event()
        reader = threading.Thread(
            target=self._read_loop, args=(transport, conn, stop_reader), name=f"atp-agent-reader-{conn}", daemon=True
        )
        log.info("connected: %s; waiting for the server's sync", transport.describe())
        reader.start()
        try:
            return self._session(transport, conn)
        finally:
            stop_reader.set()
            reader.join(timeout=2)
            transport.close()
            self.state = WAIT_SYNC

    def _read_loop(self, transport: Transport, conn: int, stop: threading.Event) -> None:
        host_gone_told = False
        while not stop.is_set():
            try:
                messages = transport.receive()
            except HostNotConnected:
                if not host_gone_told:
                    self._inbox.put(("host_gone", conn))
                    host_gone_told = True
                stop.wait(0.1)
                continue
            except (OSError, TransportClosed) as exc:
                self._inbox.put(("closed", conn, str(exc) or type(exc).__name__))
                return
            except Exception as exc:  # a reader must report, never die silently
                self._inbox.put(("closed", conn, f"reader failed: {exc!r}"))
                return
            if transport.decode_errors:
                for error in transport.decode_errors:
                    log.warning("ignored bad data from the server: %s", error)
                transport.decode_errors.clear()
            if messages:
                host_gone_told = False
                self._inbox.put(("server", conn, messages))

    def _session(self, transport: Transport, conn: int) -> tuple[bool, str]:
        virtio = transport.kind == "virtio"
        clock = time.monotonic
        now = clock()
        self.state = WAIT_SYNC
        welcomed = False
        last_rx = now
        last_heartbeat = now
        sync_deadline = None if virtio else now + self.handshake_timeout
        while True:
            if self._stopping.is_set():
                if self.state == LIVE:
                    self._send_quietly(transport, [{"message_type": protocol.BYE, "reason": "agent stopping"}])
                return welcomed, "agent stopping"
            wait = 0.5
            if self.state == LIVE:
                wait = max(0.0, min(wait, last_heartbeat + self.heartbeat - now))
            try:
                items = [self._inbox.get(timeout=wait)]
            except queue.Empty:
                items = []
            while items and len(items) < 1024:
                try:
                    items.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            now = clock()
            out: list[dict[str, Any]] = []
            for item in items:
                tag = item[0]
                if tag == "capture":
                    if self.state == WAIT_SYNC:
                        self.events_discarded += len(item[1])
                    else:
                        out.extend(item[1])
                    continue
                if tag == "wake" or item[1] != conn:
                    continue  # a stale connection's reader or command
                if tag == "closed":
                    return welcomed, item[2]
                if tag == "host_gone":
                    if self.state != WAIT_SYNC:
                        return welcomed, "the host side of the virtio port disconnected"
                    continue
                if tag == "result":
                    if self.state == WAIT_SYNC:
                        log.warning("command result %s dropped: no session", item[2].get("request_id"))
                    else:
                        out.append(item[2])
                    continue
                last_rx = now
                for message in item[2]:
                    ended = self._handle(message, conn, out)
                    if ended is not None:
                        if out:
                            self._send_quietly(transport, out)
                        return welcomed or self.state == LIVE, ended
                    if self.state == LIVE and not welcomed:
                        welcomed = True
            if self._lost and self.state == LIVE:
                out.append(
                    {
                        "message_type": protocol.DROPPED,
                        "device": "agent",
                        "reason": f"agent queue full: {self._lost} input events were lost",
                        "timestamp": time.time() * 1000,
                    }
                )
                self._lost = 0
            if self.state == LIVE and now - last_heartbeat >= self.heartbeat:
                self._heartbeat_seq += 1
                out.append(
                    {
                        "message_type": protocol.HEARTBEAT,
                        "timestamp": time.time() * 1000,
                        "seq": self._heartbeat_seq,
                        "events_sent": self.events_sent,
                    }
                )
                last_heartbeat = now
            if out:
                try:
                    transport.send(out)
                except (OSError, TransportClosed) as exc:
                    return welcomed, f"send failed: {exc}"
                self.events_sent += sum(1 for m in out if m.get("message_type") == protocol.RAW_INPUT_EVENT)
            now = clock()
            if self.state != WAIT_SYNC and now - last_rx > self.heartbeat_timeout:
                return welcomed, f"no message from the server for {self.heartbeat_timeout:g} s"
            if self.state == WAIT_SYNC and sync_deadline is not None and now > sync_deadline:
                return welcomed, f"no sync from the server within {self.handshake_timeout:g} s"

    def _handle(self, message: dict[str, Any], conn: int, out: list[dict[str, Any]]) -> str | None:
        """Handle one server message; a string ends the session with that reason."""
        kind = message.get("message_type")
        if kind == protocol.SYNC:
            nonce = message.get("nonce")
            out.append(self.hello(nonce))
            self.state = WAIT_WELCOME
            log.info(
                "sync received: hello sent (vm_id %s, %d devices, ready %s)",
                self.vm_id,
                len(out[-1]["devices"]),
                out[-1]["ready"],
            )
        elif kind == protocol.WELCOME:
            if self.state == WAIT_WELCOME:
                self.state = LIVE
                self.sessions += 1
                log.info("welcomed by the server: session %d established", self.sessions)
                if not self._capture.ready:
                    out.append(
                        {"message_type": protocol.ERROR, "error": "no_readable_devices", "message": self._capture.error}
                    )
            else:
                log.warning("welcome without a hello ignored")
        elif kind == protocol.REJECT:
            reason = str(message.get("reason") or "no reason given")
            log.error("the server rejected this agent: %s", reason)
            self.state = WAIT_SYNC
            return f"rejected by the server: {reason}"
        elif kind == protocol.HEARTBEAT:
            pass
        elif kind == protocol.BYE:
            return f"the server said bye ({message.get('reason') or 'no reason'})"
        elif kind == protocol.VERIFY_COMMAND:
            log.info("verify_command %s received", message.get("request_id"))
            threading.Thread(
                target=lambda: self._inbox.put(("result", conn, self._run_command(message))),
                name="atp-agent-command",
                daemon=True,
            ).start()
        else:
            log.debug("ignored message of type %r", kind)
        return None

    def hello(self, nonce: Any) -> dict[str, Any]:
        """The ``hello`` answering a ``sync`` (contains the token: never log it)."""
        message: dict[str, Any] = {
            "message_type": protocol.HELLO,
            "nonce": nonce,
            "vm_id": self.vm_id,
            "token": self._token,
            "agent_version": __version__,
            "protocol_version": protocol.PROTOCOL_VERSION,
            "platform": self.platform,
            "devices": self._capture.devices(),
            "ready": self._capture.ready,
            "error": self._capture.error,
            "verifiers": list(self.verifiers),
            "pid": os.getpid(),
            "python": platform_module.python_version(),
            "hostname": socket.gethostname(),
            "heartbeat_interval": self.heartbeat,
        }
        message.update(self._hello_extra)
        return message

    @staticmethod
    def _send_quietly(transport: Transport, messages: list[dict[str, Any]]) -> None:
        with contextlib.suppress(OSError, TransportClosed):
            transport.send(messages)
