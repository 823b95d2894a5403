"""Batch chores on the VDI platform's VMs: assign users, rename VMs to their users, set auto-join-AD-domain.

Plain Python on :class:`~ATPLibrary.vdi.client.VdiClient` (no Robot Framework import); ``atp vdi assign | rename |
auto-ad`` are thin wrappers.  Each chore is planned first (reads only: the VMs matching a glob, the users of the
OU tree), so ``dry_run`` shows the same plan and changes nothing.  Then the plan's operations run one VM at a time:
a platform error (``status != 0``) fails only that VM, each changed VM is read back and its new value is the
``after`` column, so a row says what the platform shows, not what was asked for.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ATPLibrary.errors import ATPError, VdiConnectionError, VdiError
from ATPLibrary.vdi.client import VdiClient
from ATPLibrary.vdi.models import OrgUnit, User, Vm

Outcome = Literal["done", "planned", "unchanged", "skipped", "failed"]
NONE = "-"


class ChoreUsageError(ATPError):
    """The chore cannot start: no VM matches, an unknown user or OU, an empty OU (nothing was changed)."""


def natural_key(name: str) -> tuple[Any, ...]:
    """``qa-2`` before ``qa-10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part)


def match_vms(client: VdiClient, pattern: str) -> list[Vm]:
    """The platform's VMs (no templates) whose name matches the glob ``pattern``, in natural name order.

    Patterns: ``*`` (all), ``qa-*``, ``*-win``, ``*lab*``, an exact name; ``?`` and ``[...]`` work too
    (shell glob, case-sensitive).  No match is a :class:`ChoreUsageError`.
    """
    if not pattern:
        raise ChoreUsageError("the VM name pattern is empty: give a glob such as 'qa-*', or '*' for every VM")
    every = [vm for vm in client.list_vms() if not vm.is_model]
    chosen = sorted((vm for vm in every if fnmatch.fnmatchcase(vm.name, pattern)), key=lambda v: natural_key(v.name))
    if not chosen:
        close = difflib.get_close_matches(pattern, [vm.name for vm in every], n=3)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise ChoreUsageError(f"no VDI VM name matches '{pattern}' ({len(every)} VMs on the platform){hint}")
    return chosen


# ---------------------------------------------------------------- users and OUs


def _flatten(units: Iterable[OrgUnit]) -> list[OrgUnit]:
    out: list[OrgUnit] = []
    for unit in units:
        out.append(unit)
        out.extend(_flatten(unit.children))
    return out


class Directory:
    """The platform's OUs (``GET /group/tree``) and their users (``GET /user?group=<DN>`` per OU), read once.

    The spec has no route that lists every user or finds one by id (``/user/detail`` answers without the id), so
    users are gathered OU by OU, each user once (by id) in case the platform also lists sub-OU users.
    """

    def __init__(self, client: VdiClient) -> None:
        self.ous = _flatten(client.ou_tree())
        self._by_ou: dict[str, list[User]] = {}
        self.users: dict[str, User] = {}
        for unit in self.ous:
            members = list(client.list_users(unit.distinguished_name))
            self._by_ou[unit.distinguished_name] = members
            for user in members:
                self.users.setdefault(user.id, user)

    def name_of(self, user_id: str) -> str:
        """A bound user's account name (``-`` for none; the id in brackets when no OU lists it)."""
        if not user_id:
            return NONE
        user = self.users.get(user_id)
        return user.sam_account_name if user else f"[{user_id}]"

    def user(self, ref: str) -> User:
        """A user by sAMAccountName (exact, else case-insensitive as AD compares it) or by id."""
        ref = ref.strip()
        every = list(self.users.values())
        for found in (
            [u for u in every if u.sam_account_name == ref],
            [u for u in every if u.sam_account_name.lower() == ref.lower()],
            [u for u in every if u.id == ref],
        ):
            if len(found) == 1:
                return found[0]
        close = difflib.get_close_matches(ref, [u.sam_account_name for u in every], n=3)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise ChoreUsageError(
            f"no user '{ref}' in any OU of the platform ({len(every)} users in {len(self.ous)} OUs){hint}"
        )

    def ou(self, ref: str) -> OrgUnit:
        """An OU by distinguished name (case-insensitive, as LDAP compares it), by its name ``ou``, or by id."""
        ref = ref.strip()
        by_dn = [u for u in self.ous if u.distinguished_name.lower() == ref.lower()]
        if by_dn:
            return by_dn[0]
        by_name = [u for u in self.ous if u.ou == ref] or [u for u in self.ous if u.id == ref]
        if len(by_name) == 1:
            return by_name[0]
        if len(by_name) > 1:
            dns = "; ".join(u.distinguished_name for u in by_name)
            raise ChoreUsageError(f"{len(by_name)} OUs are named '{ref}': give the distinguished name ({dns})")
        known = "; ".join(f"{u.ou} ({u.distinguished_name})" for u in self.ous) or "none"
        raise ChoreUsageError(f"no OU '{ref}' (a distinguished name, an OU name or an id); OUs: {known}")

    def users_of(self, unit: OrgUnit) -> list[User]:
        """The OU's users as the platform lists them, sorted by account name (so a run is repeatable)."""
        return sorted(self._by_ou.get(unit.distinguished_name, []), key=lambda u: natural_key(u.sam_account_name))


