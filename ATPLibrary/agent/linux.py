"""Linux capture: ``struct input_event`` records from every ``/dev/input/event*``, without grabbing them.

- Every device is opened ``O_RDONLY|O_NONBLOCK`` (never ``EVIOCGRAB``: the desktop keeps getting its input), named
  through ``EVIOCGNAME`` and classified through ``EVIOCGBIT``: *keyboard* has ``KEY_A``, *mouse* has ``BTN_LEFT`` or
  ``REL_X``, *tablet* has ``ABS_X``.  New and removed devices are found by a rescan every second.
- One thread polls all devices and drains each readable one with large reads (64 events per ``read``) until it
  is empty before polling again: under software emulation a slow reader falls behind a burst of key events and the
  kernel drops events for it.  Per event the work is one ``struct`` unpack and one dict lookup of a precomputed
  name; JSON encoding happens on the session's thread, in batches.
- ``EV_KEY`` becomes ``raw_input_event`` of kind ``key`` (``KEY_*`` named through the one key map) or ``button``
  (``BTN_*``), ``EV_REL`` kind ``rel``, ``EV_ABS`` kind ``abs``.  ``SYN_DROPPED`` (the kernel dropped events for this
  reader) becomes a ``dropped`` message, and events up to the next ``SYN_REPORT`` are skipped as the evdev
  documentation requires: a verification must then fail clearly rather than silently mismatch.
- When no device can be read the capture says so (failure kind 11) in its ``error``, in the log and in an
  ``error`` message; it never silently sees nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import logging
import os
import re
import select
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ATPLibrary.agent import names
from ATPLibrary.agent.capture import NO_READABLE_DEVICES, Emit
from ATPLibrary.verification import protocol

log = logging.getLogger("atp-agent.linux")

#: ``struct input_event`` on 64-bit Linux: ``struct timeval`` (two longs), ``__u16 type``, ``__u16 code``,
#: ``__s32 value`` — 24 bytes (16 on 32-bit, where long is 4 bytes: native sizes are used).
EVENT_FORMAT = "llHHi"
EVENT_SIZE = struct.calcsize(EVENT_FORMAT)
#: Events per ``read``: a whole burst in one system call.
READ_EVENTS = 64
DEVICE_PATTERN = "/dev/input/event*"

_IOC_READ = 2


def _ioc_read(nr: int, size: int) -> int:
    return (_IOC_READ << 30) | (size << 16) | (ord("E") << 8) | nr


def eviocgname(size: int = 256) -> int:
    """``EVIOCGNAME(len)``: the device's name."""
    return _ioc_read(0x06, size)


#: struct input_absinfo: value, minimum, maximum, fuzz, flat, resolution (six signed 32-bit integers).
ABSINFO = struct.Struct("6i")


def eviocgabs(code: int) -> int:
    """EVIOCGABS(code) = _IOR('E', 0x40 + code, struct input_absinfo)."""
    return _ioc_read(0x40 + code, ABSINFO.size)


def eviocgbit(ev: int, size: int) -> int:
    """``EVIOCGBIT(ev, len)``: the bitmap of codes of event type ``ev`` (``ev=0``: of event types)."""
    return _ioc_read(0x20 + ev, size)


KEY_BITS = (names.KEY_MAX + 1 + 7) // 8
REL_BITS = (names.REL_MAX + 1 + 7) // 8
ABS_BITS = (names.ABS_MAX + 1 + 7) // 8

Ioctl = Callable[[int, int, bytearray, bool], Any]


def _has_bit(bits: bytes | bytearray, bit: int) -> bool:
    return len(bits) > bit // 8 and bool(bits[bit // 8] & (1 << (bit % 8)))


def classify(key_bits: bytes | bytearray, rel_bits: bytes | bytearray, abs_bits: bytes | bytearray) -> list[str]:
    """Device classes from capability bitmaps: keyboard (KEY_A), mouse (BTN_LEFT or REL_X), tablet (ABS_X)."""
    classes = []
    if _has_bit(key_bits, names.KEY_A):
        classes.append("keyboard")
    if _has_bit(key_bits, names.BTN_LEFT) or _has_bit(rel_bits, names.REL_X):
        classes.append("mouse")
    if _has_bit(abs_bits, names.ABS_X):
        classes.append("tablet")
    return classes


def probe_device(fd: int, ioctl: Ioctl = fcntl.ioctl) -> tuple[str, list[str]]:
    """(name, classes) of an open evdev device through ``EVIOCGNAME`` and ``EVIOCGBIT``."""
    name_buf = bytearray(256)
    ioctl(fd, eviocgname(len(name_buf)), name_buf, True)
    name = bytes(name_buf).split(b"\0", 1)[0].decode("utf-8", "replace")
    bitmaps = []
    for ev, size in ((names.EV_KEY, KEY_BITS), (names.EV_REL, REL_BITS), (names.EV_ABS, ABS_BITS)):
        buf = bytearray(size)
        ioctl(fd, eviocgbit(ev, size), buf, True)
        bitmaps.append(buf)
    return name, classify(*bitmaps)


