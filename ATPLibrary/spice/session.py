"""SpiceSession: a synchronous facade over the asyncio channels, for keywords and plain Python.

The channels run on an asyncio loop in a daemon thread owned by the session.  :meth:`SpiceSession.open`
opens the main channel (session id, channel list), then the inputs channel, then — when this package has
the display channel and the server lists one — the display channel.  Every call waits at most its timeout;
:meth:`close` is idempotent and bounded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ATPLibrary.errors import SpiceError, SpiceUnsupportedError
from ATPLibrary.keys.keymap import KeyRecord
from ATPLibrary.spice import protocol as p
from ATPLibrary.spice.channel import Endpoint, SpiceChannel
from ATPLibrary.spice.inputs import InputsChannel, key_scancodes
from ATPLibrary.spice.main import MainChannel
from ATPLibrary.spice.protocol import SpiceClosedError, SpiceTimeout
from ATPLibrary.spice.ticket import validate_password

log = logging.getLogger("ATPLibrary.spice")
T = TypeVar("T")


def display_available() -> bool:
    """True when this installation has the SPICE display channel (``ATPLibrary.spice.display``)."""
    return importlib.util.find_spec("ATPLibrary.spice.display") is not None


class SpiceSession:
    """One SPICE client session (main + inputs [+ display]) to one server.

    ``password`` is kept only in memory for the channels' tickets and is never logged or shown in ``repr``.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        password: str | None,
        *,
        timeout: float = 30.0,
        name: str = "",
        display: bool = True,
    ) -> None:
        validate_password(password or "")
        self.endpoint = endpoint
        self._password = password
        self.timeout = timeout
        self.name = name or str(endpoint)
        self.want_display = display
        self.main: MainChannel | None = None
        self.inputs: InputsChannel | None = None
        self.display_channel: SpiceChannel | None = None
        self.display: Any = None  # ATPLibrary.spice.display.DisplayChannelHandler when opened
        #: the mouse button state (SPICE mask) the next mouse message carries
        self.buttons = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SpiceSession({self.name!r}, {self.endpoint})"

    # ------------------------------------------------------------ loop

    def _start_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            self._thread = threading.Thread(target=run, name=f"spice {self.name}", daemon=True)
            self._thread.start()
            if not ready.wait(10):
                raise SpiceError(f"SPICE session {self.name}: the event loop thread did not start")
            self._loop = loop
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None, what: str = "") -> T:
        """Run ``coro`` on the session's loop and wait for it at most ``timeout`` (default: the session's)."""
        if self._closed:
            coro.close()
            raise SpiceClosedError(f"SPICE session {self.name} is closed; open a new one (Open SPICE Session)")
        limit = self.timeout if timeout is None else timeout
        future = asyncio.run_coroutine_threadsafe(coro, self._start_loop())
        try:
            return future.result(limit + 1.0)  # the coroutines bound themselves; this is the backstop
        except concurrent.futures.TimeoutError:
            if future.done():
                # The coroutine's own timeout (SpiceTimeout is a TimeoutError, which is what
                # concurrent.futures.TimeoutError is since Python 3.11): keep its message, it names what was missing.
                raise
            future.cancel()
            raise SpiceTimeout(f"SPICE session {self.name}: {what or 'the operation'} took over {limit:g} s") from None

    # ------------------------------------------------------------ open / close

    def open(self) -> SpiceSession:
        """Open main, inputs and (when available and listed) display channels within the session timeout."""
        try:
            self.run(self._open(self.timeout), what="opening the session")
        except BaseException:
            self.close()
            raise
        return self

    async def _open(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.main = MainChannel(self.endpoint)
        await self.main.open(self._password, timeout)
        assert self.main.session_id is not None
        if not self.main.has_channel(p.ChannelType.INPUTS):
            raise SpiceUnsupportedError(f"SPICE server {self.endpoint} lists no inputs channel")
        self.inputs = InputsChannel(self.endpoint, self.main.session_id)
        await self.inputs.open(self._password, max(0.1, deadline - loop.time()))
        if self.want_display and display_available() and self.main.has_channel(p.ChannelType.DISPLAY):
            await self._open_display(max(0.1, deadline - loop.time()))
        log.info(
            "SPICE session %s open: session id %s, %s mouse mode, channels %s",
            self.name,
            self.main.session_id,
            "client" if self.main.mouse_mode == p.MOUSE_MODE_CLIENT else "server",
            [(c.type, c.id) for c in self.main.channels],
        )

    async def _open_display(self, timeout: float) -> None:
        from ATPLibrary.spice.display import DISPLAY_CAPS, DisplayChannelHandler

        assert self.main is not None and self.main.session_id is not None
        channel = SpiceChannel(
            self.endpoint,
            p.ChannelType.DISPLAY,
            connection_id=self.main.session_id,
            channel_caps=frozenset(DISPLAY_CAPS),
        )
        await channel.connect(self._password, timeout)
        handler = DisplayChannelHandler(channel.send)
        channel.start(handler)
        self.display_channel, self.display = channel, handler
        await handler.start()

    def close(self) -> None:
        """Close every channel and stop the loop thread (idempotent, bounded)."""
        if self._closed:
            return
        loop = self._loop
        if loop is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._close_channels(), loop)
            with contextlib.suppress(Exception):
                future.result(10)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(5)
        if loop is not None and not loop.is_running():
            loop.close()
        self._closed = True
        self._password = None

    async def _close_channels(self) -> None:
        for channel in (self.display_channel, self.inputs.channel if self.inputs else None):
            if channel is not None:
                await channel.close()
        if self.main is not None:
            await self.main.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def check_open(self) -> None:
        """Raise why the session can no longer be used (closed, or a channel stopped)."""
        if self._closed:
            raise SpiceClosedError(f"SPICE session {self.name} is closed; open a new one (Open SPICE Session)")
        for part in (self.main, self.inputs):
            if part is not None:
                part.channel.check_open()

    # ------------------------------------------------------------ input

    def _inputs(self) -> InputsChannel:
        self.check_open()
        if self.inputs is None:
            raise SpiceClosedError(f"SPICE session {self.name} was never opened")
        return self.inputs

    def key(self, record: KeyRecord, down: bool) -> None:
        """Press (``down``) or release one key: its set-1 make or break bytes from the key map."""
        inputs = self._inputs()
        send = inputs.key_down if down else inputs.key_up
        self.run(send(key_scancodes(record, down)), what=f"sending {record.name} {'down' if down else 'up'}")

    def set_mouse_mode(self, mode: int) -> None:
        self.check_open()
        assert self.main is not None
        self.run(self.main.set_mouse_mode(mode, self.timeout), what="switching the mouse mode")

    @property
    def mouse_mode(self) -> int:
        return self.main.mouse_mode if self.main is not None else 0

    def mouse_position(self, x: int, y: int, display_id: int = 0) -> None:
        inputs = self._inputs()
        self.run(inputs.mouse_position(x, y, self.buttons, display_id, self.timeout), what="moving the mouse")

    def mouse_motion(self, dx: int, dy: int) -> None:
        inputs = self._inputs()
        self.run(inputs.mouse_motion(dx, dy, self.buttons, self.timeout), what="moving the mouse")

    def mouse_button(self, button: p.MouseButton, down: bool) -> None:
        """Press or release ``button``; the message carries the button state after the change."""
        inputs = self._inputs()
        if down:
            self.buttons |= button.mask
            self.run(inputs.mouse_press(button, self.buttons), what=f"pressing mouse button {button.name}")
        else:
            self.buttons &= ~button.mask
            self.run(inputs.mouse_release(button, self.buttons), what=f"releasing mouse button {button.name}")

    def run_batch(self, coro: Coroutine[Any, Any, T], what: str) -> T:
        self.check_open()
        return self.run(coro, what=what)

    # ------------------------------------------------------------ display

    def screenshot(self, timeout: float | None = None) -> tuple[int, int, bytes]:
        """(width, height, RGB bytes) of the primary surface, once the server has drawn it (``timeout``)."""
        self.check_open()
        if self.display is None:
            if not display_available():
                raise SpiceUnsupportedError(
                    "this ATPLibrary has no SPICE display channel (ATPLibrary.spice.display), so it cannot take "
                    "a SPICE screenshot; use Take Screenshot (libvirt) instead"
                )
            raise SpiceUnsupportedError(
                f"SPICE session {self.name} has no display channel (opened with display=False, or the server "
                "lists none)"
            )
        assert self.display_channel is not None
        self.display_channel.check_open()
        limit = self.timeout if timeout is None else timeout
        display = self.display

        async def shot() -> tuple[int, int, bytes]:
            # on the loop thread: the surface is never read while a message is being drawn into it
            await display.wait_for_surface(limit)
            result: tuple[int, int, bytes] = display.screenshot()
            return result

        return self.run(shot(), limit, what="waiting for the display's first full screen")
