"""The SPICE main channel: session id, mouse modes, the channel list.

After the link the server sends ``MAIN_INIT`` (session id, supported and current mouse modes); the client
answers ``ATTACH_CHANNELS`` and the server then sends ``CHANNELS_LIST`` (the original client never sent
ATTACH_CHANNELS, so a real server never sent it the list).  ``MOUSE_MODE`` messages report mode changes,
including the server's answer to ``MOUSE_MODE_REQUEST``.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass

from ATPLibrary.errors import SpiceProtocolError, SpiceUnsupportedError
from ATPLibrary.spice import protocol as p
from ATPLibrary.spice.channel import Endpoint, SpiceChannel

log = logging.getLogger("ATPLibrary.spice")

MAIN_INIT = struct.Struct("<IIIIIIII")
MOUSE_MODE = struct.Struct("<HH")
MODE_NAMES = {p.MOUSE_MODE_SERVER: "server", p.MOUSE_MODE_CLIENT: "client"}


@dataclass(frozen=True)
class ChannelId:
    type: int
    id: int


def mode_name(mode: int) -> str:
    return MODE_NAMES.get(mode, f"mode {mode}")


class MainChannel:
    """Client side of the main channel (one per session)."""

    def __init__(self, endpoint: Endpoint, send_timeout: float = 10.0) -> None:
        self.channel = SpiceChannel(endpoint, p.ChannelType.MAIN, send_timeout=send_timeout)
        self.session_id: int | None = None
        self.display_channels_hint = 0
        self.supported_mouse_modes = 0
        self.mouse_mode = 0
        self.channels: list[ChannelId] = []
        self.name: str | None = None
        self._init = asyncio.Event()
        self._listed = asyncio.Event()
        self._mode_changed = asyncio.Event()

    async def open(self, password: str | None, timeout: float) -> None:
        """Link, log in, and wait for MAIN_INIT and the channel list (all within ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.channel.connect(password, timeout)
        self.channel.start(self)
        await self.channel.wait(self._init, max(0.0, deadline - loop.time()), "MAIN_INIT")
        await self.channel.wait(self._listed, max(0.0, deadline - loop.time()), "the channel list")

    async def on_message(self, msg_type: int, payload: bytes) -> None:
        if msg_type == p.MSG_MAIN_INIT:
            fields = p.unpack(MAIN_INIT, payload, "MAIN_INIT")
            self.session_id, self.display_channels_hint = fields[0], fields[1]
            self.supported_mouse_modes, self.mouse_mode = fields[2], fields[3]
            log.debug(
                "SPICE session %s: mouse modes supported %s, current %s",
                self.session_id,
                self.supported_mouse_modes,
                self.mouse_mode,
            )
            self._init.set()
            await self.channel.send(p.MSGC_MAIN_ATTACH_CHANNELS)
        elif msg_type == p.MSG_MAIN_CHANNELS_LIST:
            (count,) = p.unpack(struct.Struct("<I"), payload, "CHANNELS_LIST")
            if len(payload) < 4 + 2 * count:
                raise SpiceProtocolError(f"CHANNELS_LIST: {count} channels do not fit its {len(payload)} bytes")
            self.channels = [ChannelId(payload[4 + 2 * i], payload[5 + 2 * i]) for i in range(count)]
            self._listed.set()
        elif msg_type == p.MSG_MAIN_MOUSE_MODE:
            self.supported_mouse_modes, self.mouse_mode = p.unpack(MOUSE_MODE, payload, "MOUSE_MODE")
            log.debug("SPICE mouse mode now %s (supported %s)", self.mouse_mode, self.supported_mouse_modes)
            self._mode_changed.set()
        elif msg_type == p.MSG_MAIN_NAME:
            (length,) = p.unpack(struct.Struct("<I"), payload, "NAME")
            self.name = payload[4 : 4 + length].rstrip(b"\0").decode("utf-8", "replace")
        # MULTI_MEDIA_TIME, AGENT_*, UUID, MIGRATE_*: nothing to do for a test client without an agent

    def has_channel(self, channel_type: int) -> bool:
        return any(c.type == channel_type for c in self.channels)

    def supports(self, mode: int) -> bool:
        return bool(self.supported_mouse_modes & mode)

    async def set_mouse_mode(self, mode: int, timeout: float) -> None:
        """Ask the server for ``mode`` (client or server) and wait until it reports it."""
        if self.mouse_mode == mode:
            return
        if not self.supports(mode):
            raise SpiceUnsupportedError(
                f"the SPICE server offers only {mode_name(self.mouse_mode)} mouse mode, not {mode_name(mode)}. "
                + (
                    "Client mode (absolute positions) needs the VM's current QEMU pointer to be an absolute one "
                    "(a tablet; QEMU's `info mice` marks the current pointer with *): in the lab run "
                    "`mouse_set <tablet index>` through the monitor, or move the pointer with via=qmp."
                    if mode == p.MOUSE_MODE_CLIENT
                    else ""
                )
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.channel.send(p.MSGC_MAIN_MOUSE_MODE_REQUEST, struct.pack("<H", mode))
        while self.mouse_mode != mode:
            self._mode_changed.clear()
            await self.channel.wait(
                self._mode_changed, max(0.0, deadline - loop.time()), f"the switch to {mode_name(mode)} mouse mode"
            )

    async def close(self) -> None:
        await self.channel.close()