# ---------------------------------------------------------------- plans and their run


@dataclass
class Row:
    """One VM of a chore: ``before`` and ``after`` are the value the chore is about (user, name, on/off)."""

    vm: Vm
    before: str
    after: str
    outcome: Outcome
    result: str
    #: what a dry run says ("would bind"), and what a successful run says ("bound")
    verbs: tuple[str, str] = ("", "")

    def to_json(self) -> dict[str, Any]:
        return {
            "vm": self.vm.name,
            "id": self.vm.id,
            "before": self.before,
            "after": self.after,
            "outcome": self.outcome,
            "result": self.result,
        }


@dataclass
class Op:
    """One platform call of a plan, on behalf of ``row`` (a VM may need several: unbind, then bind)."""

    row: Row
    call: Callable[[], None]
    what: str


@dataclass
class Report:
    chore: str
    rows: list[Row]
    dry_run: bool
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: Ctrl+C stopped the run: the rows say what was done before it
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and not any(r.outcome == "failed" for r in self.rows)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.outcome] = counts.get(row.outcome, 0) + 1
        return counts

    def summary(self) -> str:
        order = ("done", "planned", "unchanged", "skipped", "failed")
        counts = self.counts()
        parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
        mode = " (dry run: nothing changed)" if self.dry_run else " (interrupted)" if self.interrupted else ""
        head = f"{self.chore}{mode}: {len(self.rows)} VM(s): "
        return head + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "chore": self.chore,
            "ok": self.ok,
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "counts": self.counts(),
            "vms": [r.to_json() for r in self.rows],
            "notes": self.notes,
        } | self.extra


@dataclass
class Plan:
    chore: str
    rows: list[Row]
    ops: list[Op]
    read_back: Callable[[Vm], str]
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def run(
        self, client: VdiClient, *, dry_run: bool = False, advance: Callable[[str], None] = lambda _m: None
    ) -> Report:
        """Dry run: the plan as a report, no call made.  Otherwise each op in order; a VM whose op fails is
        ``failed`` with the platform's code and message and its later ops are not sent; every changed VM is read
        back.  A lost connection fails that VM and marks the VMs not yet tried; Ctrl+C stops sending (the VM whose
        call it interrupted is failed, those not tried are skipped) and the report says ``interrupted``."""
        if dry_run:
            for row in self.rows:
                if row.outcome == "planned":
                    row.result = row.verbs[0]
            return self.report(dry_run=True)
        unreachable: str | None = None
        touched: list[Row] = []
        planned = {id(row): row.after for row in self.rows}
        interrupted = False
        for op in self.ops:
            row = op.row
            if row.outcome == "failed":
                advance(row.vm.name)
                continue
            if interrupted:
                if row not in touched:
                    row.outcome, row.result, row.after = "skipped", "not tried: interrupted", row.before
                continue
            if unreachable is not None:
                row.outcome, row.result, row.after = "failed", f"failed: not tried: {unreachable}", row.before
                advance(row.vm.name)
                continue
            if row not in touched:
                touched.append(row)
            try:
                op.call()
            except KeyboardInterrupt:  # Ctrl+C: stop sending, still say what was done
                interrupted = True
                row.outcome, row.result = "failed", f"failed: {op.what}: interrupted"
                continue
            except VdiConnectionError as exc:
                unreachable = f"the platform became unreachable ({_one_line(str(exc))})"
                row.outcome, row.result = "failed", f"failed: {op.what}: {_one_line(str(exc))}"
            except VdiError as exc:
                row.outcome, row.result = "failed", f"failed: {op.what}: {_one_line(str(exc))}"
            advance(row.vm.name)
        for row in touched:  # what the platform shows now, also for a VM whose second op failed
            try:
                if unreachable is not None:
                    raise VdiConnectionError(unreachable)
                fresh = client.get_vm(row.vm.id)
            except VdiError as exc:
                if isinstance(exc, VdiConnectionError) and unreachable is None:
                    unreachable = f"the platform became unreachable ({_one_line(str(exc))})"
                if row.outcome != "failed":
                    row.outcome, row.result = "failed", f"failed: reading it back: {_one_line(str(exc))}"
                row.after = "?"
                continue
            row.after = self.read_back(fresh)
            if row.outcome == "failed":
                continue
            if row.after != planned[id(row)]:
                row.outcome = "failed"
                row.result = f"failed: the platform shows {row.after!r}, not {planned[id(row)]!r}"
            else:
                row.outcome, row.result = "done", row.verbs[1]
        report = self.report(dry_run=False)
        report.interrupted = interrupted
        return report

    def report(self, *, dry_run: bool) -> Report:
        return Report(self.chore, self.rows, dry_run, list(self.notes), dict(self.extra))


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _planned(vm: Vm, before: str, after: str, verbs: tuple[str, str]) -> Row:
    return Row(vm, before, after, "planned", verbs[0], verbs)


