"""A VM's virtio-serial port, opened through libvirt (``virDomainOpenChannel``), so remote hosts work too.

How it works: a ``VIR_STREAM_NONBLOCK`` stream is opened on the channel and a stream callback registered on
libvirt's default event loop (:func:`ensure_event_loop`, a daemon thread).  The callback drains the stream into
a thread-safe :class:`ChannelBuffer`; reads wait on that buffer with a timeout, writes go straight to the
stream.  (A *blocking* stream with ``recv`` and ``send`` in two threads hangs; see lab-facts §11.7.)

Limits of libvirt:

- only ``<channel type='unix'>`` can be opened (``pty``, ``tcp``, ... fail); with no ``<source path>`` libvirt
  picks the host path itself, which is what suits remote hypervisors;
- one stream per channel: a second open fails ("Active channel stream exists") unless ``force=True``
  (``VIR_DOMAIN_CHANNEL_FORCE``), which cuts the other client off;
- the event loop must be registered before the connection is opened; :class:`HostConnection` does that
  (its keepalive needs it too).

Measured on the lab (libvirt 9.0, QEMU 7.2): host writes made before a guest process opens
``/dev/virtio-ports/<name>`` are delivered when one does; a guest write while no host client has the channel
open blocks until one opens it; a guest read with no host client sees end-of-file at once.

Framing (``mode``): ``raw`` writes bytes as they are, ``line`` adds a newline to each write, ``json`` writes
``{"data": text}\\n`` and reads ``{"result": ...}`` lines (field names configurable), as the original system's
VirtioSerial handlers did.  In ``raw`` and ``line`` mode :meth:`VirtioChannel.receive` returns one line.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import libvirt

from ATPLibrary.channels.buffer import DEFAULT_LINE_LIMIT, DEFAULT_MAX_BUFFER, ChannelBuffer, preview
from ATPLibrary.errors import (
    ChannelBusyError,
    ChannelClosedError,
    ChannelError,
    ChannelProtocolError,
    ChannelTimeout,
    ConfigurationError,
)
from ATPLibrary.hosts.connection import DomainTarget, ensure_event_loop
from ATPLibrary.hosts.timing import Clock, Deadline, format_seconds

log = logging.getLogger(__name__)

#: qemu-ga's channel: libvirt itself talks to it; opening it would cut the guest agent off.
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
#: Bytes asked for per ``recv`` in the event callback, and sent per ``send``.
IO_CHUNK = 64 * 1024
_EVENTS = libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP


class ChannelMode(enum.Enum):
    RAW = "raw"
    LINE = "line"
    JSON = "json"

    @classmethod
    def parse(cls, value: ChannelMode | str) -> ChannelMode:
        if isinstance(value, ChannelMode):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigurationError(f"channel mode must be raw, line or json, not '{value}'") from None


class StreamLike(Protocol):
    """The parts of ``libvirt.virStream`` a channel uses (tests pass a fake)."""

    def send(self, data: bytes) -> int: ...

    def recv(self, nbytes: int) -> bytes | int: ...

    def eventAddCallback(self, events: int, cb: Callable[[Any, int, Any], None], opaque: Any) -> None: ...

    def eventRemoveCallback(self) -> int: ...

    def finish(self) -> int: ...

    def abort(self) -> int: ...


@dataclass(frozen=True)
class ChannelInfo:
    """One ``<channel>`` of a domain's XML."""

    name: str
    type: str
    alias: str | None
    state: str | None
    source_path: str | None


def domain_channels(xml: str) -> list[ChannelInfo]:
    """The virtio channels (``<channel>`` with ``<target type='virtio' name=...>``) of a domain XML."""
    root = ET.fromstring(xml)
    found = []
    for element in root.iterfind("./devices/channel"):
        target = element.find("target")
        if target is None or target.get("type") != "virtio" or not target.get("name"):
            continue
        alias = element.find("alias")
        source = element.find("source")
        found.append(
            ChannelInfo(
                name=str(target.get("name")),
                type=element.get("type", "?"),
                alias=alias.get("name") if alias is not None else None,
                state=target.get("state"),
                source_path=source.get("path") if source is not None else None,
            )
        )
    return found


def _describe(channels: list[ChannelInfo]) -> str:
    return ", ".join(f"{c.name} ({c.type})" for c in channels) or "none"


