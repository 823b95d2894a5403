"""Virtio-serial channels over a fake libvirt stream (callbacks fired as libvirt's event-loop thread would)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import libvirt
import pytest
from fakes import FakeTarget, libvirt_error

from ATPLibrary.channels import ChannelBuffer, ChannelMode, VirtioChannel, domain_channels, open_channel
from ATPLibrary.channels.channel import IO_CHUNK
from ATPLibrary.errors import (
    ChannelBusyError,
    ChannelClosedError,
    ChannelError,
    ChannelProtocolError,
    ChannelTimeout,
    ConfigurationError,
)

READABLE = libvirt.VIR_STREAM_EVENT_READABLE
HANGUP = libvirt.VIR_STREAM_EVENT_HANGUP

XML = """<domain type='kvm'><name>desk-7</name><devices>
  <channel type='unix'>
    <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-3-desk-7/org.qemu.guest_agent.0'/>
    <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/><alias name='channel0'/>
  </channel>
  <channel type='unix'>
    <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-3-desk-7/com.atp.test.0'/>
    <target type='virtio' name='com.atp.test.0' state='{state}'/><alias name='channel1'/>
  </channel>
  <channel type='pty'><target type='virtio' name='com.atp.pty.0'/><alias name='channel2'/></channel>
  <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
  <console type='pty'><target type='serial' port='0'/></console>