# ---------------------------------------------------------------- assign


def plan_assign(
    client: VdiClient, vms: Sequence[Vm], users: Sequence[User], directory: Directory, *, force: bool = False
) -> Plan:
    """Pair ``vms`` (in their order) with ``users`` (in theirs), by position.

    A VM already bound to its user is unchanged; an unbound VM is bound; a VM bound to another user is skipped,
    unless ``force``, which unbinds it first.  The pairing never depends on ``force``, so running again with
    ``force`` completes the same plan.  VMs beyond the last user get none and fail; users beyond the last VM are
    listed in ``users_without_vm``.
    """
    rows: list[Row] = []
    ops: list[Op] = []
    for index, vm in enumerate(vms):
        before = directory.name_of(vm.user_id)
        if index >= len(users):
            why = f"no user left ({len(users)} user(s) for {len(vms)} VM(s))"
            rows.append(Row(vm, before, before, "failed", f"failed: {why}"))
            continue
        user = users[index]
        if vm.user_id == user.id:
            rows.append(Row(vm, before, before, "unchanged", f"unchanged: already bound to {user.sam_account_name}"))
            continue
        if vm.user_id and not force:
            why = f"bound to {before}; --force unbinds it and binds {user.sam_account_name}"
            rows.append(Row(vm, before, before, "skipped", f"skipped: {why}"))
            continue
        if vm.user_id:
            row = _planned(vm, before, user.sam_account_name, (f"would unbind {before}, then bind", "reassigned"))
            ops.append(Op(row, _unbinder(client, vm), f"unbinding {before}"))
        else:
            row = _planned(vm, before, user.sam_account_name, ("would bind", "bound"))
        ops.append(Op(row, _binder(client, vm, user), f"binding {user.sam_account_name}"))
        rows.append(row)
    unused = [u.sam_account_name for u in users[len(vms) :]]
    notes = []
    short = [r.vm.name for r in rows if r.result.startswith("failed: no user left")]
    if short:
        notes.append(f"VMs that got no user ({len(short)}): {', '.join(short)}")
    if unused:
        notes.append(f"users without a VM ({len(unused)}): {', '.join(unused)}")
    return Plan("assign", rows, ops, lambda v: directory.name_of(v.user_id), notes, {"users_without_vm": unused})


def _unbinder(client: VdiClient, vm: Vm) -> Callable[[], None]:
    return lambda: client.unbind_user([vm.id])


def _binder(client: VdiClient, vm: Vm, user: User) -> Callable[[], None]:
    def bind() -> None:
        if vm.id in client.bind_user([vm.id], user.id):
            raise VdiError("the platform did not bind it (its id came back in notBindDomainIdList)")

    return bind


# ---------------------------------------------------------------- rename


