"""SPICE core without a VM: packing, ticket rules (failure kind 7), sources (failure kind 8), and a fake
asyncio server for the link's error paths (never a hang)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ATPLibrary.errors import ConfigurationError, SpiceProtocolError
from ATPLibrary.input.mouse import PIXEL_KEY, abs_events
from ATPLibrary.keys import DEFAULT_KEYMAP
from ATPLibrary.qmp.monitor import MonitorClient
from ATPLibrary.spice import protocol as p
from ATPLibrary.spice.channel import Endpoint, SpiceChannel
from ATPLibrary.spice.inputs import key_scancodes, scancode_words
from ATPLibrary.spice.protocol import (
    SpiceAuthError,
    SpiceConnectError,
    SpiceLinkError,
    SpicePasswordError,
    SpiceTimeout,
)
from ATPLibrary.spice.sink import client_mode_abs, expected_events
from ATPLibrary.spice.source import SpiceSourceError, target_from_xml
from ATPLibrary.spice.ticket import encrypt_ticket, validate_password

KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
DER = KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def test_link_mess_is_16_byte_header_18_byte_mess_and_caps() -> None:
    data = p.pack_link_mess(7, p.ChannelType.INPUTS, 0, {0, 1, 3}, set())
    magic, major, minor, size = p.LINK_HEADER.unpack_from(data)
    assert (magic, major, minor, size) == (b"REDQ", 2, 2, 18 + 4)
    assert p.LINK_MESS.unpack_from(data, 16) == (7, 3, 0, 1, 0, 18)
    assert struct.unpack_from("<I", data, 34) == (0b1011,)


def test_data_headers_full_18_and_mini_6_bytes() -> None:
    assert len(p.pack_full_message(1, 101, b"ab")) == 18 + 2
    assert p.parse_data_header(p.pack_full_message(9, 104, b"xyz")[:18], mini=False) == p.DataHeader(104, 3, 9, 0)
    assert p.pack_mini_message(3, b"\x01\x02") == b"\x03\x00\x02\x00\x00\x00\x01\x02"
    with pytest.raises(SpiceProtocolError, match="exceeds"):
        p.parse_data_header(struct.pack("<HI", 1, p.MAX_MESSAGE + 1), mini=True)
    with pytest.raises(SpiceProtocolError, match="need 6"):
        p.parse_data_header(b"\x01\x00", mini=True)


def test_link_reply_parsing_and_bad_magic() -> None:
    body = p.LINK_REPLY.pack(0, DER, 1, 1, p.LINK_REPLY.size) + struct.pack("<II", 0b1011, 0b1)
    reply = p.parse_link_reply(body)
    assert reply.common_caps == {0, 1, 3} and reply.channel_caps == {0}
    with pytest.raises(SpiceProtocolError, match="do not fit"):
        p.parse_link_reply(body[:-4])
    with pytest.raises(SpiceProtocolError, match="magic"):
        p.parse_link_header(b"HTTP" + bytes(12))
    assert p.parse_link_reply(struct.pack("<I", 7)).error == 7


@pytest.mark.parametrize("length", [1, 16, 59])
def test_passwords_up_to_59_characters_make_a_ticket_the_key_decrypts(length: int) -> None:
    password = "A" * length
    ticket = encrypt_ticket(password, DER)
    assert len(ticket) == 128
    assert KEY.decrypt(ticket, OAEP) == password.encode() + b"\0"


@pytest.mark.parametrize("length", [60, 61, 127])
def test_failure_kind_7_passwords_of_60_or_more_characters_are_refused_before_use(length: int) -> None:
    password = "S" * length
    with pytest.raises(SpicePasswordError, match=f"has {length} characters; SPICE servers keep at most 59") as err:
        encrypt_ticket(password, DER)
    assert password not in str(err.value)


def test_password_rules_nul_utf8_and_oaep_limit() -> None:
    with pytest.raises(SpicePasswordError, match="NUL"):
        validate_password("a\0b")
    with pytest.raises(SpicePasswordError, match="UTF-8"):
        validate_password("\ud800")
    with pytest.raises(SpicePasswordError, match="86 bytes"):
        validate_password("€" * 29)  # 29 characters, 87 bytes
    assert validate_password("€" * 28) == ("€" * 28).encode() + b"\0"


LIVE = """<domain><devices><graphics type='spice' port='5901' tlsPort='5902' autoport='yes' passwd='pw'>
<listen type='address' address='0.0.0.0'/></graphics></devices></domain>"""


def test_source_live_xml_wildcard_listen_is_the_libvirt_host() -> None:
    target = target_from_xml(LIVE, "qemu+ssh://root@virt-host/system")
    assert (target.host, target.port, target.tls_port, target.password, target.autoport) == (
        "virt-host", 5901, 5902, "pw", True,
    )  # fmt: skip
    assert target_from_xml(LIVE, "qemu:///system").host == "localhost"
    assert "pw" not in repr(target)


def test_failure_kind_8_port_minus_1_is_not_assigned_and_autoport_is_yes_or_no() -> None:
    inactive = (
        "<domain><devices><graphics type='spice' port='-1' autoport='yes' listen='127.0.0.1'/></devices></domain>"
    )
    with pytest.raises(SpiceSourceError, match="not assigned yet"):
        target_from_xml(inactive)
    with pytest.raises(SpiceSourceError, match="autoport takes only 'yes' or 'no'"):
        target_from_xml(inactive.replace("'yes'", "'true'"))
    assert target_from_xml(inactive.replace("'-1'", "'5901'")).port == 5901
    assert target_from_xml(inactive.replace("'-1'", "'5901'").replace("'yes'", "'no'")).autoport is False


def test_scancodes_from_the_key_map() -> None:
    up = DEFAULT_KEYMAP.get("up")
    assert scancode_words(key_scancodes(up, True)) == [0x48E0]
    assert scancode_words(key_scancodes(up, False)) == [0xC8E0]
    a = DEFAULT_KEYMAP.get("a")
    assert scancode_words(key_scancodes(a, False)) == [0x1E | 0x80]
    assert scancode_words(key_scancodes(DEFAULT_KEYMAP.get("print"), True)) == [0x37E02AE0]
    pause = DEFAULT_KEYMAP.get("pause")
    assert (key_scancodes(pause, True), key_scancodes(pause, False)) == (b"\xe0\x46", b"\xe0\xc6")


def test_abs_events_carry_pixels_qmp_drops_them_spice_expects_qemu_scaling() -> None:
    events = abs_events(100, 200, (123, 321, 720, 400))
    sent: list[dict[str, object]] = []

    class Fake(MonitorClient):
        def __init__(self) -> None:
            pass

        def execute(self, command: str, arguments: object = None) -> object:
            sent.append({"command": command, "arguments": arguments})
            return {}

    Fake().send_input_events(events)
    assert all(PIXEL_KEY not in e for e in sent[0]["arguments"]["events"])  # type: ignore[index]
    expected = expected_events(events)
    assert [e["data"]["value"] for e in expected] == [5597, 26295]  # 123*32767//720, 321*32767//400
    assert client_mode_abs(719, 720) == 32721 and client_mode_abs(5, 10) == 5 * 32767 // 16


# -- a fake server: the link's error paths end with clear errors, never a hang ---------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _with_server(handler: Handler, password: str = "pw", timeout: float = 2.0) -> SpiceChannel:
    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client gave up first: that is what some cases test
        finally:
            writer.close()

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = SpiceChannel(Endpoint("127.0.0.1", port), p.ChannelType.MAIN)
    try:
        await channel.connect(password, timeout)
    finally:
        server.close()
    return channel


def _reply(error: int = 0) -> bytes:
    body = p.LINK_REPLY.pack(error, DER, 1, 0, p.LINK_REPLY.size) + struct.pack("<I", 0b1011)
    return p.pack_link_header(len(body)) + body


def _server(reply: bytes, result: int | None = 0, hang: bool = False) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(16 + 18 + 4)
        writer.write(reply)
        await writer.drain()
        if hang:
            await asyncio.sleep(10)
        if result is None:
            return  # the connection closes here
        await reader.readexactly(4 + 128)
        if result is not None:
            writer.write(struct.pack("<I", result))
        await writer.drain()

    return handler


def test_fake_server_link_codes_truncation_bad_magic_and_timeout() -> None:
    with pytest.raises(SpiceAuthError, match=r"error 7 \(PERMISSION_DENIED"):
        asyncio.run(_with_server(_server(_reply(), 7)))
    with pytest.raises(SpiceLinkError, match=r"5 \(NEED_SECURED"):
        asyncio.run(_with_server(_server(p.pack_link_header(4) + struct.pack("<I", 5), None)))
    with pytest.raises(SpiceConnectError, match="after 20 of 182 bytes of the link reply"):
        asyncio.run(_with_server(_server(_reply()[:36], None)))
    with pytest.raises(SpiceProtocolError, match="magic"):
        asyncio.run(_with_server(_server(b"XXXX" + _reply()[4:], None)))
    with pytest.raises(SpiceTimeout, match=r"within 0\.5 s"):
        asyncio.run(_with_server(_server(_reply()[:30], None, hang=True), timeout=0.5))
    channel = asyncio.run(_with_server(_server(_reply(), 0)))
    assert channel.mini_header


# -- after the link: what the server sends next ends with a clear error, never a hang ------------------------


def _linked_server(after: Handler) -> Handler:
    """A server that links (mini header offered, ticket accepted) and then runs ``after``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _server(_reply(), 0)(reader, writer)
        await after(reader, writer)

    return handler


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []

    async def on_message(self, msg_type: int, payload: bytes) -> None:
        self.messages.append((msg_type, payload))


