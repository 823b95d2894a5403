"""The verification server with fake agents: virtio-serial (a unix socket playing QEMU's listening side),
TCP (length frames), WebSocket (``websockets`` client) and a libvirt channel stream (fake libvirt objects)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ATPLibrary.errors import VerificationAgentNotConnected, VerificationConnectError, VerificationError
from ATPLibrary.keys import US
from ATPLibrary.verification import protocol
from ATPLibrary.verification.matcher import ExpectedEvent, text_events
from ATPLibrary.verification.server import VerificationServer

pytestmark = pytest.mark.timeout(60)

HB = 0.1  # agent heartbeat interval in these tests


def events_of(text: str) -> list[dict[str, Any]]:
    return [
        protocol.raw_input_event("key", e.code, e.value, e.name, "/dev/input/event0", 0.0, i)
        for i, e in enumerate(text_events(text, US))
    ]


def wait_until(predicate: Any, timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def server() -> Iterator[VerificationServer]:
    srv = VerificationServer(heartbeat_interval=0.2, heartbeat_timeout=1.0, handshake_timeout=2.0, settle=0.05)
    srv.start()
    yield srv
    srv.stop()
    assert srv.loop_errors == 0, "an exception escaped a task on the server's loop"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # unix socket paths must stay short (108 bytes): not under pytest's tmp_path
    with tempfile.TemporaryDirectory(prefix="atpv") as d:
        yield Path(d)


def hello(nonce: str, vm: str, token: str | None = None, **extra: Any) -> dict[str, Any]:
    message = {
        "message_type": "hello",
        "nonce": nonce,
        "vm_id": vm,
        "agent_version": "9.9.9",
        "platform": "linux",
        "devices": ["/dev/input/event0"],
        "ready": True,
        **extra,
    }
    if token is not None:
        message["token"] = token
    return message


class LineAgent:
    """QEMU's listening side of a unix virtio-serial channel with an agent behind it (one line per message).

    ``stale`` bytes are written the moment the server connects: guest writes QEMU kept until a client came.
    """

    def __init__(self, path: Path, vm: str = "vm1", stale: bytes = b"", answer: bool = True) -> None:
        self.vm = vm
        self.stale = stale
        self.answer = answer
        self.silent = False
        self.messages: list[dict[str, Any]] = []
        self.connections = 0
        self.welcomed = threading.Event()
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(4)
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.stale:
                conn.sendall(self.stale)
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.02)
        buffer = b""
        last_heartbeat = 0.0
        with self._lock:
            self._conn = conn
        try:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                except TimeoutError:
                    pass
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    message = json.loads(line)
                    self.messages.append(message)
                    if message["message_type"] == "sync" and self.answer and not self.silent:
                        self.send(hello(message["nonce"], self.vm))
                    elif message["message_type"] == "welcome":
                        self.welcomed.set()
                if self.welcomed.is_set() and not self.silent and time.monotonic() - last_heartbeat > HB:
                    self.send({"message_type": "heartbeat"})
                    last_heartbeat = time.monotonic()
        except OSError:
            return
        finally:
            with self._lock:
                self._conn = None
            self.welcomed.clear()
            conn.close()

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(protocol.encode_line(message))

    def send_raw(self, data: bytes) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._listener.close()


class FrameAgent:
    """An agent over TCP: 4-byte big-endian length + JSON."""

    def __init__(self, port: int, vm: str, token: str | None, *, heartbeat: bool = True, read: bool = True) -> None:
        self.vm, self.token = vm, token
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.local_port = self.sock.getsockname()[1]
        self.messages: list[dict[str, Any]] = []
        self.welcomed = threading.Event()
        self.rejected = threading.Event()
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._heartbeat = heartbeat
        if read:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                buffer += data
                while len(buffer) >= 4:
                    (size,) = struct.unpack(">I", buffer[:4])
                    if len(buffer) < 4 + size:
                        break
                    message = json.loads(buffer[4 : 4 + size])
                    buffer = buffer[4 + size :]
                    self.messages.append(message)
                    kind = message["message_type"]
                    if kind == "sync":
                        self.send(hello(message["nonce"], self.vm, self.token))
                    elif kind == "welcome":
                        self.welcomed.set()
                        if self._heartbeat:
                            threading.Thread(target=self._beat, daemon=True).start()
                    elif kind == "reject":
                        self.rejected.set()
        except OSError:
            pass
        finally:
            self.closed.set()

    def _beat(self) -> None:
        while not self.closed.is_set():
            try:
                self.send({"message_type": "heartbeat"})
            except OSError:
                return
            time.sleep(HB)

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(protocol.encode_frame(message))

    def send_raw(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def send_text(agent: LineAgent | FrameAgent, text: str) -> None:
    for message in events_of(text):
        agent.send(message)


# -- virtio-serial ----------------------------------------------------------------------------------------------


def test_unix_handshake_discards_stale_lines(server: VerificationServer, sock_dir: Path) -> None:
    stale = b"".join(
        [
            protocol.encode_line(hello("an-old-nonce", "vm1")),
            *(protocol.encode_line(m) for m in events_of("zzz")),
            b"this is not json\n",
        ]
    )
    path = sock_dir / "vm1.sock"
    agent = LineAgent(path, stale=stale)
    try:
        info = server.connect_unix("vm1", str(path), timeout=5)
        assert info.agent_version == "9.9.9" and info.transport == "virtio-serial"
        assert server.mark("vm1") == 0, "stale events buffered before the connection were not discarded"
        handle = server.expect("vm1", text_events("ab", US), timeout=3, text="ab", layout=US)
        send_text(agent, "ab")
        handle.sent()
        assert handle.check().ok
        assert [e.name for e in server.received_since("vm1", 0)] == ["KEY_A", "KEY_A", "KEY_B", "KEY_B"]
        syncs = [m for m in agent.messages if m["message_type"] == "sync"]
        assert syncs and all(s["nonce"] == syncs[0]["nonce"] for s in syncs)
    finally:
        agent.close()


def test_connect_unix_handshake_timeout_names_vm_and_path(server: VerificationServer, sock_dir: Path) -> None:
    path = sock_dir / "mute.sock"
    agent = LineAgent(path, answer=False)
    try:
        started = time.monotonic()
        with pytest.raises(VerificationConnectError) as info:
            server.connect_unix("vm-mute", str(path), timeout=1.0)
        assert time.monotonic() - started < 3.0
        message = str(info.value)
        assert "vm-mute" in message and str(path) in message
        assert "no verification agent answered" in message
        # the connector keeps trying: the agent starts answering and the session comes up
        agent.answer = True
        assert server.wait_connected("vm-mute", 5).agent_version == "9.9.9"
    finally:
        server.disconnect("vm-mute")
        agent.close()
    with pytest.raises(VerificationConnectError, match=r"cannot open the unix socket .*missing\.sock"):
        server.connect_unix("vm-none", str(sock_dir / "missing.sock"), timeout=0.5)


def test_heartbeat_loss_marks_lost_then_reconnects(server: VerificationServer, sock_dir: Path) -> None:
    path = sock_dir / "hb.sock"
    agent = LineAgent(path)
    try:
        server.connect_unix("vm1", str(path), timeout=5)
        # like kill -9 of the agent: no EOF on a virtio port, just silence
        agent.silent = True
        pending = server.expect("vm1", text_events("a", US), timeout=0.5, text="a", layout=US)
        result = pending.wait()
        assert result.reason == "timeout"
        assert "The agent's last message arrived" in result.message
        open_expectation = server.expect("vm1", text_events("b", US), timeout=10)
        started = time.monotonic()
        lost = open_expectation.wait()
        assert lost.reason == "lost" and "no message from the agent" in lost.message
        assert time.monotonic() - started < 2.5
        assert any("lost" in n for n in server.notices())
        assert server.session("vm1") is None
        with pytest.raises(VerificationAgentNotConnected, match="vm1"):
            server.expect("vm1", [ExpectedEvent.key("a")], timeout=1)
        # the agent is back: the connector reconnects with a fresh sync
        agent.silent = False
        server.wait_connected("vm1", 5)
        assert agent.connections >= 2
        handle = server.expect("vm1", text_events("c", US), timeout=3, text="c", layout=US)
        send_text(agent, "c")
        assert handle.check().ok
    finally:
        agent.close()


def test_bad_lines_are_skipped_and_the_session_survives(
    server: VerificationServer, sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = sock_dir / "bad.sock"
    agent = LineAgent(path)
    try:
        server.connect_unix("vm1", str(path), timeout=5)
        with caplog.at_level(logging.WARNING, logger="ATPLibrary.verification"):
            agent.send_raw(b'{not json\n[1, 2]\n{"no_type": 1}\n')
            agent.send({"message_type": "raw_input_event", "kind": "key", "code": "x", "value": 1})
            agent.send_raw(b"x" * (protocol.MAX_LINE + 10) + b"\n")
            handle = server.expect("vm1", text_events("ok", US), timeout=3, text="ok", layout=US)
            send_text(agent, "ok")
            assert handle.check().ok
        assert "malformed" in caplog.text
        assert server.session("vm1") is not None
    finally:
        agent.close()


def test_dropped_report_fails_the_open_expectation(server: VerificationServer, sock_dir: Path) -> None:
    path = sock_dir / "drop.sock"
    agent = LineAgent(path)
    try:
        server.connect_unix("vm1", str(path), timeout=5)
        handle = server.expect("vm1", text_events("abc", US), timeout=10, text="abc", layout=US)
        started = time.monotonic()
        send_text(agent, "a")
        agent.send({"message_type": "dropped", "count": 3})
        result = handle.wait()
        assert time.monotonic() - started < 2
        assert result.reason == "dropped"
        assert "the verification agent fell behind and the guest kernel dropped events" in result.message
    finally:
        agent.close()


# -- TCP --------------------------------------------------------------------------------------------------------


def test_tcp_wrong_token_rejected_and_logged_without_token(
    server: VerificationServer, caplog: pytest.LogCaptureFixture
) -> None:
    port = server.listen_tcp()
    assert port > 0 and server.listen_tcp() == port
    good_token, wrong_token = "good-token-5f3a9c", "wrong-token-77d1e0"
    server.register_token("vm1", good_token)
    good = FrameAgent(port, "vm1", good_token)
    assert good.welcomed.wait(5)
    with caplog.at_level(logging.INFO, logger="ATPLibrary.verification"):
        bad = FrameAgent(port, "vm1", wrong_token)
        assert bad.rejected.wait(5) and bad.closed.wait(5)
        unknown = FrameAgent(port, "vm-unknown", good_token)
        assert unknown.rejected.wait(5) and unknown.closed.wait(5)
        missing = FrameAgent(port, "vm1", None)
        assert missing.rejected.wait(5)
        # the good session keeps working
        handle = server.expect("vm1", text_events("fine", US), timeout=3, text="fine", layout=US)
        send_text(good, "fine")
        assert handle.check().ok
    rejections = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "Rejected" in r.message]
    assert len(rejections) == 3, rejections
    assert "vm1" in rejections[0] and f"127.0.0.1:{bad.local_port}" in rejections[0] and "wrong token" in rejections[0]
    assert "vm-unknown" in rejections[1] and "unknown VM" in rejections[1]
    assert "no token" in rejections[2]
    assert wrong_token not in caplog.text and good_token not in caplog.text
    assert any("Rejected" in n for n in server.notices())
    assert server.session("vm1").peer == f"127.0.0.1:{good.local_port}"  # type: ignore[union-attr]
    good.close()


def test_tcp_duplicate_vm_replaces_older_session(server: VerificationServer) -> None:
    port = server.listen_tcp()
    server.register_token("vm1", "t1")
    first = FrameAgent(port, "vm1", "t1")
    assert first.welcomed.wait(5)
    second = FrameAgent(port, "vm1", "t1")
    assert second.welcomed.wait(5)
    assert first.closed.wait(5), "the older session was not closed"
    assert server.session("vm1").peer == f"127.0.0.1:{second.local_port}"  # type: ignore[union-attr]
    handle = server.expect("vm1", text_events("x", US), timeout=3)
    send_text(second, "x")
    assert handle.check().ok
    second.close()


def test_tcp_malformed_frames_survive_and_huge_length_closes_cleanly(
    server: VerificationServer, caplog: pytest.LogCaptureFixture
) -> None:
    port = server.listen_tcp()
    server.register_token("vm1", "t1")
    server.register_token("vm2", "t2")
    agent = FrameAgent(port, "vm1", "t1")
    other = FrameAgent(port, "vm2", "t2")
    assert agent.welcomed.wait(5) and other.welcomed.wait(5)
    with caplog.at_level(logging.WARNING, logger="ATPLibrary.verification"):
        for payload in (b"{bad json", b"[1,2,3]", b'"a string"', b'{"message_type": 5}', b"\xff\xfe"):
            agent.send_raw(struct.pack(">I", len(payload)) + payload)
        handle = server.expect("vm1", text_events("still", US), timeout=3)
        send_text(agent, "still")
        assert handle.check().ok
        # a frame longer than allowed: the session closes, nothing hangs
        agent.send_raw(struct.pack(">I", 0xFFFFFFF0) + b"{}")
        assert agent.closed.wait(5)
    assert "frame of 4294967280 bytes" in caplog.text
    wait_until(lambda: server.session("vm1") is None, what="the session to be removed")
    # the other session is unaffected
    handle = server.expect("vm2", text_events("b", US), timeout=3)
    send_text(other, "b")
    assert handle.check().ok
    other.close()


def test_request_reply_and_latencies(server: VerificationServer) -> None:
    port = server.listen_tcp()
    server.register_token("vm1", "t1")
    agent = FrameAgent(port, "vm1", "t1")
    assert agent.welcomed.wait(5)

    def answer() -> None:
        wait_until(lambda: any(m["message_type"] == "verify_command" for m in agent.messages), what="request")
        request = next(m for m in agent.messages if m["message_type"] == "verify_command")
        agent.send({"message_type": "command_result", "request_id": request["request_id"], "exit_code": 0})

    threading.Thread(target=answer, daemon=True).start()
    reply = server.request("vm1", {"message_type": "verify_command", "command": "true"}, timeout=5)
    assert reply["exit_code"] == 0
    for char in "abc":
        handle = server.expect("vm1", text_events(char, US), timeout=3)
        handle.sending()
        send_text(agent, char)
        handle.sent()
        assert handle.check().latency is not None
    stats = server.latencies("vm1")
    assert stats.count == 3 and stats.p50 is not None and stats.max is not None and stats.max < 1000
    agent.close()


def test_expect_without_agent_and_calls_after_stop() -> None:
    server = VerificationServer()
    server.start()
    server.start()  # idempotent
    started = time.monotonic()
    with pytest.raises(VerificationAgentNotConnected, match=r"No verification agent is connected for VM 'ghost'"):
        server.expect("ghost", [ExpectedEvent.key("a")], timeout=5, wait_agent=0.3)
    assert time.monotonic() - started < 2
    assert server.mark("vm1") == 0  # per-VM state bound to this loop
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(VerificationError, match="not running"):
        server.mark("ghost")
    server.start()  # restartable, and matching works on the new loop
    port = server.listen_tcp()
    server.register_token("vm1", "t1")
    agent = FrameAgent(port, "vm1", "t1")
    assert agent.welcomed.wait(5)
    handle = server.expect("vm1", text_events("r", US), timeout=3)
    send_text(agent, "r")
    assert handle.check().ok
    agent.close()
    server.stop()


# -- WebSocket and failure kind 12 ------------------------------------------------------------------------------


def test_websocket_stays_connected_while_the_server_is_busy(server: VerificationServer) -> None:
    """Failure kind 12: a client pinging every second keeps its connection over several intervals while the
    server matches a flood of events, serves a client that never reads, and gets malformed frames."""
    from websockets.asyncio.client import connect

    ws_port = server.listen_websocket()
    tcp_port = server.listen_tcp()
    server.register_token("vm-ws", "tw")
    server.register_token("vm-flood", "tf")
    server.register_token("vm-slow", "ts")
    flood = FrameAgent(tcp_port, "vm-flood", "tf")
    assert flood.welcomed.wait(5)
    server.loop_lag(reset=True)

    async def scenario() -> None:
        async with connect(f"ws://127.0.0.1:{ws_port}", ping_interval=1.0, ping_timeout=1.0) as ws:
            sync = json.loads(await ws.recv())
            assert sync["message_type"] == "sync"
            await ws.send(json.dumps(hello(sync["nonce"], "vm-ws", "tw")))
            assert json.loads(await ws.recv())["message_type"] == "welcome"
            await ws.send("not json at all")  # logged and skipped

            async def heartbeats() -> None:
                while True:
                    await ws.send(json.dumps({"message_type": "heartbeat"}))
                    await asyncio.sleep(HB)

            async def drain() -> None:
                async for _ in ws:
                    pass

            beat = asyncio.create_task(heartbeats())
            reader = asyncio.create_task(drain())
            # a slow consumer: completes the handshake, then never reads nor writes again
            slow = await asyncio.to_thread(FrameAgent, tcp_port, "vm-slow", "ts", heartbeat=False)
            assert await asyncio.to_thread(slow.welcomed.wait, 5)
            started = time.monotonic()
            rounds = 0
            while time.monotonic() - started < 4.5:  # > 4 ping intervals
                text = "the quick brown fox jumps over the lazy dog " * 3
                handle = await asyncio.to_thread(
                    server.expect, "vm-flood", text_events(text, US), 10, text=text, layout=US
                )
                await asyncio.to_thread(send_text, flood, text)
                result = await asyncio.to_thread(handle.wait)
                assert result.ok, result.message
                rounds += 1
            ws_handle = await asyncio.to_thread(server.expect, "vm-ws", text_events("ws", US), 3)
            for message in events_of("ws"):
                await ws.send(json.dumps(message))
            assert (await asyncio.to_thread(ws_handle.wait)).ok
            beat.cancel()
            reader.cancel()
            assert ws.state.name == "OPEN"
            assert rounds >= 3
            slow.close()

    asyncio.run(scenario())
    assert server.loop_lag() < 0.25, f"the server's loop was blocked for {server.loop_lag():.3f} s"
    flood.close()


# -- libvirt channel stream -------------------------------------------------------------------------------------


class FakeLibvirtStream:
    """A NONBLOCK virStream over a socketpair; callbacks come from a thread like libvirt's event loop."""

    def __init__(self) -> None:
        self.host, self.guest = socket.socketpair()
        self.host.setblocking(False)
        self.callback: Any = None
        self.enabled = True
        self.aborted = False
        self._thread: threading.Thread | None = None

    def eventAddCallback(self, events: int, callback: Any, opaque: Any) -> None:
        self.callback = callback
        self._thread = threading.Thread(target=self._events, daemon=True)
        self._thread.start()

    def _events(self) -> None:
        import select

        while not self.aborted:
            try:
                readable, _, _ = select.select([self.host], [], [], 0.05)
            except (OSError, ValueError):  # aborted meanwhile
                return
            if readable and self.enabled and self.callback is not None:
                self.callback(self, 1, None)

    def eventUpdateCallback(self, events: int) -> None:
        self.enabled = bool(events)

    def eventRemoveCallback(self) -> None:
        self.callback = None

    def recv(self, n: int) -> bytes | int:
        try:
            return self.host.recv(n)
        except BlockingIOError:
            return -2

    def send(self, data: bytes) -> int:
        try:
            return self.host.send(data)
        except BlockingIOError:
            return -2

    def abort(self) -> None:
        self.aborted = True
        self.host.close()