def plan_rename(client: VdiClient, vms: Sequence[Vm], directory: Directory) -> Plan:
    """Rename each VM to its bound user's account name.

    VMs without a user are skipped; a VM bound to a user no OU lists fails.  Names are unique on the platform:
    when a user's name is taken (by a VM or template outside this batch, or by another VM of the same user in it),
    the VM gets ``<name>-2``, ``<name>-3``, …; a VM that already has its user's name (or such a suffixed one)
    keeps it, so running again changes nothing.  Renames within the batch run in an order that never collides,
    and a cycle (two VMs swapping names) goes through a temporary name.
    """
    chosen_ids = {vm.id for vm in vms}
    rows: list[Row] = []
    candidates: list[tuple[Vm, str]] = []
    taken = {vm.name for vm in client.list_vms() if vm.id not in chosen_ids}
    taken |= {t.name for t in client.all_templates()}
    for vm in vms:
        if not vm.user_id:
            rows.append(Row(vm, vm.name, vm.name, "skipped", "skipped: no user bound"))
            taken.add(vm.name)
        elif vm.user_id not in directory.users:
            why = f"bound to user id {vm.user_id}, which no OU lists"
            rows.append(Row(vm, vm.name, vm.name, "failed", f"failed: {why}"))
            taken.add(vm.name)
        else:
            candidates.append((vm, directory.users[vm.user_id].sam_account_name))
    target: dict[str, str] = {}
    for vm, base in candidates:  # pass 1: a VM that has its user's name (or a suffixed one) keeps it
        if re.fullmatch(rf"{re.escape(base)}(-[2-9]|-[1-9]\d+)?", vm.name) and vm.name not in taken:
            target[vm.id] = vm.name
            taken.add(vm.name)
    for vm, base in candidates:  # pass 2: the first free name
        if vm.id in target:
            continue
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        target[vm.id] = name
        taken.add(name)
    by_id = {vm.id: vm for vm, _ in candidates}
    order: dict[str, Row] = {}
    for vm, base in candidates:
        new = target[vm.id]
        if new == vm.name:
            order[vm.id] = Row(vm, vm.name, vm.name, "unchanged", "unchanged")
        else:
            done = "renamed" if new == base else f"renamed ('{base}' is taken)"
            order[vm.id] = _planned(vm, vm.name, new, (f"would rename{done[7:]}", done))
    ops = _rename_ops(client, {i: target[i] for i, r in order.items() if r.outcome == "planned"}, by_id, order, taken)
    rows.extend(order.values())
    rows.sort(key=lambda r: natural_key(r.vm.name))
    return Plan("rename", rows, ops, lambda v: v.name)


def _rename_ops(
    client: VdiClient, targets: dict[str, str], vms: dict[str, Vm], rows: dict[str, Row], taken: set[str]
) -> list[Op]:
    """Renames in an order where no new name is still held by a VM of the batch; cycles via a temporary name."""
    holder = {vms[i].name: i for i in targets}
    pending = dict(targets)
    ops: list[Op] = []

    def rename(vm_id: str, name: str) -> None:
        ops.append(Op(rows[vm_id], lambda: client.rename_vm(vm_id, name), f"renaming to {name}"))

    while pending:
        ready = [i for i, name in pending.items() if holder.get(name) in (None, i)]
        if not ready:  # every pending rename waits for another: a cycle
            vm_id = next(iter(pending))
            temp, n = f"{vms[vm_id].name}.renaming", 2
            while temp in taken or temp in holder:
                temp, n = f"{vms[vm_id].name}.renaming{n}", n + 1
            rename(vm_id, temp)
            holder = {k: v for k, v in holder.items() if v != vm_id} | {temp: vm_id}
            continue
        for vm_id in ready:
            name = pending.pop(vm_id)
            rename(vm_id, name)
            holder = {k: v for k, v in holder.items() if v != vm_id} | {name: vm_id}
    return ops


# ---------------------------------------------------------------- auto-join-domain


def on_off(value: int | None) -> str:
    return {1: "on", 0: "off"}.get(value, "unknown") if value is not None else "unknown"


def plan_auto_ad(client: VdiClient, vms: Sequence[Vm], *, enable: bool) -> Plan:
    """Set each VM's ``autoJoinDomain`` (the original's ``set-auto-join-domain``); VMs already so are unchanged."""
    want = on_off(1 if enable else 0)
    verb = "enable" if enable else "disable"
    rows: list[Row] = []
    ops: list[Op] = []
    for vm in vms:
        before = on_off(vm.auto_join_domain)
        if before == want:
            rows.append(Row(vm, before, before, "unchanged", "unchanged"))
            continue
        row = _planned(vm, before, want, (f"would {verb}", f"{verb}d"))
        ops.append(Op(row, _auto_ad_setter(client, vm, enable), f"setting autoJoinDomain {want}"))
        rows.append(row)
    return Plan("auto-ad", rows, ops, lambda v: on_off(v.auto_join_domain))


def _auto_ad_setter(client: VdiClient, vm: Vm, enable: bool) -> Callable[[], None]:
    return lambda: client.set_vm_auto_join_domain(vm.id, enable)
