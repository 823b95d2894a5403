"""QMP over a unix socket with ``qemu.qmp``, behind a synchronous facade.

``qemu.qmp``'s asyncio :class:`~qemu.qmp.QMPClient` runs on a private event loop in a daemon thread; every
call from the caller's thread is bounded by a timeout.  The connection opens on first use and is opened once
more when it was found closed (QEMU restarted, the socket was re-created).

Asynchronous events are never taken for replies.  After the session is up, ``qemu.qmp`` routes replies by
``id`` and events by their ``event`` key.  Before that (greeting and capabilities negotiation) it reads raw
messages and, in 0.0.6, fails with ``GreetingError`` when an event precedes the ``{"QMP": ...}`` greeting
(failure kind 3, seen with QEMU 4.0-rc) and with ``NegotiationError`` when an event precedes the
``qmp_capabilities`` reply.  :class:`_EventTolerantClient` overrides ``_recv`` (the one method both phases read
through) to pass such events on as events and read the next message.  All events, early or not, go to a
bounded queue (:meth:`SocketQmpTransport.events`, :meth:`SocketQmpTransport.wait_event`).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, Message, QMPClient, Runstate, StateError
from qemu.qmp.error import QMPError as LibQMPError

from ATPLibrary.errors import QMPError, WaitTimeoutError
from ATPLibrary.hosts.timing import format_seconds
from ATPLibrary.qmp.transport import command_error

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Events kept by default; the oldest are dropped first.
DEFAULT_MAX_EVENTS = 1000
#: Extra time the caller's thread waits beyond the in-loop deadline (the loop enforces the real one).
_GRACE = 2.0


class _QuietLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """qemu.qmp logs every failure at WARNING/ERROR; this layer raises errors that say the same, so a Robot
    log would show each problem twice (and a handled reconnect as an error).  Everything goes to DEBUG."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)


