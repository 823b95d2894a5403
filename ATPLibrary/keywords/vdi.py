"""Keywords for the OCloudView VDI platform: desk pools, VDI VMs, SPICE access and the VDI/libvirt agreement."""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import html
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import IntEnum
from typing import Any

from robot.api import logger
from robot.api.deco import keyword
from robot.api.types import Secret
from robot.utils import DotDict

from ATPLibrary.errors import (
    ATPError,
    ConfigurationError,
    VdiBatchError,
    VdiConnectionError,
    VdiError,
    WaitTimeoutError,
)
from ATPLibrary.hosts.timing import Deadline, format_seconds, poll_intervals
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.vdi.agreement import (
    DEFAULT_DOMAIN_NAME,
    DEFAULT_HOST_URI,
    DOMAIN_PLACEHOLDERS,
    HOST_PLACEHOLDERS,
    AgreementReport,
    HostConnections,
    check_agreement,
    check_template,
    locate_domain,
    status_name,
    unreachable_hint,
)
from ATPLibrary.vdi.client import VdiClient
from ATPLibrary.vdi.models import BatchError, BatchResult, OrgUnit, Pool, Template, Vm

SECRET_HELP = (
    "The VDI password must be a Robot Framework Secret, so that it never appears in log.html or output.xml. "
    "Make one in the Variables section: '${VDI_PASSWORD: Secret}    %{VDI_PASSWORD}' (from an environment "
    "variable), or return robot.api.types.Secret(...) from a variable file."
)
#: How often waits look again: from 50 ms growing to 1 s (a platform answers events in seconds).
POLL_INITIAL, POLL_CAP = 0.05, 1.0


class VdiVmStatus(IntEnum):
    """A VDI VM's status on the platform (``DomainVO.status``)."""

    OFF = 0
    RUNNING = 1
    PAUSED = 2
    OPERATING = 5

    def __str__(self) -> str:
        return self.name.lower()


class DeskPoolType(IntEnum):
    """The kind of desk pool: dedicated (one user per VM), shared, teaching."""

    DEDICATED = 0
    SHARED = 1
    TEACHING = 2


