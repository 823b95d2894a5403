"""A synchronous client for the OCloudView VDI admin API (``/ocloud/v1``), on a pooled ``httpx.Client``.

Only the spec's forms are used (see :mod:`ATPLibrary.vdi.routes`).  Behaviour:

* login ``POST /ocloud/v1/login`` with the lowercase hex MD5 of the UTF-8 password; later calls send ``Token``;
* every reply is an envelope ``{"status", "msg", "data"}``: ``status != 0`` raises :class:`VdiError` (code, message);
* ``status == 1006`` (token expired) logs in again once and retries that call once;
* transport errors are retried with bounded exponential backoff, but only for idempotent requests (GET) or when
  the request cannot have reached the server (connect errors, pool timeouts).  A POST that may have reached the
  server is never resent;
* paged routes are iterators over all pages; batch replies with a non-empty ``errorList`` raise
  :class:`VdiBatchError` unless ``tolerate_errors=True``; events are polled until done (see :class:`Event`).

The password is kept only as its MD5 and is never logged or put in an exception message.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import httpx

from ATPLibrary.errors import ConfigurationError, VdiBatchError, VdiConnectionError, VdiError, WaitTimeoutError
from ATPLibrary.vdi import routes as R
from ATPLibrary.vdi.models import (
    BatchResult,
    CloneResult,
    Event,
    Host,
    OrgUnit,
    Pool,
    SpiceInfo,
    Template,
    User,
    Vm,
)
from ATPLibrary.vdi.routes import Route

log = logging.getLogger(__name__)

TOKEN_EXPIRED = 1006
#: English for the platform's documented error codes (its messages are Chinese; both are shown).
KNOWN_CODES: dict[int, str] = {
    TOKEN_EXPIRED: "token missing, invalid or expired",
    5098: "user does not exist",
    5099: "wrong password",
    5100: "account locked",
    5101: "account expired",
    5102: "SMS verification code needed",
}
NOT_THE_API = "is this the OCloudView admin API? Check the URL (scheme, host and port, no path)"


def describe_status(code: int, msg: str) -> str:
    """``status 5099: 密码错误 (wrong password)``: the platform's code and message, with English where known."""
    english = KNOWN_CODES.get(code)
    return f"status {code}: {msg}" + (f" ({english})" if english else "")


_PAGING = ("pageNum", "pageSize")
_USER_FIELDS = frozenset({"givenName", "idNumber", "mail", "mobile", "sn"})  # UserCreateParam besides the two above
_CANNOT_HAVE_REACHED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def md5_password(plaintext: str) -> str:
    """The platform's password rule: lowercase hex MD5 of the UTF-8 plaintext, unsalted."""
    return hashlib.md5(plaintext.encode("utf-8")).hexdigest()


