"""``python -m ATPLibrary.vdi.sim --port 8088 --db PATH --token-lifetime S [--backend lab] [--refresh S]``."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from ATPLibrary.vdi.sim import Backend, Timings, make_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atp vdi-sim", description="OCloudView VDI simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088, help="0 = a free port")
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument("--username", default="admin")
    parser.add_argument(
        "--password-env", default="ATP_VDI_SIM_PASSWORD", help="environment variable holding the admin password"
    )
    parser.add_argument("--token-lifetime", type=float, default=1800.0, help="seconds")
    parser.add_argument("--transition", type=float, default=1.0, help="seconds a VM stays in status 5")
    parser.add_argument(
        "--backend",
        choices=("memory", "lab"),
        default="memory",
        help="memory: VMs with no guest behind them; lab: real lab guests (atp-vdi-<id> on qemu:///system)",
    )
    parser.add_argument(
        "--refresh", type=float, default=0.0, help="seconds between status refreshes from the backend (0: never)"
    )
    args = parser.parse_args(argv)
    password = os.environ.get(args.password_env, "11111111")
    backend: Backend | None = None
    template = None
    if args.backend == "lab":
        from ATPLibrary.lab.vdi_backend import LAB_TEMPLATE, LabBackend

        backend = LabBackend(log=lambda message: print(f"[lab] {message}", flush=True))
        template = LAB_TEMPLATE
    server = make_server(
        port=args.port,
        db=args.db,
        username=args.username,
        password=password,
        token_lifetime=args.token_lifetime,
        timings=Timings.uniform(args.transition),
        host=args.host,
        backend=backend,
        refresh_interval=args.refresh,
        template=template,
    )
    # `atp lab down` stops the simulator with SIGTERM: leave through the same clean path as Ctrl+C.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    print(f"VDI simulator on {server.url} (db {args.db}, backend {args.backend})", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
