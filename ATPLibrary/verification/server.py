"""The verification server: agent sessions (virtio-serial, TCP, WebSocket) and input matching.

:class:`VerificationServer` runs its own asyncio loop in a daemon thread.  Keywords call its synchronous
methods from Robot's thread; every such call hands the work to the loop and waits at most a bounded time.
Nothing running on the loop blocks it: libvirt calls go to the executor, socket writes are awaited under a
timeout, and matching is O(1) per event.

Virtio-serial: the server connects to the host side of one VM's channel (:meth:`connect_unix`,
:meth:`connect_libvirt_channel`), sends ``sync`` (re-sent every heartbeat interval until answered), discards
everything up to the ``hello`` carrying its nonce (guest writes buffered before it connected are stale) and
answers ``welcome``.  When the stream ends or the agent is silent for the heartbeat timeout the session is lost
and the connector reconnects with backoff.

TCP and WebSocket: agents connect to the listeners (:meth:`listen_tcp`, :meth:`listen_websocket`; 127.0.0.1 and
an ephemeral port by default) and must present the token registered for their VM (:meth:`register_token`).
A missing or wrong token or an unknown VM is answered with ``reject``; the WARNING names the VM and the peer,
never the token.  A new valid session for a VM replaces the older one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ATPLibrary.errors import (
    ConfigurationError,
    VerificationAgentNotConnected,
    VerificationConnectError,
    VerificationError,
)
from ATPLibrary.hosts.timing import Backoff, format_seconds
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KeyMap
from ATPLibrary.keys.layout import Layout
from ATPLibrary.verification import protocol
from ATPLibrary.verification.matcher import (
    DEFAULT_EARLY_WINDOW,
    DEFAULT_HISTORY,
    DEFAULT_SETTLE,
    Expectation,
    ExpectedEvent,
    LatencyStats,
    MatchResult,
    ReceivedEvent,
    VMInbox,
)
from ATPLibrary.verification.session import SEND_ERRORS, AgentSession, HandshakeError, SessionInfo
from ATPLibrary.verification.streams import (
    ByteStream,
    FrameChannel,
    LibvirtChannelStream,
    LineChannel,
    MessageChannel,
    SocketByteStream,
    WebSocketChannel,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

REPLACED = "replaced by a newer session of the same VM"
#: Extra time a synchronous call waits beyond the work's own timeout before it calls the server stuck.
CALL_MARGIN = 2.0


def _safe(text: object, limit: int = 120) -> str:
    """A peer-supplied value fit for a log line (printable, bounded)."""
    value = text if isinstance(text, str) else repr(text)
    value = value.encode("unicode_escape").decode("ascii")
    return value if len(value) <= limit else value[:limit] + "…"


@dataclass
class _Connector:
    """Keeps one VM's virtio-serial channel connected (runs on the loop)."""

    vm: str
    where: str
    opener: Callable[[bool], Awaitable[ByteStream]]
    task: asyncio.Task[None] | None = None
    state: str = "starting"
    last_error: str = ""
    attempts: int = 0
    syncs: int = 0
    stopping: bool = False
    sessions: int = 0

    def describe(self) -> str:
        if self.state == "handshake":
            return (
                f"connected to the {self.where}, but no verification agent answered the sync "
                f"({self.attempts} connection attempt(s)); is the agent running in the guest?"
            )
        if self.last_error:
            return self.last_error
        return f"{self.state} ({self.where})"


@dataclass
class _Listener:
    kind: str
    host: str
    port: int
    server: Any


@dataclass
class _VMStatus:
    last_seen: float | None = None  # monotonic time of the last message from any session
    last_end: str = ""
    event: asyncio.Event = field(default_factory=asyncio.Event)


