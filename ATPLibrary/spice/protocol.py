"""SPICE wire format: constants and struct packing of the link stage and the data headers.

Values follow spice-protocol (``spice/protocol.h``, ``spice/enums.h``); everything on the wire is
little-endian and packed.  Parsers raise :class:`~ATPLibrary.errors.SpiceProtocolError` on short or
malformed input, never ``struct.error``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from ATPLibrary.errors import SpiceError, SpiceProtocolError

MAGIC = b"REDQ"
VERSION_MAJOR = 2
VERSION_MINOR = 2
#: ``SpiceLinkHeader``: magic, major, minor, size of what follows.
LINK_HEADER = struct.Struct("<4sIII")
#: ``SpiceLinkMess``: connection_id, channel_type, channel_id, num_common_caps, num_channel_caps, caps_offset.
LINK_MESS = struct.Struct("<IBBIII")
#: ``SpiceLinkReply`` without its caps: error, 162-byte public key, num_common_caps, num_channel_caps, caps_offset.
PUB_KEY_SIZE = 162
LINK_REPLY = struct.Struct(f"<I{PUB_KEY_SIZE}sIII")
#: The RSA-1024 ciphertext of the ticket.
TICKET_SIZE = 128
#: ``SpiceDataHeader``: serial u64, type u16, size u32, sub_list u32 (18 bytes).
FULL_HEADER = struct.Struct("<QHII")
#: ``SpiceMiniDataHeader``: type u16, size u32 (6 bytes), when both sides announce MINI_HEADER.
MINI_HEADER = struct.Struct("<HI")
#: Refuse link replies and messages beyond these sizes (a garbage size must not allocate gigabytes).
MAX_LINK_REPLY = 64 * 1024
MAX_MESSAGE = 64 * 1024 * 1024


class ChannelType(IntEnum):
    MAIN = 1
    DISPLAY = 2
    INPUTS = 3
    CURSOR = 4
    PLAYBACK = 5
    RECORD = 6
    TUNNEL = 7
    SMARTCARD = 8
    USBREDIR = 9
    PORT = 10
    WEBDAV = 11


class LinkError(IntEnum):
    """``SpiceLinkErr``: the error of a link reply and the 4-byte result after the ticket."""

    OK = 0
    ERROR = 1
    INVALID_MAGIC = 2
    INVALID_DATA = 3
    VERSION_MISMATCH = 4
    NEED_SECURED = 5
    NEED_UNSECURED = 6
    PERMISSION_DENIED = 7
    BAD_CONNECTION_ID = 8
    CHANNEL_NOT_AVAILABLE = 9


#: What each link error means for the person running the test.
LINK_ERROR_HINTS: dict[int, str] = {
    LinkError.ERROR: "the server refused the link (generic error)",
    LinkError.INVALID_MAGIC: "the server did not accept our link header (is this a SPICE port?)",
    LinkError.INVALID_DATA: "the server found our link message invalid",
    LinkError.VERSION_MISMATCH: "the server speaks another SPICE protocol version than 2.2",
    LinkError.NEED_SECURED: "this channel needs TLS: connect to the tlsPort with tls=True",
    LinkError.NEED_UNSECURED: "this channel must not use TLS: connect to the plain port",
    LinkError.PERMISSION_DENIED: "wrong SPICE password (the server keeps at most 59 characters of it)",
    LinkError.BAD_CONNECTION_ID: "the server does not know this session id (the main channel was closed?)",
    LinkError.CHANNEL_NOT_AVAILABLE: "the server has no such channel",
}


class CommonCap(IntEnum):
    PROTOCOL_AUTH_SELECTION = 0
    AUTH_SPICE = 1
    AUTH_SASL = 2
    MINI_HEADER = 3


class MainCap(IntEnum):
    SEMI_SEAMLESS_MIGRATE = 0
    NAME_AND_UUID = 1
    AGENT_CONNECTED_TOKENS = 2
    SEAMLESS_MIGRATE = 3


#: ``SpiceLinkAuthMechanism`` value for the RSA ticket.
AUTH_MECHANISM_SPICE = 1

# -- common messages (every channel); below 101 ---------------------------------------------------
MSG_MIGRATE = 1
MSG_MIGRATE_DATA = 2
MSG_SET_ACK = 3
MSG_PING = 4
MSG_WAIT_FOR_CHANNELS = 5
MSG_DISCONNECTING = 6
MSG_NOTIFY = 7
MSG_LIST = 8
MSG_BASE_LAST = 101

MSGC_ACK_SYNC = 1
MSGC_ACK = 2
MSGC_PONG = 3
MSGC_MIGRATE_FLUSH_MARK = 4
MSGC_MIGRATE_DATA = 5
MSGC_DISCONNECTING = 6

# -- main channel --------------------------------------------------------------------------------
MSG_MAIN_MIGRATE_BEGIN = 101
MSG_MAIN_MIGRATE_CANCEL = 102
MSG_MAIN_INIT = 103
MSG_MAIN_CHANNELS_LIST = 104
MSG_MAIN_MOUSE_MODE = 105
MSG_MAIN_MULTI_MEDIA_TIME = 106
MSG_MAIN_AGENT_CONNECTED = 107
MSG_MAIN_AGENT_DISCONNECTED = 108
MSG_MAIN_AGENT_DATA = 109
MSG_MAIN_AGENT_TOKEN = 110
MSG_MAIN_NAME = 113
MSG_MAIN_UUID = 114
MSG_MAIN_AGENT_CONNECTED_TOKENS = 115

MSGC_MAIN_ATTACH_CHANNELS = 104
MSGC_MAIN_MOUSE_MODE_REQUEST = 105

MOUSE_MODE_SERVER = 1
MOUSE_MODE_CLIENT = 2

# -- inputs channel ------------------------------------------------------------------------------
MSG_INPUTS_INIT = 101
MSG_INPUTS_KEY_MODIFIERS = 102
MSG_INPUTS_MOUSE_MOTION_ACK = 111

MSGC_INPUTS_KEY_DOWN = 101
MSGC_INPUTS_KEY_UP = 102
MSGC_INPUTS_KEY_MODIFIERS = 103
MSGC_INPUTS_MOUSE_MOTION = 111
MSGC_INPUTS_MOUSE_POSITION = 112
MSGC_INPUTS_MOUSE_PRESS = 113
MSGC_INPUTS_MOUSE_RELEASE = 114

#: The server acknowledges every this many motion/position messages (``SPICE_INPUT_MOTION_ACK_BUNCH``).
INPUT_MOTION_ACK_BUNCH = 4

KEYBOARD_MODIFIER_SCROLL_LOCK = 1
KEYBOARD_MODIFIER_NUM_LOCK = 2
KEYBOARD_MODIFIER_CAPS_LOCK = 4


class MouseButton(IntEnum):
    """``SpiceMouseButton``; the button-state mask of button ``n`` is ``1 << (n - 1)``."""

    LEFT = 1
    MIDDLE = 2
    RIGHT = 3
    UP = 4
    DOWN = 5
    SIDE = 6
    EXTRA = 7

    @property
    def mask(self) -> int:
        return 1 << (self.value - 1)


# -- errors --------------------------------------------------------------------------------------


class SpiceConnectError(SpiceError):
    """The SPICE server could not be reached (TCP, TLS) or closed the connection during the link."""


class SpiceTlsError(SpiceConnectError):
    """The TLS handshake failed (certificate not trusted by the given CA, wrong host name, no TLS there)."""


class SpiceLinkError(SpiceError):
    """The server answered the link or the ticket with an error code (``code``: a :class:`LinkError`)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class SpiceAuthError(SpiceLinkError):
    """The ticket was refused (code 7, PERMISSION_DENIED): the password is wrong."""