def open_device(path: str) -> int:
    """Open an event device for reading, non-blocking, without grabbing it."""
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


def _event_number(path: str) -> tuple[int, str]:
    match = re.search(r"(\d+)$", path)
    return (int(match.group(1)) if match else -1, path)


def list_event_devices(pattern: str = DEVICE_PATTERN) -> list[str]:
    """The event device paths, in numeric order (event2 before event10)."""
    return sorted(glob.glob(pattern), key=_event_number)


@dataclass
class _Device:
    path: str
    fd: int
    name: str
    classes: list[str]
    dropping: bool = False
    partial: bytes = b""

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"path": self.path, "name": self.name, "classes": list(self.classes)}
        if "tablet" in self.classes:
            # The current absolute position: the kernel reports no event for a move to where it already is.
            positions = {}
            for code in (0, 1):  # ABS_X, ABS_Y
                with contextlib.suppress(OSError):
                    buf = bytearray(ABSINFO.size)
                    fcntl.ioctl(self.fd, eviocgabs(code), buf, True)
                    positions[str(code)] = ABSINFO.unpack(buf)[0]
            if positions:
                info["abs"] = positions
        return info


@dataclass
class _Counters:
    drops: int = 0
    reads: int = 0
    max_batch: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)


class LinuxCapture:
    """Capture from every event device in one thread (see the module docstring).

    The opening, probing and listing functions are injectable: tests feed pipes with packed records.
    """

    def __init__(
        self,
        *,
        kinds: Iterable[str] = (protocol.KIND_KEY, protocol.KIND_BUTTON, protocol.KIND_REL, protocol.KIND_ABS),
        list_devices: Callable[[], list[str]] = list_event_devices,
        open_device: Callable[[str], int] = open_device,
        probe: Callable[[int], tuple[str, list[str]]] = probe_device,
        rescan_interval: float = 1.0,
        raise_priority: bool = True,
    ) -> None:
        self._kinds = frozenset(kinds)
        self._list = list_devices
        self._open = open_device
        self._probe = probe
        self._rescan_interval = rescan_interval
        self._raise_priority = raise_priority
        self._devices: dict[int, _Device] = {}
        self._by_path: dict[str, _Device] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._emit: Emit = lambda messages: None
        self._seq = 0
        self._error: str | None = None
        self.counters = _Counters()
        self._poll = select.poll()

    # -- public --------------------------------------------------------------------------------------------------

    def start(self, emit: Emit) -> None:
        self._emit = emit
        self._rescan(initial=True)
        self._thread = threading.Thread(target=self._run, name="atp-agent-capture", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            for device in list(self._devices.values()):
                self._close(device)

    def devices(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d.describe() for d in sorted(self._devices.values(), key=lambda d: _event_number(d.path))]

    @property
    def ready(self) -> bool:
        return bool(self._devices)

    @property
    def error(self) -> str | None:
        return self._error

    # -- devices -------------------------------------------------------------------------------------------------

    def _rescan(self, initial: bool = False) -> None:
        try:
            paths = self._list()
        except OSError as exc:
            paths = []
            log.warning("cannot list input devices: %s", exc)
        changed = False
        present = set(paths)
        for path in list(self._by_path):
            if path not in present:
                with self._lock:
                    self._close(self._by_path[path])
                log.info("input device removed: %s", path)
                changed = True
        for path in paths:
            if path in self._by_path:
                continue
            device = self._open_one(path, quiet=not initial and path in self.counters.unreadable)
            if device is not None:
                with self._lock:
                    self._devices[device.fd] = device
                    self._by_path[path] = device
                self._poll.register(device.fd, select.POLLIN)
                changed = True
        for path in list(self.counters.unreadable):
            if path not in present:
                del self.counters.unreadable[path]
        self._update_error(paths, emit=not initial)
        if changed and not initial:
            self._emit([self._devices_message()])

    def _open_one(self, path: str, quiet: bool) -> _Device | None:
        try:
            fd = self._open(path)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if not quiet:
                log.warning("cannot read %s: %s", path, reason)
            self.counters.unreadable[path] = reason
            return None
        try:
            name, classes = self._probe(fd)
        except OSError as exc:
            log.warning("cannot query %s (EVIOCGNAME/EVIOCGBIT): %s", path, exc)
            name, classes = "", []
        self.counters.unreadable.pop(path, None)
        log.info("input device %s: %r %s", path, name, ",".join(classes) or "(no keyboard/mouse/tablet)")
        return _Device(path, fd, name, classes)

    def _close(self, device: _Device) -> None:
        self._devices.pop(device.fd, None)
        self._by_path.pop(device.path, None)
        with contextlib.suppress(KeyError, ValueError):
            self._poll.unregister(device.fd)
        with contextlib.suppress(OSError):
            os.close(device.fd)

    def _update_error(self, paths: list[str], emit: bool) -> None:
        """Set or clear ``error`` (failure kind 11); log a change, and send it when the thread runs."""
        if self._devices:
            if self._error is not None:
                log.info("input devices readable again")
            self._error = None
            return
        if paths:
            reasons = sorted(set(self.counters.unreadable.values())) or ["not readable"]
            detail = f"{len(paths)} device(s) found, none readable: {'; '.join(reasons)}"
        else:
            detail = f"no device matches {DEVICE_PATTERN}"
        error = f"{NO_READABLE_DEVICES} ({detail})"
        if error != self._error:
            log.error("%s", error)
            if emit:
                self._emit([self._error_message(error)])
        self._error = error

    def _devices_message(self) -> dict[str, Any]:
        return {
            "message_type": protocol.DEVICES,
            "devices": self.devices(),
            "ready": self.ready,
            "error": self._error,
        }

    @staticmethod
    def _error_message(error: str) -> dict[str, Any]:
        return {"message_type": protocol.ERROR, "error": "no_readable_devices", "message": error}

    # -- reading -------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        if self._raise_priority:
            _raise_thread_priority()
        next_rescan = time.monotonic() + self._rescan_interval
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_rescan:
                self._rescan()
                next_rescan = now + self._rescan_interval
            timeout_ms = max(0, min(250, int((next_rescan - now) * 1000)))
            if not self._devices:
                self._stop.wait(timeout_ms / 1000)
                continue
            try:
                ready = self._poll.poll(timeout_ms)
            except InterruptedError:
                continue
            for fd, revents in ready:
                device = self._devices.get(fd)
                if device is None:
                    continue
                if revents & select.POLLIN:
                    self._drain(device)
                elif revents & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    self._gone(device, "hang-up")

    def _gone(self, device: _Device, why: str) -> None:
        log.info("input device %s gone (%s)", device.path, why)
        with self._lock:
            self._close(device)
        self._update_error(self._list_safe(), emit=True)
        self._emit([self._devices_message()])

    def _list_safe(self) -> list[str]:
        try:
            return self._list()
        except OSError:
            return []

    def _drain(self, device: _Device) -> None:
        """Read until the device is empty, 64 events per read; emit one batch."""
        size = EVENT_SIZE * READ_EVENTS
        out: list[dict[str, Any]] = []
        fd = device.fd
        while True:
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                if out:
                    self._emit(out)
                self._gone(device, os.strerror(exc.errno or errno.EIO))
                return
            self.counters.reads += 1
            if not data:  # a pipe whose writer closed (tests); evdev never returns 0
                if out:
                    self._emit(out)
                self._gone(device, "end of file")
                return
            if device.partial:
                data = device.partial + data
                device.partial = b""
            whole = len(data) - len(data) % EVENT_SIZE
            if whole != len(data):
                device.partial = data[whole:]
                data = data[:whole]
            self._decode(device, data, out)
            if len(data) < size and not device.partial:
                break
        if out:
            self.counters.max_batch = max(self.counters.max_batch, len(out))
            self._emit(out)

    def _decode(self, device: _Device, data: bytes, out: list[dict[str, Any]]) -> None:
        kinds = self._kinds
        key_table = names.KEY_TABLE
        path = device.path
        for sec, usec, type_, code, value in struct.iter_unpack(EVENT_FORMAT, data):
            if type_ == names.EV_SYN:
                if code == names.SYN_DROPPED:
                    device.dropping = True
                    self.counters.drops += 1
                    self._seq += 1
                    out.append(
                        {
                            "message_type": protocol.DROPPED,
                            "device": path,
                            "device_name": device.name,
                            "reason": "SYN_DROPPED: the kernel dropped input events for this reader "
                            "(the reader fell behind); events up to the next SYN_REPORT are skipped",
                            "timestamp": sec * 1000 + usec / 1000,
                            "seq": self._seq,
                        }
                    )
                elif code == names.SYN_REPORT:
                    device.dropping = False
                continue
            if device.dropping:
                continue
            if type_ == names.EV_KEY:
                kind, name = key_table.get(code) or names.key_kind_and_name(code)
            elif type_ == names.EV_REL:
                kind, name = protocol.KIND_REL, names.rel_name(code)
            elif type_ == names.EV_ABS:
                kind, name = protocol.KIND_ABS, names.abs_name(code)
            else:
                continue
            if kind not in kinds:
                continue
            self._seq += 1
            out.append(protocol.raw_input_event(kind, code, value, name, path, sec * 1000 + usec / 1000, self._seq))


def _raise_thread_priority() -> None:
    """Best effort: a higher priority for the capture thread alone (Linux priorities are per thread), so it is
    scheduled promptly when a burst arrives.  Needs root (or CAP_SYS_NICE); silently skipped otherwise."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
