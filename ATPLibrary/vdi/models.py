"""Typed results of the VDI client, parsed leniently from the spec's field names (the raw dict is kept)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

VM_STATUS = {0: "off", 1: "running", 2: "paused", 5: "operating", 6: "upgrading"}
HOST_STATUS = {0: "maintenance", 1: "enabled", 2: "closed", 3: "offline"}
POOL_TYPE = {0: "dedicated", 1: "shared", 2: "teaching"}


#: The reply fields that the keywords and ``atp vdi`` read, by the spec's schema name.  The spec marks few fields
#: required, so a reply without these would still fit it; the simulator's conformance test checks that every reply
#: object of one of these schemas carries them.  Read only when they apply: ``DomainVO.userId`` (a bound VM),
#: ``DomainVO.desktopPoolId`` (a pool VM), ``EventVO.domainId``/``domainName`` (the event of one VM in a batch),
#: ``EventVO.isSuccess``/``errorReason`` (a finished/failed event).
READ_FIELDS: dict[str, frozenset[str]] = {
    "LoginVO": frozenset({"token"}),
    "DomainVO": frozenset(
        {"id", "name", "status", "hostId", "hostName", "ip", "cpu", "memory", "isModel", "autoJoinDomain"}
    ),
    "DesktopPoolVO": frozenset({"id", "name"}),
    "HostVO": frozenset({"id", "name", "ip", "status"}),
    "UserListVo": frozenset({"id", "sAMAccountName"}),
    "UserGroupVO": frozenset({"id", "ou", "distinguishedName"}),
    "EventVO": frozenset({"id"}),
    "DomainBatchTaskVO": frozenset({"errorList", "eventIdList"}),
    "ErrorInfo": frozenset({"domainId", "domainName", "errorMsg"}),
    "SpiceKeyVO": frozenset({"ip", "port", "key"}),
    "DomainNetcardVO": frozenset({"mac"}),
    "DomainCloneVO": frozenset({"cloneUuid", "eventId"}),
    "DomainCreateVO": frozenset({"uuid"}),
    "DomainBindUserVO": frozenset({"notBindDomainIdList"}),
}


def _str(d: Mapping[str, Any], key: str) -> str:
    value = d.get(key)
    return "" if value is None else str(value)


def _int(d: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    value = d.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class Vm:
    id: str
    name: str
    status: int | None
    host_id: str
    host_name: str
    ip: str
    cpu: int | None
    memory: int | None
    desktop_pool_id: str
    user_id: str
    is_model: bool
    raw: dict[str, Any] = field(repr=False, compare=False)
    #: ``autoJoinDomain``: 1 the VM joins the AD domain by itself, 0 it does not, None the platform did not say
    auto_join_domain: int | None = None

    @property
    def status_name(self) -> str:
        return VM_STATUS.get(self.status, f"unknown({self.status})") if self.status is not None else "unknown"

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> Vm:
        return cls(
            id=_str(d, "id"),
            name=_str(d, "name"),
            status=_int(d, "status"),
            host_id=_str(d, "hostId"),
            host_name=_str(d, "hostName"),
            ip=_str(d, "ip"),
            cpu=_int(d, "cpu"),
            memory=_int(d, "memory"),
            desktop_pool_id=_str(d, "desktopPoolId"),
            user_id=_str(d, "userId"),
            is_model=_int(d, "isModel", 0) == 1,
            raw=dict(d),
            auto_join_domain=_int(d, "autoJoinDomain"),
        )


Template = Vm
"""Templates are domains with ``isModel: 1`` (same ``DomainVO`` shape)."""


@dataclass(frozen=True)
class Pool:
    id: str
    name: str
    type: int | None
    amount: int | None
    enabled: bool
    model_id: str
    status: int | None
    group_names: list[str]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> Pool:
        groups = d.get("groupNameList") or []
        return cls(
            id=_str(d, "id"),
            name=_str(d, "name"),
            type=_int(d, "type"),
            amount=_int(d, "amount"),
            enabled=_int(d, "enabled", 0) == 1,
            model_id=_str(d, "modelId") or _str(d, "curModelId"),
            status=_int(d, "status"),
            group_names=[str(g) for g in groups] if isinstance(groups, list) else [],
            raw=dict(d),
        )


@dataclass(frozen=True)
class Host:
    id: str
    name: str
    ip: str
    status: int | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def status_name(self) -> str:
        return HOST_STATUS.get(self.status, f"unknown({self.status})") if self.status is not None else "unknown"

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> Host:
        return cls(id=_str(d, "id"), name=_str(d, "name"), ip=_str(d, "ip"), status=_int(d, "status"), raw=dict(d))


@dataclass(frozen=True)
class User:
    id: str
    sam_account_name: str
    display_name: str
    mail: str
    mobile: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> User:
        return cls(
            id=_str(d, "id"),
            sam_account_name=_str(d, "sAMAccountName"),
            display_name=_str(d, "displayName"),
            mail=_str(d, "mail"),
            mobile=_str(d, "mobile"),
            raw=dict(d),
        )


@dataclass(frozen=True)
class OrgUnit:
    id: str
    ou: str
    distinguished_name: str
    children: list[OrgUnit]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> OrgUnit:
        kids = d.get("list") or []
        return cls(
            id=_str(d, "id"),
            ou=_str(d, "ou"),
            distinguished_name=_str(d, "distinguishedName"),
            children=[cls.from_api(k) for k in kids if isinstance(k, Mapping)],
            raw=dict(d),
        )


@dataclass(frozen=True)
class Event:
    """An ``EventVO``.

    Design (the spec leaves it open): an event is *done* once ``isSuccess`` is present (not null); it *succeeded*
    when ``isSuccess == 0`` (the EventVO description: "0 success, 1 failure"); any other value is a failure whose
    reason is ``errorReason``.  A missing or null ``isSuccess`` means the operation is still running.
    """

    id: str
    is_success: int | None
    error_reason: str
    domain_id: str
    domain_name: str
    description: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.is_success is not None

    @property
    def succeeded(self) -> bool:
        return self.is_success == 0

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> Event:
        return cls(
            id=_str(d, "id"),
            is_success=_int(d, "isSuccess"),
            error_reason=_str(d, "errorReason"),
            domain_id=_str(d, "domainId"),
            domain_name=_str(d, "domainName"),
            description=_str(d, "description"),
            raw=dict(d),
        )


@dataclass(frozen=True)
class SpiceInfo:
    """``SpiceKeyVO`` with the SPICE password decoded from base64 (``port`` is a string in the spec)."""

    domain_id: str
    host_id: str
    host: str
    port: int | None
    password: str = field(repr=False)
    name: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, d: Mapping[str, Any]) -> SpiceInfo:
        key = _str(d, "key")
        try:
            password = base64.b64decode(key, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            password = key
        return cls(
            domain_id=_str(d, "domainId"),
            host_id=_str(d, "hostId"),
            host=_str(d, "ip"),
            port=_int(d, "port"),
            password=password,
            name=_str(d, "name"),
            raw=dict(d),
        )


@dataclass(frozen=True)
class BatchError:
    domain_id: str
    domain_name: str
    error_msg: str


@dataclass(frozen=True)
class BatchResult:
    """``DomainBatchTaskVO``: the VMs that failed (``errorList``) and the events of those accepted."""

    errors: list[BatchError]
    event_ids: list[str]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, d: Mapping[str, Any] | None) -> BatchResult:
        d = d or {}
        errors = [
            BatchError(_str(e, "domainId"), _str(e, "domainName"), _str(e, "errorMsg"))
            for e in (d.get("errorList") or [])
            if isinstance(e, Mapping)
        ]
        return cls(errors=errors, event_ids=[str(i) for i in (d.get("eventIdList") or [])], raw=dict(d))


@dataclass(frozen=True)
class CloneResult:
    clone_id: str
    event_id: str
