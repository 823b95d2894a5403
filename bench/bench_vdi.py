"""VDI client over the simulator: listing 1 000 VMs page by page, and batch-starting 50 VMs.

Run with ``make bench-vdi`` (one command, no lab: the simulator runs in this process).  Prints figures, never
asserts them: machines are shared.

The simulator is started in-process (``make_server(port=0)`` + ``serve_in_thread``) with ``MemoryBackend`` (VMs
with no guest behind them) and ``Timings.uniform(--transition)`` (default 0.05 s per transition).  The VMs are
seeded through the API: one ``create_vms_from_template`` call.  The raw floor, measured in the same run, is the
simulator's own handling time of the same requests: the sum of the ``ms`` fields of its request log
(``/_sim/log``: request parsed → reply ready).  Client and simulator share one Python process (and its GIL),
so the ratio covers the client, httpx, the loopback socket and that sharing.

1. ``list(VdiClient.list_vms(page_size=N))`` over all VMs, for each page size: median wall time of ``--rounds``
   rounds, beside the median of the simulator's summed handling time of those page requests.
2. ``start_vms`` on ``--batch`` VMs that are off (a new batch each round): *accepted* is the ``start_vms`` call
   (the reply with the event ids); *all running* is from just before that call until every event is done, polling
   each pending event with ``get_event`` every ``--poll`` seconds (an event ends after its VM's status is set, so
   all events done means all VMs running; the bench checks it).  *All running* holds one transition delay.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import httpx

from ATPLibrary.vdi import VdiClient
from ATPLibrary.vdi import routes as R
from ATPLibrary.vdi.sim import MemoryBackend, SimServer, Timings, make_server, serve_in_thread

PASSWORD = "bench-password"


class CountingTransport(httpx.HTTPTransport):
    """Counts the ``/ocloud`` requests the client sends, so the bench knows how many log entries to wait for."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/ocloud/"):
            self.sent += 1
        return super().handle_request(request)


class Bench:
    def __init__(self, server: SimServer, client: VdiClient, transport: CountingTransport) -> None:
        self.server = server
        self.client = client
        self.transport = transport
        self._http = httpx.Client(base_url=server.url, timeout=30)

    def mark(self) -> None:
        """Empty the simulator's request log and the request count (outside the timed part)."""
        self._http.delete("/_sim/log").raise_for_status()
        self.transport.sent = 0

    def handled(self) -> list[dict[str, Any]]:
        """The simulator's log entries since :meth:`mark` (each with its handling time ``ms``).

        The simulator logs a request just after writing its reply, so the bench waits for every entry.
        """
        deadline = time.monotonic() + 10
        while True:
            entries: list[dict[str, Any]] = self._http.get("/_sim/log").json()["requests"]
            if len(entries) >= self.transport.sent or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        bad = [e for e in entries if e["status"] != 0]
        if bad:
            raise SystemExit(f"simulator answered with errors: {bad[:3]}")
        return entries

    def close(self) -> None:
        self._http.close()


def seconds(entries: list[dict[str, Any]]) -> float:
    return sum(float(e["ms"]) for e in entries) / 1000.0


def seed(client: VdiClient, count: int) -> tuple[list[str], float]:
    started = time.perf_counter()
    template = client.all_templates()[0]
    event = client.create_vms_from_template(template.id, "bench-", count)
    client.wait_for_event(event, timeout=120, interval=0.01)
    elapsed = time.perf_counter() - started
    ids = [vm.id for vm in client.list_vms(keyword="bench-", page_size=1000)]
    if len(ids) != count:
        raise SystemExit(f"seeded {len(ids)} VMs, wanted {count}")
    return ids, elapsed


def listing(bench: Bench, count: int, page_size: int, rounds: int) -> dict[str, Any]:
    walls: list[float] = []
    floors: list[float] = []
    requests = 0
    for _ in range(rounds):
        bench.mark()
        started = time.perf_counter()
        got = sum(1 for _ in bench.client.list_vms(page_size=page_size))
        walls.append(time.perf_counter() - started)
        entries = bench.handled()
        requests = len(entries)
        floors.append(seconds(entries))
        if got != count:
            raise SystemExit(f"list_vms(page_size={page_size}) gave {got} VMs, wanted {count}")
    wall, floor = statistics.median(walls), statistics.median(floors)
    return {
        "page_size": page_size,
        "vms": count,
        "requests": requests,
        "rounds": rounds,
        "wall_s": wall,
        "min_wall_s": min(walls),
        "sim_s": floor,
        "ratio": wall / floor,
    }