class FakeDomain:
    def __init__(self) -> None:
        self.streams: list[FakeLibvirtStream] = []
        self.flags: list[int] = []

    def name(self) -> str:
        return "vm-lv"

    def connect(self) -> FakeDomain:
        return self

    def newStream(self, flags: int) -> FakeLibvirtStream:
        import libvirt

        assert flags == libvirt.VIR_STREAM_NONBLOCK
        stream = FakeLibvirtStream()
        self.streams.append(stream)
        return stream

    def openChannel(self, name: str, stream: FakeLibvirtStream, flags: int) -> None:
        assert name == protocol.VIRTIO_PORT_NAME
        self.flags.append(flags)
        threading.Thread(target=self._agent, args=(stream.guest,), daemon=True).start()

    @staticmethod
    def _agent(sock: socket.socket) -> None:
        """The guest side: a stale line, then answers sync and reports typed keys."""
        with contextlib.suppress(OSError):
            FakeDomain._agent_lines(sock)

    @staticmethod
    def _agent_lines(sock: socket.socket) -> None:
        sock.sendall(protocol.encode_line(events_of("q")[0]))
        buffer = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if message["message_type"] == "sync":
                    sock.sendall(protocol.encode_line(hello(message["nonce"], "vm-lv")))
                elif message["message_type"] == "heartbeat":
                    sock.sendall(protocol.encode_line({"message_type": "heartbeat"}))
                elif message["message_type"] == "welcome":
                    for event in events_of("hi"):
                        sock.sendall(protocol.encode_line(event))


def test_libvirt_channel_stream_bridge(server: VerificationServer) -> None:
    domain = FakeDomain()
    info = server.connect_libvirt_channel("vm-lv", lambda: domain, timeout=5)
    assert info.transport == "virtio-serial" and "libvirt channel" in info.peer
    assert domain.flags == [0]
    result = server.check_received("vm-lv", text_events("hi", US), since=0, timeout=3, text="hi", layout=US)
    assert result.ok, result.message  # the stale 'q' before the hello is not there
    # the guest side goes away: the bridge sees EOF, the connector reconnects with VIR_DOMAIN_CHANNEL_FORCE
    domain.streams[0].guest.close()
    wait_until(lambda: len(domain.flags) >= 2 and server.session("vm-lv") is not None, what="reconnect")
    import libvirt

    assert domain.flags[1] == libvirt.VIR_DOMAIN_CHANNEL_FORCE
    server.disconnect("vm-lv")