class ExpectationHandle:
    """A registered expectation, used from the keyword's thread: ``sending()`` / ``sent()`` around the action,
    then ``wait()`` (a :class:`MatchResult`) or ``check()`` (raises on failure)."""

    def __init__(self, server: VerificationServer, vm: str, expectation: Expectation) -> None:
        self.server = server
        self.vm = vm
        self._expectation = expectation

    @property
    def timeout(self) -> float:
        return self._expectation.timeout

    def sending(self) -> None:
        """The action starts now (the reference for the latency; default: the registration time)."""
        at = time.monotonic()
        self.server._run_sync(lambda: self._expectation.mark_sending(at))

    def sent(self) -> None:
        """The action has been sent completely: the timeout counts from now."""
        at = time.monotonic()
        self.server._run_sync(lambda: self._expectation.mark_sent(at))

    def wait(self) -> MatchResult:
        """The result, once everything arrived (plus the settle time), something differed, or the timeout."""
        exp = self._expectation
        bound = exp.timeout + exp.settle + CALL_MARGIN

        async def result() -> MatchResult:
            future: asyncio.Future[MatchResult] = asyncio.get_running_loop().create_future()
            exp.add_done_callback(lambda r: None if future.done() else future.set_result(r))
            return await future

        return self.server._call(result(), bound, what=f"waiting for input on VM '{self.vm}'")

    def check(self) -> MatchResult:
        """:meth:`wait`, raising VerificationFailed (or a subclass) when the check failed."""
        result = self.wait()
        result.raise_if_failed()
        return result

    def cancel(self) -> None:
        self.server._run_sync(self._expectation.cancel)


