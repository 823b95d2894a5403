"""The verification protocol between the verification agent (in the guest) and the verification server.

Standard library only: this module is also packed into the agent's zip and runs on the guest's python3.

Transports and framing (every message is one JSON object, UTF-8, with a ``message_type``):

- **virtio-serial** (``/dev/virtio-ports/com.atp.verifier.0`` in the guest, a unix socket or a libvirt channel
  stream on the host): one message per line (``\\n``-terminated), at most ``MAX_LINE`` bytes.
- **TCP**: a 4-byte big-endian length, then the JSON bytes (at most ``MAX_FRAME``), both directions.
- **WebSocket**: one text frame per message.

Session (all transports)::

    server → agent   {"message_type": "sync", "nonce": "<random>"}
    agent  → server  {"message_type": "hello", "nonce": "<same>", "vm_id": ..., "token": ..., "agent_version": ...,
                      "platform": "linux"|"windows", "devices": [...], "ready": true}
    server → agent   {"message_type": "welcome"}  or  {"message_type": "reject", "reason": "..."}

The agent sends ``hello`` only once every input device is open, so nothing typed after ``welcome`` is lost.
On virtio-serial the host side keeps guest writes until a client connects: the server discards everything
that arrives before the ``hello`` carrying its own nonce. On TCP and WebSocket the ``token`` must match the
one issued for that VM at deploy time, so one guest can never report for another; on virtio-serial the
channel itself belongs to one VM. Tokens are never logged.

Then the agent reports ``raw_input_event`` messages and both sides send ``heartbeat`` every
``HEARTBEAT_INTERVAL`` seconds (an agent that dies leaves no end-of-file on the host side of a virtio port:
silence for ``HEARTBEAT_TIMEOUT`` means gone).
"""

from __future__ import annotations

import json
import struct
from typing import Any

PROTOCOL_VERSION = 1
MAX_LINE = 1024 * 1024
MAX_FRAME = 10 * 1024 * 1024
HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TIMEOUT = 3 * HEARTBEAT_INTERVAL
VIRTIO_PORT_NAME = "com.atp.verifier.0"

# message types
SYNC = "sync"
HELLO = "hello"
WELCOME = "welcome"
REJECT = "reject"
HEARTBEAT = "heartbeat"
RAW_INPUT_EVENT = "raw_input_event"
DEVICES = "devices"
DROPPED = "dropped"
VERIFY_COMMAND = "verify_command"
COMMAND_RESULT = "command_result"
ERROR = "error"
BYE = "bye"

# raw_input_event kinds (``kind``) and the original system's ``event_type``
KIND_KEY = "key"  # keyboard keys (evdev KEY_*, Windows VK)
KIND_BUTTON = "button"  # mouse buttons (BTN_LEFT ...)
KIND_REL = "rel"  # relative axes (REL_X, REL_Y, REL_WHEEL ...)
KIND_ABS = "abs"  # absolute axes (ABS_X, ABS_Y)
EVENT_TYPE_OF_KIND = {KIND_KEY: "keyboard", KIND_BUTTON: "mouse", KIND_REL: "mouse", KIND_ABS: "mouse"}


class ProtocolError(ValueError):
    """A peer sent something that is not a valid message."""


def encode(message: dict[str, Any]) -> bytes:
    """The JSON bytes of one message."""
    if "message_type" not in message:
        raise ProtocolError("a message needs a message_type")
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode(data: bytes | str) -> dict[str, Any]:
    """One message from its JSON bytes; ProtocolError for anything else."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("message_type"), str):
        raise ProtocolError("not a message: a JSON object with a string message_type is required")
    return value


def encode_line(message: dict[str, Any]) -> bytes:
    data = encode(message)
    if len(data) + 1 > MAX_LINE:
        raise ProtocolError(f"message of {len(data)} bytes is longer than a line may be ({MAX_LINE})")
    return data + b"\n"


def encode_frame(message: dict[str, Any]) -> bytes:
    data = encode(message)
    if len(data) > MAX_FRAME:
        raise ProtocolError(f"message of {len(data)} bytes is longer than a frame may be ({MAX_FRAME})")
    return struct.pack(">I", len(data)) + data


class LineDecoder:
    """Splits a byte stream into messages, one per line.

    A bad line is skipped and described in ``errors`` (the caller logs them); the stream goes on.
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._buffer = bytearray()
        self._limit = limit
        self.errors: list[str] = []

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        messages: list[dict[str, Any]] = []
        errors = self.errors
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end]).strip()
            del self._buffer[: end + 1]
            if not line:
                continue
            try:
                messages.append(decode(line))
            except ProtocolError as exc:
                errors.append(str(exc))
        if len(self._buffer) > self._limit:
            self._buffer.clear()
            errors.append(f"line longer than {self._limit} bytes dropped")
        return messages


class FrameDecoder:
    """Splits a byte stream into length-prefixed messages (4-byte big-endian length + JSON)."""

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        messages: list[dict[str, Any]] = []
        while len(self._buffer) >= 4:
            (size,) = struct.unpack(">I", self._buffer[:4])
            if size > self._limit:
                raise ProtocolError(f"frame of {size} bytes announced; at most {self._limit} allowed")
            if len(self._buffer) < 4 + size:
                break
            payload = bytes(self._buffer[4 : 4 + size])
            del self._buffer[: 4 + size]
            messages.append(decode(payload))
        return messages


def raw_input_event(
    kind: str, code: int, value: int, name: str, device: str, timestamp_ms: float, seq: int
) -> dict[str, Any]:
    """An input event as the guest's kernel (or Windows hook) saw it."""
    return {
        "message_type": RAW_INPUT_EVENT,
        "event_type": EVENT_TYPE_OF_KIND[kind],
        "kind": kind,
        "code": int(code),
        "value": int(value),
        "name": name,
        "device": device,
        "timestamp": timestamp_ms,
        "seq": seq,
    }
