"""SocketQmpTransport against a fake QMP server on a unix socket (a thread per connection, scripted replies)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ATPLibrary.errors import QMPCommandError, QMPError, WaitTimeoutError
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.keywords.qmp import QmpKeywords
from ATPLibrary.qmp import LibvirtQmpTransport, MonitorClient, QmpKeyboard, QmpTransport, SocketQmpTransport
from ATPLibrary.qmp.keyboard import CHARS_PER_COMMAND

pytestmark = pytest.mark.timeout(30)

GREETING = {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": ""}, "capabilities": ["oob"]}}
#: Failure kind 3: the first line QEMU 4.0-rc wrote on a fresh QMP connection.
EARLY_EVENT_LINE = (
    b'{"timestamp":{"seconds":1554312576,"microseconds":116513},'
    b'"event":"VSERPORT_CHANGE","data":{"open":false,"id":"channel0"}}\n'
)
EARLY_EVENT = json.loads(EARLY_EVENT_LINE)
STATUS = {"running": True, "singlestep": False, "status": "running"}


def event(name: str, **data: Any) -> dict[str, Any]:
    return {"timestamp": {"seconds": 1700000000, "microseconds": 1}, "event": name, "data": data}


class Peer:
    """One accepted connection, seen from the fake server."""

    def __init__(self, sock: socket.socket, received: list[dict[str, Any]]) -> None:
        sock.settimeout(20)
        self.sock = sock
        self.buffer = ""
        self.received = received

    def send(self, message: dict[str, Any] | bytes) -> None:
        raw = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.sock.sendall(raw)

    def recv(self) -> dict[str, Any] | None:
        """The next JSON object from the client (qemu.qmp sends no newline after one: parse the stream)."""
        decoder = json.JSONDecoder()
        while True:
            text = self.buffer.lstrip()
            if text:
                try:
                    message, end = decoder.raw_decode(text)
                except ValueError:
                    pass  # incomplete: read more
                else:
                    self.buffer = text[end:]
                    self.received.append(message)
                    return dict(message)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk.decode()

    def reply(self, request: dict[str, Any], value: Any = None, **extra: Any) -> None:
        body = {"return": {} if value is None else value, **extra}
        if "id" in request:
            body["id"] = request["id"]
        self.send(body)

    def handshake(
        self, before_greeting: list[dict[str, Any] | bytes] = (), before_caps_reply: list[dict[str, Any]] = ()
    ) -> None:
        for message in before_greeting:
            self.send(message)
        self.send(GREETING)
        request = self.recv()
        assert request is not None and request["execute"] == "qmp_capabilities"
        for message in before_caps_reply:
            self.send(message)
        self.reply(request)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


Script = Callable[[Peer, int], None]


class FakeQmpServer:
    """Listens on ``path``; runs ``script(peer, connection_number)`` for each connection (numbered from 1)."""

    def __init__(self, path: str, script: Script) -> None:
        self.path = path
        self.script = script
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self.errors: list[BaseException] = []
        self._peers: list[Peer] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(8)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            peer = Peer(sock, self.received)
            self._peers.append(peer)
            threading.Thread(target=self._serve, args=(peer, self.connections), daemon=True).start()

    def _serve(self, peer: Peer, number: int) -> None:
        try:
            self.script(peer, number)
        except (OSError, ValueError):
            pass  # the client went away, or a test closed the server
        except BaseException as err:  # an assertion in a script: reported by the test
            self.errors.append(err)

    def commands(self, name: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.received if name is None or m.get("execute") == name]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for peer in self._peers:
            peer.close()


def answer_all(responder: Callable[[Peer, dict[str, Any]], None]) -> Callable[[Peer], None]:
    """A loop that hands every command after the handshake to ``responder``."""

    def loop(peer: Peer) -> None:
        while (request := peer.recv()) is not None:
            responder(peer, request)

    return loop


def status_responder(peer: Peer, request: dict[str, Any]) -> None:
    peer.reply(request, STATUS if request["execute"] == "query-status" else {})


@pytest.fixture()
def sock_dir() -> Iterator[str]:
    # unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer
    path = tempfile.mkdtemp(prefix="qmp", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def serve(sock_dir: str) -> Iterator[Callable[[Script], FakeQmpServer]]:
    servers: list[FakeQmpServer] = []

    def start(script: Script) -> FakeQmpServer:
        server = FakeQmpServer(os.path.join(sock_dir, f"qmp{len(servers)}.sock"), script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
        assert not server.errors, server.errors


@pytest.fixture()
def transports() -> Iterator[Callable[..., SocketQmpTransport]]:
    made: list[SocketQmpTransport] = []

    def make(path: str, **kwargs: Any) -> SocketQmpTransport:
        transport = SocketQmpTransport(path, **kwargs)
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close()


def standard(peer: Peer, _number: int) -> None:
    peer.handshake()
    answer_all(status_responder)(peer)


# ---------------------------------------------------------------- the normal path


def test_greeting_capabilities_then_command(serve: Any, transports: Any) -> None:
    server = serve(standard)
    transport = transports(server.path, name="vm1")
    assert isinstance(transport, QmpTransport)
    assert transport.connects == 0  # lazy: nothing happens before the first command
    monitor = MonitorClient(transport, timeout=5)
    assert monitor.status() == STATUS
    assert monitor.execute("query-status") == STATUS
    first, second, third = server.received
    assert first["execute"] == "qmp_capabilities"
    assert first.get("arguments") == {"enable": ["oob"]}
    assert second["execute"] == third["execute"] == "query-status"
    assert second["id"] != third["id"]
    assert transport.connects == server.connections == 1
    assert monitor.commands_sent == transport.commands_sent == 2


def test_arguments_are_sent_and_return_values_of_any_type_come_back(serve: Any, transports: Any) -> None:
    def responder(peer: Peer, request: dict[str, Any]) -> None:
        peer.reply(request, request.get("arguments", {}).get("echo", []))

    def script(peer: Peer, _n: int) -> None:
        peer.handshake()
        answer_all(responder)(peer)

    server = serve(script)
    transport = transports(server.path)
    assert transport.execute("x-echo", {"echo": [1, "two", None]}, 5) == [1, "two", None]
    assert transport.execute("x-echo", None, 5) == []
    assert server.commands("x-echo")[0]["arguments"] == {"echo": [1, "two", None]}
    assert "arguments" not in server.commands("x-echo")[1]


# ---------------------------------------------------------------- failure kind 3: events are not replies


@pytest.mark.parametrize(
    ("before_greeting", "before_caps_reply"),
    [
        ([EARLY_EVENT_LINE], []),
        ([EARLY_EVENT_LINE, event("RTC_CHANGE", offset=0), event("NIC_RX_FILTER_CHANGED", path="/x")], []),
        ([], [EARLY_EVENT_LINE]),
        ([EARLY_EVENT_LINE], [event("RESUME")]),
    ],
    ids=["one-event-before-greeting", "three-events-before-greeting", "event-before-caps-reply", "both"],
)
def test_events_before_the_session_are_queued_not_fatal(
    serve: Any, transports: Any, before_greeting: list[Any], before_caps_reply: list[Any]
) -> None:
    def script(peer: Peer, _n: int) -> None:
        peer.handshake(before_greeting, before_caps_reply)
        answer_all(status_responder)(peer)

    server = serve(script)
    transport = transports(server.path)
    assert transport.execute("query-status", None, 5) == STATUS
    expected = [m if isinstance(m, dict) else json.loads(m) for m in [*before_greeting, *before_caps_reply]]
    assert transport.events() == expected
    assert EARLY_EVENT in transport.events()


def test_plain_qemu_qmp_client_fails_on_event_before_greeting(serve: Any) -> None:
    """The fake reproduces kind 3: qemu.qmp's own client cannot connect (so our layer is what fixes it)."""
    from qemu.qmp import ConnectError, QMPClient
    from qemu.qmp.qmp_client import GreetingError

    def script(peer: Peer, _n: int) -> None:
        peer.send(EARLY_EVENT_LINE)
        peer.send(GREETING)
        peer.recv()

    server = serve(script)

    async def connect() -> None:
        client = QMPClient("plain")
        try:
            await asyncio.wait_for(client.connect(server.path), 5)
        finally:
            await client.disconnect()

    with pytest.raises(ConnectError) as info:
        asyncio.run(connect())
    assert isinstance(info.value.exc, GreetingError)


