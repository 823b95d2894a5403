"""Every method + path the VDI client calls, in one place.

Each constant is a form that exists in the OCloudView 9.0 OpenAPI spec (``shared/vdi/ocloudview-9.0-openapi.json``);
``tests/unit/test_vdi_conformance.py`` checks every request the client makes against that spec.  Path parameters
use the spec's own names (``{id}`` in some routes, ``{domainId}`` in others).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ATPLibrary.errors import ConfigurationError


def _q(*names: str) -> frozenset[str]:
    return frozenset(names)


@dataclass(frozen=True)
class Route:
    """One operation of the spec.  ``query``: the query parameter names the spec declares (paging excluded)."""

    method: str
    path: str
    query: frozenset[str] = frozenset()
    paged: bool = False

    def format(self, **params: Any) -> str:
        """The path with its ``{name}`` parameters filled in (URL-quoted)."""
        from urllib.parse import quote

        return self.path.format(**{k: quote(str(v), safe="") for k, v in params.items()})

    @property
    def idempotent(self) -> bool:
        return self.method in {"GET", "HEAD", "OPTIONS"}

    def check_query(self, params: Mapping[str, Any]) -> None:
        """Reject query parameter names the spec does not declare for this route (a typo would be ignored)."""
        unknown = set(params) - self.query
        if unknown:
            raise ConfigurationError(
                f"{self}: unknown filter(s) {', '.join(sorted(unknown))}; the platform accepts: "
                f"{', '.join(sorted(self.query)) or 'none'}"
            )

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


LOGIN = Route("POST", "/ocloud/v1/login")
LOGOUT = Route("POST", "/ocloud/v1/logout")

# VMs ("domains")
DOMAIN_LIST = Route(
    "GET",
    "/ocloud/v1/domain",
    _q("agentVersion", "freeze", "hostId", "isBindUser", "isConnected", "keyword", "motherId", "osType")
    | _q("osTypeOrder", "poolId", "status"),
    paged=True,
)
DOMAIN_GET = Route("GET", "/ocloud/v1/domain/{id}")
#: ``DomainUpdateDto``: one VM's settings, among them ``name`` (rename) and ``autoJoinDomain`` (join the AD domain)
DOMAIN_UPDATE = Route("PATCH", "/ocloud/v1/domain/{id}")
DOMAIN_CREATE = Route("POST", "/ocloud/v1/domain")
DOMAIN_START = Route("POST", "/ocloud/v1/domain/start")
DOMAIN_CLOSE = Route("POST", "/ocloud/v1/domain/close")
DOMAIN_REBOOT = Route("POST", "/ocloud/v1/domain/reboot")
DOMAIN_SUSPEND = Route("POST", "/ocloud/v1/domain/suspend")
DOMAIN_RESUME = Route("POST", "/ocloud/v1/domain/resume")
DOMAIN_DELETE = Route("POST", "/ocloud/v1/domain/delete")
DOMAIN_CLONE = Route("POST", "/ocloud/v1/domain/{id}/clone")
DOMAIN_MEM_CPU = Route("PATCH", "/ocloud/v1/domain/mem-cpu")
DOMAIN_NIC_LIST = Route("GET", "/ocloud/v1/domain/{id}/nic")
DOMAIN_NIC_ADD = Route("POST", "/ocloud/v1/domain/{id}/nic")
DOMAIN_NIC_MODIFY = Route("PATCH", "/ocloud/v1/domain/{domainId}/nic")
DOMAIN_NIC_DELETE = Route("DELETE", "/ocloud/v1/domain/{domainId}/nic/{mac}")
DOMAIN_BIND_USER = Route("POST", "/ocloud/v1/domain/bind-user")
DOMAIN_UNBIND_USER = Route("POST", "/ocloud/v1/domain/unbind-user")
DOMAIN_SPICE_KEY = Route("GET", "/ocloud/v1/domain/{id}/spice-key")

# Templates ("models")
MODEL_LIST = Route("GET", "/ocloud/v1/model", _q("keyword", "poolId"), paged=True)
MODEL_ALL = Route("GET", "/ocloud/v1/model/all", _q("poolId"))
MODEL_CLONE = Route("POST", "/ocloud/v1/model/{id}/clone")

# Desk pools
POOL_LIST = Route("GET", "/ocloud/v1/desk-pool", _q("keyword", "type", "typeList"), paged=True)
POOL_CREATE = Route("POST", "/ocloud/v1/desk-pool")
POOL_UPDATE = Route("PATCH", "/ocloud/v1/desk-pool/{id}")
POOL_DELETE = Route("DELETE", "/ocloud/v1/desk-pool/{id}")
POOL_ENABLE = Route("POST", "/ocloud/v1/desk-pool/{id}/enable")
POOL_DISABLE = Route("POST", "/ocloud/v1/desk-pool/{id}/disable")
POOL_ACTIVATE = Route("POST", "/ocloud/v1/desk-pool/{id}/active")
POOL_VMS = Route("GET", "/ocloud/v1/desk-pool/{id}/domain/list")
POOL_ADD_VMS = Route("POST", "/ocloud/v1/desk-pool/domain")
POOL_REMOVE_VMS = Route("DELETE", "/ocloud/v1/desk-pool/domain")
POOL_BIND_GROUPS = Route("POST", "/ocloud/v1/desk-pool/group")
POOL_UNBIND_GROUPS = Route("DELETE", "/ocloud/v1/desk-pool/group")
POOL_SWITCH_MODEL = Route("POST", "/ocloud/v1/desk-pool/switch-model")

# Hosts
HOST_LIST = Route("GET", "/ocloud/v1/host", _q("arch", "name", "poolId", "status"), paged=True)
HOST_ALL = Route("GET", "/ocloud/v1/host/all", _q("arch", "name", "notBindPool", "poolId", "status", "vmcId"))
HOST_GET = Route("GET", "/ocloud/v1/host/{id}")

# Users and OUs
USER_LIST = Route("GET", "/ocloud/v1/user", _q("group", "keyword", "sortOrder"), paged=True)
USER_DETAIL = Route("GET", "/ocloud/v1/user/detail", _q("sAMAccountName"))
USER_CREATE = Route("POST", "/ocloud/v1/user")
GROUP_TREE = Route("GET", "/ocloud/v1/group/tree")

# Events
EVENT_GET = Route("GET", "/ocloud/v1/event/{id}")

ALL_ROUTES: tuple[Route, ...] = tuple(v for v in dict(globals()).values() if isinstance(v, Route))