def _ids(ids: str | Iterable[str]) -> list[str]:
    return [ids] if isinstance(ids, str) else [str(i) for i in ids]


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class VdiClient:
    """Client for one platform.  Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password_md5 = md5_password(password)
        self.retries = max(0, retries)
        self.backoff = backoff
        self._sleep = sleep
        self.token: str | None = None
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"VdiClient({self.base_url!r}, user={self.username!r})"

    def __enter__(self) -> VdiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (no request is sent)."""
        self._http.close()

    # ---------------------------------------------------------------- transport
    def _send(self, route: Route, url: str, params: Mapping[str, Any] | None, body: Any) -> httpx.Response:
        headers = {"Token": self.token} if self.token and route is not R.LOGIN else {}
        attempt = 0
        while True:
            try:
                return self._http.request(
                    route.method, url, params=_drop_none(params or {}) or None, json=body, headers=headers
                )
            except httpx.TransportError as exc:
                retryable = route.idempotent or isinstance(exc, _CANNOT_HAVE_REACHED)
                if not retryable or attempt >= self.retries:
                    why = "" if retryable else " (not retried: the request may have reached the server)"
                    raise VdiConnectionError(
                        f"VDI platform {self.base_url} unreachable for {route}: {type(exc).__name__}: {exc}{why}"
                    ) from None
                delay = min(self.backoff * (2**attempt), 10.0)
                log.debug("VDI %s failed (%s), retry %d in %.1fs", route, type(exc).__name__, attempt + 1, delay)
                attempt += 1
                self._sleep(delay)

    def _unwrap(self, route: Route, response: httpx.Response) -> Any:
        where = f"VDI {route.method} {response.request.url.path}"
        if response.status_code >= 400:
            raise VdiError(
                f"{where} failed: HTTP {response.status_code} from {self.base_url}: {NOT_THE_API}",
                code=response.status_code,
            )
        try:
            envelope = response.json()
        except ValueError:
            raise VdiError(f"{where} answered with a body that is not JSON: {NOT_THE_API}", code=-1) from None
        if not isinstance(envelope, dict) or "status" not in envelope:
            raise VdiError(f"{where} answered without the platform's status envelope: {NOT_THE_API}", code=-1)
        status = envelope.get("status")
        msg = str(envelope.get("msg") or "")
        if status != 0:
            code = status if isinstance(status, int) else -1
            raise VdiError(f"{where} failed: {describe_status(code, msg)}", code=code, msg=msg)
        return envelope.get("data")

    def _call(
        self,
        route: Route,
        *,
        path: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        route.check_query({k: v for k, v in (params or {}).items() if not (route.paged and k in _PAGING)})
        if self.token is None:
            self.login()
        url = route.format(**(path or {}))
        response = self._send(route, url, params, body)
        log.debug("VDI %s %s -> HTTP %d", route.method, url, response.status_code)
        try:
            return self._unwrap(route, response)
        except VdiError as err:
            if err.code != TOKEN_EXPIRED:
                raise
        log.info("VDI token expired (%d); logging in again once", TOKEN_EXPIRED)
        self.login()
        return self._unwrap(route, self._send(route, url, params, body))

    def _paged(self, route: Route, params: Mapping[str, Any], page_size: int) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            data = self._call(route, params={**params, "pageNum": page, "pageSize": page_size}) or {}
            items = data.get("list") or []
            yield from items
            pages = data.get("pages")
            if not items or (isinstance(pages, int) and page >= pages) or (pages is None and len(items) < page_size):
                return
            page += 1

    def _batch(self, route: Route, body: dict[str, Any], tolerate_errors: bool) -> BatchResult:
        result = BatchResult.from_api(self._call(route, body=body))
        if result.errors and not tolerate_errors:
            named = "; ".join(f"{e.domain_name or e.domain_id} ({e.domain_id}): {e.error_msg}" for e in result.errors)
            raise VdiBatchError(
                f"VDI {route} failed for {len(result.errors)} VM(s): {named}", errors=result.errors, result=result
            )
        return result

    # ---------------------------------------------------------------- session
    def login(self) -> str:
        """Log in and keep the token (also done automatically before the first call and on expiry)."""
        response = self._send(R.LOGIN, R.LOGIN.path, None, {"username": self.username, "password": self._password_md5})
        try:
            data = self._unwrap(R.LOGIN, response)
        except VdiError as err:
            why = describe_status(err.code, err.msg) if err.msg or err.code in KNOWN_CODES else str(err)
            raise VdiError(f"VDI login as {self.username!r} failed: {why}", code=err.code, msg=err.msg) from None
        token = (data or {}).get("token")
        if not token:
            raise VdiError(f"VDI login as {self.username!r} returned no token", code=-1)
        self.token = str(token)
        log.debug("VDI logged in to %s as %s", self.base_url, self.username)
        return self.token

    def logout(self) -> None:
        if self.token is not None:
            self._call(R.LOGOUT)
            self.token = None

    # ---------------------------------------------------------------- VMs
    def list_vms(self, *, page_size: int = 100, **filters: Any) -> Iterator[Vm]:
        """All VMs over all pages; ``filters`` are the spec's query names (``keyword``, ``status``, ``hostId``…)."""
        for item in self._paged(R.DOMAIN_LIST, filters, page_size):
            yield Vm.from_api(item)

    def get_vm(self, vm_id: str) -> Vm:
        return Vm.from_api(self._call(R.DOMAIN_GET, path={"id": vm_id}) or {})

    def rename_vm(self, vm_id: str, name: str) -> None:
        """Rename one VM (``PATCH /ocloud/v1/domain/{id}`` with ``DomainUpdateDto.name``)."""
        if not name:
            raise ConfigurationError(f"rename_vm({vm_id!r}): the new name is empty")
        self._call(R.DOMAIN_UPDATE, path={"id": vm_id}, body={"name": name})

    def set_vm_auto_join_domain(self, vm_id: str, enabled: bool) -> None:
        """Whether one VM joins the AD domain by itself (``DomainUpdateDto.autoJoinDomain``: 1 or 0)."""
        self._call(R.DOMAIN_UPDATE, path={"id": vm_id}, body={"autoJoinDomain": 1 if enabled else 0})

    def _power(
        self, route: Route, ids: str | Iterable[str], host_id: str | None, force: bool | None, tol: bool
    ) -> BatchResult:
        body: dict[str, Any] = {"idList": _ids(ids)}
        if host_id is not None:
            body["hostId"] = host_id
        if force is not None:
            body["isForce"] = 1 if force else 0
        return self._batch(route, body, tol)

    def start_vms(
        self, ids: str | Iterable[str], *, host_id: str | None = None, tolerate_errors: bool = False
    ) -> BatchResult:
        return self._power(R.DOMAIN_START, ids, host_id, None, tolerate_errors)

    def close_vms(self, ids: str | Iterable[str], *, force: bool = False, tolerate_errors: bool = False) -> BatchResult:
        """Shut down; ``force=True`` sends ``isForce: 1`` (power off)."""
        return self._power(R.DOMAIN_CLOSE, ids, None, force, tolerate_errors)

    def reboot_vms(
        self, ids: str | Iterable[str], *, force: bool = False, tolerate_errors: bool = False
    ) -> BatchResult:
        return self._power(R.DOMAIN_REBOOT, ids, None, force if force else None, tolerate_errors)

    def suspend_vms(self, ids: str | Iterable[str], *, tolerate_errors: bool = False) -> BatchResult:
        return self._power(R.DOMAIN_SUSPEND, ids, None, None, tolerate_errors)

    def resume_vms(self, ids: str | Iterable[str], *, tolerate_errors: bool = False) -> BatchResult:
        return self._power(R.DOMAIN_RESUME, ids, None, None, tolerate_errors)

    def delete_vms(self, ids: str | Iterable[str], *, recycle: bool = False) -> None:
        """Delete VMs; ``recycle=True`` moves them to the recycle bin (``isRecycle: 1``)."""
        self._call(R.DOMAIN_DELETE, body={"domainIdList": _ids(ids), "isRecycle": 1 if recycle else 0})

    def create_vm(self, spec: Mapping[str, Any]) -> str:
        """Create a VM from a ``DomainCreateDto`` dict (the spec's field names); returns the new VM's id."""
        data = self._call(R.DOMAIN_CREATE, body=dict(spec)) or {}
        return str(data.get("uuid") or "")

    def clone_vm(
        self, vm_id: str, name: str, *, storage_pool_id: str | None = None, template_clone: bool = False
    ) -> CloneResult:
        """Full clone of one VM (``DomainCloneDto``)."""
        body = _drop_none({"name": name, "storagePoolId": storage_pool_id, "templateClone": 1 if template_clone else 0})
        data = self._call(R.DOMAIN_CLONE, path={"id": vm_id}, body=body) or {}
        return CloneResult(clone_id=str(data.get("cloneUuid") or ""), event_id=str(data.get("eventId") or ""))

    def create_vms_from_template(
        self,
        template_id: str,
        name_prefix: str,
        amount: int,
        *,
        storage_names: Iterable[str] | None = None,
        check: bool | None = None,
    ) -> str:
        """``POST /ocloud/v1/model/{id}/clone`` (``ModelCloneDto``); returns the event id."""
        body: dict[str, Any] = {"name": name_prefix, "amount": int(amount)}
        if storage_names is not None:
            body["storageNameList"] = list(storage_names)
        if check is not None:
            body["check"] = bool(check)
        data = self._call(R.MODEL_CLONE, path={"id": template_id}, body=body) or {}
        return str(data.get("eventId") or "")

    def set_vm_cpu_memory(self, ids: str | Iterable[str], *, cpu: int | None = None, memory: int | None = None) -> None:
        """``PATCH /ocloud/v1/domain/mem-cpu`` (the spec's field really is ``listId``)."""
        self._call(R.DOMAIN_MEM_CPU, body=_drop_none({"listId": _ids(ids), "cpu": cpu, "memory": memory}))

    def list_nics(self, vm_id: str) -> list[dict[str, Any]]:
        return list(self._call(R.DOMAIN_NIC_LIST, path={"id": vm_id}) or [])

    def add_nic(self, vm_id: str, vlan_id: str) -> None:
        self._call(R.DOMAIN_NIC_ADD, path={"id": vm_id}, body={"vlanId": vlan_id})

    def modify_nic(self, vm_id: str, mac: str, *, vlan_id: str | None = None, ovs_id: str | None = None) -> None:
        self._call(
            R.DOMAIN_NIC_MODIFY,
            path={"domainId": vm_id},
            body=_drop_none({"mac": mac, "vlanId": vlan_id, "ovsId": ovs_id}),
        )

    def delete_nic(self, vm_id: str, mac: str) -> None:
        self._call(R.DOMAIN_NIC_DELETE, path={"domainId": vm_id, "mac": mac})

    def bind_user(self, ids: str | Iterable[str], user_id: str) -> list[str]:
        """Bind a user to VMs; returns the ids the platform did not bind (``notBindDomainIdList``)."""
        data = self._call(R.DOMAIN_BIND_USER, body={"domainIdList": _ids(ids), "userId": user_id}) or {}
        return [str(i) for i in (data.get("notBindDomainIdList") or [])]

    def unbind_user(self, ids: str | Iterable[str]) -> None:
        self._call(R.DOMAIN_UNBIND_USER, body={"domainIdList": _ids(ids)})

    def get_spice(self, vm_id: str) -> SpiceInfo:
        """SPICE connection info (host, port, password decoded from base64)."""
        return SpiceInfo.from_api(self._call(R.DOMAIN_SPICE_KEY, path={"id": vm_id}) or {})

    # ---------------------------------------------------------------- templates
    def list_templates(self, *, page_size: int = 100, **filters: Any) -> Iterator[Template]:
        for item in self._paged(R.MODEL_LIST, filters, page_size):
            yield Vm.from_api(item)

    def all_templates(self, *, pool_id: str | None = None) -> list[Template]:
        data = self._call(R.MODEL_ALL, params={"poolId": pool_id}) or []
        return [Vm.from_api(d) for d in data]

    # ---------------------------------------------------------------- desk pools
    def list_pools(self, *, page_size: int = 100, **filters: Any) -> Iterator[Pool]:
        for item in self._paged(R.POOL_LIST, filters, page_size):
            yield Pool.from_api(item)

    def create_pool(
        self,
        name: str,
        amount: int,
        pool_type: int,
        model_id: str | None = None,
        *,
        domain_prefix: str | None = None,
        remark: str | None = None,
        force_freeze: int | None = None,
    ) -> str:
        """Create a desk pool (type 0 dedicated, 1 shared, 2 teaching); returns the event id."""
        body = _drop_none(
            {
                "name": name,
                "amount": int(amount),
                "type": int(pool_type),
                "modelId": model_id,
                "domainPrefix": domain_prefix,
                "remark": remark,
                "forceFreeze": force_freeze,
            }
        )
        return str((self._call(R.POOL_CREATE, body=body) or {}).get("eventId") or "")

    def update_pool(
        self, pool_id: str, name: str, amount: int, *, model_id: str | None = None, remark: str | None = None
    ) -> str:
        body = _drop_none({"name": name, "amount": int(amount), "modelId": model_id, "remark": remark})
        return str((self._call(R.POOL_UPDATE, path={"id": pool_id}, body=body) or {}).get("eventId") or "")

    def enable_pool(self, pool_id: str) -> None:
        self._call(R.POOL_ENABLE, path={"id": pool_id})

    def disable_pool(self, pool_id: str) -> None:
        self._call(R.POOL_DISABLE, path={"id": pool_id})

    def activate_pool(self, pool_id: str) -> None:
        self._call(R.POOL_ACTIVATE, path={"id": pool_id})

    def delete_pool(self, pool_id: str) -> None:
        self._call(R.POOL_DELETE, path={"id": pool_id})

    def list_pool_vms(self, pool_id: str) -> list[Vm]:
        return [Vm.from_api(d) for d in (self._call(R.POOL_VMS, path={"id": pool_id}) or [])]

    def add_pool_vms(self, pool_id: str, ids: str | Iterable[str]) -> list[str]:
        data = self._call(R.POOL_ADD_VMS, body={"id": pool_id, "domainIdList": _ids(ids)}) or []
        return [str(i) for i in data]

    def remove_pool_vms(self, pool_id: str, ids: str | Iterable[str]) -> None:
        self._call(R.POOL_REMOVE_VMS, body={"id": pool_id, "domainIdList": _ids(ids)})

    def bind_pool_departments(self, pool_id: str, group_names: str | Iterable[str]) -> list[str]:
        data = self._call(R.POOL_BIND_GROUPS, body={"id": pool_id, "groupNameList": _ids(group_names)}) or []
        return [str(i) for i in data]

    def unbind_pool_departments(self, pool_id: str, group_names: str | Iterable[str]) -> None:
        self._call(R.POOL_UNBIND_GROUPS, body={"id": pool_id, "groupNameList": _ids(group_names)})

    def switch_pool_template(self, pool_id: str, model_id: str) -> str:
        data = self._call(R.POOL_SWITCH_MODEL, body={"deskPoolId": pool_id, "modelId": model_id}) or {}
        return str(data.get("eventId") or "")

    # ---------------------------------------------------------------- hosts
    def list_hosts(self, *, page_size: int = 100, **filters: Any) -> Iterator[Host]:
        for item in self._paged(R.HOST_LIST, filters, page_size):
            yield Host.from_api(item)

    def all_hosts(self, **filters: Any) -> list[Host]:
        return [Host.from_api(d) for d in (self._call(R.HOST_ALL, params=filters) or [])]

    def get_host(self, host_id: str) -> Host:
        return Host.from_api(self._call(R.HOST_GET, path={"id": host_id}) or {})

    # ---------------------------------------------------------------- users and OUs
    def list_users(self, group: str, *, page_size: int = 100, keyword: str | None = None) -> Iterator[User]:
        """Users of one OU (``group`` is the OU's distinguished name)."""
        for item in self._paged(R.USER_LIST, _drop_none({"group": group, "keyword": keyword}), page_size):
            yield User.from_api(item)

    def get_user(self, sam_account_name: str) -> User:
        return User.from_api(self._call(R.USER_DETAIL, params={"sAMAccountName": sam_account_name}) or {})

    def create_user(self, sam_account_name: str, group: str, **fields: Any) -> None:
        """Create a user (``UserCreateParam``: extra ``fields`` use the spec's names: ``sn``, ``givenName``, …)."""
        unknown = set(fields) - _USER_FIELDS
        if unknown:
            raise ConfigurationError(
                f"create_user: unknown field(s) {', '.join(sorted(unknown))}; "
                f"allowed: {', '.join(sorted(_USER_FIELDS))}"
            )
        self._call(R.USER_CREATE, body={"sAMAccountName": sam_account_name, "group": group, **fields})

    def ou_tree(self) -> list[OrgUnit]:
        return [OrgUnit.from_api(d) for d in (self._call(R.GROUP_TREE) or [])]

    # ---------------------------------------------------------------- events
    def get_event(self, event_id: str) -> Event:
        return Event.from_api(self._call(R.EVENT_GET, path={"id": event_id}) or {})

    def wait_for_event(self, event_id: str, *, timeout: float = 300.0, interval: float = 1.0) -> Event:
        """Poll an event until done; raise :class:`VdiError` if it failed, ``WaitTimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.get_event(event_id)
            if event.done:
                if not event.succeeded:
                    raise VdiError(
                        f"VDI event {event_id} ({event.description or event.domain_name}) failed: "
                        f"isSuccess={event.is_success}: {event.error_reason}",
                        code=event.is_success if event.is_success is not None else -1,
                        msg=event.error_reason,
                    )
                return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(f"VDI event {event_id} not done within {timeout:g}s")
            self._sleep(min(interval, remaining))
