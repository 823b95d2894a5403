"""The simulator's HTTP server (standard library): the platform API under ``/ocloud/v1`` plus test switches.

Routes are the :mod:`ATPLibrary.vdi.routes` constants.  Everything outside ``/ocloud/…`` is for tests only:

* ``POST /_sim/faults`` ``{"error_status": int, "error_msg": str, "delay": s, "expire_tokens": true,
  "drop_connection": true, "count": n, "method": str, "path": str}`` — the next ``count`` (default: all, until
  cleared) ``/ocloud/v1`` calls other than login get the fault; with ``method``/``path``, only calls with that
  method and that exact path (e.g. ``/ocloud/v1/domain/<id>``) count; ``POST /_sim/faults`` ``{}`` clears them;
* ``GET /_sim/log`` — the request log ``[{"method", "path", "status", "login": bool, "ms": float}]`` (``ms``: the
  simulator's handling time, request parsed → reply written); ``DELETE /_sim/log`` empties it;
* ``POST /_sim/refresh`` — read VM statuses from the backend now;
* ``POST /_sim/tokens`` ``{"lifetime": s}`` — tokens issued from now on live ``s`` seconds; ``{}`` restores the
  lifetime the simulator started with; ``GET /_sim/tokens`` shows it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ATPLibrary.vdi import routes as R
from ATPLibrary.vdi.routes import Route
from ATPLibrary.vdi.sim.platform import BAD_PARAM, OK_MSG, ApiError, Platform

log = logging.getLogger(__name__)

Handler = Callable[[Platform, dict[str, str], dict[str, str], Any], Any]

_Q = dict[str, str]


def _body(b: Any) -> dict[str, Any]:
    if not isinstance(b, dict):
        raise ApiError(BAD_PARAM, "参数错误: 请求体必须是 JSON 对象")
    return b


# route -> handler(platform, path params, query, body) -> data (None: no "data")
HANDLERS: dict[Route, Handler] = {
    R.LOGOUT: lambda p, a, q, b: None,
    R.DOMAIN_LIST: lambda p, a, q, b: p.paged(p.list_vms(q), q),
    R.DOMAIN_GET: lambda p, a, q, b: p.get_vm(a["id"]),
    R.DOMAIN_UPDATE: lambda p, a, q, b: p.update_vm(a["id"], _body(b)),
    R.DOMAIN_CREATE: lambda p, a, q, b: p.create_vm(_body(b)),
    R.DOMAIN_START: lambda p, a, q, b: p.power("start", _body(b)),
    R.DOMAIN_CLOSE: lambda p, a, q, b: p.power("close", _body(b)),
    R.DOMAIN_REBOOT: lambda p, a, q, b: p.power("reboot", _body(b)),
    R.DOMAIN_SUSPEND: lambda p, a, q, b: p.power("suspend", _body(b)),
    R.DOMAIN_RESUME: lambda p, a, q, b: p.power("resume", _body(b)),
    R.DOMAIN_DELETE: lambda p, a, q, b: p.delete_vms(_body(b)),
    R.DOMAIN_CLONE: lambda p, a, q, b: p.clone_vm(a["id"], _body(b)),
    R.DOMAIN_MEM_CPU: lambda p, a, q, b: p.set_mem_cpu(_body(b)),
    R.DOMAIN_NIC_LIST: lambda p, a, q, b: p.list_nics(a["id"]),
    R.DOMAIN_NIC_ADD: lambda p, a, q, b: p.add_nic(a["id"], _body(b)),
    R.DOMAIN_NIC_MODIFY: lambda p, a, q, b: p.modify_nic(a["domainId"], _body(b)),
    R.DOMAIN_NIC_DELETE: lambda p, a, q, b: p.delete_nic(a["domainId"], a["mac"]),
    R.DOMAIN_BIND_USER: lambda p, a, q, b: p.bind_user(_body(b)),
    R.DOMAIN_UNBIND_USER: lambda p, a, q, b: p.unbind_user(_body(b)),
    R.DOMAIN_SPICE_KEY: lambda p, a, q, b: p.spice_key(a["id"]),
    R.MODEL_LIST: lambda p, a, q, b: p.paged(p.list_vms(q, is_model=1), q),
    R.MODEL_ALL: lambda p, a, q, b: [v for v in p.paged(p.list_vms(q, is_model=1), {"pageSize": "100000"})["list"]],
    R.MODEL_CLONE: lambda p, a, q, b: p.clone_template(a["id"], _body(b)),
    R.POOL_LIST: lambda p, a, q, b: p.paged(p.list_pools(q), q),
    R.POOL_CREATE: lambda p, a, q, b: p.create_pool(_body(b)),
    R.POOL_UPDATE: lambda p, a, q, b: p.update_pool(a["id"], _body(b)),
    R.POOL_DELETE: lambda p, a, q, b: p.delete_pool(a["id"]),
    R.POOL_ENABLE: lambda p, a, q, b: p.set_pool(a["id"], enabled=1),
    R.POOL_DISABLE: lambda p, a, q, b: p.set_pool(a["id"], enabled=0),
    R.POOL_ACTIVATE: lambda p, a, q, b: p.set_pool(a["id"], enabled=1, status=0),
    R.POOL_VMS: lambda p, a, q, b: p.pool_vms(a["id"]),
    R.POOL_ADD_VMS: lambda p, a, q, b: p.pool_add_vms(_body(b)),
    R.POOL_REMOVE_VMS: lambda p, a, q, b: p.pool_remove_vms(_body(b)),
    R.POOL_BIND_GROUPS: lambda p, a, q, b: p.pool_groups(_body(b), bind=True),
    R.POOL_UNBIND_GROUPS: lambda p, a, q, b: p.pool_groups(_body(b), bind=False),
    R.POOL_SWITCH_MODEL: lambda p, a, q, b: p.switch_model(_body(b)),
    R.HOST_LIST: lambda p, a, q, b: p.paged(p.list_hosts(q), q),
    R.HOST_ALL: lambda p, a, q, b: p.paged(p.list_hosts(q), {"pageSize": "100000"})["list"],
    R.HOST_GET: lambda p, a, q, b: p.get_host(a["id"]),
    R.USER_LIST: lambda p, a, q, b: p.paged(p.list_users(q), q),
    R.USER_DETAIL: lambda p, a, q, b: p.user_detail(q),
    R.USER_CREATE: lambda p, a, q, b: p.create_user(_body(b)),
    R.GROUP_TREE: lambda p, a, q, b: p.group_tree(),
    R.EVENT_GET: lambda p, a, q, b: p.get_event(a["id"]),
}

# BaseResponseVO routes: the reply has no "data"
_NO_DATA = {
    R.LOGOUT,
    R.DOMAIN_UPDATE,
    R.DOMAIN_DELETE,
    R.DOMAIN_MEM_CPU,
    R.DOMAIN_NIC_ADD,
    R.DOMAIN_NIC_MODIFY,
    R.DOMAIN_NIC_DELETE,
    R.DOMAIN_UNBIND_USER,
    R.POOL_DELETE,
    R.POOL_ENABLE,
    R.POOL_DISABLE,
    R.POOL_ACTIVATE,
    R.POOL_REMOVE_VMS,
    R.POOL_UNBIND_GROUPS,
    R.USER_CREATE,
}


def _pattern(route: Route) -> re.Pattern[str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(route.path))
    return re.compile(f"^{regex}$")


# literal paths beat parameterised ones (``/domain/start`` before ``/domain/{id}``)
_TABLE = sorted(((r, _pattern(r)) for r in R.ALL_ROUTES), key=lambda rp: rp[0].path.count("{"))


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route, pattern in _TABLE:
        if route.method == method:
            m = pattern.match(path)
            if m:
                from urllib.parse import unquote

                return route, {k: unquote(v) for k, v in m.groupdict().items()}
    return None


@dataclass
class Faults:
    error_status: int | None = None
    error_msg: str = "模拟错误"
    delay: float = 0.0
    drop_connection: bool = False
    count: int | None = None  # None: until cleared
    method: str | None = None  # None: any method
    path: str | None = None  # None: any path

    def active(self) -> bool:
        return bool(self.error_status is not None or self.delay or self.drop_connection)

    def applies(self, method: str, path: str) -> bool:
        return self.active() and self.method in (None, method) and self.path in (None, path)


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, platform: Platform, host: str = "127.0.0.1", port: int = 0) -> None:
        self.platform = platform
        self.faults = Faults()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__((host, port), _RequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def take_fault(self, method: str, path: str) -> Faults | None:
        with self.lock:
            if not self.faults.applies(method, path):
                return None
            current = Faults(**vars(self.faults))
            if self.faults.count is not None:
                self.faults.count -= 1
                if self.faults.count <= 0:
                    self.faults = Faults()
            return current

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)

    def logins(self) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r["login"])

    def shutdown(self) -> None:
        self.platform.shutdown()
        super().shutdown()


class _RequestHandler(BaseHTTPRequestHandler):
    server: SimServer
    protocol_version = "HTTP/1.1"
    _pending: tuple[dict[str, Any], float] | None = None  # the API request being answered, not yet logged
    # Headers and body go out in two writes: without TCP_NODELAY the body waits ~40 ms for the client's
    # delayed ACK on every request (measured by bench/bench_vdi.py).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("vdi-sim %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_GET

    def _send(self, body: Any, http_status: int = 200) -> None:
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self._record(body.get("status", http_status) if isinstance(body, dict) else http_status)
        self.send_response(http_status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(BAD_PARAM, "参数错误: 请求体不是 JSON") from None

    def _handle(self) -> None:
        started = time.perf_counter()  # request line and headers are parsed; the body is read below
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path.startswith("/_sim/"):
            self._sim(url.path)
            return
        entry: dict[str, Any] = {"method": self.command, "path": url.path, "login": False, "status": None}
        self._pending = (entry, started)
        try:
            body = self._read_body()
            self._api(url.path, query, body, entry)
        except ApiError as err:
            self._send({"status": err.status, "msg": err.msg})
        except ConnectionError:
            self._record(-1)  # dropped on purpose: no reply
        except Exception as exc:  # a bug in the simulator: still answer in the envelope
            log.exception("vdi-sim: %s %s failed", self.command, url.path)
            self._send({"status": 500, "msg": f"系统内部错误: {type(exc).__name__}"})

    def _record(self, status: int) -> None:
        """Log the API request being answered before its reply goes out, so that a client that has its
        reply always finds the request in ``GET /_sim/log`` (``ms``: parsed request → reply ready)."""
        pending, self._pending = self._pending, None
        if pending is None:  # a /_sim/ route, or the reply of this request was already logged
            return
        entry, started = pending
        entry["status"] = status
        entry["ms"] = round((time.perf_counter() - started) * 1000, 3)
        self.server.record(entry)

    def _api(self, path: str, query: dict[str, str], body: Any, entry: dict[str, Any]) -> tuple[int, Any]:
        platform = self.server.platform
        found = match(self.command, path)
        if found is None:
            self._send({"status": 404, "msg": f"接口不存在: {self.command} {path}"}, 404)
            return 404, None
        route, args = found
        if route is R.LOGIN:
            entry["login"] = True
            data = platform.login(_body(body))
            self._send({"status": 0, "msg": OK_MSG, "data": data})
            return 0, data
        fault = self.server.take_fault(self.command, path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.drop_connection:
            self.close_connection = True
            self.connection.shutdown(2)  # socket.SHUT_RDWR: the client sees the connection dropped
            raise ConnectionError
        platform.check_token(self.headers.get("Token"))
        if fault is not None and fault.error_status is not None:
            raise ApiError(fault.error_status, fault.error_msg)
        if route is R.LOGOUT:
            platform.logout(self.headers.get("Token"))
        data = HANDLERS[route](platform, args, query, body)
        reply: dict[str, Any] = {"status": 0, "msg": OK_MSG}
        if route not in _NO_DATA:
            reply["data"] = data
        self._send(reply)
        return 0, data

    def _sim(self, path: str) -> None:
        server = self.server
        try:
            body = self._read_body() or {}
        except ApiError as err:
            self._send({"error": err.msg}, 400)
            return
        if path == "/_sim/faults" and self.command == "POST":
            if body.get("expire_tokens"):
                server.platform.expire_tokens()
            with server.lock:
                server.faults = Faults(
                    error_status=body.get("error_status"),
                    error_msg=str(body.get("error_msg") or "模拟错误"),
                    delay=float(body.get("delay") or 0),
                    drop_connection=bool(body.get("drop_connection")),
                    count=body.get("count"),
                    method=str(body["method"]).upper() if body.get("method") else None,
                    path=str(body["path"]) if body.get("path") else None,
                )
            self._send({"faults": vars(server.faults)})
        elif path == "/_sim/faults" and self.command == "GET":
            self._send({"faults": vars(server.faults)})
        elif path == "/_sim/log" and self.command == "GET":
            with server.lock:
                self._send({"requests": list(server.requests)})
        elif path == "/_sim/log" and self.command == "DELETE":
            with server.lock:
                server.requests.clear()
            self._send({"requests": []})
        elif path == "/_sim/tokens" and self.command in ("GET", "POST"):
            if self.command == "POST":
                lifetime = body.get("lifetime")
                try:
                    server.platform.set_token_lifetime(None if lifetime is None else float(lifetime))
                except (TypeError, ValueError):
                    self._send({"error": f"lifetime must be a positive number of seconds, not {lifetime!r}"}, 400)
                    return
            self._send({"lifetime": server.platform.token_lifetime})
        elif path == "/_sim/refresh" and self.command == "POST":
            server.platform.refresh()
            self._send({"refreshed": True})
        else:
            self._send({"error": f"unknown simulator route {self.command} {path}"}, 404)