def test_events_between_command_and_reply_are_queued_and_replies_stay_matched(serve: Any, transports: Any) -> None:
    tricky = event("X_TRICKY", **{"return": {"running": False}, "id": "__qmp#00000"})

    def responder(peer: Peer, request: dict[str, Any]) -> None:
        if request["execute"] == "query-status":
            peer.send(event("STOP"))
            peer.send(EARLY_EVENT_LINE)
            peer.send(tricky)
            peer.send(event("RESUME"))
            peer.reply(request, STATUS)
        else:
            peer.reply(request, {"name": "vm1"})

    def script(peer: Peer, _n: int) -> None:
        peer.handshake()
        answer_all(responder)(peer)

    server = serve(script)
    transport = transports(server.path)
    assert transport.execute("query-status", None, 5) == STATUS
    assert transport.execute("query-name", None, 5) == {"name": "vm1"}
    assert [e["event"] for e in transport.events()] == ["STOP", "VSERPORT_CHANGE", "X_TRICKY", "RESUME"]
    assert transport.wait_event("RESUME", 1) == event("RESUME")
    assert [e["event"] for e in transport.events()] == ["STOP", "VSERPORT_CHANGE", "X_TRICKY"]
    assert transport.events(clear=True)[1] == EARLY_EVENT
    assert transport.events() == []


