"""Verification agent, Linux capture: packed ``struct input_event`` records through pipes standing in for
``/dev/input/event*`` (the opening, probing and listing functions are injected), fake ioctls for classification."""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ATPLibrary.agent import linux, names
from ATPLibrary.agent.capture import NO_READABLE_DEVICES
from ATPLibrary.verification import protocol

pytestmark = pytest.mark.timeout(30)

EV_MSC, MSC_SCAN = 4, 4


def record(type_: int, code: int, value: int, sec: int = 1700000000, usec: int = 250000) -> bytes:
    return struct.pack(linux.EVENT_FORMAT, sec, usec, type_, code, value)


def syn(code: int = names.SYN_REPORT) -> bytes:
    return record(names.EV_SYN, code, 0)


class Collector:
    """The capture's emit callback: collects every message, lets a test wait for some."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.batches = 0
        self._cond = threading.Condition()

    def __call__(self, messages: list[dict[str, Any]]) -> None:
        with self._cond:
            self.batches += 1
            self.messages.extend(messages)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self.messages), timeout), self.messages[-10:]

    def of(self, message_type: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["message_type"] == message_type]


class FakeDevices:
    """Paths → pipes; ``write`` feeds a device; ``remove`` closes its writer (the reader sees end of file)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.writers: dict[str, int] = {}
        self.readers: list[int] = []
        self.info: dict[str, tuple[str, list[str]]] = {}
        self._fd_path: dict[int, str] = {}

    def add(self, path: str, name: str = "QEMU Virtio Keyboard", classes: list[str] | None = None) -> None:
        self.paths.append(path)
        self.info[path] = (name, classes if classes is not None else ["keyboard"])

    def list(self) -> list[str]:
        return list(self.paths)

    def open(self, path: str) -> int:
        r, w = os.pipe()
        os.set_blocking(r, False)
        self.writers[path] = w
        self.readers.append(r)
        self._fd_path[r] = path
        return r

    def probe(self, fd: int) -> tuple[str, list[str]]:
        return self.info[self._fd_path[fd]]

    def write(self, path: str, data: bytes) -> None:
        os.write(self.writers[path], data)

    def remove(self, path: str) -> None:
        self.paths.remove(path)
        os.close(self.writers.pop(path))

    def close(self) -> None:
        for w in self.writers.values():
            os.close(w)


@pytest.fixture
def devices() -> Iterator[FakeDevices]:
    fake = FakeDevices()
    yield fake
    fake.close()


def start_capture(devices: FakeDevices, **kwargs: Any) -> tuple[linux.LinuxCapture, Collector]:
    capture = linux.LinuxCapture(
        list_devices=devices.list,
        open_device=devices.open,
        probe=devices.probe,
        rescan_interval=kwargs.pop("rescan_interval", 0.1),
        raise_priority=False,
        **kwargs,
    )
    collector = Collector()
    capture.start(collector)
    return capture, collector


# -- decoding ------------------------------------------------------------------------------------------------------


def test_key_button_rel_and_abs_records_become_named_raw_input_events(devices: FakeDevices) -> None:
    devices.add("/dev/input/event2")
    capture, got = start_capture(devices)
    try:
        assert capture.ready and capture.error is None
        devices.write(
            "/dev/input/event2",
            record(EV_MSC, MSC_SCAN, 0x1E)  # MSC_SCAN is not reported
            + record(names.EV_KEY, 30, 1, usec=500000)
            + syn()
            + record(names.EV_KEY, 30, 0)
            + record(names.EV_KEY, names.BTN_LEFT, 1)
            + record(names.EV_REL, names.REL_X, -5)
            + record(names.EV_REL, names.REL_WHEEL, 1)
            + record(names.EV_ABS, names.ABS_Y, 32767)
            + syn(),
        )
        got.wait_for(lambda m: len(m) >= 6)
    finally:
        capture.stop()
    events = got.of(protocol.RAW_INPUT_EVENT)
    assert [(e["kind"], e["code"], e["value"], e["name"]) for e in events] == [
        ("key", 30, 1, "KEY_A"),
        ("key", 30, 0, "KEY_A"),
        ("button", 0x110, 1, "BTN_LEFT"),
        ("rel", 0, -5, "REL_X"),
        ("rel", 8, 1, "REL_WHEEL"),
        ("abs", 1, 32767, "ABS_Y"),
    ]
    first = events[0]
    assert first == protocol.raw_input_event("key", 30, 1, "KEY_A", "/dev/input/event2", 1700000000500.0, 1)
    assert first["event_type"] == "keyboard" and events[2]["event_type"] == "mouse"
    assert [e["seq"] for e in events] == list(range(1, 7))


