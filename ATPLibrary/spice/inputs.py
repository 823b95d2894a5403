"""The SPICE inputs channel: keys as PC/AT set-1 scan codes, mouse position/motion/buttons.

Keys: ``KEY_DOWN``/``KEY_UP`` carry a u32 whose little-endian bytes are pushed to the guest keyboard one
by one until a zero byte (spice-server's ``kbd_push_scan``), so an extended key goes as ``0xE0`` then the
code (``0x48E0`` for Up), its break as ``0xC8E0``; sequences longer than 4 bytes (Pause) go in several
messages.  The bytes come from the one key map (:meth:`KeyRecord.set1_make` / ``set1_break``).

Mouse: ``MOUSE_POSITION`` (x, y in pixels, u16 buttons, u8 display) in client mode; ``MOUSE_MOTION``
(dx, dy, u16 buttons) in server mode; ``MOUSE_PRESS``/``MOUSE_RELEASE`` (u8 button, u16 state after the
change).  The server acknowledges every 4 motion/position messages; at most 8 go unacknowledged.
"""

from __future__ import annotations

import asyncio
import struct

from ATPLibrary.keys.keymap import KeyRecord
from ATPLibrary.spice import protocol as p
from ATPLibrary.spice.channel import Endpoint, SpiceChannel

KEY = struct.Struct("<I")
MODIFIERS = struct.Struct("<H")
MOTION = struct.Struct("<iiH")
POSITION = struct.Struct("<IIHB")
BUTTON = struct.Struct("<BH")
#: Unacknowledged motion/position messages allowed in flight (spice-gtk uses the same bound).
MAX_UNACKED_MOTION = 2 * p.INPUT_MOTION_ACK_BUNCH


def key_scancodes(record: KeyRecord, down: bool) -> bytes:
    """The set-1 bytes a SPICE client sends for ``record`` going down or up.

    Every key sends the key map's make/break bytes (``[E0] code``, ``[E0] code|0x80``; Print's fake-shift
    sequence ``E0 2A E0 37`` / ``E0 B7 E0 AA``) except Pause: its keyboard sequence ``E1 1D 45 E1 9D C5``
    has no release, and QEMU's spice-input turns it into a Pause *press* only, which leaves the key down
    on a virtio keyboard (the guest then auto-repeats it).  So Pause goes as its key map code ``E0 46`` /
    ``E0 C6``, which QEMU maps to a Pause press and release.
    """
    if record.qcode == "pause":
        code = record.set1 if down else record.set1 | 0x80
        return bytes([0xE0, code]) if record.extended else bytes([code])
    return record.set1_make() if down else record.set1_break()


def scancode_words(data: bytes) -> list[int]:
    """Set-1 bytes as the u32 codes of KEY_DOWN/KEY_UP messages: up to 4 bytes each, little-endian."""
    if 0 in data:
        raise ValueError("a set-1 sequence cannot contain a zero byte (the server stops at it)")
    return [int.from_bytes(data[i : i + 4], "little") for i in range(0, len(data), 4)]


class InputsChannel:
    """Client side of the inputs channel."""

    def __init__(self, endpoint: Endpoint, session_id: int, send_timeout: float = 10.0) -> None:
        self.channel = SpiceChannel(endpoint, p.ChannelType.INPUTS, connection_id=session_id, send_timeout=send_timeout)
        #: the guest's lock-key state as the server reports it (SCROLL 1, NUM 2, CAPS 4)
        self.keyboard_modifiers: int | None = None
        self.motion_unacked = 0
        self._init = asyncio.Event()
        self._acked = asyncio.Event()

    async def open(self, password: str | None, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.channel.connect(password, timeout)
        self.channel.start(self)
        await self.channel.wait(self._init, max(0.0, deadline - loop.time()), "INPUTS_INIT")

    async def on_message(self, msg_type: int, payload: bytes) -> None:
        if msg_type in (p.MSG_INPUTS_INIT, p.MSG_INPUTS_KEY_MODIFIERS):
            (self.keyboard_modifiers,) = p.unpack(MODIFIERS, payload, "INPUTS_INIT/KEY_MODIFIERS")
            self._init.set()
        elif msg_type == p.MSG_INPUTS_MOUSE_MOTION_ACK:
            self.motion_unacked = max(0, self.motion_unacked - p.INPUT_MOTION_ACK_BUNCH)
            self._acked.set()

    async def key_down(self, make: bytes) -> None:
        for code in scancode_words(make):
            await self.channel.send(p.MSGC_INPUTS_KEY_DOWN, KEY.pack(code))

    async def key_up(self, brk: bytes) -> None:
        for code in scancode_words(brk):
            await self.channel.send(p.MSGC_INPUTS_KEY_UP, KEY.pack(code))

    async def set_modifiers(self, modifiers: int) -> None:
        await self.channel.send(p.MSGC_INPUTS_KEY_MODIFIERS, MODIFIERS.pack(modifiers))

    async def _motion_slot(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.motion_unacked >= MAX_UNACKED_MOTION:
            self._acked.clear()
            await self.channel.wait(self._acked, max(0.0, deadline - loop.time()), "MOUSE_MOTION_ACK")
        self.motion_unacked += 1

    async def mouse_position(self, x: int, y: int, buttons: int, display_id: int = 0, timeout: float = 10.0) -> None:
        await self._motion_slot(timeout)
        await self.channel.send(p.MSGC_INPUTS_MOUSE_POSITION, POSITION.pack(x, y, buttons, display_id))

    async def mouse_motion(self, dx: int, dy: int, buttons: int, timeout: float = 10.0) -> None:
        await self._motion_slot(timeout)
        await self.channel.send(p.MSGC_INPUTS_MOUSE_MOTION, MOTION.pack(dx, dy, buttons))

    async def mouse_press(self, button: int, buttons: int) -> None:
        await self.channel.send(p.MSGC_INPUTS_MOUSE_PRESS, BUTTON.pack(button, buttons))

    async def mouse_release(self, button: int, buttons: int) -> None:
        await self.channel.send(p.MSGC_INPUTS_MOUSE_RELEASE, BUTTON.pack(button, buttons))

    async def close(self) -> None:
        await self.channel.close()
