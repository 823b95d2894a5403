"""Byte streams and message channels of the verification server (everything here runs on its asyncio loop).

- :class:`ByteStream`: read/write/close over bytes.  :class:`SocketByteStream` wraps an asyncio stream (the host
  side of a unix virtio-serial channel); :class:`LibvirtChannelStream` bridges a libvirt channel stream
  (``virDomainOpenChannel`` on a ``VIR_STREAM_NONBLOCK`` stream, callbacks on libvirt's event-loop thread) into
  the loop.  Both feed the same line-framed session.
- :class:`MessageChannel`: whole protocol messages over one transport: :class:`LineChannel` (virtio-serial),
  :class:`FrameChannel` (TCP, 4-byte length + JSON) and :class:`WebSocketChannel` (one text frame each).

Nothing here blocks the loop: libvirt calls run in the default executor, socket writes are awaited with
``drain()`` under a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ATPLibrary.verification import protocol

log = logging.getLogger(__name__)

READ_CHUNK = 65536


class ByteStream(Protocol):
    """A byte stream: ``read()`` returns ``b""`` at the end of the stream."""

    description: str

    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class SocketByteStream:
    """An asyncio (unix or TCP) stream as a :class:`ByteStream`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, description: str) -> None:
        self.reader = reader
        self.writer = writer
        self.description = description

    @classmethod
    async def open_unix(cls, path: str) -> SocketByteStream:
        reader, writer = await asyncio.open_unix_connection(path, limit=protocol.MAX_LINE)
        return cls(reader, writer, f"unix socket {path}")

    async def read(self) -> bytes:
        return await self.reader.read(READ_CHUNK)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


