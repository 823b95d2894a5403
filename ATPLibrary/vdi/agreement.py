"""Does the VDI platform agree with libvirt?  Each platform VM's status against its libvirt domain's state.

Plain Python (no Robot Framework import); used by `VDI And Libvirt Should Agree` and ``atp vdi verify``.

Rules (also in docs/vdi.md):

* platform status 0 off, 1 running, 2 paused; libvirt ``running``/``idle`` (blocked) read as running (1),
  ``paused``/``pmsuspended`` as paused (2), ``shut off``/``in shutdown``/``crashed``/``no state`` as off (0);
* a VM in status 5 (operating) or 6 (upgrading) is *in transition*: listed, never a difference;
* a VM's domain is the one whose libvirt UUID equals the VM id when the id is a UUID (32 hex digits, dashed or
  not); otherwise, or when no domain has that UUID, the domain named by the ``domain_name`` template
  (placeholders ``{id}``, ``{name}``; default ``{name}``).  No such domain: *not defined on host*;
* a platform host's libvirt URI comes from the ``host_uri`` template (placeholders ``{ip}``, ``{name}``, ``{id}``;
  default ``qemu+tcp://{ip}/system``).  A host whose libvirt cannot be opened within ``connect_timeout``: every
  VM on it is *host unreachable*, naming the URI and the error;
* a VM whose host id is empty or not among the platform's hosts: *no host*.
"""

from __future__ import annotations

import json
import re
import string
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import libvirt

from ATPLibrary.errors import ConfigurationError, HostConnectionError, HostError, VMNotFoundError
from ATPLibrary.hosts.connection import HostConnection
from ATPLibrary.hosts.state import VMState
from ATPLibrary.hosts.timing import format_seconds
from ATPLibrary.vdi.models import VM_STATUS, Host, Vm

DEFAULT_HOST_URI = "qemu+tcp://{ip}/system"
DEFAULT_DOMAIN_NAME = "{name}"
HOST_PLACEHOLDERS = ("ip", "name", "id")
DOMAIN_PLACEHOLDERS = ("id", "name")

OFF, RUNNING, PAUSED = 0, 1, 2
#: Platform statuses that mean an operation is under way (5 operating, 6 upgrading).
TRANSITION_STATUSES = frozenset({5, 6})

_LIBVIRT_TO_PLATFORM: dict[VMState, int] = {
    VMState.RUNNING: RUNNING,
    VMState.BLOCKED: RUNNING,
    VMState.PAUSED: PAUSED,
    VMState.PMSUSPENDED: PAUSED,
    VMState.SHUTOFF: OFF,
    VMState.SHUTDOWN: OFF,
    VMState.CRASHED: OFF,
    VMState.NOSTATE: OFF,
}

_UUID = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$")


class Kind(Enum):
    """How a VM's platform status compares with its libvirt domain."""

    AGREE = "agree"
    DIFFERS = "differs"
    IN_TRANSITION = "in transition"
    NOT_DEFINED = "not defined on host"
    HOST_UNREACHABLE = "host unreachable"
    NO_HOST = "no host"

    def __str__(self) -> str:
        return self.value

    @property
    def is_difference(self) -> bool:
        return self not in (Kind.AGREE, Kind.IN_TRANSITION)


def platform_status_of(state: VMState) -> int:
    """The platform status (0 off, 1 running, 2 paused) a libvirt state corresponds to."""
    return _LIBVIRT_TO_PLATFORM[state]


def status_name(status: int | None) -> str:
    if status is None:
        return "unknown"
    return VM_STATUS.get(status, f"unknown({status})")


def is_uuid(text: str) -> bool:
    return bool(_UUID.match(text.strip()))


def _uuid_key(text: str) -> str:
    return text.strip().replace("-", "").lower()


def check_template(template: str, allowed: Iterable[str], what: str) -> None:
    """Fail (ConfigurationError) when ``template`` uses a placeholder other than ``allowed`` or is malformed."""
    allowed = tuple(allowed)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigurationError(f"{what} template '{template}' is malformed: {exc}") from None
    unknown = [f for f in fields if f not in allowed]
    if unknown:
        names = ", ".join("{" + a + "}" for a in allowed)
        raise ConfigurationError(
            f"{what} template '{template}' uses unknown placeholder(s) "
            f"{', '.join('{' + u + '}' for u in unknown)}; use {names} (double braces for a literal brace)"
        )


