"""Transports of the verification agent: virtio-serial (lines), TCP (length frames), WebSocket (text frames).

Each transport carries whole protocol messages (:mod:`ATPLibrary.verification.protocol`) and is used by two
threads of the session: a reader thread calls :meth:`Transport.receive` in a loop, the session thread calls
:meth:`Transport.send`.  Writes are bounded by ``write_timeout`` (a virtio port whose host side is not connected
blocks writes; that must end the session, not hang it).  Reconnecting, backoff and the handshake belong to
:class:`ATPLibrary.agent.runner.Agent`.

The WebSocket client is written with the standard library (RFC 6455): the opening handshake with a random
``Sec-WebSocket-Key`` and a check of ``Sec-WebSocket-Accept``, masked client frames, text frames, fragmented
messages reassembled, ping answered by pong, close answered by close.  ``wss://`` is not supported.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import logging
import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from ATPLibrary.verification import protocol

log = logging.getLogger("atp-agent.transport")

DEFAULT_VIRTIO_PORT = f"/dev/virtio-ports/{protocol.VIRTIO_PORT_NAME}"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class TransportClosed(ConnectionError):
    """The peer closed the connection (or the stream cannot go on)."""


class HostNotConnected(TransportClosed):
    """virtio-serial: the host side of the port is not connected (``read`` returns 0); not fatal, wait for it."""


class Transport:
    """One connection carrying protocol messages."""

    kind = "?"
    #: How long :meth:`receive` waits before returning ``[]`` (the reader thread checks for stop between calls).
    poll_interval = 0.25

    def __init__(self, write_timeout: float = 5.0) -> None:
        self.write_timeout = write_timeout
        self._write_lock = threading.Lock()
        self.decode_errors: list[str] = []

    def connect(self) -> None:
        raise NotImplementedError

    def send(self, messages: Sequence[dict[str, Any]]) -> None:
        raise NotImplementedError

    def receive(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


# -- virtio-serial ---------------------------------------------------------------------------------------------------


def open_virtio_port(path: str) -> int:
    """Open the guest side of a virtio-serial port for reading and writing, non-blocking."""
    if sys.platform == "win32":
        raise OSError(
            errno.ENOTSUP,
            "virtio-serial on Windows is not implemented by this agent (it needs overlapped I/O on the port's "
            "handle); use --transport tcp or --transport websocket",
        )
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)


class VirtioTransport(Transport):
    """One JSON message per line over a virtio-serial port (``/dev/virtio-ports/com.atp.verifier.0``).

    The Linux driver returns end-of-file from ``read`` (and makes ``poll`` report readable) while the host side is
    not connected, and blocks writes until it is: :meth:`receive` raises :class:`HostNotConnected` then, and
    :meth:`send` gives up after ``write_timeout``.  ``opener`` is injectable (tests use a socketpair).
    """

    kind = "virtio"

    def __init__(
        self, path: str = DEFAULT_VIRTIO_PORT, *, opener: Callable[[str], int] | None = None, write_timeout: float = 5.0
    ) -> None:
        super().__init__(write_timeout)
        self.path = path
        self._opener = opener or open_virtio_port
        self._fd: int | None = None
        self._decoder = protocol.LineDecoder()

    def describe(self) -> str:
        return f"virtio {self.path}"

    def connect(self) -> None:
        fd = self._opener(self.path)
        os.set_blocking(fd, False)
        self._fd = fd
        self._decoder = protocol.LineDecoder()

    def _require_fd(self) -> int:
        if self._fd is None:
            raise TransportClosed("virtio port is closed")
        return self._fd

    def send(self, messages: Sequence[dict[str, Any]]) -> None:
        data = b"".join(protocol.encode_line(m) for m in messages)
        with self._write_lock:
            fd = self._require_fd()
            _write_all(fd, data, self.write_timeout, what=f"virtio port {self.path}")

    def receive(self) -> list[dict[str, Any]]:
        fd = self._require_fd()
        try:
            readable, _, _ = select.select([fd], [], [], self.poll_interval)
        except (OSError, ValueError) as exc:
            raise TransportClosed(f"virtio port: {exc}") from None
        if not readable:
            return []
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return []
        except OSError as exc:
            raise TransportClosed(f"virtio port read: {exc.strerror or exc}") from None
        if not data:
            raise HostNotConnected("the host side of the virtio port is not connected")
        messages = self._decoder.feed(data)
        if self._decoder.errors:
            self.decode_errors.extend(self._decoder.errors)
            self._decoder.errors.clear()
        return messages

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _write_all(fd: int, data: bytes, timeout: float, what: str) -> None:
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    while view:
        try:
            written = os.write(fd, view)
            view = view[written:]
            continue
        except BlockingIOError:
            pass
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ENODEV, errno.EIO, errno.EBADF, errno.ECONNRESET, errno.ENXIO):
                raise TransportClosed(f"{what}: {exc.strerror or exc}") from None
            raise
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what} not writable for {timeout:g} s (is its host side connected?)")
        try:
            select.select([], [fd], [], remaining)
        except (OSError, ValueError) as exc:
            raise TransportClosed(f"{what}: {exc}") from None


# -- sockets ---------------------------------------------------------------------------------------------------------


def parse_server(server: str, default_port: int | None = None) -> tuple[str, int, str]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``ws://HOST:PORT/PATH`` → (host, port, path)."""
    text = server.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("ws", "tcp"):
            raise ValueError(f"unsupported server URL scheme {parts.scheme!r} in {server!r} (ws:// or HOST:PORT)")
        if not parts.hostname:
            raise ValueError(f"no host in {server!r}")
        port = parts.port or default_port
        if port is None:
            raise ValueError(f"no port in {server!r}")
        return parts.hostname, port, parts.path or "/"
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        if default_port is None:
            raise ValueError(f"server {server!r} is not HOST:PORT")
        host, port_text = text, str(default_port)
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port {port_text!r} in {server!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} in {server!r} is out of range")
    return host, port, "/"