class _EventTolerantClient(QMPClient):
    """A :class:`QMPClient` that accepts events before the greeting and before the ``qmp_capabilities`` reply.

    ``on_event`` receives every event as a plain dict (called on the event loop thread).
    """

    def __init__(self, name: str | None, on_event: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(name)
        self.logger = _QuietLogger(self.logger, {})  # type: ignore[assignment]
        self._on_event = on_event

    async def _recv(self) -> Message:
        msg = await super()._recv()
        # CONNECTING covers the greeting and the capabilities negotiation, which read messages directly
        # instead of through the reader task; once RUNNING, _on_message routes events itself.
        while self.runstate == Runstate.CONNECTING and "event" in msg and "QMP" not in msg:
            await self._event_dispatch(msg)
            msg = await super()._recv()
        return msg

    async def _event_dispatch(self, msg: Message) -> None:
        self._on_event(dict(msg))
        await super()._event_dispatch(msg)


def _describe(err: BaseException) -> str:
    """A short cause for messages (qemu.qmp wraps root causes in ``.exc``)."""
    while isinstance(err, ConnectError | LibQMPError) and isinstance(getattr(err, "exc", None), BaseException):
        err = err.exc  # type: ignore[attr-defined]
    if isinstance(err, EOFError):
        return "QEMU closed the connection"
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class _Step:
    """What a call is doing, so a timeout can say which step ran out of time."""

    def __init__(self) -> None:
        self.phase = "connecting"


class SocketQmpTransport:
    """QMP over the unix socket ``path`` (``-qmp unix:PATH,server=on,wait=off`` or a monitor chardev).

    - Connects lazily (greeting, ``qmp_capabilities``); a connection found closed is opened again once.
    - Every call is bounded by its timeout, connecting included.
    - A connection that breaks while a command waits for its reply is retried once only for ``idempotent``
      commands (the others may already have taken effect).
    - Events (also ones sent before the greeting) are kept in a queue of at most ``max_events``.

    QEMU serves one client per monitor socket: while this transport is connected, other clients of the same
    socket wait.  Call :meth:`close` to let them in.  ``name`` (the VM) only appears in messages.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, name: str | None = None, max_events: int = DEFAULT_MAX_EVENTS
    ) -> None:
        self.path = os.fspath(path)
        self.name = name
        self.connects = 0
        #: Commands answered (with a value or an error reply) over this transport.
        self.commands_sent = 0
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_events)
        self._events_changed = threading.Condition()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Only touched on the loop thread:
        self._client: _EventTolerantClient | None = None
        self._connect_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"SocketQmpTransport({self.path!r}, name={self.name!r})"

    @property
    def description(self) -> str:
        return f"VM '{self.name}' (QMP socket {self.path})" if self.name else f"QMP socket {self.path}"

    @property
    def is_connected(self) -> bool:
        client = self._client
        return client is not None and client.runstate == Runstate.RUNNING

    # -- public, called from any thread ----------------------------------------------------------------------
    def connect(self, timeout: float = 30.0) -> None:
        """Connect now (greeting + capabilities) unless connected; raises QMPError naming the socket."""
        self._run(lambda step: self._connected(step), timeout)

    def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
        *,
        idempotent: bool = False,
    ) -> Any:
        """Run ``command`` and return its ``return`` value within ``timeout`` seconds."""
        args = dict(arguments) if arguments else None
        if args is not None:
            try:
                json.dumps(args)
            except (TypeError, ValueError) as err:
                raise QMPError(f"{self.description}: arguments of QMP command {command} are not JSON: {err}") from err
        return self._run(lambda step: self._execute(step, command, args, idempotent), timeout, command)

    def events(self, *, clear: bool = False) -> list[dict[str, Any]]:
        """The queued events, oldest first (``{"event": ..., "data": ..., "timestamp": ...}``)."""
        with self._events_changed:
            events = list(self._events)
            if clear:
                self._events.clear()
        return events

    def clear_events(self) -> None:
        with self._events_changed:
            self._events.clear()

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """Remove and return the oldest queued event called ``name``, waiting up to ``timeout`` seconds.

        Events arrive only while connected (the connection opens with the first command or :meth:`connect`).
        """
        deadline = time.monotonic() + timeout
        with self._events_changed:
            while True:
                for event in self._events:
                    if event.get("event") == name:
                        self._events.remove(event)
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = sorted({str(e.get("event")) for e in self._events}) or ["none"]
                    raise WaitTimeoutError(
                        f"{self.description}: no QMP event {name} within {format_seconds(timeout)}; "
                        f"queued events: {', '.join(seen)}"
                    )
                self._events_changed.wait(remaining)

    def close(self, timeout: float = 5.0) -> None:
        """Disconnect and stop the event loop thread (both come back on next use).  Queued events are kept."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._disconnect(), loop)
        try:
            future.result(timeout)
        except Exception as err:  # closing never fails; the cause is only interesting when debugging
            log.debug("closing %s: %s", self.path, err)
            future.cancel()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    # -- loop thread ------------------------------------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"atp-qmp-{os.path.basename(self.path)}", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
                self._client = None
                self._connect_lock = None
            return self._loop

    def _run(self, make: Callable[[_Step], Coroutine[Any, Any, T]], timeout: float, command: str = "") -> T:
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:  # pragma: no cover - programming error
            raise RuntimeError("SocketQmpTransport cannot be called from its own event loop")
        step = _Step()

        async def bounded() -> T:
            async with asyncio.timeout(timeout):
                return await make(step)

        future = asyncio.run_coroutine_threadsafe(bounded(), loop)
        try:
            return future.result(timeout + _GRACE)
        except TimeoutError:
            future.cancel()
            raise QMPError(self._timeout_message(step.phase, command, timeout)) from None

    def _timeout_message(self, phase: str, command: str, timeout: float) -> str:
        within = format_seconds(timeout)
        if phase == "connecting":
            return (
                f"{self.description}: no QMP greeting within {within}. Another client may hold the monitor "
                f"(QEMU serves one client per QMP socket), or QEMU is hung."
            )
        return f"{self.description}: no reply to QMP command {command} within {within}; QEMU may be hung."

    def _record_event(self, event: dict[str, Any]) -> None:
        with self._events_changed:
            self._events.append(event)
            self._events_changed.notify_all()

    async def _connected(self, step: _Step) -> _EventTolerantClient:
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            client = self._client
            if client is not None and client.runstate == Runstate.RUNNING:
                return client
            if client is not None:  # found closed since the last command: connect once more
                log.info("%s: the connection was closed (%s); reconnecting", self.description, await self._drop(client))
            step.phase = "connecting"
            client = _EventTolerantClient(self.name, self._record_event)
            try:
                await client.connect(self.path)
            except ConnectError as err:
                raise QMPError(self._connect_message(err)) from err
            self._client = client
            self.connects += 1
            return client

    def _connect_message(self, err: ConnectError) -> str:
        cause: BaseException = err
        while isinstance(getattr(cause, "exc", None), BaseException):
            cause = cause.exc  # type: ignore[attr-defined]
        where = f"{self.description}: cannot connect"
        if isinstance(cause, FileNotFoundError):
            return (
                f"{where}: the socket does not exist. Start QEMU with '-qmp unix:{self.path},server=on,wait=off' "
                f"(on the machine running the tests), or use 'Use Libvirt QMP' for a VM that libvirt manages."
            )
        if isinstance(cause, ConnectionRefusedError):
            return f"{where}: nothing listens on it (QEMU is not running, or the socket file is stale)."
        if isinstance(cause, PermissionError):
            return f"{where}: permission denied; run the tests as a user that may open the socket."
        if isinstance(cause, EOFError):
            return f"{where}: QEMU closed the connection before the QMP greeting."
        return f"{where}: {_describe(err)}. Is it a QMP monitor socket (not a guest agent or serial socket)?"

    async def _execute(self, step: _Step, command: str, arguments: dict[str, Any] | None, idempotent: bool) -> Any:
        client = await self._connected(step)
        step.phase = "command"
        try:
            return await self._send(client, command, arguments)
        except (ExecInterruptedError, StateError):
            cause = await self._drop(client)
        if not idempotent:
            raise QMPError(
                f"{self.description}: the connection broke while waiting for the reply to QMP command {command} "
                f"({cause}). It was not retried because it may already have taken effect; the next command "
                f"reconnects."
            )
        log.info("%s: connection broke during %s (%s); reconnecting", self.description, command, cause)
        client = await self._connected(step)
        step.phase = "command"
        try:
            return await self._send(client, command, arguments)
        except (ExecInterruptedError, StateError):
            cause = await self._drop(client)
        raise QMPError(
            f"{self.description}: the connection broke again while retrying QMP command {command} ({cause})."
        )

    async def _send(self, client: QMPClient, command: str, arguments: dict[str, Any] | None) -> Any:
        try:
            result = await client.execute(command, arguments)
        except ExecuteError as err:
            self.commands_sent += 1
            raise command_error(
                self.description, command, {"class": err.error.error.class_, "desc": err.error.error.desc}
            ) from None
        except (ExecInterruptedError, StateError):
            raise
        except LibQMPError as err:  # e.g. BadReplyError: a reply without "return" or "error"
            raise QMPError(f"{self.description}: bad reply to QMP command {command}: {_describe(err)}") from err
        self.commands_sent += 1
        return result

    async def _drop(self, client: QMPClient) -> str:
        """Disconnect ``client``; returns why its connection ended (the reader's error, if any)."""
        if self._client is client:
            self._client = None
        try:
            await client.disconnect()
        except Exception as err:
            return _describe(err)
        return "disconnected"

    async def _disconnect(self) -> None:
        client = self._client
        if client is not None:
            await self._drop(client)