async def _run_linked(after: Handler, wait_for: float = 2.0) -> tuple[SpiceChannel, _Recorder, float]:
    """Link to a fake server running ``after``, start the message loop and wait (bounded) until it stops.
    Returns the channel, what reached the handler, and how long the wait took."""
    done = asyncio.Event()

    async def after_then_hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await after(reader, writer)
        await done.wait()  # keep the connection open until the client saw what it was sent

    server = await asyncio.start_server(_linked_server(after_then_hold), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = SpiceChannel(Endpoint("127.0.0.1", port), p.ChannelType.MAIN)
    recorder = _Recorder()
    loop = asyncio.get_running_loop()
    try:
        await channel.connect("pw", 2.0)
        channel.start(recorder)
        started = loop.time()
        with pytest.raises(p.SpiceClosedError) as stopped:
            await channel.wait(asyncio.Event(), wait_for, "a message that never comes")
        assert "stopped while waiting for a message that never comes" in str(stopped.value)
        return channel, recorder, loop.time() - started
    finally:
        done.set()
        await channel.close(1.0)
        server.close()


def test_a_truncated_message_after_the_link_stops_the_channel_naming_the_bytes() -> None:
    async def truncated(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(p.pack_mini_message(p.MSG_PING, b"\x01" * 12)[:6] + b"\x00" * 5)  # 5 of 12 payload bytes
        await writer.drain()
        writer.close()

    channel, recorder, took = asyncio.run(_run_linked(truncated))
    assert isinstance(channel.error, SpiceConnectError)
    assert f"after 5 of 12 bytes of message {p.MSG_PING}" in str(channel.error)
    assert recorder.messages == [] and took < 1.5
    with pytest.raises(SpiceConnectError, match="after 5 of 12 bytes"):
        channel.check_open()


def test_a_truncated_common_message_payload_is_a_protocol_error() -> None:
    async def short_ping(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(p.pack_mini_message(p.MSG_PING, b"\x01\x02\x03"))  # PING needs 12 bytes
        await writer.drain()

    channel, _recorder, _took = asyncio.run(_run_linked(short_ping))
    assert isinstance(channel.error, SpiceProtocolError) and "PING" in str(channel.error), channel.error


def test_disconnecting_from_the_server_stops_the_channel_with_its_reason() -> None:
    async def disconnecting(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reply = struct.pack("<IIQ", 7, 1, 99)  # a channel message first: it reaches the handler
        writer.write(p.pack_mini_message(p.MSG_BASE_LAST + 2, reply))
        writer.write(p.pack_mini_message(p.MSG_DISCONNECTING, struct.pack("<QI", 123, 7)))
        writer.write(p.pack_mini_message(p.MSG_BASE_LAST + 3, b"after"))  # never handled
        await writer.drain()

    channel, recorder, took = asyncio.run(_run_linked(disconnecting))
    assert isinstance(channel.error, p.SpiceClosedError)
    assert "the server disconnected (reason 7 (PERMISSION_DENIED" in str(channel.error)
    assert [t for t, _ in recorder.messages] == [p.MSG_BASE_LAST + 2] and took < 1.5


def test_ping_gets_its_pong_and_set_ack_its_ack_sync() -> None:
    got: dict[str, bytes] = {}

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(p.pack_mini_message(p.MSG_SET_ACK, struct.pack("<II", 42, 1)))
        writer.write(p.pack_mini_message(p.MSG_PING, struct.pack("<IQ", 5, 77)))
        await writer.drain()
        got["ack_sync"] = await reader.readexactly(6 + 4)
        got["ack"] = await reader.readexactly(6)  # window 1: the PING is counted (ACK) before it is handled
        got["pong"] = await reader.readexactly(6 + 12)
        writer.close()

    asyncio.run(_run_linked(talk))
    assert got["ack_sync"] == p.pack_mini_message(p.MSGC_ACK_SYNC, struct.pack("<I", 42))
    assert got["pong"] == p.pack_mini_message(p.MSGC_PONG, struct.pack("<IQ", 5, 77))
    assert got["ack"] == p.pack_mini_message(p.MSGC_ACK, b"")


def test_a_silent_server_after_the_link_fails_within_the_session_timeout() -> None:
    import threading
    import time

    from ATPLibrary.spice.session import SpiceSession

    stop = threading.Event()
    ready = threading.Event()
    port: list[int] = []

    def serve() -> None:
        async def main() -> None:
            async def silent(_r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
                while not stop.is_set():
                    await asyncio.sleep(0.05)

            server = await asyncio.start_server(_linked_server(silent), "127.0.0.1", 0)
            port.append(server.sockets[0].getsockname()[1])
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            server.close()
            await asyncio.sleep(0.2)  # the handlers see stop and end before the loop does

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(5)
    session = SpiceSession(Endpoint("127.0.0.1", port[0]), "pw", timeout=0.6, name="silent", display=False)
    started = time.monotonic()
    try:
        with pytest.raises(SpiceTimeout, match=r"MAIN_INIT did not come within 0\.\d+ s"):
            session.open()
    finally:
        stop.set()
        thread.join(5)
    assert time.monotonic() - started < 2.0
    assert session.closed


def test_open_spice_session_refuses_a_plain_password_without_repeating_it() -> None:
    from ATPLibrary import ATPLibrary

    library = ATPLibrary(run_on_failure="NONE")
    with pytest.raises(ConfigurationError) as excinfo:
        library.run_keyword("Open SPICE Session", [], {"host": "127.0.0.1", "port": 1, "password": "Plain-S3cret"})
    assert "must be a Robot Framework Secret" in str(excinfo.value) and "Plain-S3cret" not in str(excinfo.value)


def test_open_spice_session_refuses_ca_file_without_tls() -> None:
    from ATPLibrary import ATPLibrary

    library = ATPLibrary(run_on_failure="NONE")
    with pytest.raises(ConfigurationError, match="ca_file= is only used with tls=True"):
        library.run_keyword("Open SPICE Session", [], {"host": "127.0.0.1", "port": 1, "ca_file": "/tmp/ca.pem"})