class VdiAgreementError(ATPError):
    """`VDI And Libvirt Should Agree` found differences; ``report`` is the whole :class:`AgreementReport`."""

    def __init__(self, message: str, report: AgreementReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class VdiSession:
    """The connected platform: its client and how its hosts and VMs map to libvirt."""

    client: VdiClient
    url: str
    username: str
    host_uri: str = DEFAULT_HOST_URI
    domain_name: str = DEFAULT_DOMAIN_NAME
    connections: HostConnections = field(default_factory=HostConnections)

    def close(self) -> None:
        """Log out (errors ignored: the session ends either way) and close every connection."""
        with contextlib.suppress(VdiError):
            self.client.logout()
        self.client.close()
        self.connections.close()


def _refs(vms: Iterable[Any]) -> list[str]:
    """VM references from varargs; a list passed as one argument (Python callers) is flattened."""
    out: list[str] = []
    for item in vms:
        if isinstance(item, list | tuple):
            out.extend(str(i) for i in item)
        elif str(item).strip():
            out.append(str(item).strip())
    return out


def _label(vm: Vm) -> str:
    return f"'{vm.name}' ({vm.id})"


@contextlib.contextmanager
def _about(what: str, vm: Vm) -> Iterator[None]:
    """Platform errors of one VM's operation name the operation and the VM (``Binding user 'x' to VDI VM …``)."""
    try:
        yield
    except (VdiConnectionError, VdiBatchError):
        raise
    except VdiError as err:
        status = f" The platform shows it {status_name(vm.status)}." if vm.status != VdiVmStatus.RUNNING else ""
        raise VdiError(f"{what} VDI VM {_label(vm)} failed: {err}{status}", code=err.code, msg=err.msg) from None


def _natural(name: str) -> tuple[Any, ...]:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


class VdiKeywords:
    """The VDI platform (OCloudView 9.0 admin API): desk pools, VDI VMs, SPICE access and the check that the
    platform agrees with libvirt.  VDI VMs are named by their VDI VM name or id."""

    def __init__(self, ctx: LibraryContext, sleep: Callable[[float], None] = time.sleep) -> None:
        self.ctx = ctx
        self._sleep = sleep

    # ------------------------------------------------------------------ helpers
    @property
    def session(self) -> VdiSession:
        # VDI VMs are not libvirt domains: a failing VDI keyword must not screenshot the last libvirt VM
        self.ctx.last_vm = None
        session = self.ctx.vdi
        if session is None:
            raise ConfigurationError("No VDI platform is connected: use Connect To VDI first.")
        return session

    @property
    def client(self) -> VdiClient:
        return self.session.client

    def _vm(self, ref: str) -> Vm:
        """The VM whose name is ``ref``, else whose id is ``ref``; fails naming it and similar names."""
        client = self.client
        listed = [vm for vm in client.list_vms(keyword=ref) if not vm.is_model]
        exact = [vm for vm in listed if vm.name == ref]
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:
            ids = ", ".join(vm.id for vm in exact)
            raise ConfigurationError(f"{len(exact)} VDI VMs are named '{ref}' (ids {ids}): name one by its id.")
        try:
            vm = client.get_vm(ref)
        except VdiConnectionError:
            raise
        except VdiError:
            vm = None
        if vm is not None and vm.id and not vm.is_model:
            return vm
        names = [v.name for v in client.list_vms() if not v.is_model]
        close = difflib.get_close_matches(ref, names, n=5, cutoff=0.6)
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ConfigurationError(f"No VDI VM named or with id '{ref}' on {self.session.url}.{hint}")

    def _vms(self, refs: Iterable[Any], what: str) -> list[Vm]:
        names = _refs(refs)
        if not names:
            raise ConfigurationError(f"{what}: name at least one VDI VM (by name or id).")
        chosen: list[Vm] = []
        for ref in names:
            vm = self._vm(ref)
            if vm.id not in {c.id for c in chosen}:
                chosen.append(vm)
        return chosen

    def _template(self, ref: str) -> Template:
        templates = self.client.all_templates()
        found = [t for t in templates if t.id == ref] or [t for t in templates if t.name == ref]
        if found:
            return found[0]
        known = ", ".join(f"{t.name} ({t.id})" for t in templates) or "(none)"
        raise ConfigurationError(f"No VDI template named or with id '{ref}'. Templates: {known}.")

    def _pool(self, ref: str) -> Pool:
        pools = list(self.client.list_pools())
        found = [p for p in pools if p.name == ref] or [p for p in pools if p.id == ref]
        if found:
            return found[0]
        known = ", ".join(sorted((p.name for p in pools), key=_natural)) or "(none)"
        raise ConfigurationError(f"No desk pool named or with id '{ref}'. Desk pools: {known}.")

    def _intervals(self) -> Iterable[float]:
        return poll_intervals(POLL_INITIAL, 1.5, POLL_CAP)

    def _wait_events(
        self, what: str, event_ids: Sequence[str], vms: Sequence[Vm], deadline: Deadline
    ) -> dict[str, str]:
        """Wait until every event is done; returns the failed ones as {VM name: reason}."""
        names = {vm.id: vm.name for vm in vms}
        pending = [e for e in event_ids if e]
        failed: dict[str, str] = {}
        intervals = iter(self._intervals())
        while pending:
            still: list[str] = []
            for event_id in pending:
                event = self.client.get_event(event_id)
                if not event.done:
                    still.append(event_id)
                elif not event.succeeded:
                    name = event.domain_name or names.get(event.domain_id) or f"event {event_id}"
                    failed[name] = event.error_reason or f"the event ended with isSuccess={event.is_success}"
            pending = still
            if not pending:
                break
            if deadline.expired:
                raise WaitTimeoutError(
                    f"{what}: {len(pending)} platform event(s) not done within {format_seconds(deadline.timeout)} "
                    f"(event ids {', '.join(pending)})."
                )
            self._sleep(min(next(intervals), max(deadline.remaining(), 0.001)))
        return failed

    def _wait_status(self, what: str, vms: Sequence[Vm], wanted: VdiVmStatus, deadline: Deadline) -> None:
        """Poll until every VM has ``wanted``; WaitTimeoutError names each VM, the wanted and the last status."""
        last: dict[str, Vm] = {vm.id: vm for vm in vms}
        pending = [vm.id for vm in vms]
        intervals = iter(self._intervals())
        while True:
            still = []
            for vm_id in pending:
                vm = self.client.get_vm(vm_id)
                last[vm_id] = vm
                if vm.status != wanted:
                    still.append(vm_id)
            pending = still
            if not pending:
                return
            if deadline.expired:
                detail = "; ".join(
                    f"VDI VM {_label(last[i])}: last status '{status_name(last[i].status)}' ({last[i].status})"
                    for i in pending
                )
                raise WaitTimeoutError(
                    f"{what}: {detail}; wanted status '{wanted}' ({int(wanted)}) "
                    f"within {format_seconds(deadline.timeout)}."
                )
            self._sleep(min(next(intervals), max(deadline.remaining(), 0.001)))

    def _batch(
        self,
        what: str,
        vms: Sequence[Vm],
        call: Callable[[list[str]], BatchResult],
        *,
        final: VdiVmStatus | None,
        wait: bool,
        timeout: timedelta | None,
        tolerate_errors: bool,
    ) -> dict[str, str]:
        """One batch call, then (``wait``) its events and the final status of the VMs the platform accepted.

        VMs the platform refused (``errorList``) or whose operation failed (event) fail the keyword once the
        others are done, unless ``tolerate_errors``: then they are returned as ``{name: message}``.
        """
        deadline = Deadline(self.ctx.seconds(timeout))
        result = call([vm.id for vm in vms])
        by_id = {vm.id: vm for vm in vms}
        refused = {self._error_name(e, by_id): e.error_msg for e in result.errors}
        refused_ids = {e.domain_id for e in result.errors}
        accepted = [vm for vm in vms if vm.id not in refused_ids]
        if accepted:
            logger.info(f"{what}: the platform accepted {', '.join(_label(vm) for vm in accepted)}.")
        if refused and tolerate_errors:
            logger.warn(_problems(what, len(vms), refused, {}))
        failures: dict[str, str] = {}
        try:
            if wait and accepted:
                failures = self._wait_events(what, result.event_ids, accepted, deadline)
                done = [vm for vm in accepted if vm.name not in failures]
                if final is not None and done:
                    self._wait_status(what, done, final, deadline)
                    logger.info(f"{what}: {len(done)} VDI VM(s) are {final} now.")
        except ATPError as exc:
            if refused and not tolerate_errors:
                message = _problems(what, len(vms), refused, {})
                raise VdiBatchError(
                    f"{message}\nWaiting for the others failed too: {exc}", errors=result.errors, result=result
                ) from None
            raise
        if failures and tolerate_errors:
            logger.warn(_problems(what, len(vms), {}, failures))
        if (refused or failures) and not tolerate_errors:
            message = _problems(what, len(vms), refused, failures)
            if refused:
                raise VdiBatchError(message, errors=result.errors, result=result)
            raise VdiError(message)
        return refused | failures

    @staticmethod
    def _error_name(error: BatchError, by_id: dict[str, Vm]) -> str:
        vm = by_id.get(error.domain_id)
        return error.domain_name or (vm.name if vm else error.domain_id)

    # ------------------------------------------------------------------ session
    @keyword("Connect To VDI")
    def connect_to_vdi(
        self,
        url: str,
        username: str,
        password: Secret,
        host_uri: str = DEFAULT_HOST_URI,
        domain_name: str = DEFAULT_DOMAIN_NAME,
        timeout: timedelta | None = None,
        retries: int = 2,
    ) -> None:
        """Logs in to the VDI platform at ``url`` (e.g. ``http://10.0.0.2:8088``) and makes it the current one.

        The login happens at once, so a wrong URL, user or password fails here: an unreachable platform with
        an error naming the URL, a refused login with the platform's code and message (``5099 密码错误``).
        A token that expires later is renewed once, automatically.

        ``password`` must be a Robot Framework ``Secret`` (Robot Framework 7.4 or newer), so that it never
        appears in log.html or output.xml, at any log level. Make one in the Variables section from an
        environment variable, or return ``robot.api.types.Secret`` from a variable file:

        | =Variables=               | =Value=          |
        | ${VDI_PASSWORD: Secret}   | %{VDI_PASSWORD}  |

        - ``host_uri``: how a platform host maps to its libvirt URI, for `VDI And Libvirt Should Agree`;
          placeholders ``{ip}``, ``{name}``, ``{id}`` of the host. The lab uses ``qemu:///system``.
        - ``domain_name``: the libvirt domain name of a VDI VM whose id is not a UUID; placeholders ``{name}``
          and ``{id}`` of the VM.
        - ``timeout``: per HTTP request (default: the library timeout); ``retries``: how often a request that
          cannot have reached the platform (connection refused) is repeated, with backoff.

        A previous VDI connection is closed first.

        | =Keyword=      | =URL=      | =Username=      | =Password=      | =Options=                 |
        | Connect To VDI | ${VDI_URL} | ${VDI_USERNAME} | ${VDI_PASSWORD} | host_uri=qemu:///system   |
        """
        self.ctx.last_vm = None
        if not isinstance(password, Secret):
            raise ConfigurationError(SECRET_HELP)
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"VDI URL '{url}' must start with http:// or https:// (e.g. http://vdi:8088).")
        check_template(host_uri, HOST_PLACEHOLDERS, "host URI")
        check_template(domain_name, DOMAIN_PLACEHOLDERS, "domain name")
        _quiet_http_loggers()
        seconds = self.ctx.seconds(timeout)
        client = VdiClient(url, username, password.value, timeout=seconds, retries=int(retries))
        try:
            client.login()
        except VdiConnectionError as exc:
            client.close()
            raise VdiConnectionError(
                f"Cannot reach the VDI platform at {url}: {exc}. Check the URL (scheme, host and port) and that "
                "the platform is up.",
                code=exc.code,
                msg=exc.msg,
            ) from None
        except VdiError as exc:
            client.close()
            raise VdiError(f"Cannot log in to the VDI platform at {url}: {exc}", code=exc.code, msg=exc.msg) from None
        self._close_session()
        self.ctx.vdi = VdiSession(client, url, username, host_uri, domain_name, HostConnections(seconds))
        logger.info(f"Logged in to the VDI platform at {url} as '{username}'.")

    @keyword("Disconnect From VDI")
    def disconnect_from_vdi(self) -> None:
        """Logs out of the VDI platform and closes its connections.

        Never fails: it passes when no platform is connected. The library also disconnects when the run ends.

        | =Keyword=           |
        | Disconnect From VDI |
        """
        session = self.ctx.vdi
        if session is None:
            logger.info("No VDI platform connected; nothing to disconnect.")
            return
        self._close_session()
        logger.info(f"Disconnected from the VDI platform at {session.url}.")

    def _close_session(self) -> None:
        session, self.ctx.vdi = self.ctx.vdi, None
        if session is not None:
            session.close()

    # ------------------------------------------------------------------ desk pools
    @keyword("Create Desk Pool")
    def create_desk_pool(
        self,
        name: str,
        template: str,
        amount: int = 1,
        type: DeskPoolType = DeskPoolType.DEDICATED,
        prefix: str | None = None,
        remark: str | None = None,
        timeout: timedelta | None = None,
    ) -> str:
        """Creates a desk pool of ``amount`` VDI VMs from ``template`` (name or id) and returns the pool's id.

        Waits until the platform has made it (its event).

        - ``type``: ``dedicated`` (one user per VM), ``shared`` or ``teaching``.
        - ``prefix``: the VMs' name prefix; they are named ``<prefix>1``, ``<prefix>2``, ... (the platform's
          default prefix is ``<name>-``).
        - ``timeout``: for the platform's event (default: the library timeout).

        Fails when no VDI platform is connected, when ``template`` is unknown (listing the templates), when
        the platform refuses or its event fails (with the platform's code and message), or after ``timeout``.

        | =Assignment= | =Keyword=        | =Name= | =Template=     | =Amount= | =Options=     |
        | ${pool} =    | Create Desk Pool | qa-1   | win10-template | 3        | prefix=qa-vm- |
        """
        pool_type = DeskPoolType(type) if not isinstance(type, str) else DeskPoolType[type.strip().upper()]
        tpl = self._template(template)
        deadline = Deadline(self.ctx.seconds(timeout))
        event_id = self.client.create_pool(
            name, int(amount), int(pool_type), tpl.id, domain_prefix=prefix, remark=remark
        )
        failed = self._wait_events(f"Create Desk Pool '{name}'", [event_id], [], deadline)
        if failed:
            raise VdiError(f"Creating desk pool '{name}' failed: {'; '.join(failed.values())}")
        pool = next((p for p in self.client.list_pools(keyword=name) if p.name == name), None)
        if pool is None:
            raise VdiError(
                f"Desk pool '{name}' was created (event {event_id} succeeded) but the platform lists no such pool."
            )
        logger.info(f"Created desk pool '{name}' ({pool.id}): {amount} {pool_type.name.lower()} VM(s) from {tpl.name}.")
        return pool.id

    @keyword("Enable Desk Pool")
    def enable_desk_pool(self, pool: str) -> None:
        """Enables desk pool ``pool`` (name or id) so users can get its desktops.

        Fails when no desk pool is named ``pool`` (listing the desk pools) or with the platform's code and
        message.

        | =Keyword=        | =Pool= |
        | Enable Desk Pool | qa-1   |
        """
        found = self._pool(pool)
        self.client.enable_pool(found.id)
        logger.info(f"Enabled desk pool '{found.name}' ({found.id}).")

    @keyword("Disable Desk Pool")
    def disable_desk_pool(self, pool: str) -> None:
        """Disables desk pool ``pool`` (name or id).

        Fails when no desk pool is named ``pool`` (listing the desk pools) or with the platform's code and
        message.

        | =Keyword=         | =Pool= |
        | Disable Desk Pool | qa-1   |
        """
        found = self._pool(pool)
        self.client.disable_pool(found.id)
        logger.info(f"Disabled desk pool '{found.name}' ({found.id}).")

    @keyword("Delete Desk Pool")
    def delete_desk_pool(self, pool: str) -> None:
        """Deletes desk pool ``pool`` (name or id) and, as the platform does, its VDI VMs.

        Fails when no desk pool is named ``pool`` (listing the desk pools) or with the platform's code and
        message.

        | =Keyword=        | =Pool=  |
        | Delete Desk Pool | ${pool} |
        """
        found = self._pool(pool)
        self.client.delete_pool(found.id)
        logger.info(f"Deleted desk pool '{found.name}' ({found.id}).")

    @keyword("Get Desk Pools")
    def get_desk_pools(self) -> list[str]:
        """Returns the names of all desk pools on the platform (natural order).

        Returns an empty list when there are none. Fails when no VDI platform is connected (use `Connect To
        VDI`) or the platform answers with an error.

        | =Assignment= | =Keyword=      |
        | @{pools} =   | Get Desk Pools |
        | Should Not Contain | ${pools} | qa-1 |
        """
        names = sorted((p.name for p in self.client.list_pools()), key=_natural)
        logger.info(f"{len(names)} desk pool(s): {', '.join(names) or '(none)'}.")
        return names

    @keyword("Get VDI VMs")
    def get_vdi_vms(self, pattern: str = "*", status: VdiVmStatus | None = None) -> list[str]:
        """Returns the names of the VDI VMs (not templates) whose name matches glob ``pattern``, natural order.

        ``status`` keeps only the VMs the platform shows with that status (``off``, ``running``, ...).
        Returns an empty list when none match. Fails when no VDI platform is connected or the platform
        answers with an error.

        | =Assignment= | =Keyword=   | =Pattern= | =Status=       |
        | @{all} =     | Get VDI VMs |           |                |
        | @{up} =      | Get VDI VMs | qa-*      | status=running |
        """
        wanted = None if status is None else (status if isinstance(status, VdiVmStatus) else _parse_status(status))
        names = sorted(
            (
                vm.name
                for vm in self.client.list_vms()
                if not vm.is_model and fnmatch.fnmatchcase(vm.name, pattern) and (wanted is None or vm.status == wanted)
            ),
            key=_natural,
        )
        logger.info(
            f"{len(names)} VDI VM(s) match '{pattern}'" + (f" and are {wanted}" if wanted is not None else "") + "."
        )
        return names

    @keyword("Get Desk Pool VMs")
    def get_desk_pool_vms(self, pool: str, ids: bool = False) -> list[str]:
        """Returns the names of the VDI VMs in desk pool ``pool`` (name or id).

        Names come in natural order (``qa-2`` before ``qa-10``); ``ids=True`` returns their ids in the same
        order. Fails when no desk pool is named ``pool`` (listing the desk pools).

        | =Assignment= | =Keyword=         | =Pool= | =Options= |
        | @{vms} =     | Get Desk Pool VMs | qa-1   |           |
        | @{ids} =     | Get Desk Pool VMs | qa-1   | ids=True  |
        """
        found = self._pool(pool)
        vms = sorted(self.client.list_pool_vms(found.id), key=lambda v: _natural(v.name))
        logger.info(f"Desk pool '{found.name}' has {len(vms)} VDI VM(s): {', '.join(v.name for v in vms) or 'none'}.")
        return [v.id if ids else v.name for v in vms]

    # ------------------------------------------------------------------ VDI VMs
    @keyword("Get VDI VM")
    def get_vdi_vm(self, vm: str) -> DotDict:
        """Returns what the platform says about VDI VM ``vm`` (name or id).

        The result has ``id``, ``name``, ``status`` (``off``, ``running``, ``paused``, ``operating``),
        ``host`` (name), ``host_id``, ``ip``, ``cpu``, ``memory``, ``pool_id`` and ``user_id``. A ``vm`` that
        is neither a VDI VM's name nor its id fails naming similar names; a name that several VMs share
        fails asking for the id.

        | =Assignment= | =Keyword=  | =VM=   |
        | ${vm} =      | Get VDI VM | qa-1-1 |
        | Should Be Equal | ${vm.status} | running |
        """
        found = self.client.get_vm(self._vm(vm).id)
        return DotDict(
            id=found.id,
            name=found.name,
            status=status_name(found.status),
            host=found.host_name,
            host_id=found.host_id,
            ip=found.ip,
            cpu=found.cpu,
            memory=found.memory,
            pool_id=found.desktop_pool_id,
            user_id=found.user_id,
        )

    @keyword("Get VDI VM Status")
    def get_vdi_vm_status(self, vm: str) -> str:
        """Returns the platform status of VDI VM ``vm``: ``off``, ``running``, ``paused`` or ``operating``.

        An unknown ``vm`` fails as in `Get VDI VM`.

        | =Assignment= | =Keyword=         | =VM=   |
        | ${status} =  | Get VDI VM Status | qa-1-1 |
        """
        found = self.client.get_vm(self._vm(vm).id)
        status = status_name(found.status)
        logger.info(f"VDI VM {_label(found)} is {status} ({found.status}).")
        return status

    @keyword("Get VDI VM Domain")
    def get_vdi_vm_domain(self, vm: str, timeout: timedelta | None = None) -> str:
        """Returns the name of the libvirt domain behind VDI VM ``vm``, found on its host.

        The domain is found by the same rules as `VDI And Libvirt Should Agree`: the domain whose UUID is the
        VM id, else the one named by the ``domain_name`` template of `Connect To VDI`, on the libvirt host
        that the ``host_uri`` template makes of the VM's host. The host's URI is logged. Fails naming the VM
        and the URI when no such domain is defined there, or when the host does not answer within
        ``timeout`` (default: the library timeout).

        Use the name with the libvirt keywords (`Destroy VM`, `Guest Agent Should Respond`, ...) on a
        connection to that host.

        | =Assignment= | =Keyword=         | =VM=   |
        | ${domain} =  | Get VDI VM Domain | qa-1-1 |
        | Destroy VM   | ${domain}         |        |
        """
        session = self.session
        found = self._vm(vm)
        hosts = {h.id: h for h in session.client.all_hosts()}
        session.connections.connect_timeout = self.ctx.seconds(timeout)
        conn, name = locate_domain(
            found,
            hosts,
            session.connections,
            host_uri_template=session.host_uri,
            domain_name_template=session.domain_name,
        )
        logger.info(f"VDI VM {_label(found)} is libvirt domain '{name}' at {conn.uri}.")
        return name

    @keyword("Wait Until VDI VM Guest Agent Responds")
    def wait_until_vdi_vm_guest_agent_responds(self, vm: str, timeout: timedelta | None = None) -> None:
        """Waits until the guest agent (qemu-ga) inside VDI VM ``vm`` answers: the guest has booted.

        The platform shows a VM ``running`` as soon as it is powered on; its guest may boot for a while after
        that (and a graceful `Shutdown VDI VMs` before then is ignored by the guest). The agent is reached
        through libvirt on the VM's host, found as in `Get VDI VM Domain`. Fails after ``timeout`` (default:
        the library timeout) naming the VM and its domain.

        | =Keyword=                              | =VM=   | =Timeout=    |
        | Start VDI VMs                          | qa-1-1 | qa-1-2       |
        | Wait Until VDI VM Guest Agent Responds | qa-1-1 | timeout=3min |
        """
        from ATPLibrary.qga.agent import GuestAgent

        session = self.session
        found = self._vm(vm)
        seconds = self.ctx.seconds(timeout)
        deadline = Deadline(seconds)
        session.connections.connect_timeout = seconds
        conn, name = locate_domain(
            found,
            {h.id: h for h in session.client.all_hosts()},
            session.connections,
            host_uri_template=session.host_uri,
            domain_name_template=session.domain_name,
        )
        try:
            waited = GuestAgent(conn.domain(name)).ping(max(deadline.remaining(), 0.1))
        except ATPError as exc:
            exc.args = (f"VDI VM {_label(found)} (libvirt domain '{name}' at {conn.uri}): {exc}", *exc.args[1:])
            raise
        logger.info(f"The guest agent of VDI VM {_label(found)} answered after {format_seconds(waited)}.")

    @keyword("Start VDI VMs")
    def start_vdi_vms(
        self,
        *vms: str,
        wait: bool = True,
        timeout: timedelta | None = None,
        tolerate_errors: bool = False,
    ) -> dict[str, str]:
        """Starts VDI VMs through the platform (one batch request) and waits until they are ``running``.

        With ``wait`` (default) the keyword waits until the platform's events are done and every VM shows
        ``running``; ``wait=False`` returns once the platform accepted the request.

        ``running`` is the platform's power state: the guest may still be booting. Use
        `Wait Until VDI VM Guest Agent Responds` before working in the guest or shutting it down gracefully.

        When the platform refuses some VMs (its ``errorList``), the keyword fails naming each VM with the
        platform's message (kept as it is, often Chinese), unless ``tolerate_errors=True``: then it logs a
        warning, waits for the others, and returns the refused and failed VMs as ``{name: message}``
        (empty when all started). ``timeout`` (default: the library timeout) covers the whole wait.

        | =Keyword=     | =VMs=  | =VMs=  | =Options=   |
        | Start VDI VMs | qa-1-1 | qa-1-2 | timeout=2 min |
        | ${failed} =   | Start VDI VMs | @{vms} | tolerate_errors=True |
        """
        chosen = self._vms(vms, "Start VDI VMs")
        return self._batch(
            "Start VDI VMs",
            chosen,
            lambda ids: self.client.start_vms(ids, tolerate_errors=True),
            final=VdiVmStatus.RUNNING,
            wait=wait,
            timeout=timeout,
            tolerate_errors=tolerate_errors,
        )

    @keyword("Shutdown VDI VMs")
    def shutdown_vdi_vms(
        self,
        *vms: str,
        force: bool = False,
        wait: bool = True,
        timeout: timedelta | None = None,
        tolerate_errors: bool = False,
    ) -> dict[str, str]:
        """Shuts VDI VMs down through the platform; ``force=True`` powers them off at once.

        Waits (``wait``, default) until the events are done and every VM is ``off``; ``timeout`` (default:
        the library timeout) covers the whole wait. Refused VMs fail the keyword as in `Start VDI VMs`, or
        are returned as ``{name: message}`` with ``tolerate_errors=True`` (empty when all shut down).

        | =Keyword=        | =VMs=  | =Options=  |
        | Shutdown VDI VMs | qa-1-1 | force=True |
        """
        chosen = self._vms(vms, "Shutdown VDI VMs")
        return self._batch(
            "Shutdown VDI VMs" + (" (force)" if force else ""),
            chosen,
            lambda ids: self.client.close_vms(ids, force=force, tolerate_errors=True),
            final=VdiVmStatus.OFF,
            wait=wait,
            timeout=timeout,
            tolerate_errors=tolerate_errors,
        )

    @keyword("Reboot VDI VMs")
    def reboot_vdi_vms(
        self,
        *vms: str,
        force: bool = False,
        wait: bool = True,
        timeout: timedelta | None = None,
        tolerate_errors: bool = False,
    ) -> dict[str, str]:
        """Reboots running VDI VMs through the platform (``force=True``: a hard reset).

        Waits (``wait``, default) until the events are done and every VM is ``running`` again. The guest may
        still be booting then; check something in the guest for that. ``timeout`` (default: the library
        timeout) covers the whole wait. Refused VMs fail the keyword as in `Start VDI VMs`, or are returned
        as ``{name: message}`` with ``tolerate_errors=True`` (empty when all rebooted).

        | =Keyword=      | =VMs=  |
        | Reboot VDI VMs | qa-1-1 |
        """
        chosen = self._vms(vms, "Reboot VDI VMs")
        return self._batch(
            "Reboot VDI VMs",
            chosen,
            lambda ids: self.client.reboot_vms(ids, force=force, tolerate_errors=True),
            final=VdiVmStatus.RUNNING,
            wait=wait,
            timeout=timeout,
            tolerate_errors=tolerate_errors,
        )

    @keyword("Suspend VDI VMs")
    def suspend_vdi_vms(
        self, *vms: str, wait: bool = True, timeout: timedelta | None = None, tolerate_errors: bool = False
    ) -> dict[str, str]:
        """Suspends (pauses) running VDI VMs through the platform; waits until they are ``paused``.

        ``wait=False`` returns once the platform accepted the request; ``timeout`` (default: the library
        timeout) covers the whole wait. Refused VMs fail the keyword as in `Start VDI VMs`, or are returned
        as ``{name: message}`` with ``tolerate_errors=True`` (empty when all paused).

        | =Keyword=       | =VMs=  |
        | Suspend VDI VMs | qa-1-1 |
        """
        chosen = self._vms(vms, "Suspend VDI VMs")
        return self._batch(
            "Suspend VDI VMs",
            chosen,
            lambda ids: self.client.suspend_vms(ids, tolerate_errors=True),
            final=VdiVmStatus.PAUSED,
            wait=wait,
            timeout=timeout,
            tolerate_errors=tolerate_errors,
        )

    @keyword("Resume VDI VMs")
    def resume_vdi_vms(
        self, *vms: str, wait: bool = True, timeout: timedelta | None = None, tolerate_errors: bool = False
    ) -> dict[str, str]:
        """Resumes paused VDI VMs through the platform; waits until they are ``running``.

        ``wait=False`` returns once the platform accepted the request; ``timeout`` (default: the library
        timeout) covers the whole wait. Refused VMs fail the keyword as in `Start VDI VMs`, or are returned
        as ``{name: message}`` with ``tolerate_errors=True`` (empty when all resumed).

        | =Keyword=      | =VMs=  |
        | Resume VDI VMs | qa-1-1 |
        """
        chosen = self._vms(vms, "Resume VDI VMs")
        return self._batch(
            "Resume VDI VMs",
            chosen,
            lambda ids: self.client.resume_vms(ids, tolerate_errors=True),
            final=VdiVmStatus.RUNNING,
            wait=wait,
            timeout=timeout,
            tolerate_errors=tolerate_errors,
        )

    @keyword("Delete VDI VMs")
    def delete_vdi_vms(self, *vms: str, recycle: bool = False) -> None:
        """Deletes VDI VMs; running ones are powered off first by the platform.

        ``recycle=True`` moves them to the platform's recycle bin instead. Every VM is looked up before
        anything is deleted: an unknown one fails as in `Get VDI VM`, and a refused deletion fails with the
        platform's code and message.

        | =Keyword=      | =VMs=  | =VMs=  |
        | Delete VDI VMs | qa-1-1 | qa-1-2 |
        """
        chosen = self._vms(vms, "Delete VDI VMs")
        self.client.delete_vms([vm.id for vm in chosen], recycle=recycle)
        where = "to the recycle bin" if recycle else "for good"
        logger.info(f"Deleted {len(chosen)} VDI VM(s) {where}: {', '.join(_label(vm) for vm in chosen)}.")

    @keyword("Create VDI VMs From Template")
    def create_vdi_vms_from_template(
        self, template: str, prefix: str, amount: int = 1, timeout: timedelta | None = None
    ) -> list[str]:
        """Creates ``amount`` VDI VMs from ``template`` (name or id) and returns their names.

        They are named ``<prefix>1``, ``<prefix>2``, ... (the platform skips names in use). Waits for the
        platform's event (``timeout``, default: the library timeout). Fails when ``template`` is unknown
        (listing the templates), when the platform's event fails, or after ``timeout``.

        | =Assignment= | =Keyword=                    | =Template=     | =Prefix= | =Amount= |
        | @{vms} =     | Create VDI VMs From Template | win10-template | qa-vm-   | 2        |
        """
        tpl = self._template(template)
        deadline = Deadline(self.ctx.seconds(timeout))
        before = {vm.id for vm in self.client.list_vms(keyword=prefix)}
        event_id = self.client.create_vms_from_template(tpl.id, prefix, int(amount))
        failed = self._wait_events("Create VDI VMs From Template", [event_id], [], deadline)
        if failed:
            raise VdiError(f"Creating VDI VMs '{prefix}…' from {tpl.name} failed: {'; '.join(failed.values())}")
        new = [vm for vm in self.client.list_vms(keyword=prefix) if vm.id not in before and not vm.is_model]
        names = sorted((vm.name for vm in new), key=_natural)
        logger.info(f"Created {len(names)} VDI VM(s) from template {tpl.name}: {', '.join(names)}.")
        return names

    @keyword("Clone VDI VM")
    def clone_vdi_vm(
        self,
        vm: str,
        name: str,
        storage_pool: str | None = None,
        as_template: bool = False,
        timeout: timedelta | None = None,
    ) -> str:
        """Makes a full clone of VDI VM ``vm`` named ``name`` and returns the clone's id.

        Waits for the platform's event (``timeout``, default: the library timeout). ``storage_pool``: the
        storage pool id for its disks; ``as_template=True`` makes a template. Fails when ``vm`` is unknown
        (as in `Get VDI VM`), when the platform's event fails (with its message), or after ``timeout``.

        | =Assignment= | =Keyword=    | =VM=   | =Name=     |
        | ${id} =      | Clone VDI VM | qa-1-1 | qa-1-copy  |
        """
        source = self._vm(vm)
        deadline = Deadline(self.ctx.seconds(timeout))
        result = self.client.clone_vm(source.id, name, storage_pool_id=storage_pool, template_clone=as_template)
        failed = self._wait_events(f"Clone VDI VM {_label(source)}", [result.event_id], [], deadline)
        if failed:
            raise VdiError(f"Cloning VDI VM {_label(source)} as '{name}' failed: {'; '.join(failed.values())}")
        logger.info(f"Cloned VDI VM {_label(source)} as '{name}' ({result.clone_id}).")
        return result.clone_id

    @keyword("Set VDI VM CPU And Memory")
    def set_vdi_vm_cpu_and_memory(self, *vms: str, cpu: int | None = None, memory: int | None = None) -> None:
        """Sets the number of CPUs and/or the memory of VDI VMs (memory as the platform counts it: MB).

        The platform applies it at the VM's next start. Fails before any request when neither ``cpu`` nor
        ``memory`` is given or a VM is unknown (as in `Get VDI VM`), and with the platform's code and
        message when it refuses.

        | =Keyword=                 | =VMs=  | =Options= | =Options=   |
        | Set VDI VM CPU And Memory | qa-1-1 | cpu=4     | memory=8192 |
        """
        if cpu is None and memory is None:
            raise ConfigurationError("Set VDI VM CPU And Memory: give cpu=, memory= or both.")
        chosen = self._vms(vms, "Set VDI VM CPU And Memory")
        self.client.set_vm_cpu_memory([vm.id for vm in chosen], cpu=cpu, memory=memory)
        what = ", ".join(x for x in (f"cpu={cpu}" if cpu else "", f"memory={memory}" if memory else "") if x)
        logger.info(f"Set {what} on {', '.join(_label(vm) for vm in chosen)}.")

    @keyword("Add VDI VM NIC")
    def add_vdi_vm_nic(self, vm: str, vlan: str) -> str:
        """Adds a network card on VLAN ``vlan`` (the platform's VLAN id) to VDI VM ``vm``; returns its MAC.

        Returns an empty string when the platform lists no new card afterwards. Fails when ``vm`` is unknown
        (as in `Get VDI VM`) or with the platform's code and message, naming the VM.

        | =Assignment= | =Keyword=      | =VM=   | =VLAN=  |
        | ${mac} =     | Add VDI VM NIC | qa-1-1 | vlan-10 |
        """
        found = self._vm(vm)
        before = {str(n.get("mac")) for n in self.client.list_nics(found.id)}
        with _about(f"Adding a NIC on VLAN {vlan} to", found):
            self.client.add_nic(found.id, vlan)
        added = [str(n.get("mac")) for n in self.client.list_nics(found.id) if str(n.get("mac")) not in before]
        mac = added[0] if added else ""
        logger.info(f"Added a NIC on VLAN {vlan} to VDI VM {_label(found)}" + (f": {mac}." if mac else "."))
        return mac

    @keyword("Remove VDI VM NIC")
    def remove_vdi_vm_nic(self, vm: str, mac: str) -> None:
        """Removes the network card with MAC ``mac`` from VDI VM ``vm``.

        Fails when ``vm`` is unknown (as in `Get VDI VM`) or with the platform's code and message, naming
        the VM.

        | =Keyword=         | =VM=   | =MAC=  |
        | Remove VDI VM NIC | qa-1-1 | ${mac} |
        """
        found = self._vm(vm)
        with _about(f"Removing NIC {mac} from", found):
            self.client.delete_nic(found.id, mac)
        logger.info(f"Removed NIC {mac} from VDI VM {_label(found)}.")

    def _user_id(self, user: str) -> str:
        """The id of the user whose sAMAccountName is ``user`` (searched in every OU); else ``user`` itself."""
        stack: list[OrgUnit] = list(self.client.ou_tree())
        while stack:
            ou = stack.pop()
            stack.extend(ou.children)
            if not ou.distinguished_name:
                continue
            for found in self.client.list_users(ou.distinguished_name, keyword=user):
                if user in (found.sam_account_name, found.id) and found.id:
                    return found.id
        return user

    @keyword("Bind User To VDI VM")
    def bind_user_to_vdi_vm(self, vm: str, user: str) -> None:
        """Binds directory user ``user`` (sAMAccountName or user id) to VDI VM ``vm``.

        Fails naming the VM when the platform did not bind it.

        | =Keyword=           | =VM=   | =User=  |
        | Bind User To VDI VM | qa-1-1 | atpuser |
        """
        found = self._vm(vm)
        user_id = self._user_id(user)
        with _about(f"Binding user '{user}' to", found):
            not_bound = self.client.bind_user([found.id], user_id)
        if not_bound:
            raise VdiError(f"The platform did not bind user '{user}' to VDI VM {_label(found)}.")
        logger.info(f"Bound user '{user}' ({user_id}) to VDI VM {_label(found)}.")

    @keyword("Unbind User From VDI VM")
    def unbind_user_from_vdi_vm(self, vm: str) -> None:
        """Removes the user binding of VDI VM ``vm``.

        Fails when ``vm`` is unknown (as in `Get VDI VM`) or with the platform's code and message, naming
        the VM.

        | =Keyword=               | =VM=   |
        | Unbind User From VDI VM | qa-1-1 |
        """
        found = self._vm(vm)
        with _about("Unbinding the user of", found):
            self.client.unbind_user([found.id])
        logger.info(f"Unbound the user of VDI VM {_label(found)}.")

    @keyword("Wait Until VDI VM Status")
    def wait_until_vdi_vm_status(self, vm: str, status: VdiVmStatus, timeout: timedelta | None = None) -> None:
        """Waits until the platform shows VDI VM ``vm`` with ``status``.

        ``status`` is ``off``, ``running``, ``paused`` or ``operating``.

        Fails after ``timeout`` (default: the library timeout) naming the VM, the wanted and the last status.

        | =Keyword=                | =VM=   | =Status= | =Timeout=   |
        | Wait Until VDI VM Status | qa-1-1 | running  | timeout=60s |
        """
        wanted = status if isinstance(status, VdiVmStatus) else _parse_status(status)
        found = self._vm(vm)
        seconds = self.ctx.seconds(timeout)
        self._wait_status("Wait Until VDI VM Status", [found], wanted, Deadline(seconds))
        logger.info(f"VDI VM {_label(found)} is {wanted}.")

    @keyword("Get SPICE Connection")
    def get_spice_connection(self, vm: str) -> DotDict:
        """Returns how to reach the SPICE console of running VDI VM ``vm``, as the platform hands it out.

        The result has ``host``, ``port`` (a number), ``password`` (a Robot Framework ``Secret``, shown as
        ``<secret>`` in logs), ``uri`` (``spice://host:port``), ``vm`` (the name) and ``id``.

        Pass ``${spice.password}`` on to keywords that take a ``Secret``; its plaintext is never logged.
        Fails when ``vm`` is unknown (as in `Get VDI VM`), when the platform refuses (a VM that is not
        running), or when it gives no SPICE host and port.

        | =Assignment=    | =Keyword=            | =VM=   |
        | ${spice} =      | Get SPICE Connection | qa-1-1 |
        | Log             | ${spice.host}:${spice.port} |  |
        """
        found = self._vm(vm)
        with _about("Getting the SPICE connection of", found):
            info = self.client.get_spice(found.id)
        if info.port is None or not info.host:
            raise VdiError(f"The platform gave no SPICE host and port for VDI VM {_label(found)}.")
        logger.info(f"SPICE console of VDI VM {_label(found)}: {info.host}:{info.port} (password hidden).")
        return DotDict(
            host=info.host,
            port=info.port,
            password=Secret(info.password),
            uri=f"spice://{info.host}:{info.port}",
            vm=found.name,
            id=found.id,
        )

    # ------------------------------------------------------------------ agreement
    @keyword("VDI And Libvirt Should Agree")
    def vdi_and_libvirt_should_agree(
        self, *vms: str, pool: str | None = None, timeout: timedelta | None = None
    ) -> None:
        """Checks that every VDI VM's platform status matches its libvirt domain's state on its host.

        Checks all VDI VMs, the VMs named in ``vms`` (names or ids), or those of desk pool ``pool``.
        Logs the whole table and fails listing every difference, one line per VM: a status that differs
        (naming both sides), a VM not defined on its host (a domain undefined behind the platform's back),
        or a host whose libvirt cannot be reached within ``timeout`` (default: the library timeout; then every
        VM on it is listed, naming the URI and the error). VMs in transition (status ``operating``) are
        listed as such but never fail the check.

        The platform's off/running/paused are compared with libvirt's states: ``running`` and ``idle`` read
        as running, ``paused`` and ``pmsuspended`` as paused, anything else as off. A VM's domain is the one
        whose UUID is the VM id (when the id is a UUID), else the one named by the ``domain_name`` template
        of `Connect To VDI`; hosts map to libvirt URIs by its ``host_uri`` template.

        | =Keyword=                    | =VMs=  | =Options=  |
        | VDI And Libvirt Should Agree |        |            |
        | VDI And Libvirt Should Agree |        | pool=qa-1  |
        | VDI And Libvirt Should Agree | qa-1-1 | qa-1-2     |
        """
        session = self.session
        pool_id = self._pool(pool).id if pool else None
        session.connections.connect_timeout = self.ctx.seconds(timeout)
        report = check_agreement(
            session.client,
            host_uri_template=session.host_uri,
            domain_name_template=session.domain_name,
            pool_id=pool_id,
            vms=_refs(vms) or None,
            connections=session.connections,
        )
        logger.info(f"<pre>{html.escape(report.table())}</pre>", html=True)
        logger.info(report.summary())
        differences = report.differences()
        moving = report.in_transition()
        if moving:
            logger.info("In transition (not a difference): " + ", ".join(_label_row(r) for r in moving))
        if differences:
            lines = "\n".join(r.describe() for r in differences)
            tail = f"\nIn transition (not counted): {', '.join(_label_row(r) for r in moving)}." if moving else ""
            hint = unreachable_hint(report, session.host_uri, "Connect To VDI  host_uri=...")
            tail += f"\n{hint}" if hint else ""
            raise VdiAgreementError(
                f"VDI and libvirt disagree on {len(differences)} of {len(report.rows)} VDI VM(s):\n{lines}{tail}",
                report,
            )


