"""Verification agent sessions over real local peers: virtio-serial line framing through a socketpair (sync/hello
with the nonce, nothing stale sent, re-sync, reopen), TCP length frames (token, reject and backoff, silence →
reconnect), the stdlib WebSocket client against a ``websockets`` server (handshake, heartbeats both ways, ping/pong,
reconnect after a server restart), and the token never in the logs (the zip run as a process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ATPLibrary._version import __version__
from ATPLibrary.agent import transports as t
from ATPLibrary.agent.capture import NO_READABLE_DEVICES, Emit
from ATPLibrary.agent.package import build_zip
from ATPLibrary.agent.runner import LIVE, Agent
from ATPLibrary.verification import protocol

pytestmark = pytest.mark.timeout(60)

SECRET = "tok-S3CRET-0123456789"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


class FakeCapture:
    def __init__(self, ready: bool = True) -> None:
        self._ready = ready
        self.emit: Emit | None = None
        self.started = threading.Event()
        self.stopped = False
        self.seq = 0

    def start(self, emit: Emit) -> None:
        self.emit = emit
        self.started.set()

    def stop(self) -> None:
        self.stopped = True

    def devices(self) -> list[dict[str, Any]]:
        return [{"path": "/dev/input/event2", "name": "QEMU Virtio Keyboard", "classes": ["keyboard"]}]

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def error(self) -> str | None:
        return None if self._ready else NO_READABLE_DEVICES

    def key(self, code: int, name: str, value: int = 1) -> None:
        assert self.emit is not None
        self.seq += 1
        self.emit(
            [protocol.raw_input_event("key", code, value, name, "/dev/input/event2", time.time() * 1000, self.seq)]
        )


@pytest.fixture
def run_agent() -> Iterator[Callable[..., tuple[Agent, FakeCapture]]]:
    started: list[tuple[Agent, threading.Thread]] = []

    def start(factory: Callable[[], t.Transport], **kwargs: Any) -> tuple[Agent, FakeCapture]:
        capture = kwargs.pop("capture", None) or FakeCapture()
        options: dict[str, Any] = {"vm_id": "vm-test", "heartbeat": 0.2, "reconnect_interval": 0.05}
        options.update(kwargs)
        agent = Agent(transport_factory=factory, capture=capture, **options)
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        assert capture.started.wait(5)
        started.append((agent, thread))
        return agent, capture

    yield start
    for agent, thread in started:
        agent.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the agent did not stop"


class Peer:
    """The server's end of one connection, with the framing of the transport under test."""

    def __init__(self, sock: socket.socket, framing: str) -> None:
        self.sock = sock
        self.framing = framing
        self.decoder: Any = protocol.LineDecoder() if framing == "line" else protocol.FrameDecoder()
        self.pending: list[dict[str, Any]] = []
        self.seen: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        data = protocol.encode_line(message) if self.framing == "line" else protocol.encode_frame(message)
        self.sock.sendall(data)

    def read(self, timeout: float = 5.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while not self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the agent closed the connection")
            self.pending.extend(self.decoder.feed(data))
        message = self.pending.pop(0)
        self.seen.append(message)
        return message

    def expect(self, message_type: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = self.read(max(0.0, deadline - time.monotonic()))
            assert message is not None, (
                f"no {message_type} within {timeout} s; seen {[m['message_type'] for m in self.seen]}"
            )
            if message["message_type"] == message_type:
                return message

    def handshake(self, *, nonce: str | None = None) -> dict[str, Any]:
        nonce = nonce or uuid.uuid4().hex
        self.send({"message_type": "sync", "nonce": nonce})
        hello = self.expect("hello")
        assert hello["nonce"] == nonce
        self.send({"message_type": "welcome"})
        return hello


# -- virtio-serial (line framing) ----------------------------------------------------------------------------------


class VirtioHost:
    """Stands in for the host side of the port: every open of the port gives a new socketpair."""

    def __init__(self) -> None:
        self.ends: queue.Queue[socket.socket] = queue.Queue()
        self.opened = 0

    def opener(self, path: str) -> int:
        assert path == t.DEFAULT_VIRTIO_PORT
        guest, host = socket.socketpair()
        self.opened += 1
        self.ends.put(host)
        return guest.detach()

    def next(self, timeout: float = 5.0) -> Peer:
        return Peer(self.ends.get(timeout=timeout), "line")


def test_virtio_sync_hello_events_commands_heartbeats_resync_and_reopen(run_agent: Any) -> None:
    host = VirtioHost()
    agent, capture = run_agent(lambda: t.VirtioTransport(opener=host.opener), platform="linux")
    peer = host.next()
    capture.key(30, "KEY_A")  # before any sync: no session, must never be sent
    assert peer.read(timeout=0.4) is None, "the agent wrote before the server's sync"

    peer.send({"message_type": "sync", "nonce": "n-1"})
    hello = peer.read()
    assert hello is not None and hello["message_type"] == "hello"  # the very first line is the answer to sync
    assert hello["nonce"] == "n-1" and hello["vm_id"] == "vm-test" and hello["agent_version"] == __version__
    assert hello["ready"] is True and hello["devices"][0]["classes"] == ["keyboard"]
    assert hello["protocol_version"] == protocol.PROTOCOL_VERSION and hello["platform"] == "linux"
    peer.send({"message_type": "welcome"})
    wait_until(lambda: agent.state == LIVE)
    capture.key(48, "KEY_B")
    event = peer.expect("raw_input_event")
    assert (event["name"], event["code"], event["value"], event["kind"]) == ("KEY_B", 48, 1, "key")
    beat = peer.expect("heartbeat", timeout=1.0)
    assert beat["seq"] >= 1

    peer.send(
        {
            "message_type": "verify_command",
            "request_id": "c-1",
            "command": sys.executable,
            "args": ["-c", "print('ok')"],
            "expected_stdout_contains": "ok",
        }
    )
    result = peer.expect("command_result")
    assert result["request_id"] == "c-1" and result["verified"] is True and result["exit_code"] == 0

    peer.send({"message_type": "sync", "nonce": "n-2"})  # a new host client on the same port
    assert peer.expect("hello")["nonce"] == "n-2"
    assert all(m.get("name") != "KEY_A" for m in peer.seen)

    peer.sock.close()  # the host side goes away: the agent reopens the port and waits for a new sync
    second = host.next()
    assert host.opened == 2
    assert second.handshake(nonce="n-3")["nonce"] == "n-3"
    wait_until(lambda: agent.sessions == 2)
    assert agent.sessions == 2 and agent.events_discarded >= 1


def test_virtio_server_silence_ends_the_session_and_the_port_is_reopened(run_agent: Any) -> None:
    host = VirtioHost()
    agent, _ = run_agent(lambda: t.VirtioTransport(opener=host.opener), heartbeat=0.1)
    peer = host.next()
    peer.handshake()
    started = time.monotonic()
    host.next(timeout=5)  # no heartbeat from the "server" for 3 x 0.1 s: session over, port reopened
    assert time.monotonic() - started < 3
    assert "no message from the server" in agent.last_end_reason
    assert any(m["message_type"] == "heartbeat" for m in peer.seen) or peer.expect("heartbeat", timeout=0.5)


def test_virtio_send_gives_up_when_the_port_is_not_writable() -> None:
    r, w = os.pipe()
    transport = t.VirtioTransport(opener=lambda path: w, write_timeout=0.3)
    transport.connect()  # makes w non-blocking
    with contextlib.suppress(BlockingIOError):
        while True:  # fill the pipe: like a port whose host side reads nothing
            os.write(w, b"x" * 65536)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"not writable for 0\.3 s"):
        transport.send([{"message_type": "heartbeat"}])
    assert 0.25 < time.monotonic() - started < 2
    transport.close()
    os.close(r)


def test_virtio_read_of_end_of_file_means_host_not_connected() -> None:
    guest, host = socket.socketpair()
    transport = t.VirtioTransport(opener=lambda path: guest.detach())
    transport.connect()
    host.sendall(b'{"message_type":"sync","nonce":"x"}\nnot json\n')
    assert transport.receive() == [{"message_type": "sync", "nonce": "x"}]
    assert transport.decode_errors and "not JSON" in transport.decode_errors[0]
    host.close()
    with pytest.raises(t.HostNotConnected):
        transport.receive()
    transport.close()


# -- TCP (length frames) -------------------------------------------------------------------------------------------


@pytest.fixture
def tcp_server() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    yield server
    server.close()


def accept(server: socket.socket, timeout: float = 5.0) -> Peer:
    server.settimeout(timeout)
    conn, _ = server.accept()
    return Peer(conn, "frame")


def test_tcp_frames_token_reject_with_backoff_then_accept(
    run_agent: Any, tcp_server: socket.socket, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="atp-agent")
    port = tcp_server.getsockname()[1]
    agent, capture = run_agent(lambda: t.TcpTransport("127.0.0.1", port), token=SECRET, reconnect_interval=0.1)

    times = []
    for _ in range(2):
        peer = accept(tcp_server)
        times.append(time.monotonic())
        peer.send({"message_type": "sync", "nonce": "r"})
        hello = peer.expect("hello")
        assert hello["token"] == SECRET  # on the wire, for the server to check
        peer.send({"message_type": "reject", "reason": "token does not match VM vm-test"})
        peer.sock.close()
    peer = accept(tcp_server)
    times.append(time.monotonic())
    assert agent.delays[:2] == [0.1, 0.2]  # exponential backoff after each reject
    assert times[2] - times[1] >= 0.19

    # raw bytes: a 4-byte big-endian length, then the JSON
    peer.sock.sendall(protocol.encode_frame({"message_type": "sync", "nonce": "ok"}))
    head = peer.sock.recv(4, socket.MSG_WAITALL)
    (size,) = struct.unpack(">I", head)
    hello = json.loads(peer.sock.recv(size, socket.MSG_WAITALL))
    assert hello["message_type"] == "hello" and hello["nonce"] == "ok"
    peer.send({"message_type": "welcome"})
    wait_until(lambda: agent.state == LIVE)
    capture.key(28, "KEY_ENTER")
    assert peer.expect("raw_input_event")["name"] == "KEY_ENTER"

    assert "the server rejected this agent: token does not match VM vm-test" in caplog.text
    assert SECRET not in caplog.text
    assert "hello sent" in caplog.text


def test_tcp_server_silence_means_reconnect(run_agent: Any, tcp_server: socket.socket) -> None:
    port = tcp_server.getsockname()[1]
    agent, _ = run_agent(lambda: t.TcpTransport("127.0.0.1", port), heartbeat=0.1)
    first = accept(tcp_server)
    first.handshake()
    beats = [first.expect("heartbeat", timeout=1) for _ in range(2)]  # the agent's heartbeats keep coming
    assert beats[1]["seq"] > beats[0]["seq"]
    second = accept(tcp_server)  # the server never sent one: after 3 x 0.1 s the agent gives up and reconnects
    assert "no message from the server for 0.3 s" in agent.last_end_reason
    second.handshake()


def test_tcp_no_sync_within_the_handshake_timeout_reconnects(run_agent: Any, tcp_server: socket.socket) -> None:
    port = tcp_server.getsockname()[1]
    agent, _ = run_agent(lambda: t.TcpTransport("127.0.0.1", port), heartbeat=0.1, handshake_timeout=0.3)
    first = accept(tcp_server)  # kept open and silent
    second = accept(tcp_server)
    reason = agent.last_end_reason  # before the second (also silent) session ends
    assert first.sock.recv(10) == b""  # the agent closed the silent one
    second.sock.close()
    assert "no sync from the server within 0.3 s" in reason


def test_connection_refused_backs_off_and_caps() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.close()
    capture = FakeCapture()
    agent = Agent(
        transport_factory=lambda: t.TcpTransport("127.0.0.1", port),
        capture=capture,
        vm_id="v",
        reconnect_interval=0.02,
        reconnect_cap=0.1,
    )
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    time.sleep(0.6)
    agent.stop()
    thread.join(5)
    assert agent.delays[:4] == [0.02, 0.04, 0.08, 0.1] and max(agent.delays) == 0.1
    assert "cannot connect" in agent.last_end_reason and capture.stopped


# -- WebSocket ------------------------------------------------------------------------------------------------------


class WsServer:
    """A ``websockets`` server on its own loop/thread: sync → hello → welcome, heartbeats every 0.2 s, pings."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.hellos: queue.Queue[dict[str, Any]] = queue.Queue()
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.closes: list[Any] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        from websockets.asyncio.server import serve

        self._server = await serve(self._handler, "127.0.0.1", self.port, ping_interval=0.2, ping_timeout=0.6)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handler(self, ws: Any) -> None:
        self.paths.append(ws.request.path)
        nonce = uuid.uuid4().hex
        await ws.send(json.dumps({"message_type": "sync", "nonce": nonce}))
        hello = json.loads(await ws.recv())
        assert hello["nonce"] == nonce
        await ws.send(json.dumps({"message_type": "welcome"}))
        self.hellos.put(hello)

        async def beat() -> None:
            while True:
                await asyncio.sleep(0.2)
                await ws.send(json.dumps({"message_type": "heartbeat"}))

        task = asyncio.create_task(beat())
        try:
            async for raw in ws:
                self.received.append(json.loads(raw))
        except Exception as exc:
            self.closes.append(exc)
        finally:
            task.cancel()
            self.closes.append(ws.close_code)

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def test_websocket_handshake_heartbeats_pings_and_reconnect_after_a_server_restart(run_agent: Any) -> None:
    server = WsServer()
    port = server.port
    url = f"ws://127.0.0.1:{port}/atp"
    host, port_number, path = t.parse_server(url)
    agent, capture = run_agent(lambda: t.WebSocketTransport(host, port_number, path), token=SECRET)
    try:
        hello = server.hellos.get(timeout=5)
        assert hello["token"] == SECRET and hello["agent_version"] == __version__
        assert server.paths == ["/atp"]
        wait_until(lambda: agent.state == LIVE)
        capture.key(57, "KEY_SPACE")
        time.sleep(1.5)  # server pings every 0.2 s with a 0.6 s timeout: unanswered pings would close it (1011)
        assert server.closes == [], "the server closed the connection (pong missing?)"
        assert agent.connections == 1
        kinds = [m["message_type"] for m in server.received]
        assert kinds.count("heartbeat") >= 4 and "raw_input_event" in kinds
        assert next(m for m in server.received if m["message_type"] == "raw_input_event")["name"] == "KEY_SPACE"
    finally:
        server.stop()
    time.sleep(0.5)  # the agent retries while the port is closed
    restarted = WsServer(port)
    try:
        second = restarted.hellos.get(timeout=10)
        assert second["nonce"] != hello["nonce"]  # a fresh handshake
        wait_until(lambda: agent.sessions == 2) and agent.connections >= 2
    finally:
        restarted.stop()


@pytest.fixture
def ws_pair() -> Iterator[tuple[t.WebSocketTransport, socket.socket]]:
    mine, theirs = socket.socketpair()
    transport = t.WebSocketTransport("127.0.0.1", 1)
    transport._sock = mine
    transport.poll_interval = 1.0
    yield transport, theirs
    transport.close()
    theirs.close()


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def read_client_frame(sock: socket.socket) -> tuple[int, bytes]:
    head = sock.recv(2, socket.MSG_WAITALL)
    assert head[1] & 0x80, "client frames must be masked"
    size = head[1] & 0x7F
    mask = sock.recv(4, socket.MSG_WAITALL)
    payload = sock.recv(size, socket.MSG_WAITALL) if size else b""
    return head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_websocket_frames_ping_pong_fragments_and_close(ws_pair: Any) -> None:
    transport, server = ws_pair
    server.sendall(server_frame(t.OP_PING, b"p1"))
    server.sendall(server_frame(t.OP_TEXT, b'{"message_type":', fin=False))
    server.sendall(server_frame(t.OP_CONTINUATION, b'"heart', fin=False))
    server.sendall(server_frame(t.OP_PING, b"p2"))  # a control frame between fragments is allowed
    server.sendall(server_frame(t.OP_CONTINUATION, b'beat"}'))
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while not messages and time.monotonic() < deadline:
        messages += transport.receive()
    assert messages == [{"message_type": "heartbeat"}]
    assert read_client_frame(server) == (t.OP_PONG, b"p1")
    assert read_client_frame(server) == (t.OP_PONG, b"p2")

    transport.send([{"message_type": "bye"}])
    assert read_client_frame(server) == (t.OP_TEXT, b'{"message_type":"bye"}')

    server.sendall(server_frame(t.OP_CLOSE, struct.pack(">H", 1001) + b"going away"))
    with pytest.raises(t.TransportClosed, match="1001 going away"):
        while True:
            transport.receive()
    assert read_client_frame(server) == (t.OP_CLOSE, struct.pack(">H", 1001))


def test_websocket_protocol_errors_close_cleanly(ws_pair: Any) -> None:
    transport, server = ws_pair
    server.sendall(server_frame(t.OP_CONTINUATION, b"x"))
    with pytest.raises(t.TransportClosed, match="continuation frame without a first fragment"):
        transport.receive()
    assert read_client_frame(server) == (t.OP_CLOSE, struct.pack(">H", 1002) + b"protocol error")


def test_websocket_handshake_checks_the_accept_key() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: d3JvbmcK\r\n\r\n"
        )
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(t.TransportClosed, match="wrong Sec-WebSocket-Accept"):
        t.WebSocketTransport("127.0.0.1", port).connect()
    server.close()
    assert t.websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 example


def test_server_address_forms() -> None:
    assert t.parse_server("10.0.2.2:8766") == ("10.0.2.2", 8766, "/")
    assert t.parse_server("ws://host:8765") == ("host", 8765, "/")
    assert t.parse_server("ws://host:8765/atp/v1") == ("host", 8765, "/atp/v1")
    assert t.parse_server("[::1]:9") == ("::1", 9, "/")
    for bad in ("nohost", "h:x", "wss://h:1", "h:70000"):
        with pytest.raises(ValueError):
            t.parse_server(bad)


# -- the whole agent as a process: token never in its log ---------------------------------------------------------


def test_the_zip_as_a_process_never_logs_its_token(tmp_path: Path, tcp_server: socket.socket) -> None:
    zip_path = build_zip(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    log_file = tmp_path / "agent.log"
    port = tcp_server.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-S",
            str(zip_path),
            "--transport",
            "tcp",
            "-s",
            f"127.0.0.1:{port}",
            "--token-file",
            str(token_file),
            "--vm-id",
            "vm-proc",
            "-l",
            "debug",
            "--log-file",
            str(log_file),
            "--heartbeat",
            "0.2",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        peer = accept(tcp_server, timeout=20)
        hello = peer.handshake()
        assert hello["token"] == SECRET and hello["vm_id"] == "vm-proc" and hello["agent_version"] == __version__
        assert hello["vm_id_source"] == "--vm-id" and hello["transport"] == "tcp"
        if not hello["ready"]:  # this machine has no readable /dev/input/event*: failure kind 11, said clearly
            assert hello["error"].startswith(NO_READABLE_DEVICES)
            error = peer.expect("error")
            assert error["error"] == "no_readable_devices" and "group 'input'" in error["message"]
        peer.expect("heartbeat", timeout=2)
        peer.send({"message_type": "reject", "reason": f"testing: not {SECRET[:3]}"})
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    text = log_file.read_text()
    assert "starting: transport tcp" in text and "token from file" in text and "welcomed by the server" in text
    assert "rejected this agent" in text
    assert SECRET not in text and SECRET not in out.decode() + err.decode()


# -- TCP and WebSocket framing over a virtio port whose host side is a libvirt tcp channel -------------------------


def channel_to(port: int) -> Callable[[str], int]:
    """Stands in for ``open('/dev/virtio-ports/...')`` of a port whose host side QEMU connects to 127.0.0.1:port."""

    def opener(path: str) -> int:
        assert path.startswith("/dev/virtio-ports/")
        return socket.create_connection(("127.0.0.1", port), timeout=5).detach()

    return opener


def test_tcp_framing_over_a_virtio_port_device(run_agent: Any, tcp_server: socket.socket) -> None:
    port = tcp_server.getsockname()[1]
    device = "/dev/virtio-ports/com.atp.verifier.tcp.0"
    agent, capture = run_agent(lambda: t.TcpTransport(device=device, opener=channel_to(port)), token=SECRET)
    peer = accept(tcp_server)
    assert peer.handshake()["token"] == SECRET
    wait_until(lambda: agent.state == LIVE)
    capture.key(1, "KEY_ESC")
    assert peer.expect("raw_input_event")["name"] == "KEY_ESC"
    peer.sock.close()  # the server drops the connection: end of file on the port, the agent reopens it
    again = accept(tcp_server)
    assert "not connected to the server" in agent.last_end_reason
    again.handshake()
    assert t.make_transport("tcp", port=device).describe() == f"tcp over {device}"


def test_websocket_over_a_virtio_port_device(run_agent: Any) -> None:
    server = WsServer()
    device = "/dev/virtio-ports/com.atp.verifier.ws.0"
    try:
        agent, capture = run_agent(lambda: t.WebSocketTransport(device=device, opener=channel_to(server.port)))
        hello = server.hellos.get(timeout=5)
        assert hello["vm_id"] == "vm-test"
        wait_until(lambda: agent.state == LIVE)
        capture.key(15, "KEY_TAB")
        wait_until(lambda: any(m.get("name") == "KEY_TAB" for m in server.received))
        assert t.make_transport("websocket", port=device).describe() == f"websocket over {device}"
    finally:
        server.stop()