class _StreamTransport(Transport):
    """A byte stream to the server: a TCP socket (``host``, ``port``), or a virtio port ``device`` whose host side
    is a libvirt ``<channel type='tcp'>`` connected to the server (the guest needs no network then)."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        device: str | None = None,
        opener: Callable[[str], int] | None = None,
        connect_timeout: float = 5.0,
        write_timeout: float = 5.0,
    ) -> None:
        super().__init__(write_timeout)
        if device is None and (host is None or port is None):
            raise ValueError("a server HOST:PORT or a virtio port device is needed")
        self.host = host or ""
        self.port = port or 0
        self.device = device
        self._opener = opener or open_virtio_port
        self.connect_timeout = connect_timeout
        self._sock: socket.socket | None = None
        self._fd: int | None = None

    def describe(self) -> str:
        if self.device:
            return f"{self.kind} over {self.device}"
        return f"{self.kind} {self.host}:{self.port}"

    def _open_stream(self) -> None:
        if self.device:
            fd = self._opener(self.device)
            os.set_blocking(fd, False)
            self._fd = fd
            return
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.write_timeout)
        self._sock = sock

    def _sendall(self, data: bytes) -> None:
        with self._write_lock:
            if self._fd is not None:
                _write_all(self._fd, data, self.write_timeout, what=self.describe())
                return
            if self._sock is None:
                raise TransportClosed(f"{self.describe()}: connection is closed")
            try:
                self._sock.sendall(data)
            except TimeoutError:
                raise TimeoutError(f"{self.describe()}: not writable for {self.write_timeout:g} s") from None
            except OSError as exc:
                raise TransportClosed(f"{self.describe()}: {exc}") from None

    def _recv(self, timeout: float | None = None) -> bytes | None:
        """Bytes, or None when nothing arrived within ``timeout`` (``poll_interval``); TransportClosed at the end."""
        source: socket.socket | int | None = self._fd if self._fd is not None else self._sock
        if source is None:
            raise TransportClosed(f"{self.describe()}: connection is closed")
        try:
            readable, _, _ = select.select([source], [], [], self.poll_interval if timeout is None else timeout)
        except (OSError, ValueError) as exc:
            raise TransportClosed(f"{self.describe()}: {exc}") from None
        if not readable:
            return None
        try:
            data = os.read(source, 65536) if isinstance(source, int) else source.recv(65536)
        except (BlockingIOError, TimeoutError):
            return None
        except OSError as exc:
            raise TransportClosed(f"{self.describe()}: {exc}") from None
        if not data:
            if self._fd is not None:
                raise TransportClosed(f"{self.describe()}: the port's host side is not connected to the server")
            raise TransportClosed(f"{self.describe()}: the server closed the connection")
        return data

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class TcpTransport(_StreamTransport):
    """4-byte big-endian length + JSON, both directions (the original system's TCP framing)."""

    kind = "tcp"

    def __init__(self, host: str | None = None, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._decoder = protocol.FrameDecoder()

    def connect(self) -> None:
        self._decoder = protocol.FrameDecoder()
        self._open_stream()

    def send(self, messages: Sequence[dict[str, Any]]) -> None:
        self._sendall(b"".join(protocol.encode_frame(m) for m in messages))

    def receive(self) -> list[dict[str, Any]]:
        data = self._recv()
        if data is None:
            return []
        try:
            return self._decoder.feed(data)
        except protocol.ProtocolError as exc:
            raise TransportClosed(f"{self.describe()}: {exc}") from None


# -- WebSocket -------------------------------------------------------------------------------------------------------

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def websocket_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value a server must answer to ``key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode("ascii")


def _mask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    n = len(payload)
    repeated = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_ws_frame(opcode: int, payload: bytes, *, mask: bytes | None = None, fin: bool = True) -> bytes:
    """One client frame: masked (a client must mask every frame), ``mask`` random unless given."""
    key = mask if mask is not None else os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + key + _mask(payload, key)


class WebSocketProtocolError(TransportClosed):
    """The server broke RFC 6455 (the connection is closed with code 1002)."""


class WebSocketTransport(_StreamTransport):
    """A WebSocket client (RFC 6455) over a plain socket; one text frame per message."""

    kind = "websocket"
    max_message = protocol.MAX_FRAME

    def __init__(self, host: str | None = None, port: int | None = None, path: str = "/", **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self.path = path or "/"
        self._buffer = bytearray()
        self._fragments: list[bytes] | None = None
        self._closing = False

    def describe(self) -> str:
        if self.device:
            return f"websocket over {self.device}"
        return f"websocket ws://{self.host}:{self.port}{self.path}"

    def connect(self) -> None:
        self._buffer = bytearray()
        self._fragments = None
        self._closing = False
        self._open_stream()
        try:
            self._buffer += self._handshake()
        except BaseException:
            self.close()
            raise

    def _handshake(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        host = self.host or "localhost"
        host = f"[{host}]" if ":" in host else host
        request = (
            f"GET {self.path} HTTP/1.1\r\n"
            f"Host: {host}:{self.port or 80}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "User-Agent: atp-agent\r\n"
            "\r\n"
        )
        self._sendall(request.encode("ascii"))
        deadline = time.monotonic() + self.connect_timeout
        response = b""
        while b"\r\n\r\n" not in response:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.describe()}: no WebSocket handshake answer within {self.connect_timeout:g} s"
                )
            chunk = self._recv(min(remaining, self.poll_interval))
            if chunk:
                response += chunk
            if len(response) > 65536:
                raise WebSocketProtocolError(f"{self.describe()}: handshake response too long")
        head, _, rest = response.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            raise WebSocketProtocolError(f"{self.describe()}: handshake refused: {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() != "websocket":
            raise WebSocketProtocolError(f"{self.describe()}: handshake without 'Upgrade: websocket'")
        if headers.get("sec-websocket-accept") != websocket_accept(key):
            raise WebSocketProtocolError(f"{self.describe()}: wrong Sec-WebSocket-Accept in the handshake")
        return rest

    def send(self, messages: Sequence[dict[str, Any]]) -> None:
        self._sendall(b"".join(encode_ws_frame(OP_TEXT, protocol.encode(m)) for m in messages))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(OSError, TimeoutError):
            self._sendall(encode_ws_frame(OP_CLOSE, struct.pack(">H", code) + reason.encode()[:120]))

    def close(self) -> None:
        if (self._sock is not None or self._fd is not None) and not self._closing:
            self._closing = True
            self.send_close(1000, "bye")
        super().close()

    def receive(self) -> list[dict[str, Any]]:
        data = self._recv()
        if data is None:
            return []
        self._buffer += data
        messages: list[dict[str, Any]] = []
        try:
            while True:
                frame = self._next_frame()
                if frame is None:
                    break
                text = self._handle_frame(*frame)
                if text is not None:
                    try:
                        messages.append(protocol.decode(text))
                    except protocol.ProtocolError as exc:
                        self.decode_errors.append(str(exc))
        except WebSocketProtocolError as exc:
            self.send_close(1002, "protocol error")
            raise TransportClosed(str(exc)) from None
        return messages

    def _next_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        fin = bool(buf[0] & 0x80)
        if buf[0] & 0x70:
            raise WebSocketProtocolError(f"{self.describe()}: reserved bits set (no extension was negotiated)")
        opcode = buf[0] & 0x0F
        masked = bool(buf[1] & 0x80)
        size = buf[1] & 0x7F
        offset = 2
        if size == 126:
            if len(buf) < 4:
                return None
            (size,) = struct.unpack(">H", buf[2:4])
            offset = 4
        elif size == 127:
            if len(buf) < 10:
                return None
            (size,) = struct.unpack(">Q", buf[2:10])
            offset = 10
        if size > self.max_message:
            raise WebSocketProtocolError(f"{self.describe()}: frame of {size} bytes is too long")
        key = b""
        if masked:  # a server must not mask; tolerated (unmasked here) rather than dropping the session
            if len(buf) < offset + 4:
                return None
            key = bytes(buf[offset : offset + 4])
            offset += 4
        if len(buf) < offset + size:
            return None
        payload = bytes(buf[offset : offset + size])
        del buf[: offset + size]
        if key:
            payload = _mask(payload, key)
        return fin, opcode, payload

    def _handle_frame(self, fin: bool, opcode: int, payload: bytes) -> bytes | None:
        if opcode >= 0x8:
            if not fin or len(payload) > 125:
                raise WebSocketProtocolError(f"{self.describe()}: fragmented or long control frame")
            if opcode == OP_PING:
                self._sendall(encode_ws_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                reason = payload[2:].decode("utf-8", "replace")
                if not self._closing:
                    self._closing = True
                    self.send_close(code if code not in (1005, 1006) else 1000)
                raise TransportClosed(f"{self.describe()}: the server closed the WebSocket ({code} {reason})".strip())
            elif opcode != OP_PONG:
                raise WebSocketProtocolError(f"{self.describe()}: unknown control opcode {opcode:#x}")
            return None
        if opcode == OP_CONTINUATION:
            if self._fragments is None:
                raise WebSocketProtocolError(f"{self.describe()}: continuation frame without a first fragment")
            self._fragments.append(payload)
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._fragments is not None:
                raise WebSocketProtocolError(f"{self.describe()}: new message inside a fragmented one")
            self._fragments = [payload]
        else:
            raise WebSocketProtocolError(f"{self.describe()}: unknown opcode {opcode:#x}")
        if sum(len(f) for f in self._fragments) > self.max_message:
            raise WebSocketProtocolError(f"{self.describe()}: message too long")
        if not fin:
            return None
        message, self._fragments = b"".join(self._fragments), None
        return message


def make_transport(
    kind: str,
    *,
    port: str | None = None,
    server: str | None = None,
    write_timeout: float = 5.0,
) -> Transport:
    """A transport from the command line's choices.

    ``virtio``: lines over ``port`` (default the lab's ``com.atp.verifier.0``).  ``tcp`` / ``websocket``: to
    ``server`` over the network, or, without ``server``, over the virtio ``port`` whose host side is a libvirt
    ``<channel type='tcp'>`` connected to the server (no guest network needed).
    """
    if kind == "virtio":
        return VirtioTransport(port or DEFAULT_VIRTIO_PORT, write_timeout=write_timeout)
    if kind not in ("tcp", "websocket"):
        raise ValueError(f"unknown transport {kind!r} (virtio, tcp or websocket)")
    if server:
        host, port_number, path = parse_server(server)
        if kind == "tcp":
            return TcpTransport(host, port_number, write_timeout=write_timeout)
        return WebSocketTransport(host, port_number, path, write_timeout=write_timeout)
    if not port:
        raise ValueError(f"--transport {kind} needs --server HOST:PORT, or --port DEVICE (a virtio port)")
    if kind == "tcp":
        return TcpTransport(device=port, write_timeout=write_timeout)
    return WebSocketTransport(device=port, write_timeout=write_timeout)