def _quiet_http_loggers() -> None:
    """httpx logs every request at INFO and httpcore every step at DEBUG; Robot copies Python logging into
    log.html, where that would bury the keywords' own lines. Loggers someone configured are left alone."""
    for name in ("httpx", "httpcore"):
        log = logging.getLogger(name)
        if log.level == logging.NOTSET:
            log.setLevel(logging.WARNING)


def _problems(what: str, total: int, refused: dict[str, str], failed: dict[str, str]) -> str:
    """``Start VDI VMs: the platform refused 1 of 3 VDI VM(s):`` and one ``- name: message`` line per VM."""
    parts = []
    for verb, found in (("the platform refused", refused), ("the operation failed for", failed)):
        if found:
            lines = "\n".join(f"- {name}: {msg}" for name, msg in found.items())
            parts.append(f"{what}: {verb} {len(found)} of {total} VDI VM(s):\n{lines}")
    return "\n".join(parts)


def _label_row(row: Any) -> str:
    return f"'{row.name}' ({row.vm_id})"


def _parse_status(text: str | int) -> VdiVmStatus:
    key = str(text).strip()
    for member in VdiVmStatus:
        if key.lower() in (member.name.lower(), str(int(member))):
            return member
    raise ConfigurationError(f"'{text}' is not a VDI VM status: use off, running, paused or operating.")
