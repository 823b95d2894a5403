"""A simulator of the OCloudView VDI platform (see docs/vdi-simulator.md).  No Robot Framework import."""

from __future__ import annotations

import threading
from typing import Any

from ATPLibrary.vdi.sim.backend import Backend, BackendError, MemoryBackend, SimVm, domain_name
from ATPLibrary.vdi.sim.platform import DEFAULT_TEMPLATE, Platform, Timings, md5
from ATPLibrary.vdi.sim.server import SimServer
from ATPLibrary.vdi.sim.store import Store

__all__ = [
    "Backend",
    "BackendError",
    "MemoryBackend",
    "Platform",
    "SimServer",
    "SimVm",
    "Store",
    "Timings",
    "domain_name",
    "make_server",
    "serve_in_thread",
]


def make_server(
    *,
    port: int = 0,
    db: str = ":memory:",
    password: str = "11111111",
    username: str = "admin",
    token_lifetime: float = 1800.0,
    timings: Timings | None = None,
    backend: Backend | None = None,
    host: str = "127.0.0.1",
    refresh_interval: float = 0.0,
    template: dict[str, Any] | None = None,
) -> SimServer:
    """A simulator bound to ``host:port`` (0 = a free port); call ``serve_forever`` or :func:`serve_in_thread`."""
    platform = Platform(
        Store(db),
        {username: md5(password)},
        backend=backend or MemoryBackend(host),
        token_lifetime=token_lifetime,
        timings=timings or Timings(),
        host_ip=host,
        refresh_interval=refresh_interval,
        template=template or dict(DEFAULT_TEMPLATE),
    )
    return SimServer(platform, host, port)


def serve_in_thread(server: SimServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="vdi-sim", daemon=True)
    thread.start()
    return thread