def test_a_burst_is_read_in_few_large_reads_and_nothing_is_lost(devices: FakeDevices) -> None:
    devices.add("/dev/input/event2")
    capture, got = start_capture(devices)
    burst = b"".join(record(names.EV_KEY, 30 + i % 20, v) + syn() for i in range(300) for v in (1, 0))
    try:
        devices.write("/dev/input/event2", burst)  # 1200 records, 28800 bytes, in one go
        got.wait_for(lambda m: len(m) >= 600)
    finally:
        capture.stop()
    events = got.of(protocol.RAW_INPUT_EVENT)
    assert len(events) == 600
    assert [e["code"] for e in events[:4]] == [30, 30, 31, 31]
    # 64 records per read: 1200 records need about 19 reads, not one per event
    assert capture.counters.reads <= 40
    assert got.batches <= 20


def test_a_record_split_across_reads_is_reassembled(devices: FakeDevices) -> None:
    devices.add("/dev/input/event2")
    capture, got = start_capture(devices)
    data = record(names.EV_KEY, 28, 1)
    try:
        devices.write("/dev/input/event2", data[:10])
        time.sleep(0.2)
        devices.write("/dev/input/event2", data[10:])
        got.wait_for(lambda m: len(m) >= 1)
    finally:
        capture.stop()
    assert got.messages[0]["name"] == "KEY_ENTER" and got.messages[0]["code"] == 28


def test_syn_dropped_is_reported_and_events_up_to_the_next_syn_report_are_skipped(devices: FakeDevices) -> None:
    devices.add("/dev/input/event2")
    capture, got = start_capture(devices)
    try:
        devices.write(
            "/dev/input/event2",
            record(names.EV_KEY, 30, 1)
            + syn(names.SYN_DROPPED)
            + record(names.EV_KEY, 48, 1)  # partial packet after the drop: skipped
            + syn()
            + record(names.EV_KEY, 46, 1)
            + syn(),
        )
        got.wait_for(lambda m: any(x.get("name") == "KEY_C" for x in m))
    finally:
        capture.stop()
    kinds = [(m["message_type"], m.get("name")) for m in got.messages]
    assert kinds == [("raw_input_event", "KEY_A"), ("dropped", None), ("raw_input_event", "KEY_C")]
    dropped = got.of(protocol.DROPPED)[0]
    assert dropped["device"] == "/dev/input/event2" and "SYN_DROPPED" in dropped["reason"]
    assert dropped["device_name"] == "QEMU Virtio Keyboard"
    assert capture.counters.drops == 1


def test_verifiers_filter_kinds(devices: FakeDevices) -> None:
    devices.add("/dev/input/event3", "QEMU Virtio Mouse", ["mouse"])
    capture, got = start_capture(devices, kinds=[protocol.KIND_KEY])
    try:
        devices.write(
            "/dev/input/event3",
            record(names.EV_REL, 0, 3) + record(names.EV_KEY, names.BTN_LEFT, 1) + record(names.EV_KEY, 2, 1),
        )
        got.wait_for(lambda m: len(m) >= 1)
        time.sleep(0.1)
    finally:
        capture.stop()
    assert [(m["kind"], m["name"]) for m in got.messages] == [("key", "KEY_1")]


# -- devices -------------------------------------------------------------------------------------------------------