class LibvirtChannelStream:
    """A libvirt channel stream (``dom.openChannel``) bridged into asyncio.

    libvirt's default event loop (:func:`ATPLibrary.hosts.connection.ensure_event_loop`, registered before the
    connection was opened) calls :meth:`_on_event` on its own thread; it reads everything available with the
    non-blocking ``recv`` and hands the bytes to the asyncio loop with ``call_soon_threadsafe``.  Writes and
    the open/close calls (RPCs to libvirtd) run in the loop's default executor.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, stream: Any, description: str) -> None:
        self._loop = loop
        self._stream = stream
        self.description = description
        self._queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue()
        self._ended = False
        self._closed = False

    @classmethod
    async def open(
        cls,
        domain: Callable[[], Any],
        channel: str = protocol.VIRTIO_PORT_NAME,
        *,
        force: bool = False,
        description: str = "",
    ) -> LibvirtChannelStream:
        """Open ``channel`` of the domain ``domain()`` returns (called in an executor thread)."""
        import libvirt

        loop = asyncio.get_running_loop()

        def open_blocking() -> tuple[Any, str]:
            dom = domain()
            stream = dom.connect().newStream(libvirt.VIR_STREAM_NONBLOCK)
            flags = libvirt.VIR_DOMAIN_CHANNEL_FORCE if force else 0
            try:
                dom.openChannel(channel, stream, flags)
            except libvirt.libvirtError:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
                raise
            return stream, f"libvirt channel {channel} of {dom.name()}"

        stream, default_description = await loop.run_in_executor(None, open_blocking)
        bridge = cls(loop, stream, description or default_description)
        events = libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP
        try:
            await loop.run_in_executor(None, stream.eventAddCallback, events, bridge._on_event, None)
        except BaseException:
            await bridge.close()
            raise
        return bridge

    # runs on libvirt's event-loop thread
    def _on_event(self, stream: Any, events: int, _opaque: Any) -> None:
        import libvirt

        if self._ended:
            return
        while True:
            try:
                data = stream.recv(READ_CHUNK)
            except libvirt.libvirtError as err:
                self._end(err)
                return
            if data == -2:  # would block: wait for the next READABLE
                if events & (libvirt.VIR_STREAM_EVENT_HANGUP | libvirt.VIR_STREAM_EVENT_ERROR):
                    self._end(b"")
                return
            if not data:
                self._end(b"")
                return
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, bytes(data))
            except RuntimeError:  # the server's loop is closed: nobody reads any more
                self._end(b"")
                return

    def _end(self, item: bytes | BaseException) -> None:
        self._ended = True
        with contextlib.suppress(Exception):
            self._stream.eventUpdateCallback(0)  # stop level-triggered callbacks for a dead stream
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def read(self) -> bytes:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise ConnectionError(f"{self.description}: {item}") from item
        return item

    async def write(self, data: bytes, timeout: float = 10.0) -> None:
        stream = self._stream

        def send_all() -> None:
            view = memoryview(data)
            deadline = time.monotonic() + timeout
            while view:
                sent = stream.send(bytes(view))
                if sent == -2:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.description}: the guest side does not read")
                    time.sleep(0.005)
                    continue
                view = view[sent:]

        await self._loop.run_in_executor(None, send_all)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ended = True
        stream = self._stream

        def close_blocking() -> None:
            with contextlib.suppress(Exception):
                stream.eventRemoveCallback()
            with contextlib.suppress(Exception):
                stream.abort()

        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._loop.run_in_executor(None, close_blocking), 5.0)


class MessageChannel(Protocol):
    """Whole protocol messages over one transport."""

    transport: str
    peer: str

    async def recv(self) -> dict[str, Any] | None:
        """The next message; None at the end of the stream.  Malformed messages are logged and skipped;
        :class:`protocol.ProtocolError` when the stream cannot go on (e.g. a frame longer than allowed)."""
        ...

    async def send(self, message: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class LineChannel:
    """One JSON message per line over a :class:`ByteStream` (virtio-serial)."""

    transport = "virtio-serial"

    def __init__(self, stream: ByteStream, peer: str, *, skipped: Callable[[str], None] | None = None) -> None:
        self.stream = stream
        self.peer = peer
        self._decoder = protocol.LineDecoder()
        self._pending: deque[dict[str, Any]] = deque()
        self._skipped = skipped or (lambda why: log.warning("%s: skipped a bad line: %s", peer, why))
        self._write_lock = asyncio.Lock()

    async def recv(self) -> dict[str, Any] | None:
        while not self._pending:
            data = await self.stream.read()
            if not data:
                return None
            self._pending.extend(self._decoder.feed(data))
            errors = self._decoder.errors
            while errors:
                self._skipped(errors.pop(0))
        return self._pending.popleft()

    async def send(self, message: dict[str, Any]) -> None:
        data = protocol.encode_line(message)
        async with self._write_lock:
            await self.stream.write(data)

    async def close(self) -> None:
        await self.stream.close()


class FrameChannel:
    """4-byte big-endian length + JSON over a TCP connection."""

    transport = "tcp"

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
        *,
        skipped: Callable[[str], None] | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self._skipped = skipped or (lambda why: log.warning("%s: skipped a bad frame: %s", peer, why))

    async def recv(self) -> dict[str, Any] | None:
        while True:
            try:
                header = await self.reader.readexactly(4)
            except asyncio.IncompleteReadError:
                return None
            (size,) = struct.unpack(">I", header)
            if size > protocol.MAX_FRAME:
                raise protocol.ProtocolError(f"frame of {size} bytes announced; at most {protocol.MAX_FRAME} allowed")
            try:
                payload = await self.reader.readexactly(size)
            except asyncio.IncompleteReadError:
                return None
            try:
                return protocol.decode(payload)
            except protocol.ProtocolError as exc:
                self._skipped(str(exc))

    async def send(self, message: dict[str, Any]) -> None:
        self.writer.write(protocol.encode_frame(message))
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)


class WebSocketChannel:
    """One JSON message per WebSocket text frame (``websockets`` server connection)."""

    transport = "websocket"

    def __init__(self, connection: Any, peer: str, *, skipped: Callable[[str], None] | None = None) -> None:
        self.connection = connection
        self.peer = peer
        self._skipped = skipped or (lambda why: log.warning("%s: skipped a bad message: %s", peer, why))

    async def recv(self) -> dict[str, Any] | None:
        from websockets.exceptions import ConnectionClosed

        while True:
            try:
                data = await self.connection.recv()
            except ConnectionClosed:
                return None
            try:
                return protocol.decode(data)
            except protocol.ProtocolError as exc:
                self._skipped(str(exc))

    async def send(self, message: dict[str, Any]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self.connection.send(protocol.encode(message).decode("utf-8"))
        except ConnectionClosed as exc:
            raise ConnectionError(f"WebSocket closed: {exc}") from exc

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.connection.close(), 2.0)
