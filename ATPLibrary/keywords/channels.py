"""Keywords for VMs' virtio-serial channels (libvirt channel streams, so remote hosts work)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.channels.buffer import DEFAULT_LINE_LIMIT, preview
from ATPLibrary.channels.channel import ChannelMode, VirtioChannel, open_channel
from ATPLibrary.errors import ChannelError, ConfigurationError
from ATPLibrary.keywords.context import LibraryContext

ChannelOpener = Callable[..., VirtioChannel]


class ChannelKeywords:
    """Open, write, read and close virtio-serial channels; several may be open at once, named by alias."""

    def __init__(self, ctx: LibraryContext, opener: ChannelOpener = open_channel) -> None:
        self.ctx = ctx
        self._opener = opener
        self._channels: dict[str, VirtioChannel] = {}
        self._current: str | None = None

    def _channel(self, alias: str | None) -> VirtioChannel:
        name = alias or self._current
        if name is None:
            raise ChannelError("No channel is open. Use Open Channel first.")
        channel = self._channels.get(name)
        if channel is None:
            known = ", ".join(sorted(self._channels)) or "none"
            raise ChannelError(f"No open channel with alias '{name}'. Open channels: {known}.")
        return channel

    @keyword("Open Channel")
    def open_channel(
        self,
        vm: str,
        name: str,
        mode: str = "raw",
        alias: str | None = None,
        force: bool = False,
        send_field: str = "data",
        receive_field: str = "result",
    ) -> str:
        """Opens the virtio-serial channel ``name`` of ``vm`` and makes it the current channel; returns its alias.

        The channel is opened through libvirt, so it works on remote hosts too. libvirt can open only
        ``<channel type='unix'>`` channels (with or without a source path); other types fail naming the
        type. In the guest the channel is ``/dev/virtio-ports/<name>``.

        Arguments:
        - ``name``: the channel's virtio target name (e.g. ``com.atp.test.0``) or its device alias.
        - ``mode``: ``raw`` (writes are sent as they are), ``line`` (a newline is added to every write) or
          ``json`` (a write sends ``{"data": <text>}`` and a line; `Read From Channel` returns the ``result``
          field of the reply line). In ``raw`` and ``line`` mode `Read From Channel` returns one line.
        - ``alias``: name for this channel in the other channel keywords (default ``<vm>:<name>``).
        - ``force``: take the channel over when another client (another process, the verification server)
          has it open; that client's stream then fails. Without it such a channel fails with
          ``already open by another client``.
        - ``send_field``, ``receive_field``: the JSON field names of ``json`` mode.

        What the guest writes is buffered from the moment the channel is open. Measured on the lab: data
        written before a guest process opens the port is delivered when one does; a guest process that
        writes while no host client has the channel open blocks until one opens it. Close channels with
        `Close Channel` or `Close All Channels` (in a suite teardown).

        Fails when the VM has no such channel (listing its channels), when ``name`` is the guest agent's
        channel, when the channel is not a ``unix`` one, or when ``alias`` is already open (without
        ``force``).

        | =Keyword / Assignment= | =Argument=   | =Argument=     | =Argument= | =Argument=  |
        | Open Channel           | atp-lab-01   | com.atp.test.0 |            |             |
        | ${agent} =             | Open Channel | atp-lab-02     | com.atp.test.0 | mode=json |
        """
        chosen = ChannelMode.parse(mode)
        key = alias or f"{vm}:{name}"
        existing = self._channels.get(key)
        if existing is not None and existing.is_open:
            if not force:
                raise ChannelError(
                    f"A channel with alias '{key}' is already open ({existing.label}). Close Channel first, use "
                    f"another alias, or pass force=True."
                )
            existing.close()
        channel = self._opener(
            self.ctx.domain(vm),
            name,
            mode=chosen,
            force=force,
            send_field=send_field,
            receive_field=receive_field,
        )
        self._channels[key] = channel
        self._current = key
        logger.info(f"Opened {channel.label} in {chosen.value} mode as '{key}'.")
        return key

    @keyword("Switch Channel")
    def switch_channel(self, alias: str) -> str:
        """Makes the open channel ``alias`` the current one; returns the previous alias.

        Returns an empty string when no channel was current. Fails when no channel is open as ``alias``,
        listing the open ones.

        | =Keyword= | =Argument= |
        | Switch Channel | atp-lab-02:com.atp.test.0 |
        """
        self._channel(alias)
        previous, self._current = self._current, alias
        return previous or ""

    @keyword("Write To Channel")
    def write_to_channel(self, data: str | bytes, channel: str | None = None, timeout: timedelta | None = None) -> None:
        """Writes ``data`` (text, sent as UTF-8, or bytes) to the current channel or ``channel``.

        ``raw`` mode sends it as it is, ``line`` mode adds a newline, ``json`` mode sends
        ``{"data": <data>}`` and a newline. ``timeout`` bounds the write (default: the library timeout).
        Fails when no channel is open (or none as ``channel``), when the write does not complete within
        ``timeout``, or when the channel was closed (the VM stopped).

        | =Keyword=        | =Argument=       | =Argument=                  |
        | Write To Channel | hello\\n         |                             |
        | Write To Channel | status           | channel=atp-lab-02:com.atp.test.0 |
        """
        chan = self._channel(channel)
        payload = chan.send(data, timeout=self.ctx.seconds(timeout))
        logger.info(f"Wrote {len(payload)} bytes to {chan.label}: {preview(payload)}")

    @keyword("Read From Channel")
    def read_from_channel(
        self, timeout: timedelta | None = None, channel: str | None = None, limit: int = DEFAULT_LINE_LIMIT
    ) -> Any:
        """Reads the next message from the current channel or ``channel`` and returns it.

        In ``raw`` and ``line`` mode the message is one line, returned as text without its line end. In
        ``json`` mode it is the ``result`` field of the next JSON line (any JSON value).

        Fails when nothing (complete) arrives within ``timeout`` (default: the library timeout); a partial
        line stays buffered for the next read and is shown in the error. Lines longer than ``limit`` bytes
        (1 MiB) fail too. After the channel ended (VM stopped) buffered lines are still returned, then the
        keyword fails saying the channel is closed.

        | =Keyword / Assignment= | =Argument=        | =Argument= |
        | ${line} =              | Read From Channel | timeout=5s |
        | Should Be Equal        | ${line}           | hello      |
        """
        chan = self._channel(channel)
        chan.line_limit = int(limit)
        message = chan.receive(self.ctx.seconds(timeout))
        logger.info(f"Read from {chan.label}: {message!r}")
        return message

    @keyword("Read Bytes From Channel")
    def read_bytes_from_channel(
        self,
        size: int = 4096,
        timeout: timedelta | None = None,
        channel: str | None = None,
        exact: bool = False,
    ) -> bytes:
        """Reads up to ``size`` bytes as soon as any arrive (``exact=True``: exactly ``size``), ignoring framing.

        Returns the bytes read. Fails when nothing (or, with ``exact``, not all) arrives within ``timeout``
        (default: the library timeout), and when ``size`` is not positive.

        | =Keyword / Assignment= | =Argument=              | =Argument= | =Argument= |
        | ${data} =              | Read Bytes From Channel | 16         | exact=True |
        """
        if int(size) <= 0:
            raise ConfigurationError(f"size must be a positive number of bytes, not {size}")
        chan = self._channel(channel)
        seconds = self.ctx.seconds(timeout)
        data = chan.read_exactly(int(size), seconds) if exact else chan.read(int(size), seconds)
        logger.info(f"Read {len(data)} bytes from {chan.label}: {preview(data)}")
        return data

    @keyword("Close Channel")
    def close_channel(self, channel: str | None = None) -> None:
        """Closes the current channel or the one open as ``channel``.

        Never fails: closing a closed or unknown alias only logs that there was nothing to close.

        | =Keyword=     | =Channel=             |
        | Close Channel |                       |
        | Close Channel | atp-lab-01:com.atp.test.0 |
        """
        key = channel or self._current
        chan = self._channels.pop(key, None) if key else None
        if chan is None:
            logger.info(f"No open channel '{key}' to close.")
            return
        chan.close()
        if self._current == key:
            self._current = None
        logger.info(f"Closed {chan.label} ('{key}').")

    @keyword("Close All Channels")
    def close_all_channels(self) -> None:
        """Closes every channel opened with `Open Channel` (use it in suite teardown).

        Never fails. The library also closes them when the whole run ends.

        | =Keyword=          |
        | Close All Channels |
        """
        for key in list(self._channels):
            self.close_channel(key)
        self._current = None
