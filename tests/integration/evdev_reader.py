"""Guest-side raw evdev reader used by the input proofs (standard library only; runs with the guest's python3).

Usage: python3 evdev_reader.py OUT_FILE SECONDS

Opens every /dev/input/event* (without grabbing), writes ``READY <n devices>`` to OUT_FILE once all are
open, then one line per event: ``<device name>\t<type>\t<code>\t<value>`` (EV_SYN included) until SECONDS
have passed or /tmp/evdev_reader.stop exists.
"""

import fcntl
import glob
import os
import select
import struct
import sys
import time

EVENT = struct.Struct("llHHi")  # struct input_event on 64-bit: timeval (2 longs), type, code, value
STOP_FILE = "/tmp/evdev_reader.stop"


def eviocgname(length):
    # _IOC(_IOC_READ=2, 'E', 0x06, length)
    return (2 << 30) | (length << 16) | (ord("E") << 8) | 0x06


def device_name(fd):
    buf = bytearray(256)
    try:
        n = fcntl.ioctl(fd, eviocgname(len(buf)), buf)
    except OSError:
        return "?"
    return bytes(buf[: max(0, n - 1)]).decode(errors="replace")


def main():
    out_path, seconds = sys.argv[1], float(sys.argv[2])
    devices = {}
    for path in sorted(glob.glob("/dev/input/event*")):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        devices[fd] = device_name(fd)
    with open(out_path, "w", buffering=1) as out:
        if not devices:
            out.write("ERROR no readable /dev/input/event*\n")
            return 1
        out.write(f"READY {len(devices)} {','.join(sorted(devices.values()))}\n")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not os.path.exists(STOP_FILE):
            ready, _, _ = select.select(list(devices), [], [], 0.2)
            for fd in ready:
                try:
                    data = os.read(fd, EVENT.size * 64)
                except BlockingIOError:
                    continue
                for offset in range(0, len(data) - EVENT.size + 1, EVENT.size):
                    _s, _us, etype, code, value = EVENT.unpack_from(data, offset)
                    out.write(f"{devices[fd]}\t{etype}\t{code}\t{value}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