def test_wait_event_waits_for_a_later_event_and_times_out_with_what_it_saw(serve: Any, transports: Any) -> None:
    go = threading.Event()

    def script(peer: Peer, _n: int) -> None:
        peer.handshake()
        peer.reply(peer.recv() or {}, STATUS)
        go.wait(10)
        peer.send(event("SHUTDOWN", guest=True, reason="guest-shutdown"))
        peer.recv()

    server = serve(script)
    transport = transports(server.path)
    transport.execute("query-status", None, 5)
    threading.Timer(0.2, go.set).start()
    assert transport.wait_event("SHUTDOWN", 5)["data"] == {"guest": True, "reason": "guest-shutdown"}
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError, match=r"no QMP event POWERDOWN within .*queued events: none"):
        transport.wait_event("POWERDOWN", 0.3)
    assert 0.25 < time.monotonic() - started < 2


def test_event_queue_is_bounded_keeping_the_newest(serve: Any, transports: Any) -> None:
    def script(peer: Peer, _n: int) -> None:
        peer.handshake([event("E", n=i) for i in range(5)])
        answer_all(status_responder)(peer)

    server = serve(script)
    transport = transports(server.path, max_events=3)
    transport.execute("query-status", None, 5)
    assert [e["data"]["n"] for e in transport.events()] == [2, 3, 4]


# ---------------------------------------------------------------- error replies and broken servers


def test_error_reply_raises_qmp_command_error_and_the_connection_stays_usable(serve: Any, transports: Any) -> None:
    def responder(peer: Peer, request: dict[str, Any]) -> None:
        if request["execute"] == "input-send-event":
            error = {"class": "DeviceNotFound", "desc": "Device 'input3' not found"}
            peer.send({"error": error, "id": request["id"]})
        else:
            status_responder(peer, request)

    def script(peer: Peer, _n: int) -> None:
        peer.handshake()
        answer_all(responder)(peer)

    server = serve(script)
    transport = transports(server.path, name="vm1")
    with pytest.raises(QMPCommandError) as info:
        transport.execute("input-send-event", {"device": "input3", "events": []}, 5)
    assert info.value.error_class == "DeviceNotFound"
    assert info.value.desc == "Device 'input3' not found"
    assert "vm1" in str(info.value) and server.path in str(info.value) and "input-send-event" in str(info.value)
    assert transport.execute("query-status", None, 5) == STATUS
    assert server.connections == 1


def test_server_that_never_answers_fails_within_the_timeout(serve: Any, transports: Any) -> None:
    def script(peer: Peer, _n: int) -> None:
        peer.handshake()
        while peer.recv() is not None:
            pass  # never answers

    server = serve(script)
    transport = transports(server.path)
    transport.connect(5)
    started = time.monotonic()
    with pytest.raises(QMPError, match=r"no reply to QMP command query-status within 500 ms"):
        transport.execute("query-status", None, 0.5)
    assert 0.4 < time.monotonic() - started < 2
    assert server.commands("query-status")  # the command did go out


def test_server_that_never_greets_fails_within_the_timeout(serve: Any, transports: Any) -> None:
    def script(peer: Peer, _n: int) -> None:
        peer.recv()  # accepted, silent (what a second client of a busy QEMU monitor sees)

    server = serve(script)
    transport = transports(server.path)
    started = time.monotonic()
    with pytest.raises(QMPError, match=r"no QMP greeting within 500 ms.*one client per QMP socket"):
        transport.execute("query-status", None, 0.5)
    assert time.monotonic() - started < 2