class VirtioChannel:
    """The host side of one virtio-serial port of one VM.

    Create it with :func:`open_channel` (or construct and call :meth:`open`).  ``write`` sends bytes, ``read``
    / ``read_exactly`` / ``read_line`` read raw bytes, ``send`` / ``receive`` apply the ``mode``'s framing.
    Every read takes a ``timeout``; after the stream ends (VM stopped, guest closed the port, another client
    forced the channel away) reads return what is left, then raise :class:`ChannelClosedError`.
    """

    def __init__(
        self,
        target: DomainTarget,
        name: str,
        *,
        mode: ChannelMode | str = ChannelMode.RAW,
        send_field: str = "data",
        receive_field: str = "result",
        line_limit: int = DEFAULT_LINE_LIMIT,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        event_loop: Callable[[], bool] = ensure_event_loop,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not name:
            raise ConfigurationError("a channel needs the name of its virtio target, e.g. com.atp.test.0")
        self.target = target
        self.name = name
        self.mode = ChannelMode.parse(mode)
        self.send_field = send_field
        self.receive_field = receive_field
        self.line_limit = line_limit
        self._event_loop = event_loop
        self._clock = clock
        self._sleep = sleep
        self.buffer = ChannelBuffer(self.label, max_size=max_buffer, clock=clock)
        self._stream: StreamLike | None = None
        self._io_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._callback_registered = False
        self._closed_by_us = False
        self.info: ChannelInfo | None = None

    @property
    def vm(self) -> str:
        return self.target.name

    @property
    def label(self) -> str:
        return f"channel '{self.name}' of VM '{self.target.name}'"

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"VirtioChannel({self.name!r}, vm={self.vm!r}, mode={self.mode.value}, {state})"

    @property
    def is_open(self) -> bool:
        return self._stream is not None and not self.buffer.closed

    def __enter__(self) -> VirtioChannel:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- open ------------------------------------------------------------------------------------------------
    def open(self, *, force: bool = False) -> VirtioChannel:
        """Open the channel's stream.  ``force``: take the channel over from another client."""
        if self._stream is not None:
            raise ChannelError(f"{self.label} is already open.")
        if not self._event_loop():
            raise ChannelError(f"Cannot open {self.label}: libvirt's event loop is not available in this process.")
        flags = libvirt.VIR_DOMAIN_CHANNEL_FORCE if force else 0
        self._stream = self.target.run(
            lambda dom: self._open_on(dom, flags), what=f"opening {self.label}", idempotent=False
        )
        log.info("opened %s (type %s, force=%s)", self.label, self.info.type if self.info else "?", force)
        return self

    def _open_on(self, dom: Any, flags: int) -> StreamLike:
        self.info = self._check_channel(dom)
        stream: StreamLike = dom.connect().newStream(libvirt.VIR_STREAM_NONBLOCK)
        try:
            dom.openChannel(self.name, stream, flags)
        except libvirt.libvirtError as err:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            raise self._open_error(err, flags) from err
        try:
            stream.eventAddCallback(_EVENTS, self._on_event, None)
        except libvirt.libvirtError as err:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            raise ChannelError(
                f"Cannot watch {self.label}: {err}. libvirt's event loop must be registered before the "
                f"connection is opened (HostConnection does that unless keepalive=None)."
            ) from err
        self._callback_registered = True
        return stream

    def _check_channel(self, dom: Any) -> ChannelInfo:
        where = f"VM '{self.target.name}' ({self.target.uri})"
        channels = domain_channels(dom.XMLDesc(0))
        match = next((c for c in channels if self.name in (c.name, c.alias)), None)
        if match is None:
            raise ChannelError(
                f"{where} has no virtio channel '{self.name}'. Its channels: {_describe(channels)}. "
                f"Add <channel type='unix'><target type='virtio' name='{self.name}'/></channel> to the domain."
            )
        if match.name == GUEST_AGENT_CHANNEL:
            raise ChannelError(
                f"{where}: '{match.name}' is the guest agent's channel; libvirt uses it for qemu-ga. "
                f"Use the guest agent keywords instead."
            )
        if match.type != "unix":
            raise ChannelError(
                f"{where}: channel '{match.name}' is of type '{match.type}'; libvirt can open only unix "
                f"channels (<channel type='unix'>, a source path is optional). Change the channel type, or "
                f"reach its {match.type} end on the host directly."
            )
        return match

    def _open_error(self, err: libvirt.libvirtError, flags: int) -> ChannelError:
        text = str(err)
        lower = text.lower()
        if "active channel stream exists" in lower:
            return ChannelBusyError(
                f"{self.label} is already open by another client (another test process, the verification "
                f"server, or a channel not closed): {text}. Close it there, or open with force=True to take "
                f"it over (the other client's stream then fails)."
            )
        if "not using a unix socket" in lower:
            return ChannelError(f"Cannot open {self.label}: {text}. libvirt can open only unix channels.")
        return ChannelError(f"Cannot open {self.label}: {text}")

    def guest_state(self) -> str | None:
        """libvirt's view of the guest end: ``connected`` (a guest process has the port open),
        ``disconnected``, or None when unknown.  One libvirt call; never raises."""
        try:
            xml = self.target.run(lambda dom: dom.XMLDesc(0), what=f"reading {self.label}", idempotent=True)
            match = next((c for c in domain_channels(xml) if self.name in (c.name, c.alias)), None)
        except Exception as err:
            log.debug("state of %s unknown: %s", self.label, err)
            return None
        return match.state if match else None

    # -- event-loop thread -----------------------------------------------------------------------------------
    def _on_event(self, stream: Any, events: int, _opaque: Any) -> None:
        """Runs in libvirt's event-loop thread: move everything readable into the buffer; never raises."""
        try:
            while True:
                with self._io_lock:
                    data = stream.recv(IO_CHUNK)
                if isinstance(data, int):  # -2: nothing more for now
                    break
                if not data:
                    self._stream_ended(stream, "end of stream (the VM stopped, or another client forced it away)")
                    return
                self.buffer.feed(data)
            if events & libvirt.VIR_STREAM_EVENT_ERROR:
                self._stream_ended(stream, "the stream reported an error")
            elif events & libvirt.VIR_STREAM_EVENT_HANGUP:
                self._stream_ended(stream, "the other side hung up")
        except libvirt.libvirtError as err:
            self._stream_ended(stream, f"the stream failed: {err}")
        except Exception:  # pragma: no cover - a bug must not kill the event-loop thread
            log.exception("error in the event callback of %s", self.label)
            self._stream_ended(stream, "internal error in the channel callback")

    def _stream_ended(self, stream: Any, reason: str) -> None:
        with self._state_lock:
            if self._callback_registered:
                self._callback_registered = False
                with contextlib.suppress(libvirt.libvirtError):
                    stream.eventRemoveCallback()
        if not self._closed_by_us:
            log.info("%s ended: %s", self.label, reason)
        self.buffer.close(reason)

    # -- writing ---------------------------------------------------------------------------------------------
    def _require_open(self) -> StreamLike:
        if self._stream is None:
            raise ChannelClosedError(f"{self.label} is not open.")
        if self.buffer.closed:
            raise ChannelClosedError(f"{self.label} is closed: {self.buffer.close_reason}")
        return self._stream

    def write(self, data: bytes | bytearray | memoryview | str, *, timeout: float = 10.0) -> int:
        """Send ``data`` as it is (text as UTF-8); returns the byte count.  Bounded by ``timeout``."""
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        stream = self._require_open()
        deadline = Deadline(timeout, self._clock)
        view = memoryview(payload)
        while view:
            try:
                with self._io_lock:
                    sent = stream.send(bytes(view[:IO_CHUNK]))
            except libvirt.libvirtError as err:
                self.buffer.close(f"writing failed: {err}")
                raise ChannelClosedError(f"Writing to {self.label} failed: {err}") from err
            if sent == -2 or sent == 0:
                if deadline.expired:
                    raise ChannelTimeout(
                        f"Could not write to {self.label} within {format_seconds(timeout)}: "
                        f"{len(payload) - len(view)} of {len(payload)} bytes sent (is anything reading it?)."
                    )
                self._sleep(0.005)
                continue
            if sent < 0:
                raise ChannelError(f"Writing to {self.label} failed (libvirt returned {sent}).")
            view = view[sent:]
        return len(payload)

    # -- reading ---------------------------------------------------------------------------------------------
    def _timeout_note(self, err: ChannelTimeout) -> ChannelTimeout:
        state = self.guest_state()
        if state == "disconnected":
            note = f" The guest side is disconnected: nothing in the guest has /dev/virtio-ports/{self.name} open."
        elif state:
            note = f" Guest side: {state}."
        else:
            note = ""
        return ChannelTimeout(f"{err}{note}", err.partial)

    def read(self, size: int = 4096, timeout: float = 10.0) -> bytes:
        """Up to ``size`` bytes, as soon as any arrive (ChannelTimeout after ``timeout`` seconds)."""
        self._require_stream()
        try:
            return self.buffer.read(size, timeout)
        except ChannelTimeout as err:
            raise self._timeout_note(err) from None

    def read_exactly(self, size: int, timeout: float = 10.0) -> bytes:
        """Exactly ``size`` bytes (ChannelTimeout when they do not all arrive within ``timeout``)."""
        self._require_stream()
        try:
            return self.buffer.read(size, timeout, exact=True)
        except ChannelTimeout as err:
            raise self._timeout_note(err) from None

    def read_line(self, timeout: float = 10.0, *, limit: int | None = None) -> bytes:
        """One line including its ``\\n`` (longer than ``limit``, default 1 MiB: ChannelProtocolError)."""
        self._require_stream()
        try:
            return self.buffer.read_line(timeout, limit=limit or self.line_limit)
        except ChannelTimeout as err:
            raise self._timeout_note(err) from None

    def _require_stream(self) -> None:
        if self._stream is None:
            raise ChannelClosedError(f"{self.label} is not open.")

    def discard(self) -> bytes:
        """Drop and return everything received but not read yet."""
        return self.buffer.discard()

    # -- framing ---------------------------------------------------------------------------------------------
    def encode(self, value: Any) -> bytes:
        """``value`` framed for this channel's mode."""
        if self.mode is ChannelMode.JSON:
            if isinstance(value, bytes | bytearray):
                try:
                    value = bytes(value).decode("utf-8")
                except UnicodeDecodeError:
                    raise ConfigurationError(
                        f"{self.label} is in json mode; the data must be UTF-8 text, got {preview(bytes(value))}"
                    ) from None
            return (json.dumps({self.send_field: value}, ensure_ascii=False) + "\n").encode("utf-8")
        payload = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if self.mode is ChannelMode.LINE and not payload.endswith(b"\n"):
            payload += b"\n"
        return payload

    def decode(self, line: bytes) -> Any:
        """A received line unframed: text without its line end, or the JSON reply's ``receive_field``."""
        text = line.decode("utf-8", errors="replace")
        if self.mode is not ChannelMode.JSON:
            return text.removesuffix("\n").removesuffix("\r")
        try:
            message = json.loads(text)
        except ValueError:
            raise ChannelProtocolError(
                f"{self.label} (json mode) received a line that is not JSON: {preview(line)}"
            ) from None
        if not isinstance(message, dict) or self.receive_field not in message:
            raise ChannelProtocolError(
                f"{self.label} (json mode) received {preview(line)} without the field '{self.receive_field}'."
            )
        return message[self.receive_field]

    def send(self, value: Any, *, timeout: float = 10.0) -> bytes:
        """Frame ``value`` for the mode and write it; returns the bytes written."""
        payload = self.encode(value)
        self.write(payload, timeout=timeout)
        return payload

    def receive(self, timeout: float = 10.0) -> Any:
        """The next message: a line (``raw``/``line`` mode) or the JSON reply's field (``json``; blank lines
        are skipped).  ``timeout`` bounds the whole wait."""
        self._require_stream()
        deadline = Deadline(timeout, self._clock)
        while True:
            try:
                line = self.buffer.read_line(deadline.remaining(), limit=self.line_limit)
            except ChannelTimeout as err:
                what = f"'{self.receive_field}' reply" if self.mode is ChannelMode.JSON else "complete line"
                raise self._timeout_note(
                    ChannelTimeout(
                        f"No {what} from {self.label} within {format_seconds(timeout)} "
                        f"(buffered: {preview(err.partial)}).",
                        err.partial,
                    )
                ) from None
            if self.mode is ChannelMode.JSON and not line.strip():
                continue
            return self.decode(line)

    # -- close -----------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop watching the stream and finish it.  Idempotent; never raises."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._closed_by_us = True
        with self._state_lock:
            registered, self._callback_registered = self._callback_registered, False
        if registered:
            with contextlib.suppress(libvirt.libvirtError):
                stream.eventRemoveCallback()
        try:
            with self._io_lock:
                stream.finish()
        except libvirt.libvirtError as err:
            log.debug("finish of %s failed (%s); aborting", self.label, err)
            with contextlib.suppress(libvirt.libvirtError), self._io_lock:
                stream.abort()
        self.buffer.close("closed by the test")
        log.info("closed %s", self.label)


def open_channel(
    target: DomainTarget,
    name: str,
    *,
    mode: ChannelMode | str = ChannelMode.RAW,
    force: bool = False,
    send_field: str = "data",
    receive_field: str = "result",
    **kwargs: Any,
) -> VirtioChannel:
    """Open virtio-serial channel ``name`` of the domain ``target`` (see :class:`VirtioChannel`)."""
    channel = VirtioChannel(target, name, mode=mode, send_field=send_field, receive_field=receive_field, **kwargs)
    return channel.open(force=force)
