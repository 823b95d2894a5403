"""The simulated platform's behaviour: login and tokens, VMs, templates, desk pools, users, events, transitions.

Handlers take the parsed request and return ``data`` (or raise :class:`ApiError` for a ``status != 0`` reply).
Decisions the spec leaves open are documented in ``docs/vdi-simulator.md``.
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ATPLibrary.vdi.sim.backend import OFF, OPERATING, PAUSED, RUNNING, Backend, BackendError, MemoryBackend, SimVm
from ATPLibrary.vdi.sim.store import Store, new_id, public

# error codes (see docs/vdi-simulator.md)
OK_MSG = "操作成功"
TOKEN_INVALID = (1006, "token校验失败")
BAD_PARAM = 1001
NOT_FOUND = 3001
USER_NOT_FOUND = (5098, "用户不存在")
WRONG_PASSWORD = (5099, "密码错误")


class ApiError(Exception):
    def __init__(self, status: int, msg: str) -> None:
        super().__init__(f"{status}: {msg}")
        self.status = status
        self.msg = msg


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


@dataclass
class Timings:
    """Seconds each long operation stays in status 5 ("operating") before it ends."""

    start: float = 1.0
    close: float = 1.0
    reboot: float = 1.0
    suspend: float = 0.5
    resume: float = 0.5
    create: float = 1.0

    @classmethod
    def uniform(cls, seconds: float) -> Timings:
        return cls(*(seconds,) * 6)


# operation → (status at the end, event operateType, description)
_POWER: dict[str, tuple[int, int, str]] = {
    "start": (RUNNING, 1, "启动虚拟机"),
    "close": (OFF, 2, "关闭虚拟机"),
    "reboot": (RUNNING, 3, "重启虚拟机"),
    "suspend": (PAUSED, 4, "挂起虚拟机"),
    "resume": (RUNNING, 5, "恢复虚拟机"),
}
_CREATE_OP = 6

#: The template seeded into an empty store (the lab's backend seeds its guest image instead).
DEFAULT_TEMPLATE: dict[str, Any] = {"name": "win10-template"}


@dataclass
class Platform:
    store: Store
    users: dict[str, str]  # username -> md5 of password
    backend: Backend = field(default_factory=MemoryBackend)
    token_lifetime: float = 1800.0
    timings: Timings = field(default_factory=Timings)
    clock: Callable[[], float] = time.monotonic
    host_ip: str = "127.0.0.1"
    #: Seconds between two status refreshes from the backend (0: only on ``POST /_sim/refresh``).
    refresh_interval: float = 0.0
    #: The seeded template's fields (its name, OS, CPU and memory); the lab's backend seeds its guest image.
    template: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_TEMPLATE))

    def __post_init__(self) -> None:
        self._tokens: dict[str, tuple[str, float]] = {}
        self._started_token_lifetime = self.token_lifetime
        self._lock = threading.RLock()
        self._timers: list[threading.Timer] = []
        self._closed = False
        self._stop_refresh = threading.Event()
        self.seed()
        if self.refresh_interval > 0:
            threading.Thread(target=self._refresh_loop, name="vdi-sim-refresh", daemon=True).start()

    # ---------------------------------------------------------------- seed data
    def seed(self) -> None:
        """One host, one template, one OU with one user, unless the store already holds them."""
        s = self.store
        if not s.query("hosts"):
            s.put(
                "hosts",
                {"id": "host-1", "name": "sim-host-1", "ip": self.host_ip, "status": 1, "arch": "x86_64"}
                | {"cpuSize": 8, "memory": 16384, "domainLimit": 10000, "poolId": "rp-1", "vmcId": "vmc-1"},
            )
        if not s.query("domains", {"isModel": 1}):
            fields = dict(self.template)
            self._new_domain("tpl-1", str(fields.pop("name", "template")), is_model=1, **fields)
        if not s.query("groups"):
            s.put("groups", {"id": "g-1", "ou": "ATP", "distinguishedName": "OU=ATP,DC=atp,DC=local", "parent": ""})
            s.put("users", {"id": "u-1", "sAMAccountName": "atpuser", "displayName": "ATP User"} | self._ou("g-1"))

    def _ou(self, group_id: str) -> dict[str, Any]:
        group = self.store.get("groups", group_id) or {}
        return {"_group": group.get("distinguishedName", "")}

    def _new_domain(self, id_: str, name: str, *, is_model: int = 0, **extra: Any) -> dict[str, Any]:
        host = self.store.query("hosts")[0]
        doc: dict[str, Any] = {
            "id": id_,
            "name": name,
            "status": OFF,
            "isModel": is_model,
            "hostId": host["id"],
            "hostName": host["name"],
            "ip": "",
            "cpu": 2,
            "cores": 2,
            "sockets": 1,
            "threads": 1,
            "memory": 2048,
            "osType": "windows",
            "isRecycle": 0,
            "autoJoinDomain": 0,
        } | extra
        if not is_model:
            self.backend.define(self._sim(doc))
        return self.store.put("domains", doc)

    @staticmethod
    def _sim(doc: dict[str, Any]) -> SimVm:
        return SimVm(
            doc["id"], doc["name"], int(doc.get("cpu") or 1), int(doc.get("memory") or 1024), doc.get("motherId")
        )

    # ---------------------------------------------------------------- timers
    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                return
            timer = threading.Timer(delay, fn)
            timer.daemon = True
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
            timer.start()

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            self._stop_refresh.set()
            for timer in self._timers:
                timer.cancel()

    # ---------------------------------------------------------------- tokens
    def login(self, body: dict[str, Any]) -> dict[str, Any]:
        username = str(body.get("username") or "")
        if username not in self.users:
            raise ApiError(*USER_NOT_FOUND)
        if str(body.get("password") or "").lower() != self.users[username]:
            raise ApiError(*WRONG_PASSWORD)
        token = new_id()
        with self._lock:
            self._tokens[token] = (username, self.clock() + self.token_lifetime)
        return {"token": token, "username": username, "roleLevel": "1", "userPri": 1, "resourcePri": 1}

    def check_token(self, token: str | None) -> None:
        with self._lock:
            entry = self._tokens.get(token or "")
            if entry is None or entry[1] <= self.clock():
                self._tokens.pop(token or "", None)
                raise ApiError(*TOKEN_INVALID)

    def logout(self, token: str | None) -> None:
        with self._lock:
            self._tokens.pop(token or "", None)

    def set_token_lifetime(self, seconds: float | None) -> None:
        """Tokens issued from now on live ``seconds`` (None: the lifetime the platform started with)."""
        if seconds is not None and not seconds > 0:
            raise ValueError(seconds)
        with self._lock:
            self.token_lifetime = self._started_token_lifetime if seconds is None else seconds

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    # ---------------------------------------------------------------- events
    def _event(self, op: int, description: str, vm: dict[str, Any] | None = None) -> str:
        doc: dict[str, Any] = {"id": new_id(), "operateType": op, "description": description, "createTime": now_iso()}
        if vm is not None:
            doc |= {"domainId": vm["id"], "domainName": vm["name"], "hostId": vm.get("hostId", "")}
        self.store.put("events", doc)
        return str(doc["id"])

    def _finish_event(self, event_id: str, error: str | None = None) -> None:
        fields: dict[str, Any] = {"isSuccess": 0 if error is None else 1, "updateTime": now_iso()}
        if error is not None:
            fields["errorReason"] = error
        self.store.update("events", event_id, **fields)

    def get_event(self, event_id: str) -> dict[str, Any]:
        return public(self._require("events", event_id, "事件"))

    # ---------------------------------------------------------------- helpers
    def _require(self, kind: str, id_: str, what: str) -> dict[str, Any]:
        doc = self.store.get(kind, str(id_))
        if doc is None or (kind == "domains" and doc.get("isRecycle")):
            raise ApiError(NOT_FOUND, f"{what}不存在: {id_}")
        return doc

    @staticmethod
    def paged(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
        """``pageNum`` is 1-based (default 1), ``pageSize`` defaults to 10; a page past the end is empty."""
        try:
            num = max(1, int(query.get("pageNum") or 1))
            size = max(1, int(query.get("pageSize") or 10))
        except ValueError:
            raise ApiError(BAD_PARAM, "分页参数错误") from None
        total = len(items)
        chunk = [public(i) for i in items[(num - 1) * size : num * size]]
        return {"list": chunk, "pageNum": num, "pageSize": size, "pages": math.ceil(total / size), "total": total}

    @staticmethod
    def _list(body: dict[str, Any], name: str) -> list[str]:
        value = body.get(name)
        if not isinstance(value, list) or not value:
            raise ApiError(BAD_PARAM, f"参数错误: {name} 不能为空")
        return [str(v) for v in value]

    # ---------------------------------------------------------------- VMs
    def list_vms(self, query: dict[str, str], *, is_model: int = 0) -> list[dict[str, Any]]:
        where: dict[str, Any] = {"isModel": is_model, "isRecycle": 0}
        for name in ("status", "hostId", "poolId", "osType", "isConnected", "motherId", "freeze", "agentVersion"):
            if query.get(name) not in (None, ""):
                where[name] = query[name]
        items = self.store.query("domains", where, keyword=query.get("keyword") or None)
        if query.get("isBindUser") in ("0", "1"):
            bound = query["isBindUser"] == "1"
            items = [i for i in items if bool(i.get("userId")) == bound]
        return items

    def get_vm(self, vm_id: str) -> dict[str, Any]:
        return public(self._require("domains", vm_id, "虚拟机"))

    #: ``DomainUpdateDto`` fields the simulator keeps (the others are accepted and ignored)
    _UPDATABLE = ("name", "autoJoinDomain", "remark", "osType", "cpu", "memory", "cores", "threads", "mouseMode")

    def update_vm(self, vm_id: str, body: dict[str, Any]) -> None:
        """``PATCH /domain/{id}``: changes only the fields sent.  A VM in status 5 is refused; a name must be
        unique among the platform's domains (VMs and templates, not the recycle bin); ``autoJoinDomain`` is 0 or 1."""
        with self.store.transaction():
            vm = self._require("domains", vm_id, "虚拟机")
            fields = {k: body[k] for k in self._UPDATABLE if body.get(k) is not None}
            if vm["status"] == OPERATING:
                raise ApiError(BAD_PARAM, "虚拟机正在操作中")
            if "name" in fields:
                name = str(fields["name"]).strip()
                if not name:
                    raise ApiError(BAD_PARAM, "参数错误: name 不能为空")
                others = [d for d in self.store.query("domains", {"name": name, "isRecycle": 0}) if d["id"] != vm_id]
                if others:
                    raise ApiError(BAD_PARAM, f"虚拟机名称已存在: {name}")
                fields["name"] = name
            if "autoJoinDomain" in fields and fields["autoJoinDomain"] not in (0, 1):
                raise ApiError(BAD_PARAM, "参数错误: autoJoinDomain 只能是 0 或 1")
            self.store.update("domains", vm_id, **fields)

    def power(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        _, op_type, description = _POWER[op]
        force = bool(body.get("isForce"))
        errors: list[dict[str, Any]] = []
        events: list[str] = []
        for vm_id in self._list(body, "idList"):
            with self.store.transaction():
                vm = self.store.get("domains", vm_id)
                error = self._power_error(op, vm)
                if error is not None or vm is None:
                    errors.append({"domainId": vm_id, "domainName": (vm or {}).get("name", ""), "errorMsg": error})
                    continue
                previous = vm["status"]
                self.store.update("domains", vm_id, status=OPERATING)
            event_id = self._event(op_type, description, vm)
            events.append(event_id)
            self._later(getattr(self.timings, op), self._ender(op, vm, previous, event_id, force))
        return {"errorList": errors, "eventIdList": events}

    def _power_error(self, op: str, vm: dict[str, Any] | None) -> str | None:
        if vm is None or vm.get("isModel") or vm.get("isRecycle"):
            return "虚拟机不存在"
        if vm["status"] == OPERATING:
            return "虚拟机正在操作中"
        if self.backend.state(self._sim(vm)) is None:
            return f"虚拟机在主机上不存在 ({self._sim(vm).domain})"
        allowed = {"start": {OFF, RUNNING}, "close": {RUNNING, PAUSED, OFF}, "reboot": {RUNNING}}
        allowed |= {"suspend": {RUNNING}, "resume": {PAUSED}}
        if vm["status"] not in allowed[op]:
            return f"虚拟机状态({vm['status']})不允许此操作"
        return None

    def _ender(self, op: str, vm: dict[str, Any], previous: int, event_id: str, force: bool) -> Callable[[], None]:
        return lambda: self._end(op, vm, previous, event_id, force)

    def _end(self, op: str, vm: dict[str, Any], previous: int, event_id: str, force: bool) -> None:
        sim = self._sim(vm)
        try:
            if op == "start" and previous != RUNNING:
                self.backend.start(sim)
            elif op == "close" and previous != OFF:
                self.backend.stop(sim, force)
            elif op == "reboot":
                self.backend.stop(sim, True)
                self.backend.start(sim)
            elif op == "suspend":
                self.backend.suspend(sim)
            elif op == "resume":
                self.backend.resume(sim)
        except BackendError as exc:
            self.store.update("domains", vm["id"], status=self.backend.state(sim) if previous is None else previous)
            self._finish_event(event_id, str(exc))
            return
        self.store.update("domains", vm["id"], status=_POWER[op][0])
        self._finish_event(event_id)

    def _refresh_loop(self) -> None:
        while not self._stop_refresh.wait(self.refresh_interval):
            try:
                self.refresh()
            except Exception:  # a backend hiccup must not end the schedule; the next round tries again
                continue

    def refresh(self) -> None:
        """Read every VM's status from the backend, as the platform does on its own schedule.

        A VM in status 5 is left alone (its operation will set it); a VM whose domain is gone keeps its
        last status, so the platform goes on showing what it last knew (``VDI And Libvirt Should Agree``
        reports it as not defined on its host).
        """
        for vm in self.store.query("domains", {"isModel": 0, "isRecycle": 0}):
            if vm["status"] == OPERATING:
                continue
            state = self.backend.state(self._sim(vm))
            if state is not None and state != vm["status"]:
                with self.store.transaction():
                    current = self.store.get("domains", vm["id"])
                    if current is not None and current["status"] == vm["status"]:  # no operation began meanwhile
                        self.store.update("domains", vm["id"], status=state)

    def delete_vms(self, body: dict[str, Any]) -> None:
        ids = self._list(body, "domainIdList")
        recycle = bool(body.get("isRecycle"))
        for vm_id in ids:
            vm = self._require("domains", vm_id, "虚拟机")
            sim = self._sim(vm)
            if self.backend.state(sim) not in (None, OFF):
                self.backend.stop(sim, True)
            if recycle:
                self.store.update("domains", vm_id, isRecycle=1, status=OFF)
            else:
                self.backend.undefine(sim)
                self.store.delete("domains", vm_id)

    def create_vm(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("name") or "")
        if not name:
            raise ApiError(BAD_PARAM, "参数错误: name 不能为空")
        keys = ("cpu", "memory", "cores", "sockets", "threads", "bootloader", "autoJoinDomain")
        fields = {k: body[k] for k in keys if k in body}
        vm = self._new_domain(new_id(), name, **fields)
        return {"uuid": vm["id"]}

    def clone_vm(self, vm_id: str, body: dict[str, Any]) -> dict[str, Any]:
        source = self._require("domains", vm_id, "虚拟机")
        name = str(body.get("name") or "")
        if not name:
            raise ApiError(BAD_PARAM, "参数错误: name 不能为空")
        fields = {k: source[k] for k in ("cpu", "memory", "cores", "sockets", "threads", "osType") if k in source}
        clone = self._new_domain(new_id(), name, isCloneDomain=1, motherId=source["id"], **fields)
        event_id = self._event(_CREATE_OP, "克隆虚拟机", clone)
        self._later(self.timings.create, lambda: self._finish_event(event_id))
        return {"cloneUuid": clone["id"], "eventId": event_id}

    def _from_template(self, template: dict[str, Any], prefix: str, amount: int, **extra: Any) -> list[str]:
        existing = {d["name"] for d in self.store.query("domains")}
        made: list[str] = []
        n = 1
        while len(made) < amount:
            name = f"{prefix}{n}"
            n += 1
            if name in existing:
                continue
            fields = {k: template[k] for k in ("cpu", "memory", "cores", "sockets", "threads", "osType")}
            made.append(
                self._new_domain(
                    new_id(), name, motherId=template["id"], motherName=template["name"], **fields, **extra
                )["id"]
            )
        return made

    def clone_template(self, template_id: str, body: dict[str, Any]) -> dict[str, Any]:
        template = self._require("domains", template_id, "模板")
        if not template.get("isModel"):
            raise ApiError(NOT_FOUND, f"模板不存在: {template_id}")
        amount = body.get("amount")
        if not isinstance(amount, int) or amount < 1 or not body.get("name"):
            raise ApiError(BAD_PARAM, "参数错误: name 和 amount 必填")
        self._from_template(template, str(body["name"]), amount)
        event_id = self._event(_CREATE_OP, "模板创建虚拟机")
        self._later(self.timings.create, lambda: self._finish_event(event_id))
        return {"eventId": event_id}

    def set_mem_cpu(self, body: dict[str, Any]) -> None:
        ids = self._list(body, "listId")
        fields = {k: int(body[k]) for k in ("cpu", "memory") if body.get(k) is not None}
        for vm_id in ids:
            self._require("domains", vm_id, "虚拟机")
        for vm_id in ids:
            self.store.update("domains", vm_id, **fields)

    # NICs live in the VM's internal "_nics" list
    def list_nics(self, vm_id: str) -> list[dict[str, Any]]:
        vm = self._require("domains", vm_id, "虚拟机")
        return [dict(n) for n in vm.get("_nics", [])]

    def add_nic(self, vm_id: str, body: dict[str, Any]) -> None:
        with self.store.transaction():
            vm = self._require("domains", vm_id, "虚拟机")
            nics = vm.get("_nics", [])
            mac = "52:54:00:" + ":".join(f"{b:02x}" for b in hashlib.md5(f"{vm_id}{len(nics)}".encode()).digest()[:3])
            nics.append(
                {"mac": mac, "vlanId": str(body.get("vlanId") or ""), "domainId": vm_id, "domainName": vm["name"]}
            )
            self.store.update("domains", vm_id, _nics=nics)

    def modify_nic(self, vm_id: str, body: dict[str, Any]) -> None:
        with self.store.transaction():
            vm = self._require("domains", vm_id, "虚拟机")
            nics = vm.get("_nics", [])
            nic = next((n for n in nics if n["mac"] == body.get("mac")), None)
            if nic is None:
                raise ApiError(NOT_FOUND, f"网卡不存在: {body.get('mac')}")
            nic.update({k: str(body[k]) for k in ("vlanId", "ovsId") if body.get(k) is not None})
            self.store.update("domains", vm_id, _nics=nics)

    def delete_nic(self, vm_id: str, mac: str) -> None:
        with self.store.transaction():
            vm = self._require("domains", vm_id, "虚拟机")
            nics = vm.get("_nics", [])
            if not any(n["mac"] == mac for n in nics):
                raise ApiError(NOT_FOUND, f"网卡不存在: {mac}")
            self.store.update("domains", vm_id, _nics=[n for n in nics if n["mac"] != mac])

    def bind_user(self, body: dict[str, Any]) -> dict[str, Any]:
        user_id = str(body.get("userId") or "")
        if self.store.get("users", user_id) is None:
            raise ApiError(NOT_FOUND, f"用户不存在: {user_id}")
        not_bound = []
        for vm_id in self._list(body, "domainIdList"):
            if self.store.update("domains", vm_id, userId=user_id) is None:
                not_bound.append(vm_id)
        return {"notBindDomainIdList": not_bound}

    def unbind_user(self, body: dict[str, Any]) -> None:
        for vm_id in self._list(body, "domainIdList"):
            self._require("domains", vm_id, "虚拟机")
            self.store.update("domains", vm_id, userId="")

    def spice_key(self, vm_id: str) -> dict[str, Any]:
        vm = self._require("domains", vm_id, "虚拟机")
        if vm["status"] != RUNNING:
            raise ApiError(BAD_PARAM, "虚拟机未开机")
        try:
            console = self.backend.console(self._sim(vm))
        except BackendError as exc:
            raise ApiError(NOT_FOUND, str(exc)) from None
        key = base64.b64encode(console.password.encode()).decode()
        return {"domainId": vm_id, "hostId": vm["hostId"], "ip": console.host, "key": key, "name": vm["name"]} | {
            "port": str(console.port)
        }

    # ---------------------------------------------------------------- desk pools
    def list_pools(self, query: dict[str, str]) -> list[dict[str, Any]]:
        where = {"type": query["type"]} if query.get("type") not in (None, "") else {}
        pools = self.store.query("pools", where, keyword=query.get("keyword") or None)
        if query.get("typeList"):
            types = set(query["typeList"].split(","))
            pools = [p for p in pools if str(p["type"]) in types]
        return [self._pool_view(p) for p in pools]

    def _pool_view(self, pool: dict[str, Any]) -> dict[str, Any]:
        vms = self.store.query("domains", {"desktopPoolId": pool["id"], "isRecycle": 0})
        return pool | {"usedAmount": sum(1 for v in vms if v.get("userId"))}

    def create_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        for name in ("name", "amount", "type", "modelId"):
            if body.get(name) in (None, ""):
                raise ApiError(BAD_PARAM, f"参数错误: {name} 不能为空")
        if self.store.query("pools", {"name": body["name"]}):
            raise ApiError(BAD_PARAM, f"桌面池名称已存在: {body['name']}")
        template = self._require("domains", str(body["modelId"]), "模板")
        pool_id = new_id()
        pool = {
            "id": pool_id,
            "name": str(body["name"]),
            "amount": int(body["amount"]),
            "type": int(body["type"]),
            "modelId": template["id"],
            "curModelId": template["id"],
            "curModelName": template["name"],
            "domainPrefix": str(body.get("domainPrefix") or f"{body['name']}-"),
            "enabled": 1,
            "status": 0,
            "remark": str(body.get("remark") or ""),
            "groupNameList": [],
        }
        self.store.put("pools", pool)
        self._from_template(template, pool["domainPrefix"], pool["amount"], desktopPoolId=pool_id)
        event_id = self._event(_CREATE_OP, "创建桌面池")
        self._later(self.timings.create, lambda: self._finish_event(event_id))
        return {"eventId": event_id}

    def _pool(self, pool_id: str) -> dict[str, Any]:
        return self._require("pools", pool_id, "桌面池")

    def update_pool(self, pool_id: str, body: dict[str, Any]) -> dict[str, Any]:
        pool = self._pool(pool_id)
        fields = {k: body[k] for k in ("name", "amount", "modelId", "remark") if body.get(k) is not None}
        pool = self.store.update("pools", pool_id, **fields) or pool
        have = len(self.store.query("domains", {"desktopPoolId": pool_id, "isRecycle": 0}))
        if int(pool["amount"]) > have:
            template = self._require("domains", pool["modelId"], "模板")
            self._from_template(template, pool["domainPrefix"], int(pool["amount"]) - have, desktopPoolId=pool_id)
        event_id = self._event(_CREATE_OP, "修改桌面池")
        self._later(self.timings.create, lambda: self._finish_event(event_id))
        return {"eventId": event_id}

    def set_pool(self, pool_id: str, **fields: Any) -> None:
        self._pool(pool_id)
        self.store.update("pools", pool_id, **fields)

    def delete_pool(self, pool_id: str) -> None:
        self._pool(pool_id)
        ids = [v["id"] for v in self.store.query("domains", {"desktopPoolId": pool_id})]
        if ids:
            self.delete_vms({"domainIdList": ids, "isRecycle": 0})
        self.store.delete("pools", pool_id)

    def pool_vms(self, pool_id: str) -> list[dict[str, Any]]:
        self._pool(pool_id)
        return [public(v) for v in self.store.query("domains", {"desktopPoolId": pool_id, "isRecycle": 0})]

    def pool_add_vms(self, body: dict[str, Any]) -> list[str]:
        """Adds the VMs; ``data`` lists the ids that could not be added (unknown)."""
        pool_id = str(body.get("id") or "")
        self._pool(pool_id)
        failed = []
        for vm_id in self._list(body, "domainIdList"):
            if self.store.update("domains", vm_id, desktopPoolId=pool_id) is None:
                failed.append(vm_id)
        return failed

    def pool_remove_vms(self, body: dict[str, Any]) -> None:
        pool_id = str(body.get("id") or "")
        self._pool(pool_id)
        for vm_id in self._list(body, "domainIdList"):
            vm = self.store.get("domains", vm_id)
            if vm is not None and vm.get("desktopPoolId") == pool_id:
                self.store.update("domains", vm_id, desktopPoolId="")

    def pool_groups(self, body: dict[str, Any], bind: bool) -> list[str]:
        """Binds/unbinds OUs by DN; ``data`` (bind) lists the names that are not known OUs."""
        pool_id = str(body.get("id") or "")
        pool = self._pool(pool_id)
        names = self._list(body, "groupNameList")
        known = {g["distinguishedName"] for g in self.store.query("groups")}
        current = list(pool.get("groupNameList") or [])
        if bind:
            current += [n for n in names if n in known and n not in current]
        else:
            current = [n for n in current if n not in names]
        self.store.update("pools", pool_id, groupNameList=current)
        return [n for n in names if n not in known] if bind else []

    def switch_model(self, body: dict[str, Any]) -> dict[str, Any]:
        pool_id = str(body.get("deskPoolId") or "")
        self._pool(pool_id)
        template = self._require("domains", str(body.get("modelId") or ""), "模板")
        self.store.update("pools", pool_id, status=1)
        event_id = self._event(_CREATE_OP, "切换桌面池模板")

        def done() -> None:
            self.store.update(
                "pools",
                pool_id,
                status=0,
                modelId=template["id"],
                curModelId=template["id"],
                curModelName=template["name"],
            )
            self._finish_event(event_id)

        self._later(self.timings.create, done)
        return {"eventId": event_id}

    # ---------------------------------------------------------------- hosts, users
    def list_hosts(self, query: dict[str, str]) -> list[dict[str, Any]]:
        where = {k: query[k] for k in ("arch", "poolId", "status", "vmcId") if query.get(k) not in (None, "")}
        hosts = self.store.query("hosts", where, keyword=query.get("name") or None)
        out = []
        for host in hosts:
            running = len(self.store.query("domains", {"hostId": host["id"], "status": RUNNING}))
            out.append(host | {"runningDomainCount": running})
        return out

    def get_host(self, host_id: str) -> dict[str, Any]:
        return public(self._require("hosts", host_id, "主机"))

    def list_users(self, query: dict[str, str]) -> list[dict[str, Any]]:
        group = query.get("group") or ""
        users = [u for u in self.store.query("users") if not group or u.get("_group") == group]
        keyword = (query.get("keyword") or "").lower()
        if keyword:
            users = [u for u in users if keyword in (u["sAMAccountName"] + u.get("displayName", "")).lower()]
        return [u | {"distinguishedName": f"CN={u['sAMAccountName']},{u.get('_group', '')}"} for u in users]

    def user_detail(self, query: dict[str, str]) -> dict[str, Any]:
        name = query.get("sAMAccountName") or ""
        found = self.store.query("users", {"sAMAccountName": name})
        if not found:
            raise ApiError(*USER_NOT_FOUND)
        return {k: found[0][k] for k in ("sAMAccountName", "displayName", "mail", "mobile") if k in found[0]}

    def create_user(self, body: dict[str, Any]) -> None:
        name = str(body.get("sAMAccountName") or "")
        group = str(body.get("group") or "")
        if not name or not group:
            raise ApiError(BAD_PARAM, "参数错误: sAMAccountName 和 group 必填")
        if not self.store.query("groups", {"distinguishedName": group}):
            raise ApiError(NOT_FOUND, f"组织单位不存在: {group}")
        if self.store.query("users", {"sAMAccountName": name}):
            raise ApiError(BAD_PARAM, f"用户已存在: {name}")
        fields = {k: str(body[k]) for k in ("sn", "givenName", "mail", "mobile", "idNumber") if body.get(k)}
        display = " ".join(x for x in (fields.get("givenName"), fields.get("sn")) if x) or name
        self.store.put(
            "users", {"id": new_id(), "sAMAccountName": name, "displayName": display, "_group": group} | fields
        )

    def group_tree(self) -> list[dict[str, Any]]:
        return [g | {"list": []} for g in self.store.query("groups")]