class VerificationServer:
    """Sessions with verification agents and the matching of their reports (see the module docstring).

    All public methods are thread-safe and bounded: they wait at most ``call_timeout`` (or the work's own
    timeout plus a margin) for the server's loop.
    """

    def __init__(
        self,
        *,
        keymap: KeyMap = DEFAULT_KEYMAP,
        heartbeat_interval: float = protocol.HEARTBEAT_INTERVAL,
        heartbeat_timeout: float = protocol.HEARTBEAT_TIMEOUT,
        handshake_timeout: float = 10.0,
        early_window: float = DEFAULT_EARLY_WINDOW,
        settle: float = DEFAULT_SETTLE,
        history_size: int = DEFAULT_HISTORY,
        call_timeout: float = 10.0,
        reconnect_backoff: Backoff | None = None,
    ) -> None:
        self.keymap = keymap
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.handshake_timeout = handshake_timeout
        self.early_window = early_window
        self.settle = settle
        self.history_size = history_size
        self.call_timeout = call_timeout
        self.reconnect_backoff = reconnect_backoff or Backoff(initial=0.2, factor=2.0, cap=5.0)
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._notices: deque[str] = deque(maxlen=1000)
        # loop-thread state
        self._sessions: dict[str, AgentSession] = {}
        self._network: set[AgentSession] = set()
        self._inboxes: dict[str, VMInbox] = {}
        self._status: dict[str, _VMStatus] = {}
        self._connectors: dict[str, _Connector] = {}
        self._listeners: dict[str, _Listener] = {}
        self._requests: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._lag_max = 0.0
        self._lag_task: asyncio.Task[Any] | None = None
        #: errors that escaped a task or callback on the loop (should stay 0)
        self.loop_errors = 0

    # -- life cycle ------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._loop is not None

    def start(self) -> VerificationServer:
        """Start the loop thread (idempotent)."""
        with self._lock:
            if self.running:
                return self
            ready = threading.Event()
            loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.set_exception_handler(self._on_loop_exception)
                loop.call_soon(ready.set)
                self._lag_task = self._spawn(self._watch_lag(), loop)
                try:
                    loop.run_forever()
                finally:
                    pending = asyncio.all_tasks(loop)
                    for task in pending:
                        task.cancel()
                    with contextlib.suppress(Exception):
                        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                        loop.run_until_complete(loop.shutdown_asyncgens())
                        loop.run_until_complete(loop.shutdown_default_executor())
                    loop.close()

            self._loop = loop
            self._thread = threading.Thread(target=run, name="atp-verification-server", daemon=True)
            self._thread.start()
            if not ready.wait(5.0):  # pragma: no cover - a thread that cannot start
                raise VerificationError("the verification server's thread did not start within 5 seconds")
            log.info("verification server started")
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close listeners, connectors and sessions, fail open expectations, end the thread (idempotent).

        Event history and latencies are dropped; tokens stay registered."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            if thread.is_alive():
                try:
                    self._call(self._shutdown(), timeout, what="stopping the verification server")
                except VerificationError as exc:
                    log.warning("verification server did not shut down cleanly: %s", exc)
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout)
            self._loop = self._thread = None
            self._sessions.clear()
            self._network.clear()
            self._connectors.clear()
            self._listeners.clear()
            self._status.clear()
            self._inboxes.clear()  # their timers belonged to the stopped loop
            log.info("verification server stopped")

    def __enter__(self) -> VerificationServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        for connector in self._connectors.values():
            connector.stopping = True
            if connector.task is not None:
                connector.task.cancel()
        for listener in self._listeners.values():
            listener.server.close()
        for session in [*self._sessions.values(), *self._network]:
            session.close("the verification server stopped")
        for inbox in self._inboxes.values():
            for expectation in [*inbox.active, *inbox.windows]:
                expectation.lost("the verification server stopped")
        tasks = [c.task for c in self._connectors.values() if c.task is not None]
        tasks += [t for t in self._tasks if t is not asyncio.current_task() and t is not self._lag_task]
        tasks += list(self._handlers)
        if tasks:
            await asyncio.wait(tasks, timeout=3.0)
        for listener in self._listeners.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.server.wait_closed(), 2.0)

    # -- calling into the loop -------------------------------------------------------------------------------
    def _require_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or not self.running:
            raise VerificationError(
                "The verification server is not running: start it first (Start Verification Server)."
            )
        if threading.current_thread() is self._thread:
            raise RuntimeError("a synchronous VerificationServer method was called on the server's own loop")
        return loop

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float, *, what: str) -> T:
        try:
            loop = self._require_loop()
        except BaseException:
            coro.close()
            raise
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise VerificationError(
                f"The verification server did not finish {what} within {format_seconds(timeout)}."
            ) from None

    def _run_sync(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        async def call() -> T:
            return fn()

        return self._call(call(), timeout or self.call_timeout, what="a request")

    def _spawn(
        self, coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop | None = None
    ) -> asyncio.Task[Any]:
        task = (loop or asyncio.get_running_loop()).create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _watch_lag(self, interval: float = 0.05) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(interval)
            self._lag_max = max(self._lag_max, loop.time() - before - interval)

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Anything that escaped a task or callback: counted (``loop_errors``) and logged, never silent."""
        self.loop_errors += 1
        log.error(
            "verification server: unhandled error on its loop: %s",
            context.get("message"),
            exc_info=context.get("exception"),
        )

    def loop_lag(self, reset: bool = False) -> float:
        """The longest the loop was late to wake up (seconds) since start or the last reset: a blocked loop
        shows here."""
        lag = self._lag_max
        if reset:
            self._lag_max = 0.0
        return lag

    def notices(self) -> list[str]:
        """Warnings since the last call (rejected agents, lost sessions, dropped events), for the keyword
        thread to put into log.html (Robot ignores log calls from other threads).  Never contains tokens."""
        out: list[str] = []
        while self._notices:
            out.append(self._notices.popleft())
        return out

    def _notice(self, level: int, message: str, *args: object) -> None:
        log.log(level, message, *args)
        self._notices.append(message % args if args else message)

    # -- listeners -------------------------------------------------------------------------------------------
    def listen_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for agents over TCP (4-byte length + JSON).  Returns the bound port (``port=0``: ephemeral).
        Calling it again returns the existing listener's port."""
        return self._call(self._listen("tcp", host, port), self.call_timeout, what="opening the TCP listener")

    def listen_websocket(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen for agents over WebSocket (one JSON text frame per message).  Returns the bound port."""
        return self._call(self._listen("websocket", host, port), self.call_timeout, what="opening the WS listener")

    @property
    def listeners(self) -> dict[str, tuple[str, int]]:
        """``{"tcp": (host, port), "websocket": (host, port)}`` of the open listeners."""
        return {k: (v.host, v.port) for k, v in self._listeners.items()}

    async def _listen(self, kind: str, host: str, port: int) -> int:
        existing = self._listeners.get(kind)
        if existing is not None:
            if port in (0, existing.port) and host == existing.host:
                return existing.port
            raise ConfigurationError(
                f"The verification server already listens for {kind} on {existing.host}:{existing.port}."
            )
        try:
            if kind == "tcp":
                server: Any = await asyncio.start_server(self._on_tcp, host, port, limit=protocol.MAX_LINE)
                bound = int(server.sockets[0].getsockname()[1])
            else:
                from websockets.asyncio.server import serve

                # open_timeout=None: a libvirt <channel type='tcp'> peer is QEMU, which connects as soon as we
                # listen, long before the guest's agent sends its handshake through the virtio port. The default
                # 10 s handshake timeout closed that connection under it again and again (QEMU reconnects 1 s
                # later), so a slow-starting agent's handshake could land on a closed one and never be answered.
                server = await serve(
                    self._on_websocket,
                    host,
                    port,
                    max_size=protocol.MAX_FRAME,
                    open_timeout=None,
                    ping_interval=20,
                    ping_timeout=20,
                )
                bound = int(next(iter(server.sockets)).getsockname()[1])
        except OSError as exc:
            raise VerificationError(f"Cannot listen for verification agents ({kind}) on {host}:{port}: {exc}") from exc
        self._listeners[kind] = _Listener(kind, host, bound, server)
        log.info("verification server listens for %s agents on %s:%d", kind, host, bound)
        return bound

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        # Python 3.11's start_server callback calls task.exception() on its handler task, which raises for a
        # cancelled task: the handler ends normally when the server shuts down.
        with contextlib.suppress(asyncio.CancelledError):
            await self._handled(self._serve_network(FrameChannel(reader, writer, peer, skipped=self._skipped(peer))))

    async def _on_websocket(self, connection: Any) -> None:
        address = connection.remote_address
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        await self._handled(self._serve_network(WebSocketChannel(connection, peer, skipped=self._skipped(peer))))

    async def _handled(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a listener's connection handler as a task the shutdown waits for."""
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await coro
        finally:
            if task is not None:
                self._handlers.discard(task)

    def _skipped(self, peer: str) -> Callable[[str], None]:
        def skipped(why: str) -> None:
            log.warning("Verification agent %s sent a malformed message (skipped): %s", peer, why)

        return skipped

    def register_token(self, vm: str, token: str) -> None:
        """The token issued for ``vm`` at deploy time; network agents must present it.  Never logged."""
        if not vm or not token:
            raise ConfigurationError("register_token needs a VM id and a non-empty token")
        self._tokens[vm] = token

    def unregister_token(self, vm: str) -> None:
        self._tokens.pop(vm, None)

    @staticmethod
    def new_token() -> str:
        """A fresh random token (32 bytes, URL-safe)."""
        return secrets.token_urlsafe(32)

    def _check_token(self, vm: Any, token: Any) -> str:
        if not isinstance(vm, str) or not vm:
            return "the hello carries no vm_id"
        expected = self._tokens.get(vm)
        if expected is None:
            return "no token is registered for this VM (unknown VM)"
        if not isinstance(token, str) or not token:
            return "the hello carries no token"
        if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
            return "wrong token"
        return ""

    async def _serve_network(self, channel: MessageChannel) -> None:
        session = self._new_session(channel)
        self._network.add(session)
        try:
            try:
                hello = await session.handshake(self.handshake_timeout)
            except HandshakeError as exc:
                log.warning(
                    "Verification agent connection from %s over %s closed: %s", channel.peer, channel.transport, exc
                )
                await session.close_channel()
                return
            vm = hello.get("vm_id")
            why = self._check_token(vm, hello.get("token"))
            if why:
                self._notice(
                    logging.WARNING,
                    "Rejected a verification agent from %s claiming VM '%s' over %s: %s",
                    channel.peer,
                    _safe(vm),
                    channel.transport,
                    why,
                )
                await session.reject(why)
                return
            assert isinstance(vm, str)
            await self._run_session(session, vm)
        except Exception:  # never let a peer crash the listener
            log.exception("verification agent session from %s failed", channel.peer)
            await session.close_channel()
        finally:
            self._network.discard(session)

    def _new_session(self, channel: MessageChannel) -> AgentSession:
        return AgentSession(
            channel, heartbeat_interval=self.heartbeat_interval, heartbeat_timeout=self.heartbeat_timeout
        )

    # -- sessions --------------------------------------------------------------------------------------------
    def _vm_status(self, vm: str) -> _VMStatus:
        status = self._status.get(vm)
        if status is None:
            status = self._status[vm] = _VMStatus()
        return status

    async def _run_session(self, session: AgentSession, vm: str) -> str:
        old = self._sessions.get(vm)
        self._sessions[vm] = session
        session.vm = vm
        if old is not None and old is not session:
            log.info(
                "VM '%s': the verification agent session over %s from %s replaces the one over %s from %s",
                vm,
                session.transport,
                session.peer,
                old.transport,
                old.peer,
            )
            old.close(REPLACED)
        status = self._vm_status(vm)
        try:
            await session.welcome(vm)
        except SEND_ERRORS as exc:
            reason = f"sending welcome failed: {exc or type(exc).__name__}"
            if self._sessions.get(vm) is session:
                del self._sessions[vm]
            await session.close_channel()
            return reason
        self._seed_abs(vm, session.hello)
        status.event.set()
        log.info(
            "Verification agent of VM '%s' connected over %s from %s (agent %s on %s)",
            vm,
            session.transport,
            session.peer,
            _safe(session.hello.get("agent_version", "?")),
            session.platform,
        )
        reason = await session.run(self._dispatch)
        status.last_seen = session.last_message
        if self._sessions.get(vm) is session:
            del self._sessions[vm]
            status.event.clear()
            status.last_end = reason
            inbox = self._inboxes.get(vm)
            if inbox is not None:
                inbox.lost(reason)
            level = logging.WARNING if reason.startswith(("lost", "protocol", "transport")) else logging.INFO
            self._notice(
                level, "Verification agent session of VM '%s' over %s ended: %s", vm, session.transport, reason
            )
        return reason

    def _seed_abs(self, vm: str, hello: dict[str, Any]) -> None:
        """Start from the absolute pointer position the agent read at connect time (``devices[].abs``): the
        kernel reports no event for a move to the position it already has, so a fresh server must know it."""
        inbox = self._inbox(vm)
        for device in hello.get("devices") or []:
            if isinstance(device, dict) and "tablet" in (device.get("classes") or []):
                for code, value in (device.get("abs") or {}).items():
                    with contextlib.suppress(TypeError, ValueError):
                        inbox.last_abs[int(code)] = int(value)

    def _inbox(self, vm: str) -> VMInbox:
        inbox = self._inboxes.get(vm)
        if inbox is None:
            loop = asyncio.get_running_loop()
            inbox = self._inboxes[vm] = VMInbox(
                vm,
                call_later=loop.call_later,
                clock=time.monotonic,
                keymap=self.keymap,
                early_window=self.early_window,
                history_size=self.history_size,
                idle_for=lambda: self._idle_for(vm),
            )
        return inbox

    def _idle_for(self, vm: str) -> float | None:
        session = self._sessions.get(vm)
        if session is not None:
            return time.monotonic() - session.last_message
        last = self._vm_status(vm).last_seen
        return None if last is None else time.monotonic() - last

    def _dispatch(self, session: AgentSession, message: dict[str, Any]) -> None:
        kind = message.get("message_type")
        vm = session.vm
        if kind == protocol.RAW_INPUT_EVENT:
            try:
                self._inbox(vm).add(message, platform=session.platform)
            except protocol.ProtocolError as exc:
                log.warning("VM '%s': skipped a malformed raw_input_event from %s: %s", vm, session.peer, exc)
        elif kind == protocol.HEARTBEAT or kind == protocol.DEVICES:
            pass
        elif kind == protocol.DROPPED:
            self._notice(
                logging.WARNING,
                "VM '%s': the verification agent fell behind and the guest kernel dropped events (%s)",
                vm,
                _safe(message.get("count", "count unknown")),
            )
            self._inbox(vm).dropped(message)
        elif isinstance(message.get("request_id"), str) and message["request_id"] in self._requests:
            future = self._requests.pop(message["request_id"])
            if not future.done():
                future.set_result(message)
        elif kind == protocol.ERROR:
            log.warning("Verification agent of VM '%s' reports an error: %s", vm, _safe(message.get("message"), 500))
        else:
            log.debug("VM '%s': ignored a %r message", vm, _safe(kind))

    # -- virtio-serial connectors ----------------------------------------------------------------------------
    def connect_unix(self, vm: str, path: str, *, timeout: float | None = None) -> SessionInfo:
        """Connect to the host side of ``vm``'s virtio-serial channel, a unix socket QEMU listens on
        (``<channel type='unix'><source mode='bind' path=...>``), and wait for the agent's handshake.

        The connector keeps reconnecting in the background (also after this call fails) until
        :meth:`disconnect`.  VerificationConnectError names the VM, the path and why on timeout.
        """

        async def opener(_reconnect: bool) -> ByteStream:
            return await SocketByteStream.open_unix(path)

        return self._connect(vm, f"unix socket {path}", opener, timeout)

    def connect_libvirt_channel(
        self,
        vm: str,
        domain: Callable[[], Any],
        channel: str = protocol.VIRTIO_PORT_NAME,
        *,
        timeout: float | None = None,
    ) -> SessionInfo:
        """Like :meth:`connect_unix` through libvirt's channel stream (``virDomainOpenChannel``), which also
        works for remote hypervisors — for ``unix`` channels only (``pty`` and ``tcp`` channels are refused by
        libvirt: "not using a UNIX socket").  ``domain`` returns the ``virDomain`` (called in a worker thread);
        its connection must have been opened after libvirt's event loop was registered
        (:func:`ATPLibrary.hosts.connection.ensure_event_loop`, which this method calls).  Reconnects use
        ``VIR_DOMAIN_CHANNEL_FORCE`` so a stale stream of this process does not block them.
        """
        from ATPLibrary.hosts.connection import ensure_event_loop

        if not ensure_event_loop():  # pragma: no cover - depends on the libvirt build
            raise VerificationConnectError("libvirt's event loop is not available: channel streams cannot work")

        async def opener(reconnect: bool) -> ByteStream:
            return await LibvirtChannelStream.open(
                domain, channel, force=reconnect, description=f"libvirt channel {channel} of VM '{vm}'"
            )

        return self._connect(vm, f"libvirt channel {channel}", opener, timeout)

    def _connect(
        self, vm: str, where: str, opener: Callable[[bool], Awaitable[ByteStream]], timeout: float | None
    ) -> SessionInfo:
        wait = self.handshake_timeout if timeout is None else timeout

        async def connect() -> SessionInfo:
            old = self._connectors.pop(vm, None)
            if old is not None:
                await self._stop_connector(old)
            connector = _Connector(vm, where, opener)
            self._connectors[vm] = connector
            connector.task = self._spawn(self._run_connector(connector))
            status = self._vm_status(vm)
            try:
                async with asyncio.timeout(wait):
                    while True:
                        await status.event.wait()
                        session = self._sessions.get(vm)
                        if session is not None and session.channel.transport == "virtio-serial":
                            return session.info()
                        await asyncio.sleep(0.05)
            except TimeoutError:
                raise VerificationConnectError(
                    f"No verification agent session for VM '{vm}' on the {where} within {format_seconds(wait)}: "
                    f"{connector.describe()} The server keeps trying in the background."
                ) from None

        return self._call(connect(), wait + CALL_MARGIN, what=f"connecting to VM '{vm}'")

    def disconnect(self, vm: str) -> None:
        """Stop ``vm``'s virtio-serial connector and close its session (idempotent)."""

        async def disconnect() -> None:
            connector = self._connectors.pop(vm, None)
            if connector is not None:
                await self._stop_connector(connector)
            session = self._sessions.pop(vm, None)
            if session is not None:
                # Gone at once, not when its reader task ends: a deploy that disconnects and then connects must
                # wait for the new agent's hello, never take this closing session for a live one.
                reason = "disconnected by the test"
                session.close(reason)
                status = self._vm_status(vm)
                status.event.clear()
                status.last_seen = session.last_message
                status.last_end = reason
                inbox = self._inboxes.get(vm)
                if inbox is not None:
                    inbox.lost(reason)

        self._call(disconnect(), self.call_timeout, what=f"disconnecting VM '{vm}'")

    async def _stop_connector(self, connector: _Connector) -> None:
        connector.stopping = True
        if connector.task is not None:
            connector.task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(connector.task, 5.0)

    async def _run_connector(self, c: _Connector) -> None:
        delays = self.reconnect_backoff.delays()
        reconnect = False
        while not c.stopping:
            c.attempts += 1
            c.state = "connecting"
            try:
                stream = await asyncio.wait_for(c.opener(reconnect), self.handshake_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                c.last_error = f"cannot open the {c.where}: {exc or type(exc).__name__}."
                if c.attempts == 1:
                    log.info("VM '%s': %s (retrying)", c.vm, c.last_error)
                await asyncio.sleep(next(delays))
                reconnect = True
                continue
            reconnect = True
            session = self._new_session(LineChannel(stream, c.where, skipped=self._skipped(c.where)))
            c.state = "handshake"
            try:
                hello = await session.handshake(None, resync_every=self.heartbeat_interval)
            except HandshakeError as exc:
                c.last_error = f"connected to the {c.where}, but the handshake failed: {exc}."
                await session.close_channel()
                await asyncio.sleep(next(delays))
                continue
            except asyncio.CancelledError:
                await session.close_channel()
                raise
            hello_vm = hello.get("vm_id")
            if isinstance(hello_vm, str) and hello_vm and hello_vm != c.vm:
                log.info("VM '%s': the agent on the %s calls itself '%s'", c.vm, c.where, _safe(hello_vm))
            c.state = "connected"
            c.sessions += 1
            try:
                reason = await self._run_session(session, c.vm)
            except asyncio.CancelledError:
                session.close("disconnected")
                await session.close_channel()
                raise
            c.state = "reconnecting"
            c.last_error = f"the last session on the {c.where} ended: {reason}."
            if reason == REPLACED:
                c.state = "replaced"
                return
            delays = self.reconnect_backoff.delays()
            await asyncio.sleep(next(delays))

    # -- session queries -------------------------------------------------------------------------------------
    def session(self, vm: str) -> SessionInfo | None:
        """The VM's current agent session, or None."""

        async def get() -> SessionInfo | None:
            session = self._sessions.get(vm)
            return session.info() if session is not None else None

        return self._call(get(), self.call_timeout, what="reading the sessions")

    def sessions(self) -> dict[str, SessionInfo]:
        async def get() -> dict[str, SessionInfo]:
            return {vm: s.info() for vm, s in self._sessions.items()}

        return self._call(get(), self.call_timeout, what="reading the sessions")

    def is_connected(self, vm: str) -> bool:
        return self.session(vm) is not None

    def wait_connected(self, vm: str, timeout: float) -> SessionInfo:
        """Wait until ``vm`` has an agent session; VerificationAgentNotConnected says what was last seen."""

        async def wait() -> SessionInfo:
            status = self._vm_status(vm)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while vm not in self._sessions:
                        await status.event.wait()
                        await asyncio.sleep(0)
            session = self._sessions.get(vm)
            if session is None:
                raise VerificationAgentNotConnected(self._not_connected(vm, timeout))
            return session.info()

        return self._call(wait(), timeout + CALL_MARGIN, what=f"waiting for the agent of VM '{vm}'")

    def _not_connected(self, vm: str, waited: float | None = None) -> str:
        parts = [f"No verification agent is connected for VM '{vm}'"]
        parts[0] += f" (waited {format_seconds(waited)})." if waited else "."
        connector = self._connectors.get(vm)
        status = self._status.get(vm)
        if connector is not None:
            parts.append(f"virtio-serial: {connector.describe()}")
        if status is not None and status.last_end:
            parts.append(f"Last session: {status.last_end}.")
        if connector is None and vm not in self._tokens:
            parts.append(
                "The server neither connects to this VM's channel nor has a token for it; deploy the agent "
                "(Deploy Verification Agent) or connect to its virtio-serial channel."
            )
        return " ".join(parts)

    # -- expectations ----------------------------------------------------------------------------------------
    def expect(
        self,
        vm: str,
        expected: Sequence[ExpectedEvent],
        timeout: float,
        *,
        text: str | None = None,
        layout: Layout | None = None,
        secret: bool = False,
        ignore_repeat: bool = False,
        settle: float | None = None,
        what: str = "",
        wait_agent: float = 0.0,
        require_agent: bool = True,
    ) -> ExpectationHandle:
        """Register an expectation BEFORE sending the action (see :mod:`.matcher` for the rules).

        ``text``/``layout`` make failures speak in characters (``secret`` hides them).  With
        ``require_agent`` (default) VerificationAgentNotConnected is raised now when the VM has no session
        (after waiting up to ``wait_agent`` seconds for one).
        """
        called_at = time.monotonic()
        expected = list(expected)

        async def register() -> Expectation:
            registered_at = called_at
            if require_agent and vm not in self._sessions:
                if wait_agent > 0:
                    status = self._vm_status(vm)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(status.event.wait(), wait_agent)
                    registered_at = time.monotonic()
                if vm not in self._sessions:
                    raise VerificationAgentNotConnected(self._not_connected(vm, wait_agent or None))
            return self._inbox(vm).expect(
                expected,
                timeout=timeout,
                registered_at=registered_at,
                ignore_repeat=ignore_repeat,
                settle=self.settle if settle is None else settle,
                text=text,
                layout=layout,
                secret=secret,
                what=what,
            )

        expectation = self._call(register(), wait_agent + self.call_timeout, what="registering an expectation")
        return ExpectationHandle(self, vm, expectation)

    def mark(self, vm: str) -> int:
        """A mark for :meth:`received_since` / :meth:`check_received`: the index of the VM's next event."""

        async def get() -> int:
            return self._inbox(vm).mark()

        return self._call(get(), self.call_timeout, what="marking")

    def received_since(self, vm: str, mark: int) -> list[ReceivedEvent]:
        """Every event of ``vm`` since ``mark`` (claimed by expectations or not), in arrival order."""

        async def get() -> list[ReceivedEvent]:
            return self._inbox(vm).since(mark)

        return self._call(get(), self.call_timeout, what="reading received events")

    def check_received(
        self,
        vm: str,
        expected: Sequence[ExpectedEvent],
        *,
        since: int,
        timeout: float,
        text: str | None = None,
        layout: Layout | None = None,
        secret: bool = False,
        ignore_repeat: bool = False,
        settle: float | None = None,
        what: str = "",
    ) -> MatchResult:
        """Compare everything ``vm`` received since ``since`` (a :meth:`mark`) with ``expected`` — the same
        exact rules, waiting up to ``timeout`` for missing events; claims nothing (``Input Should Be
        Received``)."""
        expected = list(expected)
        settle_time = self.settle if settle is None else settle

        async def check() -> MatchResult:
            window = self._inbox(vm).window(
                expected,
                since=since,
                timeout=timeout,
                ignore_repeat=ignore_repeat,
                settle=settle_time,
                text=text,
                layout=layout,
                secret=secret,
                what=what,
            )
            future: asyncio.Future[MatchResult] = asyncio.get_running_loop().create_future()
            window.add_done_callback(lambda r: None if future.done() else future.set_result(r))
            return await future

        return self._call(check(), timeout + settle_time + CALL_MARGIN, what=f"checking input on VM '{vm}'")

    def latencies(self, vm: str) -> LatencyStats:
        """p50/p99/max (ms) of the successful matches on ``vm`` (``Get Verification Latencies``)."""

        async def get() -> LatencyStats:
            return self._inbox(vm).latency_stats()

        return self._call(get(), self.call_timeout, what="reading latencies")

    def reset_latencies(self, vm: str) -> None:
        async def reset() -> None:
            self._inbox(vm).latencies.clear()

        self._call(reset(), self.call_timeout, what="resetting latencies")

    # -- requests to the agent -------------------------------------------------------------------------------
    def request(self, vm: str, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``message`` (e.g. ``verify_command``) with a fresh ``request_id`` and return the agent's reply
        carrying the same ``request_id`` (e.g. ``command_result``)."""
        request_id = secrets.token_hex(8)
        outgoing = {**message, "request_id": request_id}

        async def call() -> dict[str, Any]:
            session = self._sessions.get(vm)
            if session is None:
                raise VerificationAgentNotConnected(self._not_connected(vm))
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._requests[request_id] = future
            try:
                await session.send(outgoing)
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise VerificationError(
                    f"The verification agent of VM '{vm}' did not answer a {outgoing.get('message_type')!r} "
                    f"within {format_seconds(timeout)}."
                ) from None
            finally:
                self._requests.pop(request_id, None)

        return self._call(call(), timeout + CALL_MARGIN, what=f"a request to the agent of VM '{vm}'")
