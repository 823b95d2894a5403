"""A thread-safe byte buffer: filled by libvirt's event-loop thread, read by the caller with timeouts."""

from __future__ import annotations

import logging
import threading
import time

from ATPLibrary.errors import ChannelClosedError, ChannelProtocolError, ChannelTimeout
from ATPLibrary.hosts.timing import Clock, Deadline, format_seconds

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Default cap of buffered, unread bytes (the oldest are dropped past it, with a warning).
DEFAULT_MAX_BUFFER = 16 * MiB
#: Default longest line ``read_line`` accepts.
DEFAULT_LINE_LIMIT = MiB


def preview(data: bytes, limit: int = 200) -> str:
    """``repr`` of at most ``limit`` bytes, saying how many more there are."""
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit]!r}... ({len(data) - limit} more bytes)"


class ChannelBuffer:
    """Bytes received on a channel, waiting to be read.

    :meth:`feed` and :meth:`close` are called from the libvirt event-loop thread; the ``read*`` methods from
    any thread, each bounded by its ``timeout`` (nothing waits forever).  ``label`` names the channel in
    error messages (``"channel 'x' of VM 'y'"``).  Past ``max_size`` unread bytes the oldest are dropped.
    """

    def __init__(
        self, label: str = "channel", *, max_size: int = DEFAULT_MAX_BUFFER, clock: Clock = time.monotonic
    ) -> None:
        self.label = label
        self.max_size = max_size
        self._clock = clock
        self._data = bytearray()
        self._cond = threading.Condition()
        self._closed = False
        self._close_reason = ""
        #: Bytes dropped because nobody read them in time (buffer over ``max_size``).
        self.dropped = 0
        #: Bytes received in total.
        self.received = 0

    # -- producer side (event-loop thread) -----------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            self._data += data
            self.received += len(data)
            excess = len(self._data) - self.max_size
            if excess > 0:
                del self._data[:excess]
                if not self.dropped:
                    log.warning("%s: more than %d unread bytes; dropping the oldest", self.label, self.max_size)
                self.dropped += excess
            self._cond.notify_all()

    def close(self, reason: str) -> None:
        """No more data will come (``reason`` goes into later errors).  Buffered bytes stay readable."""
        with self._cond:
            if not self._closed:
                self._closed = True
                self._close_reason = reason
            self._cond.notify_all()

    # -- consumer side -------------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def close_reason(self) -> str:
        return self._close_reason

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._data)

    def peek(self) -> bytes:
        with self._cond:
            return bytes(self._data)

    def discard(self) -> bytes:
        """Drop and return everything buffered."""
        with self._cond:
            data = bytes(self._data)
            self._data.clear()
            return data

    def _closed_error(self) -> ChannelClosedError:
        return ChannelClosedError(f"{self.label} is closed: {self._close_reason}")

    def _wait(self, deadline: Deadline) -> bool:
        """Wait (lock held) for a change; False when the deadline has passed."""
        remaining = deadline.remaining()
        if remaining <= 0:
            return False
        self._cond.wait(remaining)
        return True

    def read(self, size: int, timeout: float, *, exact: bool = False) -> bytes:
        """Up to ``size`` bytes as soon as any are there (``exact``: wait for all ``size``).

        Raises ChannelTimeout (nothing kept back: the bytes stay buffered) or ChannelClosedError when the
        channel ended with fewer bytes buffered than needed.
        """
        if size <= 0:
            return b""
        deadline = Deadline(timeout, self._clock)
        need = size if exact else 1
        with self._cond:
            while len(self._data) < need:
                if self._closed:
                    if self._data and not exact:
                        break
                    raise self._closed_error()
                if not self._wait(deadline):
                    what = f"{size} bytes" if exact else "any data"
                    raise ChannelTimeout(
                        f"No {what} from {self.label} within {format_seconds(timeout)} "
                        f"(buffered: {preview(bytes(self._data))}).",
                        bytes(self._data),
                    )
            data = bytes(self._data[:size])
            del self._data[:size]
            return data

    def read_line(self, timeout: float, *, limit: int = DEFAULT_LINE_LIMIT, separator: bytes = b"\n") -> bytes:
        """One line including its ``separator`` (at end of stream: the rest, without one).

        A line longer than ``limit`` bytes raises ChannelProtocolError and its first ``limit`` bytes are
        dropped; on timeout the partial line stays buffered and is in the error's ``partial``.
        """
        deadline = Deadline(timeout, self._clock)
        searched = 0
        with self._cond:
            while True:
                index = self._data.find(separator, searched)
                if index >= 0 and index + len(separator) <= limit:
                    end = index + len(separator)
                    line = bytes(self._data[:end])
                    del self._data[:end]
                    return line
                if index >= 0 or len(self._data) > limit:
                    dropped = bytes(self._data[:limit])
                    del self._data[:limit]
                    raise ChannelProtocolError(
                        f"{self.label} sent a line longer than {limit} bytes (starts {preview(dropped, 80)}); "
                        f"{limit} bytes were dropped. Raise the line limit or read bytes instead."
                    )
                searched = max(0, len(self._data) - len(separator) + 1)
                if self._closed:
                    if self._data:
                        line = bytes(self._data)
                        self._data.clear()
                        return line
                    raise self._closed_error()
                if not self._wait(deadline):
                    raise ChannelTimeout(
                        f"No complete line from {self.label} within {format_seconds(timeout)} "
                        f"(buffered: {preview(bytes(self._data))}).",
                        bytes(self._data),
                    )
