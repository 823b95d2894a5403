"""Typing benchmark on a lab guest: confirmed characters per second, and keyword overhead over raw QMP.

Run with ``make bench`` (brings the lab up).  Prints figures, never asserts them: machines are shared.

1. Types N random printable ASCII characters (lines of 60, each ended by Enter) into ``cat > FILE`` on the
   guest console, ends with Ctrl+D, and reads FILE back through the guest agent until it is complete.
   Prints characters per second *confirmed* (first key sent → file complete) and how many were lost.
2. Times the same key press and release (one ``input-send-event`` of 2 events) sent by the `Press Keys`
   keyword and by a bare ``libvirt_qemu.qemuMonitorCommand`` call, interleaved in one run, and prints the
   ratio of the medians (the raw floor is 1.0).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import time
from typing import Any

import libvirt_qemu

from ATPLibrary import ATPLibrary
from ATPLibrary.lab import paths

ALPHABET = string.ascii_letters + string.digits + string.punctuation + " "


def kw(lib: ATPLibrary, name: str, *args: Any, **kwargs: Any) -> Any:
    return lib.run_keyword(name, list(args), kwargs)


def wait_file(lib: ATPLibrary, vm: str, path: str, want: str, timeout: float) -> tuple[str, float]:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = kw(lib, "Execute Command In Guest", vm, f"cat {path}", expected_rc="any").stdout
        if text == want:
            break
        time.sleep(0.05)
    return text, time.monotonic()


def typing_rate(lib: ATPLibrary, vm: str, count: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = []
    remaining = count
    while remaining > 0:
        n = min(60, remaining)
        lines.append("".join(rng.choice(ALPHABET) for _ in range(n)))
        remaining -= n
    text = "\n".join(lines) + "\n"
    path = "/tmp/bench-typed.txt"
    kw(lib, "Execute Command In Guest", vm, f"rm -f {path}")
    kw(lib, "Press Keys", vm, "ctrl+c")  # start from an empty command line
    kw(lib, "Type Text", vm, f"cat > {path}\n")
    deadline = time.monotonic() + 15
    while kw(lib, "Execute Command In Guest", vm, f"test -e {path}", expected_rc="any").rc != 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"{vm}: `cat > {path}` did not start on the console; is its shell at a prompt?")
        time.sleep(0.05)
    started = time.monotonic()
    kw(lib, "Type Text", vm, text)
    sent = time.monotonic()
    got, done = wait_file(lib, vm, path, text, 60)
    kw(lib, "Press Keys", vm, "ctrl+d")
    typed = sum(len(line) for line in lines)  # characters, newlines not counted
    lost = sum(1 for a, b in zip(got, text, strict=False) if a != b) + abs(len(text) - len(got))
    exact = got == text
    print(f"typing: {typed} characters (+{len(lines)} Enter) on {vm}")
    print(f"  sent in {sent - started:.2f} s = {typed / (sent - started):.0f} chars/s sent")
    print(f"  confirmed in {done - started:.2f} s = {typed / (done - started):.0f} chars/s confirmed")
    print(f"  exact: {exact}; characters lost or wrong: {lost}")


def keyword_overhead(lib: ATPLibrary, vm: str, rounds: int) -> None:
    dom = lib.ctx.domain(vm).run(lambda d: d, what="lookup", idempotent=True)
    raw_cmd = json.dumps(
        {
            "execute": "input-send-event",
            "arguments": {
                "events": [
                    {"type": "key", "data": {"down": True, "key": {"type": "qcode", "data": "shift"}}},
                    {"type": "key", "data": {"down": False, "key": {"type": "qcode", "data": "shift"}}},
                ]
            },
        }
    )
    raw: list[float] = []
    keyword: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        libvirt_qemu.qemuMonitorCommand(dom, raw_cmd, 0)
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        kw(lib, "Press Keys", vm, "shift")
        keyword.append(time.perf_counter() - t0)
    r, k = statistics.median(raw), statistics.median(keyword)
    print(f"keyword overhead: {rounds} rounds, interleaved")
    print(f"  raw qemuMonitorCommand median {r * 1000:.2f} ms; Press Keys median {k * 1000:.2f} ms")
    print(f"  ratio keyword / raw = {k / r:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vm", help="lab guest (default: the first in lab-vars.json)")
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    lab = json.loads(paths.vars_file().read_text())
    vm = args.vm or lab["vms"][0]
    lib = ATPLibrary(run_on_failure="NONE")
    kw(lib, "Connect To Host", lab["uri"])
    lease = lib._pool.acquire_vm(vm, timeout=600)
    try:
        typing_rate(lib, vm, args.chars, args.seed)
        keyword_overhead(lib, vm, args.rounds)
    finally:
        lib._pool.release_vm(lease)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