def test_no_readable_device_is_a_clear_error_not_silence(devices: FakeDevices, caplog: Any) -> None:
    """Failure kind 11: a reader without permission must say so, not see nothing."""
    devices.add("/dev/input/event0")
    devices.add("/dev/input/event1")

    def denied(path: str) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    caplog.set_level(logging.INFO, logger="atp-agent")
    capture = linux.LinuxCapture(list_devices=devices.list, open_device=denied, rescan_interval=0.1)
    got = Collector()
    capture.start(got)
    try:
        assert not capture.ready
        assert capture.error is not None
        assert capture.error.startswith(NO_READABLE_DEVICES)
        assert "2 device(s) found" in capture.error and "Permission denied" in capture.error
        assert "group 'input'" in capture.error
        assert capture.devices() == []
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert errors and NO_READABLE_DEVICES in errors[0].getMessage()
        assert any("cannot read /dev/input/event0: Permission denied" in r.getMessage() for r in caplog.records)
    finally:
        capture.stop()


def test_no_device_at_all_is_the_same_clear_error() -> None:
    capture = linux.LinuxCapture(list_devices=lambda: [], rescan_interval=0.1)
    capture.start(Collector())
    capture.stop()
    assert not capture.ready
    assert capture.error == f"{NO_READABLE_DEVICES} (no device matches /dev/input/event*)"


def test_rescan_finds_new_devices_and_reports_removed_ones(devices: FakeDevices) -> None:
    devices.add("/dev/input/event2")
    capture, got = start_capture(devices)
    try:
        devices.add("/dev/input/event10", "QEMU Virtio Tablet", ["mouse", "tablet"])
        got.wait_for(lambda m: any(x["message_type"] == "devices" for x in m), timeout=3)
        assert [d["path"] for d in capture.devices()] == ["/dev/input/event2", "/dev/input/event10"]
        assert capture.devices()[1] == {
            "path": "/dev/input/event10",
            "name": "QEMU Virtio Tablet",
            "classes": ["mouse", "tablet"],
        }
        devices.write("/dev/input/event10", record(names.EV_ABS, 0, 100))
        got.wait_for(lambda m: any(x.get("name") == "ABS_X" for x in m))
        devices.remove("/dev/input/event2")
        devices.remove("/dev/input/event10")
        got.wait_for(lambda m: any(x["message_type"] == "error" for x in m), timeout=3)
    finally:
        capture.stop()
    assert not capture.ready
    error = got.of(protocol.ERROR)[-1]
    assert error["error"] == "no_readable_devices" and NO_READABLE_DEVICES in error["message"]
    assert got.of(protocol.DEVICES)[-1]["devices"] == []


def test_device_numbers_sort_numerically(tmp_path: Any) -> None:
    for n in (10, 2, 1):
        (tmp_path / f"event{n}").touch()
    found = linux.list_event_devices(str(tmp_path / "event*"))
    assert [os.path.basename(p) for p in found] == ["event1", "event2", "event10"]


# -- classification ------------------------------------------------------------------------------------------------


