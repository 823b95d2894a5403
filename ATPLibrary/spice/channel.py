"""One SPICE channel over asyncio: connect (TCP or TLS), link, ticket, then a message loop.

Shape (what the main, inputs and display channel code builds on)::

    channel = SpiceChannel(endpoint, ChannelType.DISPLAY, channel_id=0, connection_id=session_id,
                           channel_caps=frozenset())
    await channel.connect(password, timeout=10)   # link + ticket; raises SpiceLinkError/SpiceAuthError/...
    channel.start(handler)                         # handler.on_message(msg_type, payload) for types >= 101
    await channel.send(msg_type, payload)          # header (mini or full) added here
    await channel.close()                          # idempotent

The channel itself handles the common messages (types below 101): ``SET_ACK`` (answers ``ACK_SYNC`` and
then sends an ``ACK`` every *window* messages), ``PING`` (answers ``PONG``), ``NOTIFY`` (logged),
``DISCONNECTING`` (closes the channel, remembering the reason), ``WAIT_FOR_CHANNELS`` and ``LIST``
(ignored), ``MIGRATE``/``MIGRATE_DATA`` (not supported: the channel stops with a clear error).  Every
other message goes, in order, to the handler; a :class:`~ATPLibrary.errors.SpiceError` raised by the
handler stops the channel and is kept in :attr:`SpiceChannel.error`.  Every wait takes a timeout.
No Robot Framework import here; passwords are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ATPLibrary.errors import SpiceError, SpiceProtocolError, SpiceUnsupportedError
from ATPLibrary.spice import protocol as p
from ATPLibrary.spice.protocol import (
    ChannelType,
    CommonCap,
    LinkError,
    SpiceAuthError,
    SpiceClosedError,
    SpiceConnectError,
    SpiceLinkError,
    SpiceTimeout,
    SpiceTlsError,
)
from ATPLibrary.spice.ticket import encrypt_ticket, validate_password

log = logging.getLogger("ATPLibrary.spice")

SendFn = Callable[[int, bytes], Awaitable[None]]
#: Common capabilities this client announces on every link.
CLIENT_COMMON_CAPS = frozenset({CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.AUTH_SPICE, CommonCap.MINI_HEADER})
NOTIFY = struct.Struct("<QIIII")
DISCONNECTING = struct.Struct("<QI")
SET_ACK = struct.Struct("<II")
PING = struct.Struct("<IQ")
NOTIFY_SEVERITY = {0: "info", 1: "warning", 2: "error"}


class MessageHandler(Protocol):
    """What a channel hands its channel-specific messages (types >= 101) to, in order."""

    async def on_message(self, msg_type: int, payload: bytes) -> None: ...


@dataclass(frozen=True)
class Endpoint:
    """Where a SPICE server listens.  ``tls``: speak TLS (the server's tlsPort); ``ca_file``: the CA to trust
    (None: the system store); ``server_name``: the name or IP the certificate must carry (default: host)."""

    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None
    server_name: str | None = None

    def __str__(self) -> str:
        return f"{'spice+tls' if self.tls else 'spice'}://{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise SpiceTlsError(f"{self}: CA file {self.ca_file} does not exist")
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except ssl.SSLError as exc:
            raise SpiceTlsError(f"{self}: cannot load CA file {self.ca_file}: {exc}") from None


class SpiceChannel:
    """A linked SPICE channel (see the module docstring for the shape)."""

    def __init__(
        self,
        endpoint: Endpoint,
        channel_type: int,
        channel_id: int = 0,
        connection_id: int = 0,
        *,
        channel_caps: frozenset[int] = frozenset(),
        common_caps: frozenset[int] = CLIENT_COMMON_CAPS,
        send_timeout: float = 10.0,
    ) -> None:
        self.endpoint = endpoint
        self.channel_type = channel_type
        self.channel_id = channel_id
        self.connection_id = connection_id
        self.channel_caps = channel_caps
        self.common_caps = common_caps
        self.send_timeout = send_timeout
        #: capabilities the server announced in its link reply
        self.server_common_caps: frozenset[int] = frozenset()
        self.server_channel_caps: frozenset[int] = frozenset()
        self.mini_header = False
        #: why the channel stopped (None while it runs or after a clean close by us)
        self.error: SpiceError | None = None
        self.messages_received = 0
        self.notifications: list[str] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._serial = 0
        self._send_lock = asyncio.Lock()
        self._ack_window = 0
        self._ack_countdown = 0
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._handler: MessageHandler | None = None

    @property
    def name(self) -> str:
        try:
            kind = ChannelType(self.channel_type).name.lower()
        except ValueError:
            kind = f"type-{self.channel_type}"
        return f"SPICE {kind} channel {self.channel_id} at {self.endpoint}"

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # ------------------------------------------------------------ link

    async def connect(self, password: str | None, timeout: float) -> None:
        """Open the connection, link and send the ticket, all within ``timeout`` seconds.

        The password is validated before anything is sent.  Raises SpicePasswordError, SpiceConnectError,
        SpiceTlsError, SpiceLinkError (SpiceAuthError for a wrong password), SpiceProtocolError or SpiceTimeout.
        """
        validate_password(password or "")
        try:
            await asyncio.wait_for(self._connect(password), timeout)
        except TimeoutError:
            await self._abort()
            raise SpiceTimeout(
                f"{self.name}: no complete link and ticket answer within {timeout:g} s "
                "(is the address a SPICE port, and TLS chosen to match it?)"
            ) from None
        except BaseException:
            await self._abort()
            raise

    async def _connect(self, password: str | None) -> None:
        context = self.endpoint.ssl_context()
        server_name = (self.endpoint.server_name or self.endpoint.host) if context else None
        try:
            self._reader, self._writer = await asyncio.open_connection(
                self.endpoint.host, self.endpoint.port, ssl=context, server_hostname=server_name
            )
        except ssl.SSLCertVerificationError as exc:
            ca = self.endpoint.ca_file or "the system CA store"
            raise SpiceTlsError(
                f"{self.name}: TLS certificate verification failed ({exc.verify_message}) with {ca}; pass "
                "ca_file= the CA that signed the SPICE server's certificate (the lab's is ${SPICE_CA_FILE} = "
                "<lab dir>/spice-tls/ca-cert.pem)"
            ) from None
        except ssl.SSLError as exc:
            raise SpiceTlsError(f"{self.name}: TLS handshake failed ({exc}); is this the server's tlsPort?") from None
        except OSError as exc:
            raise SpiceConnectError(
                f"{self.name}: cannot connect ({exc.strerror or exc}); is the VM running and the port right?"
            ) from None
        mess = p.pack_link_mess(
            self.connection_id, self.channel_type, self.channel_id, self.common_caps, self.channel_caps
        )
        await self._write(mess)
        header = p.parse_link_header(await self._read_exactly(p.LINK_HEADER.size, "the link reply header"))
        reply = p.parse_link_reply(await self._read_exactly(header.size, "the link reply"))
        if reply.error != LinkError.OK:
            raise SpiceLinkError(
                f"{self.name}: the server refused the link with error {p.describe_link_error(reply.error)}",
                reply.error,
            )
        self.server_common_caps, self.server_channel_caps = reply.common_caps, reply.channel_caps
        ticket = encrypt_ticket(password, reply.pub_key)
        if CommonCap.PROTOCOL_AUTH_SELECTION in reply.common_caps:
            await self._write(struct.pack("<I", p.AUTH_MECHANISM_SPICE))
        await self._write(ticket)
        (result,) = struct.unpack("<I", await self._read_exactly(4, "the ticket result"))
        if result == LinkError.PERMISSION_DENIED:
            raise SpiceAuthError(
                f"{self.name}: login refused with link error {p.describe_link_error(result)}; "
                "check the password the VM's domain XML or the VDI platform gives",
                result,
            )
        if result != LinkError.OK:
            raise SpiceLinkError(f"{self.name}: ticket refused with error {p.describe_link_error(result)}", result)
        self.mini_header = CommonCap.MINI_HEADER in reply.common_caps and CommonCap.MINI_HEADER in self.common_caps
        log.debug(
            "%s linked (mini header: %s, server caps %s/%s)",
            self.name,
            self.mini_header,
            sorted(reply.common_caps),
            sorted(reply.channel_caps),
        )

    async def _read_exactly(self, n: int, what: str) -> bytes:
        assert self._reader is not None
        try:
            return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            raise SpiceConnectError(
                f"{self.name}: the server closed the connection after {len(exc.partial)} of {n} bytes of {what}"
            ) from None
        except ssl.SSLError as exc:
            raise SpiceTlsError(f"{self.name}: TLS failed while reading {what} ({exc})") from None
        except OSError as exc:
            raise SpiceConnectError(f"{self.name}: connection lost while reading {what} ({exc})") from None

    async def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise SpiceClosedError(f"{self.name} is not connected")
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self.send_timeout)
        except TimeoutError:
            raise SpiceTimeout(
                f"{self.name}: the server did not take {len(data)} bytes within {self.send_timeout:g} s"
            ) from None
        except OSError as exc:
            raise SpiceClosedError(f"{self.name}: connection lost while sending ({exc})") from None

    # ------------------------------------------------------------ messages

    def start(self, handler: MessageHandler | None) -> None:
        """Start the message loop; channel-specific messages go to ``handler`` (None: they are dropped)."""
        if self._reader is None:
            raise SpiceClosedError(f"{self.name}: connect() first")
        self._handler = handler
        self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name=self.name)

    async def send(self, msg_type: int, payload: bytes = b"") -> None:
        """Send one message (the header is added here: mini when negotiated, else full with a serial)."""
        if self.closed:
            raise SpiceClosedError(f"{self.name} is closed{self._reason()}")
        async with self._send_lock:
            if self.mini_header:
                data = p.pack_mini_message(msg_type, payload)
            else:
                self._serial += 1
                data = p.pack_full_message(self._serial, msg_type, payload)
            await self._write(data)

    async def _loop(self) -> None:
        header_size = (p.MINI_HEADER if self.mini_header else p.FULL_HEADER).size
        try:
            while True:
                header = p.parse_data_header(
                    await self._read_exactly(header_size, "a message header"), self.mini_header
                )
                payload = await self._read_exactly(header.size, f"message {header.msg_type}") if header.size else b""
                self.messages_received += 1
                await self._count_ack()
                if header.sub_list:
                    for sub_type, sub_payload in _sub_messages(payload, header.sub_list, header.msg_type):
                        await self._dispatch(sub_type, sub_payload)
                    payload = payload[: header.sub_list]
                await self._dispatch(header.msg_type, payload)
                if self.closed:
                    return
        except asyncio.CancelledError:
            raise
        except SpiceError as exc:
            if not self.closed:
                self.error = exc
                log.warning("%s stopped: %s", self.name, exc)
        except Exception as exc:  # a bug or an unexpected failure: keep it as a SPICE error, never lose it
            self.error = SpiceProtocolError(f"{self.name}: message loop failed ({type(exc).__name__}: {exc})")
            log.exception("%s message loop failed", self.name)
        finally:
            self._closed.set()
            if self._writer is not None:
                self._writer.close()

    async def _count_ack(self) -> None:
        if self._ack_countdown:
            self._ack_countdown -= 1
            if not self._ack_countdown:
                self._ack_countdown = self._ack_window
                await self.send(p.MSGC_ACK)

    async def _dispatch(self, msg_type: int, payload: bytes) -> None:
        if msg_type >= p.MSG_BASE_LAST:
            if self._handler is not None:
                await self._handler.on_message(msg_type, payload)
            return
        if msg_type == p.MSG_SET_ACK:
            generation, window = p.unpack(SET_ACK, payload, "SET_ACK")
            await self.send(p.MSGC_ACK_SYNC, struct.pack("<I", generation))
            self._ack_window = self._ack_countdown = window
        elif msg_type == p.MSG_PING:
            ping_id, timestamp = p.unpack(PING, payload, "PING")
            await self.send(p.MSGC_PONG, PING.pack(ping_id, timestamp))
        elif msg_type == p.MSG_NOTIFY:
            _ts, severity, _visibility, what, length = p.unpack(NOTIFY, payload, "NOTIFY")
            text = payload[NOTIFY.size : NOTIFY.size + length].rstrip(b"\0").decode("utf-8", "replace")
            note = f"{NOTIFY_SEVERITY.get(severity, severity)} {what}: {text}"
            self.notifications.append(note)
            log.info("%s: server notice %s", self.name, note)
        elif msg_type == p.MSG_DISCONNECTING:
            _ts, reason = p.unpack(DISCONNECTING, payload, "DISCONNECTING")
            self.error = SpiceClosedError(
                f"{self.name}: the server disconnected (reason {p.describe_link_error(reason)})"
            )
            log.info("%s: server sent DISCONNECTING, reason %s", self.name, reason)
            self._closed.set()
        elif msg_type in (p.MSG_MIGRATE, p.MSG_MIGRATE_DATA):
            raise SpiceUnsupportedError(
                f"{self.name}: the server started a SPICE migration, which this client does not support; "
                "open a new session once the VM has moved"
            )
        else:  # WAIT_FOR_CHANNELS, LIST, newer common messages: nothing to do for this client
            log.debug("%s: common message %d ignored", self.name, msg_type)

    def _reason(self) -> str:
        return f" ({self.error})" if self.error is not None else ""

    def check_open(self) -> None:
        """Raise the reason the channel stopped, if it did."""
        if self.closed:
            if self.error is not None:
                raise self.error
            raise SpiceClosedError(f"{self.name} is closed")

    async def wait(self, event: asyncio.Event, timeout: float, what: str) -> None:
        """Wait for ``event``; fails at once when the channel stops, and after ``timeout`` seconds."""
        if event.is_set():
            return
        waiter = asyncio.ensure_future(event.wait())
        closer = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({waiter, closer}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            closer.cancel()
        if event.is_set():
            return
        if self.closed:
            raise SpiceClosedError(f"{self.name} stopped while waiting for {what}{self._reason()}")
        raise SpiceTimeout(f"{self.name}: {what} did not come within {timeout:g} s")

    # ------------------------------------------------------------ close

    async def close(self, timeout: float = 5.0) -> None:
        """Close the channel (idempotent): stop the loop and the connection, bounded by ``timeout``."""
        self._closed.set()
        task, self._loop_task = self._loop_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(task, timeout)
        await self._abort(timeout)

    async def _abort(self, timeout: float = 5.0) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), timeout)


def _sub_messages(payload: bytes, offset: int, msg_type: int) -> list[tuple[int, bytes]]:
    """The sub-messages of a full-header message (``sub_list`` offset: u16 count, u32 offsets of
    ``{u16 type, u32 size, data}``)."""
    what = f"message {msg_type} sub-message list"
    (count,) = p.unpack(struct.Struct("<H"), payload[offset:], what)
    offsets = p.unpack(struct.Struct(f"<{count}I"), payload[offset + 2 :], what)
    out = []
    for sub in offsets:
        sub_type, size = p.unpack(p.MINI_HEADER, payload[sub:], what)
        data = payload[sub + p.MINI_HEADER.size : sub + p.MINI_HEADER.size + size]
        if len(data) != size:
            raise SpiceProtocolError(f"{what}: sub-message {sub_type} of {size} bytes is truncated")
        out.append((sub_type, data))
    return out