def test_server_closing_mid_command_fails_clearly_and_is_not_retried(serve: Any, transports: Any) -> None:
    def script(peer: Peer, _n: int) -> None:
        peer.handshake()
        peer.recv()
        peer.close()

    server = serve(script)
    transport = transports(server.path)
    started = time.monotonic()
    with pytest.raises(QMPError, match=r"broke while waiting for the reply to QMP command input-send-event") as info:
        transport.execute("input-send-event", {"events": []}, 5)
    assert "QEMU closed the connection" in str(info.value)
    assert "not retried" in str(info.value)
    assert time.monotonic() - started < 2
    assert server.connections == 1


def test_idempotent_command_is_retried_once_after_the_connection_broke(serve: Any, transports: Any) -> None:
    def script(peer: Peer, number: int) -> None:
        peer.handshake()
        if number == 1:
            peer.recv()
            peer.close()
            return
        answer_all(status_responder)(peer)

    server = serve(script)
    transport = transports(server.path)
    assert transport.execute("query-status", None, 5, idempotent=True) == STATUS
    assert server.connections == transport.connects == 2


def test_idempotent_command_fails_when_the_retry_breaks_too(serve: Any, transports: Any) -> None:
    def script(peer: Peer, _n: int) -> None:
        peer.handshake()
        peer.recv()
        peer.close()

    server = serve(script)
    transport = transports(server.path)
    with pytest.raises(QMPError, match=r"broke again while retrying QMP command query-status"):
        transport.execute("query-status", None, 5, idempotent=True)
    assert server.connections == 2


def test_connection_closed_between_commands_reconnects_once(serve: Any, transports: Any) -> None:
    def script(peer: Peer, _n: int) -> None:
        peer.handshake()
        request = peer.recv()
        assert request is not None
        status_responder(peer, request)
        peer.close()  # e.g. QEMU restarted

    server = serve(script)
    transport = transports(server.path)
    assert transport.execute("query-status", None, 5) == STATUS
    deadline = time.monotonic() + 5
    while transport.is_connected:
        assert time.monotonic() < deadline, "the closed connection was never noticed"
        time.sleep(0.01)
    # not idempotent, yet safe: the closed connection is found before anything is sent
    assert transport.execute("input-send-event", {"events": []}, 5) == {}
    assert server.connections == transport.connects == 2
    assert len(server.commands("input-send-event")) == 1


@pytest.mark.parametrize(
    ("bad_line", "cause"),
    [
        (b'{"return": {"running": tru\n', "Failed to deserialize QMP message"),
        (b"[1, 2]\n", "QMP message is not a JSON object"),
    ],
    ids=["malformed-json", "json-not-an-object"],
)
def test_malformed_reply_fails_clearly_without_hanging(
    serve: Any, transports: Any, caplog: pytest.LogCaptureFixture, bad_line: bytes, cause: str
) -> None:
    def script(peer: Peer, _n: int) -> None:
        peer.handshake()
        peer.recv()
        peer.send(bad_line)
        peer.recv()

    server = serve(script)
    transport = transports(server.path)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(QMPError, match="broke while waiting for the reply to QMP command query-status") as info:
        transport.execute("query-status", None, 10)
    assert time.monotonic() - started < 2
    assert cause in str(info.value)
    # qemu.qmp's own error logs are demoted: the raised error is the one report (no ERROR lines in Robot logs)
    assert not [r for r in caplog.records if r.name.startswith("qemu.qmp") and r.levelno >= logging.WARNING]
    assert [r for r in caplog.records if r.name.startswith("qemu.qmp")]  # ...but still there for debugging


def test_malformed_greeting_fails_clearly(serve: Any, transports: Any) -> None:
    def script(peer: Peer, _n: int) -> None:
        peer.send(b"this is not QMP\n")
        peer.recv()

    server = serve(script)
    transport = transports(server.path)
    with pytest.raises(QMPError, match=r"cannot connect.*Failed to deserialize.*QMP monitor socket") as info:
        transport.execute("query-status", None, 5)
    assert server.path in str(info.value)