def bits(*codes: int, size: int) -> bytearray:
    buf = bytearray(size)
    for code in codes:
        buf[code // 8] |= 1 << (code % 8)
    return buf


def fake_ioctl(name: bytes, keys: tuple[int, ...] = (), rels: tuple[int, ...] = (), abses: tuple[int, ...] = ()):  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def ioctl(fd: int, request: int, buf: bytearray, mutate: bool) -> int:
        calls.append(request)
        assert mutate
        if request == linux.eviocgname(len(buf)):
            buf[: len(name)] = name
        elif request == linux.eviocgbit(names.EV_KEY, len(buf)):
            buf[:] = bits(*keys, size=len(buf))
        elif request == linux.eviocgbit(names.EV_REL, len(buf)):
            buf[:] = bits(*rels, size=len(buf))
        elif request == linux.eviocgbit(names.EV_ABS, len(buf)):
            buf[:] = bits(*abses, size=len(buf))
        else:
            raise OSError(errno.ENOTTY, "unexpected ioctl")
        return 0

    return ioctl, calls


def test_ioctl_request_numbers_match_the_linux_header() -> None:
    assert linux.eviocgname(256) == 0x81004506
    assert linux.eviocgbit(names.EV_KEY, 96) == 0x80604521
    assert linux.eviocgbit(names.EV_REL, 2) == 0x80024522
    assert linux.eviocgbit(names.EV_ABS, 8) == 0x80084523
    assert linux.EVENT_SIZE == 24


@pytest.mark.parametrize(
    ("name", "keys", "rels", "abses", "classes"),
    [
        (b"QEMU Virtio Keyboard", (1, 30, 28), (), (), ["keyboard"]),
        (b"AT Translated Set 2 keyboard", tuple(range(1, 128)), (), (), ["keyboard"]),
        (b"QEMU Virtio Mouse", (0x110, 0x111, 0x112), (0, 1, 8), (), ["mouse"]),
        (b"rel only", (), (0,), (), ["mouse"]),
        (b"QEMU Virtio Tablet", (0x110,), (8,), (0, 1), ["mouse", "tablet"]),
        (b"Power Button", (116,), (), (), []),
    ],
)
def test_classification_by_capability_bits(
    name: bytes, keys: tuple[int, ...], rels: tuple[int, ...], abses: tuple[int, ...], classes: list[str]
) -> None:
    ioctl, calls = fake_ioctl(name, keys, rels, abses)
    assert linux.probe_device(7, ioctl=ioctl) == (name.decode(), classes)
    assert calls[0] == linux.eviocgname(256)


def test_a_device_whose_ioctls_fail_is_still_read(devices: FakeDevices) -> None:
    devices.add("/dev/input/event5")

    def failing(fd: int) -> tuple[str, list[str]]:
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

    capture = linux.LinuxCapture(list_devices=devices.list, open_device=devices.open, probe=failing)
    got = Collector()
    capture.start(got)
    try:
        assert capture.devices() == [{"path": "/dev/input/event5", "name": "", "classes": []}]
        devices.write("/dev/input/event5", record(names.EV_KEY, 57, 1))
        got.wait_for(lambda m: len(m) == 1)
    finally:
        capture.stop()
    assert got.messages[0]["name"] == "KEY_SPACE"


# -- names ---------------------------------------------------------------------------------------------------------


def test_names_of_keys_buttons_and_axes() -> None:
    assert names.key_kind_and_name(28) == ("key", "KEY_ENTER")
    assert names.key_kind_and_name(42) == ("key", "KEY_LEFTSHIFT")
    assert names.key_kind_and_name(96) == ("key", "KEY_KPENTER")
    assert names.key_kind_and_name(0x110) == ("button", "BTN_LEFT")
    assert names.key_kind_and_name(0x111) == ("button", "BTN_RIGHT")
    assert names.key_kind_and_name(0x112) == ("button", "BTN_MIDDLE")
    assert names.key_kind_and_name(0x14A) == ("button", "BTN_TOUCH")
    assert names.key_kind_and_name(0x2C0) == ("button", "BTN_0x2c0")
    assert names.key_kind_and_name(0x1FF) == ("key", "KEY_0x1ff")  # never a bare number like KEY_1
    assert names.rel_name(8) == "REL_WHEEL" and names.rel_name(6) == "REL_HWHEEL" and names.rel_name(0xE) == "REL_0x0e"
    assert names.abs_name(0) == "ABS_X" and names.abs_name(0x35) == "ABS_MT_POSITION_X"


def test_every_key_of_the_key_map_is_named_by_its_evdev_name() -> None:
    from ATPLibrary.keys import DEFAULT_KEYMAP

    for rec in DEFAULT_KEYMAP:
        assert names.KEY_TABLE[rec.evdev] == ("key", rec.evdev_name)
        assert DEFAULT_KEYMAP.by_evdev(rec.evdev).evdev_name == rec.evdev_name
