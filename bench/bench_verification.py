"""Verification latency on lab guests: injection → report from the guest's verification agent.

Run with ``make bench-verification`` (brings 8 lab guests up).  Prints figures, never asserts them.

For N events (default 1 000: key presses and releases, one key per QMP command, back to back) it records
the time from just before the QMP command is sent to the moment the verification server has the guest's
report of that event, on one guest and then on 8 guests at once (one thread each).  The raw floor, measured
in the same run, is a bare ``libvirt_qemu.qemuAgentCommand`` guest-ping round trip to the same guests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import libvirt_qemu

from ATPLibrary import ATPLibrary
from ATPLibrary.lab import paths
from ATPLibrary.verification.matcher import qmp_events

KEYS = "abcdefghijklmnopqrstuvwxyz"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(label: str, values_ms: list[float]) -> str:
    return (
        f"{label}: n={len(values_ms)} p50 {pct(values_ms, 0.5):.2f} ms, p99 {pct(values_ms, 0.99):.2f} ms, "
        f"max {max(values_ms):.2f} ms"
    )


def key_latencies(lib: ATPLibrary, vm: str, count: int, out: list[float], errors: list[str]) -> None:
    """``count`` events (press/release pairs); each one's latency from send to the server having it."""
    server = lib.ctx.verification_server()
    monitor = lib.ctx.monitor(vm)
    sent = 0
    while sent < count:
        qcode = KEYS[(sent // 2) % len(KEYS)]
        events = [
            {"type": "key", "data": {"down": True, "key": {"type": "qcode", "data": qcode}}},
            {"type": "key", "data": {"down": False, "key": {"type": "qcode", "data": qcode}}},
        ]
        # settle=0: the result is complete when the pair has arrived (the bench does not look for extras).
        handle = server.expect(vm, qmp_events(events), 10.0, settle=0.0, what="bench")
        handle.sending()
        monitor.send_input_events(events)
        handle.sent()
        result = handle.wait()
        if not result.ok or result.latency is None:
            errors.append(f"{vm}: {result.message.splitlines()[0]}")
            return
        # The server's latency (seconds): from sending() to the arrival of the pair's last event.
        out.append(result.latency * 1000.0)
        sent += 2


def ping_floor(lib: ATPLibrary, vms: list[str], rounds: int) -> list[float]:
    doms = [lib.ctx.domain(vm).run(lambda d: d, what="lookup", idempotent=True) for vm in vms]
    values = []
    for i in range(rounds):
        dom = doms[i % len(doms)]
        started = time.perf_counter()
        libvirt_qemu.qemuAgentCommand(dom, '{"execute":"guest-ping"}', 5, 0)
        values.append((time.perf_counter() - started) * 1000)
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--guests", type=int, default=8)
    args = parser.parse_args()
    lab = json.loads(paths.vars_file().read_text())
    vms: list[str] = lab["vms"][: args.guests]
    lib = ATPLibrary(run_on_failure="NONE")
    lib.run_keyword("Connect To Host", [lab["uri"]], {})
    leases = [lib._pool.acquire_vm(vm, timeout=600) for vm in vms]
    try:
        for vm in vms:
            lib.run_keyword("Verification Agent Should Be Connected", [vm], {"timeout": 60})
        print(line("raw floor: qemuAgentCommand guest-ping", ping_floor(lib, vms, 300)))

        one: list[float] = []
        errors: list[str] = []
        key_latencies(lib, vms[0], args.events, one, errors)
        print(line(f"1 guest ({vms[0]}), per press+release pair (latency of the release), {args.events} events", one))

        per_vm: dict[str, list[float]] = {vm: [] for vm in vms}
        threads = [
            threading.Thread(target=key_latencies, args=(lib, vm, args.events, per_vm[vm], errors)) for vm in vms
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        together = [v for values in per_vm.values() for v in values]
        print(line(f"{len(vms)} guests at once, {args.events} events each ({elapsed:.1f} s)", together))
        for error in errors:
            print(f"  error: {error}")
        floor = statistics.median(ping_floor(lib, vms, 300))
        print(f"ratio p50 (1 guest) / raw ping p50: {statistics.median(one) / floor:.2f}x")
    finally:
        for vm in vms:  # the bench typed letters on each console: leave an empty command line
            lib.run_keyword("Press Keys", [vm, "ctrl+c"], {})
        for lease in leases:
            lib._pool.release_vm(lease)
        lib.run_keyword("Stop Verification Server", [], {})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
