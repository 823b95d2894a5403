"""The original system's scenario format as typed data: a scenario, its steps, their 19 action types, targets.

Plain Python (no Robot import).  :mod:`ATPLibrary.scenario.loader` builds these from YAML or JSON and checks
them; :mod:`ATPLibrary.scenario.convert` turns them into a Robot Framework suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class ActionType(StrEnum):
    """The 19 ``action.type`` values of the original executor."""

    SEND_KEY = "send_key"
    SEND_TEXT = "send_text"
    MOUSE_CLICK = "mouse_click"
    EXEC_COMMAND = "exec_command"
    WAIT = "wait"
    CUSTOM = "custom"
    VDI_CREATE_DESK_POOL = "vdi_create_desk_pool"
    VDI_ENABLE_DESK_POOL = "vdi_enable_desk_pool"
    VDI_DISABLE_DESK_POOL = "vdi_disable_desk_pool"
    VDI_DELETE_DESK_POOL = "vdi_delete_desk_pool"
    VDI_START_DOMAIN = "vdi_start_domain"
    VDI_SHUTDOWN_DOMAIN = "vdi_shutdown_domain"
    VDI_REBOOT_DOMAIN = "vdi_reboot_domain"
    VDI_DELETE_DOMAIN = "vdi_delete_domain"
    VDI_BIND_USER = "vdi_bind_user"
    VDI_GET_DESK_POOL_DOMAINS = "vdi_get_desk_pool_domains"
    VERIFY_DOMAIN_STATUS = "verify_domain_status"
    VERIFY_ALL_DOMAINS_RUNNING = "verify_all_domains_running"
    VERIFY_COMMAND_SUCCESS = "verify_command_success"


@dataclass(frozen=True)
class FieldSpec:
    """One field of an action: its name, its kind (``str``, ``int``, ``any``) and whether it must be given."""

    name: str
    kind: str
    required: bool = True
    default: Any = None


def _f(name: str, kind: str = "str", required: bool = True, default: Any = None) -> FieldSpec:
    return FieldSpec(name, kind, required, default)


#: The fields of each action type, as the original executor read them.
ACTION_FIELDS: dict[ActionType, tuple[FieldSpec, ...]] = {
    ActionType.SEND_KEY: (_f("key"),),
    ActionType.SEND_TEXT: (_f("text"),),
    ActionType.MOUSE_CLICK: (_f("x", "int"), _f("y", "int"), _f("button", required=False, default="left")),
    ActionType.EXEC_COMMAND: (_f("command"),),
    ActionType.WAIT: (_f("duration", "number"),),
    ActionType.CUSTOM: (_f("data", "any", required=False),),
    ActionType.VDI_CREATE_DESK_POOL: (_f("name"), _f("template_id"), _f("count", "int")),
    ActionType.VDI_ENABLE_DESK_POOL: (_f("pool_id"),),
    ActionType.VDI_DISABLE_DESK_POOL: (_f("pool_id"),),
    ActionType.VDI_DELETE_DESK_POOL: (_f("pool_id"),),
    ActionType.VDI_START_DOMAIN: (_f("domain_id"),),
    ActionType.VDI_SHUTDOWN_DOMAIN: (_f("domain_id"),),
    ActionType.VDI_REBOOT_DOMAIN: (_f("domain_id"),),
    ActionType.VDI_DELETE_DOMAIN: (_f("domain_id"),),
    ActionType.VDI_BIND_USER: (_f("domain_id"), _f("user_id")),
    ActionType.VDI_GET_DESK_POOL_DOMAINS: (_f("pool_id"),),
    ActionType.VERIFY_DOMAIN_STATUS: (
        _f("domain_id"),
        _f("expected_status"),
        _f("timeout_secs", "number", required=False),
    ),
    ActionType.VERIFY_ALL_DOMAINS_RUNNING: (_f("pool_id"), _f("timeout_secs", "number", required=False)),
    ActionType.VERIFY_COMMAND_SUCCESS: (_f("timeout_secs", "number", required=False),),
}

#: Action types that drive a VM's keyboard, mouse or guest agent (they need a target VM).
VM_ACTIONS = frozenset({ActionType.SEND_KEY, ActionType.SEND_TEXT, ActionType.MOUSE_CLICK, ActionType.EXEC_COMMAND})
#: Action types that need a VDI platform connection.
VDI_ACTIONS = frozenset(t for t in ActionType if t.value.startswith("vdi_")) | {ActionType.VERIFY_ALL_DOMAINS_RUNNING}


@dataclass(frozen=True)
class Action:
    """One step's action: its type and its fields (checked and converted by the loader)."""

    type: ActionType
    fields: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.fields.get(name)

    def raw(self) -> dict[str, Any]:
        """The action as it was written (``type`` first): what a placeholder keeps."""
        return {"type": self.type.value, **self.fields}


@dataclass(frozen=True)
class Step:
    """``{name?, action, verify=false, timeout?}``; ``index`` counts from 1 as people do."""

    index: int
    action: Action
    name: str | None = None
    verify: bool = False
    timeout: float | None = None

    @property
    def label(self) -> str:
        return self.name or f"step {self.index}"


class SelectorMode(StrEnum):
    """How ``target_domains`` picks VMs."""

    SINGLE = "single"
    ALL = "all"
    PATTERN = "pattern"
    LIST = "list"
    REGEX = "regex"


@dataclass(frozen=True)
class TargetSelector:
    """``target_domains``: a glob string, or ``{mode, pattern, names, exclude, limit}``."""

    mode: SelectorMode = SelectorMode.PATTERN
    pattern: str | None = None
    names: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    limit: int | None = None


class OnFailure(StrEnum):
    """``parallel.on_failure``; the original honoured only ``stop_all`` (runs were always serial)."""

    CONTINUE = "continue"
    STOP_ALL = "stop_all"
    FAIL_FAST = "fail_fast"


@dataclass(frozen=True)
class Parallel:
    enabled: bool = False
    max_concurrent: int = 10
    on_failure: OnFailure = OnFailure.CONTINUE


@dataclass(frozen=True)
class InputChannel:
    """``input_channel``: ``qmp`` or ``spice``; the delays were unused by the original and are kept for notes."""

    channel_type: str = "qmp"
    key_delay_ms: int | None = None
    key_hold_ms: int | None = None


@dataclass(frozen=True)
class Verification:
    """``verification``: the original's server addresses; only ``connection_timeout`` still means something."""

    connection_timeout: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file."""

    name: str
    steps: tuple[Step, ...]
    source: Path | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    target_host: str | None = None
    target_hosts: Any = None
    target_domain: str | None = None
    target_domains: TargetSelector | None = None
    parallel: Parallel | None = None
    verification: Verification | None = None
    input_channel: InputChannel = field(default_factory=InputChannel)

    @property
    def needs_vm(self) -> bool:
        """True when a step drives a VM's keyboard, mouse or guest agent."""
        return any(s.action.type in VM_ACTIONS for s in self.steps)

    @property
    def needs_vdi(self) -> bool:
        return any(s.action.type in VDI_ACTIONS for s in self.steps)

    @property
    def file_name(self) -> str:
        return self.source.name if self.source else "<scenario>"
