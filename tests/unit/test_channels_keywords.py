"""ChannelKeywords (thin): aliases, the current channel, framing per mode, closing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fakes import FakeTarget
from test_channels import FakeDomain

from ATPLibrary.channels import VirtioChannel, open_channel
from ATPLibrary.errors import ChannelError, ChannelTimeout
from ATPLibrary.keywords.channels import ChannelKeywords
from ATPLibrary.keywords.context import LibraryContext


class Lab:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.domains: dict[str, FakeDomain] = {}
        self.ctx = LibraryContext(timeout=timedelta(seconds=1))
        monkeypatch.setattr(self.ctx, "domain", self.target)
        self.keywords = ChannelKeywords(self.ctx, opener=self.open)

    def target(self, vm: str) -> FakeTarget:
        target = FakeTarget(vm)
        target.dom = self.domains.setdefault(vm, FakeDomain())
        return target

    def open(self, target: Any, name: str, **kwargs: Any) -> VirtioChannel:
        return open_channel(target, name, event_loop=lambda: True, **kwargs)


@pytest.fixture()
def lab(monkeypatch: pytest.MonkeyPatch) -> Lab:
    return Lab(monkeypatch)


def test_open_write_read_close_in_line_mode(lab: Lab) -> None:
    kw = lab.keywords
    assert kw.open_channel("vm1", "com.atp.test.0", mode="line") == "vm1:com.atp.test.0"
    stream = lab.domains["vm1"].stream
    kw.write_to_channel("hello")
    assert stream.written == b"hello\n"
    stream.push(b"hello\n")
    assert kw.read_from_channel() == "hello"
    kw.close_channel()
    assert stream.finished == 1
    with pytest.raises(ChannelError, match="No channel is open"):
        kw.write_to_channel("x")


def test_json_mode_returns_the_result_field(lab: Lab) -> None:
    kw = lab.keywords
    kw.open_channel("vm1", "com.atp.test.0", mode="json", alias="agent", send_field="d", receive_field="r")
    kw.write_to_channel("ping")
    stream = lab.domains["vm1"].stream
    assert stream.written == b'{"d": "ping"}\n'
    stream.push(b'{"r": [1, 2]}\n')
    assert kw.read_from_channel(timeout=timedelta(seconds=1)) == [1, 2]


def test_read_timeout_is_bounded(lab: Lab) -> None:
    kw = lab.keywords
    kw.open_channel("vm1", "com.atp.test.0")
    with pytest.raises(ChannelTimeout, match="200 ms"):
        kw.read_from_channel(timeout=timedelta(seconds=0.2))


def test_two_channels_by_alias_and_switching(lab: Lab) -> None:
    kw = lab.keywords
    kw.open_channel("vm1", "com.atp.test.0", alias="a")
    kw.open_channel("vm2", "com.atp.test.0", alias="b")
    kw.write_to_channel("to b")
    kw.write_to_channel("to a", channel="a")
    assert lab.domains["vm2"].stream.written == b"to b"
    assert lab.domains["vm1"].stream.written == b"to a"
    assert kw.switch_channel("a") == "b"
    lab.domains["vm1"].stream.push(b"\x00\x01raw")
    assert kw.read_bytes_from_channel(2, exact=True) == b"\x00\x01"
    assert kw.read_bytes_from_channel() == b"raw"
    with pytest.raises(ChannelError, match="Open channels: a, b"):
        kw.write_to_channel("x", channel="c")
    kw.close_all_channels()
    assert lab.domains["vm1"].stream.finished == 1 and lab.domains["vm2"].stream.finished == 1


def test_opening_an_open_alias_needs_force(lab: Lab) -> None:
    kw = lab.keywords
    kw.open_channel("vm1", "com.atp.test.0")
    with pytest.raises(ChannelError, match="already open"):
        kw.open_channel("vm1", "com.atp.test.0")
    first = lab.domains["vm1"].stream
    kw.open_channel("vm1", "com.atp.test.0", force=True)
    assert first.finished == 1


def test_close_of_an_unknown_alias_does_nothing(lab: Lab) -> None:
    lab.keywords.close_channel("nothing")
    lab.keywords.close_channel()


def test_keyword_names() -> None:
    names = {getattr(m, "robot_name", None) for m in vars(ChannelKeywords).values()}
    assert {
        "Open Channel",
        "Switch Channel",
        "Write To Channel",
        "Read From Channel",
        "Read Bytes From Channel",
        "Close Channel",
        "Close All Channels",
    } <= names
