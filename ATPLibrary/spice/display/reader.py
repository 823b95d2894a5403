"""Bounds-checked little-endian reading of SPICE messages.

Every read checks the remaining length first, so truncated input raises
:class:`~ATPLibrary.errors.SpiceProtocolError` (naming what was being read), never ``struct.error`` or
``IndexError``.  Pointers inside a message are 32-bit offsets from the start of the message body;
:meth:`Reader.at` follows one.
"""

from __future__ import annotations

import struct

from ATPLibrary.errors import SpiceProtocolError

_U16 = struct.Struct("<H")
_I16 = struct.Struct("<h")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")


class Reader:
    """A cursor over one message body (``data``), starting at ``pos``; ``what`` names the message in errors."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, pos: int = 0, what: str = "message") -> None:
        self.data = data
        self.pos = pos
        self.what = what
        if not 0 <= pos <= len(data):
            raise SpiceProtocolError(f"{what}: offset {pos} outside the {len(data)}-byte message")

    def need(self, n: int, field: str) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise SpiceProtocolError(
                f"{self.what}: truncated at byte {self.pos} reading {field} ({n} bytes needed, "
                f"{len(self.data) - self.pos} left)"
            )

    def u8(self, field: str = "u8") -> int:
        self.need(1, field)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u16(self, field: str = "u16") -> int:
        self.need(2, field)
        (v,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(v)

    def i16(self, field: str = "i16") -> int:
        self.need(2, field)
        (v,) = _I16.unpack_from(self.data, self.pos)
        self.pos += 2
        return int(v)

    def u32(self, field: str = "u32") -> int:
        self.need(4, field)
        (v,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(v)

    def i32(self, field: str = "i32") -> int:
        self.need(4, field)
        (v,) = _I32.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(v)

    def u64(self, field: str = "u64") -> int:
        self.need(8, field)
        (v,) = _U64.unpack_from(self.data, self.pos)
        self.pos += 8
        return int(v)

    def take(self, n: int, field: str = "data") -> bytes:
        self.need(n, field)
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return bytes(v)

    def at(self, offset: int, what: str) -> Reader:
        """A new reader at a pointer ``offset`` (from the start of the message body)."""
        if not 0 < offset < len(self.data):
            raise SpiceProtocolError(f"{self.what}: {what} pointer {offset} outside the {len(self.data)}-byte message")
        return Reader(self.data, offset, self.what)
