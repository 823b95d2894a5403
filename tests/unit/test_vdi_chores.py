"""ATPLibrary.vdi.chores on a small in-memory platform: the OU walk, user and OU lookup, rename ordering."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest

from ATPLibrary.vdi.chores import ChoreUsageError, Directory, match_vms, natural_key, plan_rename
from ATPLibrary.vdi.client import VdiClient
from ATPLibrary.vdi.models import OrgUnit, User, Vm


def _vm(id_: str, name: str, user_id: str = "") -> Vm:
    return Vm.from_api({"id": id_, "name": name, "status": 0, "userId": user_id, "isModel": 0})


def _ou(dn: str, ou: str, *children: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"g-{ou}-{len(dn)}", "ou": ou, "distinguishedName": dn, "list": list(children)}


class FakePlatform:
    """The reads the chores make, and the renames, on plain dicts (a platform that lists sub-OU users too)."""

    def __init__(self, vms: list[Vm], tree: list[dict[str, Any]], members: dict[str, list[str]]) -> None:
        self.vms = {vm.id: vm for vm in vms}
        self.tree = tree
        self.members = members
        self.renames: list[tuple[str, str]] = []

    def list_vms(self) -> Iterator[Vm]:
        yield from self.vms.values()

    def all_templates(self) -> list[Vm]:
        return [Vm.from_api({"id": "tpl", "name": "golden", "isModel": 1})]

    def ou_tree(self) -> list[OrgUnit]:
        return [OrgUnit.from_api(d) for d in self.tree]

    def list_users(self, group: str) -> Iterator[User]:
        for name in self.members.get(group, []):
            yield User.from_api({"id": f"u-{name}", "sAMAccountName": name})

    def rename_vm(self, vm_id: str, name: str) -> None:
        taken = {vm.name for vm in self.vms.values() if vm.id != vm_id}
        assert name not in taken, f"rename of {vm_id} to {name!r} collides"
        self.renames.append((vm_id, name))
        self.vms[vm_id] = _vm(vm_id, name, self.vms[vm_id].user_id)

    def get_vm(self, vm_id: str) -> Vm:
        return self.vms[vm_id]


TREE = [
    _ou("OU=Corp,DC=x", "Corp", _ou("OU=QA,OU=Corp,DC=x", "QA"), _ou("OU=Dev,OU=Corp,DC=x", "Dev")),
    _ou("OU=QA,OU=Lab,DC=x", "QA"),
]
MEMBERS = {
    "OU=Corp,DC=x": ["boss", "alice", "bob"],  # this platform also lists the sub-OUs' users here
    "OU=QA,OU=Corp,DC=x": ["bob", "alice"],
    "OU=Dev,OU=Corp,DC=x": [],
    "OU=QA,OU=Lab,DC=x": ["Zed"],
}


def directory(vms: list[Vm] | None = None) -> tuple[FakePlatform, Directory]:
    platform = FakePlatform(vms or [], TREE, MEMBERS)
    return platform, Directory(cast(VdiClient, platform))


def test_the_ou_tree_is_walked_and_every_user_kept_once() -> None:
    _, d = directory()
    assert [u.distinguished_name for u in d.ous] == [
        "OU=Corp,DC=x",
        "OU=QA,OU=Corp,DC=x",
        "OU=Dev,OU=Corp,DC=x",
        "OU=QA,OU=Lab,DC=x",
    ]
    assert sorted(d.users) == ["u-Zed", "u-alice", "u-bob", "u-boss"]
    assert [u.sam_account_name for u in d.users_of(d.ou("OU=QA,OU=Corp,DC=x"))] == ["alice", "bob"]
    assert (d.name_of(""), d.name_of("u-bob"), d.name_of("u-gone")) == ("-", "bob", "[u-gone]")


def test_users_and_ous_are_found_or_named_clearly() -> None:
    _, d = directory()
    assert d.user("alice").id == "u-alice"
    assert d.user("zed").id == "u-Zed"  # AD compares account names case-insensitively
    assert d.user("u-bob").sam_account_name == "bob"  # or an id
    with pytest.raises(ChoreUsageError, match=r"no user 'alicia' in any OU .*4 users in 4 OUs.*close names: alice"):
        d.user("alicia")
    assert d.ou("ou=dev,ou=corp,dc=x").ou == "Dev"  # a DN, compared as LDAP does
    assert d.ou("Dev").distinguished_name == "OU=Dev,OU=Corp,DC=x"
    with pytest.raises(ChoreUsageError, match=r"2 OUs are named 'QA': give the distinguished name"):
        d.ou("QA")
    with pytest.raises(ChoreUsageError, match=r"no OU 'Sales'.*OUs: Corp \(OU=Corp,DC=x\)"):
        d.ou("Sales")


def test_match_vms_in_natural_order_and_no_match_names_close_ones() -> None:
    platform = FakePlatform([_vm("1", "qa-10"), _vm("2", "qa-2"), _vm("3", "web-1")], TREE, MEMBERS)
    client = cast(VdiClient, platform)
    assert [vm.name for vm in match_vms(client, "qa-*")] == ["qa-2", "qa-10"]
    with pytest.raises(ChoreUsageError, match=r"no VDI VM name matches 'qa-1' \(3 VMs on the platform\); close"):
        match_vms(client, "qa-1")
    with pytest.raises(ChoreUsageError, match="pattern is empty"):
        match_vms(client, "")
    assert sorted(["a10", "a9", "a10b", "b"], key=natural_key) == ["a9", "a10", "a10b", "b"]


def test_a_three_way_rename_cycle_goes_through_one_temporary_name() -> None:
    vms = [_vm("1", "alice", "u-bob"), _vm("2", "bob", "u-boss"), _vm("3", "boss", "u-alice"), _vm("4", "x")]
    platform, d = directory(vms)
    plan = plan_rename(cast(VdiClient, platform), vms, d)
    report = plan.run(cast(VdiClient, platform))
    assert report.ok and report.counts() == {"done": 3, "skipped": 1}
    assert {vm.id: vm.name for vm in platform.vms.values()} == {"1": "bob", "2": "boss", "3": "alice", "4": "x"}
    assert len(platform.renames) == 4  # three renames and one temporary name
    assert platform.renames[0] == ("1", "alice.renaming")


def test_rename_never_takes_a_template_name_and_keeps_suffixed_names() -> None:
    vms = [_vm("1", "vm-1", "u-alice"), _vm("2", "alice-3", "u-alice"), _vm("3", "vm-3", "u-golden")]
    platform, d = directory(vms)
    d.users["u-golden"] = User.from_api({"id": "u-golden", "sAMAccountName": "golden"})
    report = plan_rename(cast(VdiClient, platform), vms, d).run(cast(VdiClient, platform), dry_run=True)
    assert [(r.before, r.after, r.result) for r in report.rows] == [
        ("alice-3", "alice-3", "unchanged"),  # a suffixed name of its user: kept
        ("vm-1", "alice", "would rename"),
        ("vm-3", "golden-2", "would rename ('golden' is taken)"),  # 'golden' is the template's
    ]
    assert platform.renames == []