def host_uri(template: str, host: Host) -> str:
    """The libvirt URI of a platform host (``{ip}``: an IPv6 address gets brackets)."""
    check_template(template, HOST_PLACEHOLDERS, "host URI")
    ip = host.ip
    if ":" in ip and not ip.startswith("["):
        ip = f"[{ip}]"
    return template.format(ip=ip, name=host.name, id=host.id)


def domain_name(template: str, vm: Vm) -> str:
    """The libvirt domain name a VM has by the ``domain_name`` template."""
    check_template(template, DOMAIN_PLACEHOLDERS, "domain name")
    return template.format(id=vm.id, name=vm.name)


# ---------------------------------------------------------------- libvirt side


@dataclass(frozen=True)
class Domain:
    uuid: str
    name: str
    state: VMState


def _list_domains(conn: libvirt.virConnect) -> list[Domain]:
    out: list[Domain] = []
    for dom in conn.listAllDomains(0):
        try:
            out.append(Domain(dom.UUIDString(), dom.name(), VMState.from_libvirt(int(dom.state(0)[0]))))
        except libvirt.libvirtError as err:  # undefined while we looked: it is not there
            if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    return out


class HostConnections:
    """libvirt connections per URI, opened with a deadline (an unreachable host must not hang the check).

    ``factory`` makes the :class:`HostConnection` (tests inject openers).  Use as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        connect_timeout: float = 10.0,
        factory: Callable[[str], HostConnection] | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self._factory = factory or (lambda uri: HostConnection(uri, reconnect_timeout=connect_timeout))
        self._hosts: dict[str, HostConnection] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> HostConnections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, uri: str) -> HostConnection:
        """The open connection to ``uri``; HostConnectionError when it cannot be opened in time."""
        with self._lock:
            host = self._hosts.get(uri)
        if host is not None and host.is_open:
            return host
        host = self._factory(uri)
        self._open(host)
        with self._lock:
            old = self._hosts.pop(uri, None)
            self._hosts[uri] = host
        if old is not None and old is not host:
            old.close()
        return host

    def _open(self, host: HostConnection) -> None:
        outcome: dict[str, BaseException] = {}
        abandoned = threading.Event()

        def run() -> None:
            try:
                host.open()
            except BaseException as exc:  # handed to the waiting thread
                outcome["error"] = exc
                return
            if abandoned.is_set():  # the caller gave up: do not keep a connection nobody uses
                host.close()

        thread = threading.Thread(target=run, name=f"atp-open {host.uri}", daemon=True)
        thread.start()
        thread.join(self.connect_timeout)
        if thread.is_alive():
            abandoned.set()
            raise HostConnectionError(
                f"Cannot connect to libvirt host '{host.uri}': no answer within {format_seconds(self.connect_timeout)}"
            )
        error = outcome.get("error")
        if error is not None:
            if isinstance(error, HostError):
                raise error
            raise HostConnectionError(f"Cannot connect to libvirt host '{host.uri}': {error}") from error

    def close(self) -> None:
        with self._lock:
            hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            host.close()


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class VmAgreement:
    """One VM: what the platform says, what libvirt says, and how they compare."""

    vm_id: str
    name: str
    host: str
    uri: str
    platform_status: int | None
    libvirt_state: VMState | None
    domain: str
    kind: Kind
    detail: str = ""

    @property
    def is_difference(self) -> bool:
        return self.kind.is_difference

    @property
    def platform(self) -> str:
        """``running (1)``: the platform status by name and number."""
        return f"{status_name(self.platform_status)} ({self.platform_status})"

    @property
    def libvirt(self) -> str:
        """``shut off``, or ``-`` when there is no domain state."""
        return str(self.libvirt_state) if self.libvirt_state is not None else "-"

    def describe(self) -> str:
        """One line naming the VM, the host and both sides."""
        where = f"on host '{self.host}'" if self.host else "with no host"
        head = f"VDI VM '{self.name}' ({self.vm_id}) {where}: {self.kind}"
        return f"{head}: {self.detail}" if self.detail else head

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.vm_id,
            "name": self.name,
            "host": self.host,
            "uri": self.uri,
            "platform_status": self.platform_status,
            "platform": status_name(self.platform_status),
            "libvirt_state": str(self.libvirt_state) if self.libvirt_state is not None else None,
            "domain": self.domain or None,
            "kind": self.kind.value,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AgreementReport:
    rows: list[VmAgreement] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences()

    def differences(self) -> list[VmAgreement]:
        return [r for r in self.rows if r.is_difference]

    def in_transition(self) -> list[VmAgreement]:
        return [r for r in self.rows if r.kind is Kind.IN_TRANSITION]

    def counts(self) -> dict[str, int]:
        out = {k.value: 0 for k in Kind}
        for row in self.rows:
            out[row.kind.value] += 1
        return out

    def summary(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.counts().items() if n)
        return f"{len(self.rows)} VM(s): {counts or 'none'}"

    def table(self, *, only_differences: bool = False) -> str:
        """A text table: VM, id, host, platform status, libvirt state, result, detail."""
        rows = self.differences() if only_differences else self.rows
        return render_table(
            ("VM", "ID", "HOST", "PLATFORM", "LIBVIRT", "RESULT", "DETAIL"),
            [(r.name, r.vm_id, r.host, r.platform, r.libvirt, r.kind.value, r.detail) for r in rows],
        )

    def to_json(self, *, only_differences: bool = False) -> str:
        rows = self.differences() if only_differences else self.rows
        return json.dumps(
            {"ok": self.ok, "counts": self.counts(), "vms": [r.to_dict() for r in rows]}, ensure_ascii=False, indent=2
        )


def unreachable_hint(report: AgreementReport, template: str, option: str) -> str:
    """When a host could not be reached: how its URI was made and how to change that (empty otherwise)."""
    if not any(r.kind is Kind.HOST_UNREACHABLE for r in report.rows):
        return ""
    return (
        f"Hosts map to libvirt URIs by the template '{template}'; if this machine reaches them another way "
        f"(another transport, user or port; the lab: qemu:///system), give {option}."
    )


def render_table(headers: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    body = [tuple("" if c is None else str(c) for c in row) for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        padded = [c.ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True)] + [cells[-1]]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(r) for r in body)])


# ---------------------------------------------------------------- the check


class VdiSource(Protocol):
    """What the check needs from the platform (a :class:`ATPLibrary.vdi.VdiClient`)."""

    def list_vms(self, *, page_size: int = 100, **filters: Any) -> Iterable[Vm]: ...
    def list_pool_vms(self, pool_id: str) -> list[Vm]: ...
    def all_hosts(self, **filters: Any) -> list[Host]: ...


def select_vms(vms: Iterable[Vm], wanted: Iterable[str] | None) -> list[Vm]:
    """The VMs named by ``wanted`` (names or ids); ConfigurationError naming those that match none."""
    pool = [v for v in vms if not v.is_model]
    if wanted is None:
        return pool
    names = [w for w in wanted]
    chosen: list[Vm] = []
    missing: list[str] = []
    for want in names:
        found = [v for v in pool if want in (v.name, v.id)]
        if not found:
            missing.append(want)
        for vm in found:
            if vm not in chosen:
                chosen.append(vm)
    if missing:
        raise ConfigurationError(f"No VDI VM named or with id {', '.join(repr(m) for m in missing)} on the platform")
    return chosen


def check_agreement(
    client: VdiSource,
    *,
    host_uri_template: str = DEFAULT_HOST_URI,
    domain_name_template: str = DEFAULT_DOMAIN_NAME,
    pool_id: str | None = None,
    vms: Iterable[str] | None = None,
    connections: HostConnections | None = None,
    connect_timeout: float = 10.0,
) -> AgreementReport:
    """Compare every platform VM (or those of desk pool ``pool_id``, or those named in ``vms``) with libvirt.

    ``connections`` reuses libvirt connections between checks; without it, they are opened for this check
    and closed at its end.
    """
    check_template(host_uri_template, HOST_PLACEHOLDERS, "host URI")
    check_template(domain_name_template, DOMAIN_PLACEHOLDERS, "domain name")
    listed = client.list_pool_vms(pool_id) if pool_id else list(client.list_vms())
    chosen = select_vms(listed, vms)
    hosts = {h.id: h for h in client.all_hosts()}
    own = connections is None
    conns = connections or HostConnections(connect_timeout)
    try:
        return AgreementReport(_compare(chosen, hosts, conns, host_uri_template, domain_name_template))
    finally:
        if own:
            conns.close()


def _row(vm: Vm, host: str, kind: Kind, detail: str, uri: str = "", dom: Domain | None = None) -> VmAgreement:
    return VmAgreement(
        vm.id, vm.name, host, uri, vm.status, dom.state if dom else None, dom.name if dom else "", kind, detail
    )


def _compare(
    vms: list[Vm], hosts: Mapping[str, Host], conns: HostConnections, uri_template: str, name_template: str
) -> list[VmAgreement]:
    domains: dict[str, list[Domain] | BaseException] = {}
    rows: list[VmAgreement] = []
    for vm in vms:
        host = hosts.get(vm.host_id)
        label = (host.name or host.ip or host.id) if host else (vm.host_name or vm.host_id)
        transition = vm.status in TRANSITION_STATUSES
        if host is None:
            why = "the platform names no host"
            if vm.host_id:
                why = f"host id '{vm.host_id}' is not among the platform's hosts"
            rows.append(_row(vm, label, Kind.IN_TRANSITION if transition else Kind.NO_HOST, why))
            continue
        uri = host_uri(uri_template, host)
        if uri not in domains:
            try:
                domains[uri] = conns.get(uri).call(_list_domains, what="listing domains", idempotent=True)
            except (HostError, libvirt.libvirtError) as exc:
                domains[uri] = exc
        found = domains[uri]
        if isinstance(found, BaseException):
            detail = str(found) if uri in str(found) else f"libvirt at {uri}: {found}"
            rows.append(_row(vm, label, Kind.IN_TRANSITION if transition else Kind.HOST_UNREACHABLE, detail, uri))
            continue
        dom = _find(vm, found, name_template)
        platform = f"platform says {status_name(vm.status)} ({vm.status})"
        if dom is None:
            wanted = domain_name(name_template, vm)
            by = f"UUID {vm.id} or name '{wanted}'" if is_uuid(vm.id) else f"name '{wanted}'"
            detail = f"{platform}, but no domain with {by} is defined at {uri}"
            rows.append(_row(vm, label, Kind.IN_TRANSITION if transition else Kind.NOT_DEFINED, detail, uri))
            continue
        seen = f"libvirt domain '{dom.name}' is {dom.state}"
        if transition:
            rows.append(_row(vm, label, Kind.IN_TRANSITION, f"{platform}; {seen}", uri, dom))
        elif vm.status not in (OFF, RUNNING, PAUSED):
            detail = f"{platform} (a status the check does not know); {seen}"
            rows.append(_row(vm, label, Kind.DIFFERS, detail, uri, dom))
        elif platform_status_of(dom.state) == vm.status:
            rows.append(_row(vm, label, Kind.AGREE, "", uri, dom))
        else:
            rows.append(_row(vm, label, Kind.DIFFERS, f"{platform}, {seen}", uri, dom))
    return rows


def locate_domain(
    vm: Vm,
    hosts: Mapping[str, Host],
    connections: HostConnections,
    *,
    host_uri_template: str = DEFAULT_HOST_URI,
    domain_name_template: str = DEFAULT_DOMAIN_NAME,
) -> tuple[HostConnection, str]:
    """The libvirt host and domain name of a platform VM, by the same rules as the check (HostError if none)."""
    host = hosts.get(vm.host_id)
    if host is None:
        raise HostError(f"VDI VM '{vm.name}' ({vm.id}): the platform names no known host (host id '{vm.host_id}')")
    uri = host_uri(host_uri_template, host)
    conn = connections.get(uri)
    dom = _find(vm, conn.call(_list_domains, what="listing domains", idempotent=True), domain_name_template)
    if dom is None:
        raise VMNotFoundError(f"VDI VM '{vm.name}' ({vm.id}) has no libvirt domain at {uri}")
    return conn, dom.name


def _find(vm: Vm, domains: list[Domain], name_template: str) -> Domain | None:
    if is_uuid(vm.id):
        key = _uuid_key(vm.id)
        for dom in domains:
            if _uuid_key(dom.uuid) == key:
                return dom
    wanted = domain_name(name_template, vm)
    return next((d for d in domains if d.name == wanted), None)