def batch_start(bench: Bench, ids: list[str], batch: int, rounds: int, poll: float) -> dict[str, Any]:
    client = bench.client
    if rounds * batch > len(ids):
        raise SystemExit(f"--rounds {rounds} x --batch {batch} needs {rounds * batch} VMs; there are {len(ids)}")
    accepted: list[tuple[float, float]] = []
    running: list[tuple[float, float, int]] = []
    for r in range(rounds):
        chosen = ids[r * batch : (r + 1) * batch]
        bench.mark()
        started = time.perf_counter()
        result = client.start_vms(chosen)
        replied = time.perf_counter()
        pending = list(result.event_ids)
        if len(pending) != len(chosen):
            raise SystemExit(f"start_vms gave {len(pending)} events for {len(chosen)} VMs")
        while pending:
            time.sleep(poll)
            still = []
            for event_id in pending:
                event = client.get_event(event_id)
                if not event.done:
                    still.append(event_id)
                elif not event.succeeded:
                    raise SystemExit(f"event {event_id} failed: {event.error_reason}")
            pending = still
        done = time.perf_counter()
        entries = bench.handled()
        accepted.append((replied - started, seconds([e for e in entries if e["path"] == R.DOMAIN_START.path])))
        running.append((done - started, seconds(entries), len(entries)))
        chosen_set = set(chosen)
        statuses = {vm.status for vm in client.list_vms(page_size=1000) if vm.id in chosen_set}
        if statuses != {1}:
            raise SystemExit(f"events done but VM statuses are {statuses}")
    a_wall = statistics.median(w for w, _ in accepted)
    a_floor = statistics.median(f for _, f in accepted)
    r_wall = statistics.median(w for w, _, _ in running)
    r_floor = statistics.median(f for _, f, _ in running)
    return {
        "batch": batch,
        "rounds": rounds,
        "poll_s": poll,
        "accepted": {"wall_s": a_wall, "sim_s": a_floor, "ratio": a_wall / a_floor},
        "all_running": {
            "wall_s": r_wall,
            "sim_s": r_floor,
            "ratio": r_wall / r_floor,
            "requests_median": statistics.median(n for _, _, n in running),
        },
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=1000, help="VMs to seed and list (default 1000)")
    parser.add_argument("--batch", type=int, default=50, help="VMs per start_vms batch (default 50)")
    parser.add_argument("--page-size", type=int, nargs="+", default=[10, 100], help="page sizes (default 10 100)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each measure; medians are printed")
    parser.add_argument("--transition", type=float, default=0.05, help="Timings.uniform(S) (default 0.05 s)")
    parser.add_argument("--poll", type=float, default=0.01, help="event polling interval (default 0.01 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()

    server = make_server(
        port=0, password=PASSWORD, timings=Timings.uniform(args.transition), backend=MemoryBackend("127.0.0.1")
    )
    serve_in_thread(server)
    transport = CountingTransport()
    client = VdiClient(server.url, "admin", PASSWORD, transport=transport, retries=0, timeout=60)
    bench = Bench(server, client, transport)
    try:
        client.login()
        ids, seeded = seed(client, args.vms)
        lists = [listing(bench, args.vms, size, args.rounds) for size in args.page_size]
        start = batch_start(bench, ids, args.batch, args.rounds, args.poll)
    finally:
        bench.close()
        client.close()
        server.shutdown()
        server.server_close()

    if args.json:
        report = {
            "simulator": {"in_process": True, "backend": "MemoryBackend", "transition_s": args.transition},
            "seed": {"vms": args.vms, "wall_s": seeded, "how": "create_vms_from_template"},
            "list_vms": lists,
            "start_vms": start,
        }
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"simulator: in-process (make_server port 0, MemoryBackend, Timings.uniform({args.transition:g}));"
        f" {args.vms} VMs seeded through create_vms_from_template in {seeded:.2f} s"
    )
    print(f"list_vms: all {args.vms} VMs, median of {args.rounds} rounds; raw floor = the simulator's handling time")
    for row in lists:
        print(
            f"  page size {row['page_size']}: {row['requests']} requests in {ms(row['wall_s'])}"
            f" ({ms(row['wall_s'] / row['requests'])}/page, min {ms(row['min_wall_s'])});"
            f" simulator {ms(row['sim_s'])}; ratio {row['ratio']:.2f}x"
        )
    acc, run = start["accepted"], start["all_running"]
    print(f"start_vms: {args.batch} VMs off -> running, median of {args.rounds} rounds (a new batch each round)")
    print(f"  accepted (start_vms reply): {ms(acc['wall_s'])}; simulator {ms(acc['sim_s'])}; ratio {acc['ratio']:.2f}x")
    print(
        f"  all running (every event done, polled every {ms(args.poll)}): {ms(run['wall_s'])}"
        f" over {run['requests_median']:.0f} requests, one {ms(args.transition)} transition included;"
        f" simulator {ms(run['sim_s'])}; ratio {run['ratio']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