class SpiceTimeout(SpiceError, TimeoutError):
    """A SPICE wait ran out of time (names what was awaited and the timeout)."""


class SpicePasswordError(SpiceError):
    """A SPICE password breaks a rule (length, NUL, encoding) and was not sent (names the rule, never the password)."""


class SpiceClosedError(SpiceError):
    """The channel is closed (by us, by the server's DISCONNECTING or by a dropped connection)."""


def link_error_name(code: int) -> str:
    try:
        return LinkError(code).name
    except ValueError:
        return "UNKNOWN"


def describe_link_error(code: int) -> str:
    """``"7 (PERMISSION_DENIED: wrong SPICE password ...)"``."""
    hint = LINK_ERROR_HINTS.get(code, "an error code this client does not know")
    return f"{code} ({link_error_name(code)}: {hint})"


# -- link stage ----------------------------------------------------------------------------------


def caps_words(caps: set[int] | frozenset[int]) -> list[int]:
    """Capability bit numbers as the u32 words sent on the wire (none when the set is empty)."""
    if not caps:
        return []
    words = [0] * (max(caps) // 32 + 1)
    for cap in caps:
        if cap < 0:
            raise ValueError(f"capability {cap} is negative")
        words[cap // 32] |= 1 << (cap % 32)
    return words


def caps_from_words(words: list[int] | tuple[int, ...]) -> frozenset[int]:
    return frozenset(i * 32 + bit for i, word in enumerate(words) for bit in range(32) if word >> bit & 1)


def pack_link_header(size: int) -> bytes:
    return LINK_HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, size)


def pack_link_mess(
    connection_id: int,
    channel_type: int,
    channel_id: int,
    common_caps: set[int] | frozenset[int],
    channel_caps: set[int] | frozenset[int],
) -> bytes:
    """Link header + ``SpiceLinkMess`` + capability words, ready to send."""
    common, channel = caps_words(common_caps), caps_words(channel_caps)
    body = LINK_MESS.pack(connection_id, channel_type, channel_id, len(common), len(channel), LINK_MESS.size)
    body += struct.pack(f"<{len(common) + len(channel)}I", *common, *channel)
    return pack_link_header(len(body)) + body


@dataclass(frozen=True)
class LinkHeader:
    major: int
    minor: int
    size: int


def parse_link_header(data: bytes) -> LinkHeader:
    """The server's 16-byte link header; bad magic, version 1 or an absurd size are protocol errors."""
    if len(data) != LINK_HEADER.size:
        raise SpiceProtocolError(f"link reply header: got {len(data)} bytes, need {LINK_HEADER.size}")
    magic, major, minor, size = LINK_HEADER.unpack(data)
    if magic != MAGIC:
        raise SpiceProtocolError(
            f"link reply header: magic {magic!r} is not {MAGIC!r}; the port does not speak SPICE "
            "(or speaks TLS: connect with tls=True to the tlsPort)"
        )
    if major != VERSION_MAJOR:
        raise SpiceProtocolError(f"link reply header: protocol version {major}.{minor}; this client speaks 2.2")
    # An error reply may be as short as its error field.
    if not 4 <= size <= MAX_LINK_REPLY:
        raise SpiceProtocolError(f"link reply header: body size {size} is out of range 4..{MAX_LINK_REPLY}")
    return LinkHeader(major, minor, size)


@dataclass(frozen=True)
class LinkReply:
    error: int
    pub_key: bytes
    common_caps: frozenset[int]
    channel_caps: frozenset[int]


def parse_link_reply(body: bytes) -> LinkReply:
    """``SpiceLinkReply`` with its capability words.  An error reply may carry only the error field."""
    if len(body) < 4:
        raise SpiceProtocolError(f"link reply: {len(body)} bytes, need at least 4 for the error code")
    (error,) = struct.unpack_from("<I", body)
    if error != LinkError.OK:
        return LinkReply(error, b"", frozenset(), frozenset())
    if len(body) < LINK_REPLY.size:
        raise SpiceProtocolError(f"link reply: {len(body)} bytes, need at least {LINK_REPLY.size}")
    error, pub_key, n_common, n_channel, offset = LINK_REPLY.unpack_from(body)
    # caps_offset counts from the start of SpiceLinkReply (the body after the 16-byte header).
    end = offset + 4 * (n_common + n_channel)
    if offset < LINK_REPLY.size - 12 or end > len(body) or n_common > 1024 or n_channel > 1024:
        raise SpiceProtocolError(
            f"link reply: capability words at offset {offset} ({n_common} common, {n_channel} channel) "
            f"do not fit the {len(body)}-byte reply"
        )
    words = struct.unpack_from(f"<{n_common + n_channel}I", body, offset)
    return LinkReply(error, pub_key, caps_from_words(words[:n_common]), caps_from_words(words[n_common:]))


# -- data headers --------------------------------------------------------------------------------


def pack_full_message(serial: int, msg_type: int, payload: bytes) -> bytes:
    return FULL_HEADER.pack(serial, msg_type, len(payload), 0) + payload


def pack_mini_message(msg_type: int, payload: bytes) -> bytes:
    return MINI_HEADER.pack(msg_type, len(payload)) + payload


@dataclass(frozen=True)
class DataHeader:
    msg_type: int
    size: int
    serial: int | None = None
    sub_list: int = 0


def parse_data_header(data: bytes, mini: bool) -> DataHeader:
    """A message header (mini: 6 bytes; full: 18 bytes).  Sizes over MAX_MESSAGE are protocol errors."""
    header = MINI_HEADER if mini else FULL_HEADER
    if len(data) != header.size:
        raise SpiceProtocolError(f"message header: got {len(data)} bytes, need {header.size}")
    if mini:
        msg_type, size = MINI_HEADER.unpack(data)
        parsed = DataHeader(msg_type, size)
    else:
        serial, msg_type, size, sub_list = FULL_HEADER.unpack(data)
        parsed = DataHeader(msg_type, size, serial, sub_list)
    if parsed.size > MAX_MESSAGE:
        raise SpiceProtocolError(f"message type {parsed.msg_type}: size {parsed.size} exceeds {MAX_MESSAGE} bytes")
    if parsed.sub_list and parsed.sub_list > parsed.size:
        raise SpiceProtocolError(
            f"message type {parsed.msg_type}: sub-message list offset {parsed.sub_list} beyond its {parsed.size} bytes"
        )
    return parsed


def unpack(fmt: struct.Struct, payload: bytes, what: str) -> tuple[int, ...]:
    """``fmt.unpack_from(payload)`` that names the message on a short payload."""
    if len(payload) < fmt.size:
        raise SpiceProtocolError(f"{what}: {len(payload)} bytes, need at least {fmt.size}")
    return tuple(fmt.unpack_from(payload))