</devices></domain>"""


class FakeStream:
    """A NONBLOCK virStream: ``push`` queues guest data and fires the callback like the event loop does."""

    def __init__(self) -> None:
        self.incoming: deque[bytes] = deque()
        self.eof = False
        self.sent: list[bytes] = []
        self.send_results: deque[int] = deque()  # e.g. -2 (would block) or a short count, used first
        self.cb: Callable[[Any, int, Any], None] | None = None
        self.events = 0
        self.removed = 0
        self.finished = 0
        self.aborted = 0
        self.finish_error: BaseException | None = None
        self.recv_error: BaseException | None = None
        self.send_error: BaseException | None = None
        self.lock = threading.Lock()

    def recv(self, nbytes: int) -> bytes | int:
        if self.recv_error is not None:
            raise self.recv_error
        with self.lock:
            if not self.incoming:
                return b"" if self.eof else -2
            data = self.incoming.popleft()
            if len(data) > nbytes:
                self.incoming.appendleft(data[nbytes:])
                data = data[:nbytes]
            return data

    def send(self, data: bytes) -> int:
        if self.send_error is not None:
            raise self.send_error
        if self.send_results:
            result = self.send_results.popleft()
            if result <= 0:
                return result
            data = data[:result]
        self.sent.append(bytes(data))
        return len(data)

    def eventAddCallback(self, events: int, cb: Callable[[Any, int, Any], None], opaque: Any) -> None:
        self.events, self.cb = events, cb

    def eventRemoveCallback(self) -> int:
        self.removed += 1
        self.cb = None
        return 0

    def finish(self) -> int:
        self.finished += 1
        if self.finish_error is not None:
            raise self.finish_error
        return 0

    def abort(self) -> int:
        self.aborted += 1
        return 0

    # -- test side -----------------------------------------------------------------------------------------
    def fire(self, events: int = READABLE) -> None:
        if self.cb is not None:
            self.cb(self, events, None)

    def push(self, *chunks: bytes) -> None:
        with self.lock:
            self.incoming.extend(chunks)
        self.fire()

    def end(self) -> None:
        self.eof = True
        self.fire(READABLE | HANGUP)

    def push_later(self, delay: float, *chunks: bytes) -> threading.Timer:
        timer = threading.Timer(delay, self.push, chunks)
        timer.start()
        return timer

    @property
    def written(self) -> bytes:
        return b"".join(self.sent)


class FakeConn:
    def __init__(self, stream: FakeStream) -> None:
        self.stream = stream
        self.flags: list[int] = []

    def newStream(self, flags: int) -> FakeStream:
        self.flags.append(flags)
        return self.stream


class FakeDomain:
    def __init__(self, state: str = "connected", busy: bool = False) -> None:
        self.stream = FakeStream()
        self.conn = FakeConn(self.stream)
        self.state = state
        self.busy = busy
        self.opened: list[tuple[str, int]] = []

    def XMLDesc(self, flags: int) -> str:
        return XML.replace("{state}", self.state)

    def connect(self) -> FakeConn:
        return self.conn

    def openChannel(self, name: str, st: FakeStream, flags: int) -> int:
        if self.busy and not flags & libvirt.VIR_DOMAIN_CHANNEL_FORCE:
            raise libvirt_error(
                libvirt.VIR_ERR_OPERATION_FAILED, "operation failed: Active channel stream exists for this domain"
            )
        self.opened.append((name, flags))
        return 0


def make(
    domain: FakeDomain | None = None, name: str = "com.atp.test.0", **kwargs: Any
) -> tuple[VirtioChannel, FakeDomain, FakeStream]:
    domain = domain or FakeDomain()
    target = FakeTarget("desk-7", "qemu+ssh://root@hv1/system")
    target.dom = domain
    force = kwargs.pop("force", False)
    channel = open_channel(target, name, force=force, event_loop=lambda: True, **kwargs)
    return channel, domain, domain.stream


# -- opening ---------------------------------------------------------------------------------------------------


def test_open_uses_a_nonblocking_stream_and_watches_it() -> None:
    channel, domain, stream = make()
    assert domain.conn.flags == [libvirt.VIR_STREAM_NONBLOCK]
    assert domain.opened == [("com.atp.test.0", 0)]
    assert stream.cb is not None and stream.events & READABLE and stream.events & HANGUP
    assert channel.is_open and channel.info is not None and channel.info.type == "unix"
    assert "desk-7" in repr(channel)


def test_open_by_alias_works() -> None:
    _, domain, _ = make(name="channel1")
    assert domain.opened == [("channel1", 0)]


def test_busy_channel_is_a_clear_error_and_force_takes_it_over() -> None:
    with pytest.raises(ChannelBusyError) as info:
        make(FakeDomain(busy=True))
    message = str(info.value)
    assert "already open by another client" in message and "force=True" in message and "desk-7" in message
    channel, domain, _ = make(FakeDomain(busy=True), force=True)
    assert domain.opened == [("com.atp.test.0", libvirt.VIR_DOMAIN_CHANNEL_FORCE)]
    assert channel.is_open


def test_busy_open_aborts_the_unused_stream() -> None:
    domain = FakeDomain(busy=True)
    with pytest.raises(ChannelBusyError):
        make(domain)
    assert domain.stream.aborted == 1


def test_unknown_channel_lists_the_domains_channels() -> None:
    with pytest.raises(ChannelError) as info:
        make(name="com.atp.nope.0")
    message = str(info.value)
    assert "no virtio channel 'com.atp.nope.0'" in message and "desk-7" in message
    assert "com.atp.test.0 (unix)" in message and "com.atp.pty.0 (pty)" in message


@pytest.mark.parametrize(("name", "kind"), [("com.atp.pty.0", "pty"), ("com.redhat.spice.0", "spicevmc")])
def test_non_unix_channels_fail_naming_the_type(name: str, kind: str) -> None:
    domain = FakeDomain()
    with pytest.raises(ChannelError) as info:
        make(domain, name=name)
    assert f"type '{kind}'" in str(info.value) and "only unix" in str(info.value)
    assert domain.opened == []


def test_the_guest_agent_channel_is_refused() -> None:
    with pytest.raises(ChannelError, match="guest agent"):
        make(name="org.qemu.guest_agent.0")


def test_no_event_loop_is_a_clear_error() -> None:
    target = FakeTarget("desk-7")
    target.dom = FakeDomain()
    with pytest.raises(ChannelError, match="event loop"):
        open_channel(target, "com.atp.test.0", event_loop=lambda: False)


def test_bad_mode_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="raw, line or json"):
        VirtioChannel(FakeTarget(), "x", mode="xml")


def test_domain_channels_parses_types_states_and_paths() -> None:
    channels = {c.name: c for c in domain_channels(XML.replace("{state}", "disconnected"))}
    assert set(channels) == {"org.qemu.guest_agent.0", "com.atp.test.0", "com.atp.pty.0", "com.redhat.spice.0"}
    test = channels["com.atp.test.0"]
    assert (test.type, test.alias, test.state) == ("unix", "channel1", "disconnected")
    assert test.source_path and test.source_path.endswith("com.atp.test.0")


# -- reading ---------------------------------------------------------------------------------------------------


def test_partial_lines_are_joined() -> None:
    channel, _, stream = make()
    stream.push(b"hel")
    stream.push(b"lo\nwor", b"ld\n", b"tail")
    assert channel.read_line(1) == b"hello\n"
    assert channel.read_line(1) == b"world\n"
    assert channel.buffer.pending == 4


def test_read_line_waits_for_data_from_the_event_thread() -> None:
    channel, _, stream = make()
    stream.push_later(0.1, b"par")
    stream.push_later(0.2, b"tial\n")
    start = time.monotonic()
    assert channel.read_line(5) == b"partial\n"
    assert time.monotonic() - start < 2


def test_read_line_timeout_fails_within_its_bound_and_keeps_the_partial_line() -> None:
    channel, _, stream = make(FakeDomain(state="disconnected"))
    stream.push(b"no newline yet")
    start = time.monotonic()
    with pytest.raises(ChannelTimeout) as info:
        channel.read_line(0.3)
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 0.8
    message = str(info.value)
    assert "com.atp.test.0" in message and "desk-7" in message and "300 ms" in message
    assert "no newline yet" in message and "nothing in the guest has /dev/virtio-ports/com.atp.test.0 open" in message
    assert info.value.partial == b"no newline yet"
    stream.push(b"!\n")
    assert channel.read_line(1) == b"no newline yet!\n"


def test_read_returns_what_is_there_and_read_exactly_waits() -> None:
    channel, _, stream = make()
    stream.push(b"abc")
    assert channel.read(10, 1) == b"abc"
    stream.push(b"12")
    stream.push_later(0.1, b"345")
    assert channel.read_exactly(4, 2) == b"1234"
    assert channel.read(10, 1) == b"5"
    with pytest.raises(ChannelTimeout, match="any data"):
        channel.read(10, 0.05)


def test_line_longer_than_the_limit_is_a_protocol_error() -> None:
    channel, _, stream = make(line_limit=10)
    stream.push(b"x" * 25)
    with pytest.raises(ChannelProtocolError, match="longer than 10 bytes"):
        channel.read_line(1)
    stream.push(b"\nok\n")
    assert channel.read_line(1, limit=100) == b"x" * 15 + b"\n"
    assert channel.read_line(1) == b"ok\n"


def test_end_of_stream_gives_the_rest_then_closed_errors() -> None:
    channel, _, stream = make()
    stream.push(b"last line\nrest")
    stream.end()
    assert stream.removed == 1  # callback removed at once (no busy loop on a hung-up stream)
    assert channel.read_line(1) == b"last line\n"
    assert channel.read_line(1) == b"rest"
    with pytest.raises(ChannelClosedError, match="end of stream"):
        channel.read_line(1)
    with pytest.raises(ChannelClosedError):
        channel.write(b"x")
    channel.close()
    assert stream.removed == 1 and stream.finished == 1


def test_a_failing_recv_closes_the_channel_with_the_reason() -> None:
    channel, _, stream = make()
    stream.recv_error = libvirt_error(libvirt.VIR_ERR_RPC, "stream had I/O failure")
    stream.fire()
    with pytest.raises(ChannelClosedError, match="stream had I/O failure"):
        channel.read(1, 1)


def test_many_lines_from_another_thread_arrive_intact_and_in_order() -> None:
    channel, _, stream = make()
    lines = [f"{i:04d}:".encode() + b"y" * 96 + b"\n" for i in range(200)]
    blob = b"".join(lines)

    def producer() -> None:
        for start in range(0, len(blob), 577):
            stream.push(blob[start : start + 577])

    thread = threading.Thread(target=producer)
    thread.start()
    got = [channel.read_line(5) for _ in lines]
    thread.join()
    assert got == lines


def test_buffer_drops_the_oldest_bytes_past_its_cap() -> None:
    buffer = ChannelBuffer("t", max_size=10)
    buffer.feed(b"0123456789")
    buffer.feed(b"abc")
    assert buffer.dropped == 3 and buffer.received == 13
    assert buffer.read(100, 0.1) == b"3456789abc"


# -- writing and framing ---------------------------------------------------------------------------------------


def test_raw_write_sends_bytes_as_they_are_in_chunks() -> None:
    channel, _, stream = make()
    assert channel.write("héllo") == len("héllo".encode())
    assert stream.written == "héllo".encode()
    big = bytes(range(256)) * 1000
    stream.sent.clear()
    channel.write(big)
    assert stream.written == big and max(len(s) for s in stream.sent) <= IO_CHUNK


def test_write_retries_would_block_and_short_writes() -> None:
    channel, _, stream = make()
    stream.send_results.extend([-2, -2, 3, -2])
    channel.write(b"abcdefgh")
    assert stream.written == b"abcdefgh" and stream.sent[0] == b"abc"


def test_write_that_never_gets_through_times_out() -> None:
    channel, _, stream = make()
    stream.send_results.extend([-2] * 100000)
    start = time.monotonic()
    with pytest.raises(ChannelTimeout, match="Could not write"):
        channel.write(b"x", timeout=0.2)
    assert time.monotonic() - start < 1


def test_a_failing_send_closes_the_channel() -> None:
    channel, _, stream = make()
    stream.send_error = libvirt_error(libvirt.VIR_ERR_RPC, "stream had I/O failure")
    with pytest.raises(ChannelClosedError, match="I/O failure"):
        channel.write(b"x")
    assert not channel.is_open


def test_line_mode_adds_a_newline_and_receive_strips_it() -> None:
    channel, _, stream = make(mode="line")
    channel.send("ping")
    channel.send("pong\n")
    assert stream.written == b"ping\npong\n"
    stream.push(b"reply\r\n")
    assert channel.receive(1) == "reply"


def test_raw_mode_receive_returns_a_line() -> None:
    channel, _, stream = make(mode=ChannelMode.RAW)
    channel.send(b"no newline")
    assert stream.written == b"no newline"
    stream.push(b"one\ntwo\n")
    assert channel.receive(1) == "one" and channel.receive(1) == "two"


def test_json_mode_frames_data_and_returns_the_result() -> None:
    channel, _, stream = make(mode="json")
    assert channel.send("héllo") == '{"data": "héllo"}\n'.encode()
    stream.push(b'\n{"result": {"rc": 0, "out": "ok"}}\n')
    assert channel.receive(1) == {"rc": 0, "out": "ok"}


def test_json_mode_field_names_are_configurable() -> None:
    channel, _, stream = make(mode="json", send_field="cmd", receive_field="answer")
    channel.send("x")
    assert stream.written == b'{"cmd": "x"}\n'
    stream.push(b'{"result": 1}\n{"answer": 2}\n')
    with pytest.raises(ChannelProtocolError, match="without the field 'answer'"):
        channel.receive(1)
    assert channel.receive(1) == 2


def test_json_mode_rejects_lines_that_are_not_json() -> None:
    channel, _, stream = make(mode="json")
    stream.push(b"hello\n")
    with pytest.raises(ChannelProtocolError, match="not JSON"):
        channel.receive(1)


def test_json_mode_receive_timeout_names_the_field_and_the_whole_timeout() -> None:
    channel, _, stream = make(mode="json")
    stream.push(b'{"resu')
    with pytest.raises(ChannelTimeout) as info:
        channel.receive(0.2)
    assert "'result' reply" in str(info.value) and "200 ms" in str(info.value)
    assert info.value.partial == b'{"resu'


def test_json_mode_rejects_binary_data() -> None:
    channel, _, _ = make(mode="json")
    with pytest.raises(ConfigurationError, match="UTF-8"):
        channel.send(b"\xff\xfe")


# -- closing ---------------------------------------------------------------------------------------------------


def test_close_removes_the_callback_finishes_and_is_idempotent() -> None:
    channel, _, stream = make()
    channel.close()
    channel.close()
    assert stream.removed == 1 and stream.finished == 1 and stream.aborted == 0
    assert not channel.is_open
    with pytest.raises(ChannelClosedError):
        channel.read_line(1)
    with pytest.raises(ChannelClosedError):
        channel.write(b"x")


def test_close_aborts_when_finish_fails() -> None:
    channel, _, stream = make()
    stream.finish_error = libvirt_error(libvirt.VIR_ERR_RPC, "stream had I/O failure")
    channel.close()
    assert stream.finished == 1 and stream.aborted == 1


def test_context_manager_closes() -> None:
    channel, _, stream = make()
    with channel:
        pass
    assert stream.finished == 1


def test_a_blocked_reader_is_woken_by_close() -> None:
    channel, _, _ = make()
    threading.Timer(0.1, channel.close).start()
    start = time.monotonic()
    with pytest.raises(ChannelClosedError, match="closed by the test"):
        channel.buffer.read_line(5)
    assert time.monotonic() - start < 2
