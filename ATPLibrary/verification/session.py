"""One verification agent's session: handshake, heartbeats both ways, message dispatch (on the server's loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ATPLibrary.hosts.timing import format_seconds
from ATPLibrary.verification import protocol
from ATPLibrary.verification.streams import MessageChannel

log = logging.getLogger(__name__)

#: Errors a broken transport raises (besides ProtocolError): the session ends, nothing propagates.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, OSError, EOFError, asyncio.IncompleteReadError)
#: The same, plus a send that timed out.
SEND_ERRORS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, TimeoutError)


@dataclass
class SessionInfo:
    """What the server knows about a connected verification agent (a snapshot; no token)."""

    vm: str
    transport: str
    peer: str
    agent_version: str = ""
    platform: str = ""
    devices: list[Any] = field(default_factory=list)
    connected_at: float = 0.0  # wall clock (time.time())
    last_message_age: float = 0.0  # seconds since the last message from the agent
    connected: bool = True
    hello_vm_id: str = ""


class HandshakeError(Exception):
    """The agent did not complete the handshake (the message says why; never contains the token)."""


class AgentSession:
    """A channel to one agent.  :meth:`handshake` first, then :meth:`run` until it ends.

    ``on_message`` gets every message after ``welcome`` (heartbeats included); the session itself answers a
    repeated ``hello`` with the current nonce by sending ``welcome`` again (a stale ``sync`` the agent read late).
    """

    def __init__(
        self,
        channel: MessageChannel,
        *,
        heartbeat_interval: float = protocol.HEARTBEAT_INTERVAL,
        heartbeat_timeout: float = protocol.HEARTBEAT_TIMEOUT,
        send_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.send_timeout = send_timeout if send_timeout is not None else heartbeat_timeout
        self.clock = clock
        self.nonce = secrets.token_hex(16)
        self.vm = ""
        self.hello: dict[str, Any] = {}
        self.platform = "linux"
        self.devices: list[Any] = []
        self.connected_at = 0.0
        self.last_message = clock()
        self.close_reason = ""
        self.discarded = 0
        self._reader: asyncio.Task[None] | None = None
        self._on_message: Callable[[AgentSession, dict[str, Any]], None] = lambda _s, _m: None

    @property
    def transport(self) -> str:
        return self.channel.transport

    @property
    def peer(self) -> str:
        return self.channel.peer

    def info(self) -> SessionInfo:
        version = self.hello.get("agent_version")
        hello_vm = self.hello.get("vm_id")
        return SessionInfo(
            vm=self.vm,
            transport=self.transport,
            peer=self.peer,
            agent_version=version if isinstance(version, str) else "",
            platform=self.platform,
            devices=list(self.devices),
            connected_at=self.connected_at,
            last_message_age=max(0.0, self.clock() - self.last_message),
            connected=not self.close_reason,
            hello_vm_id=hello_vm if isinstance(hello_vm, str) else "",
        )

    async def send(self, message: dict[str, Any]) -> None:
        await asyncio.wait_for(self.channel.send(message), self.send_timeout)

    async def handshake(self, timeout: float | None, *, resync_every: float | None = None) -> dict[str, Any]:
        """Send ``sync`` and wait for the ``hello`` carrying its nonce; everything else is discarded.

        ``resync_every`` re-sends the same ``sync`` while waiting (virtio-serial: an agent that starts later
        answers one of them).  Raises HandshakeError (with TimeoutError as cause on timeout).
        """
        sync = {"message_type": protocol.SYNC, "nonce": self.nonce, "protocol_version": protocol.PROTOCOL_VERSION}

        async def resync() -> None:
            assert resync_every is not None
            while True:
                await asyncio.sleep(resync_every)
                await self.send(sync)

        try:
            await self.send(sync)
        except SEND_ERRORS as exc:
            raise HandshakeError(f"cannot send sync: {exc or type(exc).__name__}") from exc
        resender = asyncio.create_task(resync()) if resync_every else None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await self.channel.recv()
                    if message is None:
                        raise HandshakeError("the stream ended before the agent's hello")
                    if message.get("message_type") == protocol.HELLO and message.get("nonce") == self.nonce:
                        break
                    self.discarded += 1
                    log.debug("%s: discarded a %r before the hello", self.peer, message.get("message_type"))
        except TimeoutError as exc:
            raise HandshakeError(
                f"no hello with our nonce within {format_seconds(timeout or 0)} "
                f"({self.discarded} other message(s) discarded)"
            ) from exc
        except protocol.ProtocolError as exc:
            raise HandshakeError(f"protocol error: {exc}") from exc
        except TRANSPORT_ERRORS as exc:
            raise HandshakeError(f"transport error: {exc or type(exc).__name__}") from exc
        finally:
            if resender is not None:
                resender.cancel()
                with contextlib.suppress(BaseException):
                    await resender
        self.hello = message
        platform = message.get("platform")
        self.platform = platform if platform in ("linux", "windows") else "linux"
        devices = message.get("devices")
        self.devices = devices if isinstance(devices, list) else []
        self.last_message = self.clock()
        if self.discarded:
            log.debug("%s: discarded %d stale message(s) before the hello", self.peer, self.discarded)
        return message

    async def welcome(self, vm: str) -> None:
        self.vm = vm
        self.connected_at = time.time()
        await self.send({"message_type": protocol.WELCOME, "vm_id": vm, "protocol_version": protocol.PROTOCOL_VERSION})

    async def reject(self, reason: str) -> None:
        with contextlib.suppress(*SEND_ERRORS):
            await asyncio.wait_for(self.channel.send({"message_type": protocol.REJECT, "reason": reason}), 2.0)
        await self.close_channel()

    async def run(self, on_message: Callable[[AgentSession, dict[str, Any]], None]) -> str:
        """Dispatch messages until the stream ends, a ``bye``, silence for ``heartbeat_timeout`` or
        :meth:`close`.  Returns the reason; never raises for transport or protocol errors."""
        self._on_message = on_message
        self._reader = asyncio.create_task(self._read())
        keepalive = asyncio.create_task(self._keepalive())
        try:
            await asyncio.wait({self._reader, keepalive}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (self._reader, keepalive):
                task.cancel()
            for task in (self._reader, keepalive):
                with contextlib.suppress(BaseException):
                    await task
            await self.close_channel()
        return self.close_reason or "closed"

    def close(self, reason: str) -> None:
        """End :meth:`run` (from the loop thread)."""
        if not self.close_reason:
            self.close_reason = reason
        if self._reader is not None:
            self._reader.cancel()

    async def close_channel(self) -> None:
        with contextlib.suppress(Exception):
            await self.channel.close()

    async def _read(self) -> None:
        try:
            while True:
                message = await self.channel.recv()
                if message is None:
                    self.close_reason = self.close_reason or "the stream ended"
                    return
                self.last_message = self.clock()
                kind = message.get("message_type")
                if kind == protocol.BYE:
                    self.close_reason = self.close_reason or "the agent said bye"
                    return
                if kind == protocol.HELLO:
                    if message.get("nonce") == self.nonce:
                        await self.send({"message_type": protocol.WELCOME, "vm_id": self.vm})
                    continue
                if kind == protocol.DEVICES and isinstance(message.get("devices"), list):
                    self.devices = message["devices"]
                try:
                    self._on_message(self, message)
                except Exception:  # a bug in dispatch must not end the session silently
                    log.exception("%s: handling a %r message failed", self.peer, kind)
        except protocol.ProtocolError as exc:
            log.warning("Verification agent session %s (VM '%s') closed: %s", self.peer, self.vm, exc)
            self.close_reason = self.close_reason or f"protocol error: {exc}"
        except TRANSPORT_ERRORS as exc:
            self.close_reason = self.close_reason or f"transport error: {exc or type(exc).__name__}"
        except TimeoutError:
            self.close_reason = self.close_reason or "the agent does not read (send timed out)"

    async def _keepalive(self) -> None:
        tick = max(0.01, min(self.heartbeat_interval, self.heartbeat_timeout / 4))
        next_heartbeat = self.clock() + self.heartbeat_interval
        while True:
            await asyncio.sleep(tick)
            now = self.clock()
            silent = now - self.last_message
            if silent > self.heartbeat_timeout:
                self.close_reason = self.close_reason or (
                    f"lost: no message from the agent for {format_seconds(silent)} "
                    f"(heartbeat timeout {format_seconds(self.heartbeat_timeout)})"
                )
                return
            if now >= next_heartbeat:
                try:
                    await self.send({"message_type": protocol.HEARTBEAT, "time": time.time()})
                except TimeoutError:
                    self.close_reason = self.close_reason or "lost: the agent does not read (heartbeat send timed out)"
                    return
                except TRANSPORT_ERRORS as exc:
                    self.close_reason = self.close_reason or f"transport error: {exc or type(exc).__name__}"
                    return
                next_heartbeat = now + self.heartbeat_interval