def test_missing_socket_names_the_path_and_what_to_do(sock_dir: str, transports: Any) -> None:
    path = os.path.join(sock_dir, "absent.sock")
    transport = transports(path, name="vm9")
    with pytest.raises(QMPError, match=r"VM 'vm9' \(QMP socket .*absent.sock\): cannot connect: the socket does not"):
        transport.execute("query-status", None, 5)
    with pytest.raises(QMPError, match=rf"-qmp unix:{path},server=on,wait=off.*Use Libvirt QMP"):
        transport.connect(5)


def test_stale_socket_file_is_reported_as_nothing_listening(sock_dir: str, transports: Any) -> None:
    path = os.path.join(sock_dir, "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    with pytest.raises(QMPError, match="nothing listens on it"):
        transports(path).connect(5)


def test_arguments_that_are_not_json_fail_before_anything_is_sent(serve: Any, transports: Any) -> None:
    server = serve(standard)
    transport = transports(server.path)
    with pytest.raises(QMPError, match="not JSON"):
        transport.execute("input-send-event", {"events": [object()]}, 5)
    assert server.commands("input-send-event") == []


def test_close_stops_the_thread_and_the_next_command_reconnects(serve: Any, transports: Any) -> None:
    server = serve(standard)
    transport = transports(server.path)
    transport.execute("query-status", None, 5)
    thread = transport._thread
    assert thread is not None and thread.is_alive()
    transport.close()
    assert not thread.is_alive()
    assert not transport.is_connected
    assert transport.execute("query-status", None, 5) == STATUS
    assert server.connections == transport.connects == 2


# ---------------------------------------------------------------- input over the socket


def test_input_events_are_chunked_to_at_most_60_per_command_over_the_socket(serve: Any, transports: Any) -> None:
    server = serve(standard)
    monitor = MonitorClient(transports(server.path), timeout=5)
    events = [
        {"type": "key", "data": {"down": i % 2 == 0, "key": {"type": "qcode", "data": f"k{i}"}}} for i in range(250)
    ]
    assert monitor.send_input_events(events, limit=100) == 5
    batches = [c["arguments"]["events"] for c in server.commands("input-send-event")]
    assert [len(b) for b in batches] == [60, 60, 60, 60, 10]
    assert [e for b in batches for e in b] == events

    text = "Hello_World-42 (a>b) & {x|y} #~$ tail"
    QmpKeyboard(monitor).type_text(text)
    batches = [c["arguments"]["events"] for c in server.commands("input-send-event")][5:]
    assert len(batches) == -(-len(text) // CHARS_PER_COMMAND)
    assert max(len(b) for b in batches) <= 60


# ---------------------------------------------------------------- choosing the transport


def test_context_uses_libvirt_unless_a_vm_has_a_socket(serve: Any) -> None:
    server = serve(standard)
    ctx = LibraryContext(timeout=5)
    keywords = QmpKeywords(ctx)
    assert isinstance(ctx.monitor("vm1").transport, LibvirtQmpTransport)
    keywords.use_qmp_socket("vm1", server.path)
    try:
        transport = ctx.monitor("vm1").transport
        assert isinstance(transport, SocketQmpTransport) and transport.is_connected  # connected at once
        assert ctx.monitor("vm1").status() == STATUS
        assert ctx.monitor("vm1").transport is transport  # one connection per VM, kept
        assert isinstance(ctx.monitor("vm2").transport, LibvirtQmpTransport)
        keywords.use_qmp_socket("vm1", server.path)  # same socket again: no second (waiting) connection
        assert ctx.qmp_sockets["vm1"] is transport and server.connections == 1
    finally:
        keywords.use_libvirt_qmp("vm1")
    assert isinstance(ctx.monitor("vm1").transport, LibvirtQmpTransport)
    assert not transport.is_connected
    keywords.use_libvirt_qmp("vm1")  # already libvirt: nothing to do


def test_use_qmp_socket_with_a_bad_path_fails_and_keeps_the_previous_choice(serve: Any, sock_dir: str) -> None:
    server = serve(standard)
    ctx = LibraryContext(timeout=5)
    keywords = QmpKeywords(ctx)
    keywords.use_qmp_socket("vm1", server.path)
    try:
        with pytest.raises(QMPError, match="does not exist"):
            keywords.use_qmp_socket("vm1", os.path.join(sock_dir, "typo.sock"))
        assert ctx.qmp_sockets["vm1"].path == server.path
        assert ctx.monitor("vm1").status() == STATUS
    finally:
        keywords.use_libvirt_qmp("vm1")
