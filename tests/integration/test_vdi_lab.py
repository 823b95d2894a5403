"""The lab's VDI simulator drives real lab guests: pools make `atp-vdi-…` domains, start boots them, spice-key
gives their real SPICE port and password, and what happens behind the platform's back shows up as it would on a
real platform (a stale status until the next refresh; a batch error from a domain that is gone)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest

from ATPLibrary.errors import VdiBatchError
from ATPLibrary.lab.domains import spice_password_of, spice_port_of
from ATPLibrary.vdi.client import VdiClient
from tests.integration.helpers import kw

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def vdi(lab: dict[str, Any]) -> Iterator[VdiClient]:
    section = lab["vdi"]
    password = Path(section["password_file"]).read_text().strip()
    with VdiClient(section["url"], section["username"], password, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def pool(vdi: VdiClient, lab: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A desk pool of 2 VMs from the lab-image template, deleted (with its domains) afterwards."""
    template = next(t for t in vdi.all_templates() if t.name == lab["vdi"]["template"])
    name = f"pytest-{uuid.uuid4().hex[:6]}"
    event = vdi.create_pool(name=name, model_id=template.id, amount=2, pool_type=1)
    vdi.wait_for_event(event, timeout=60)
    pool = next(p for p in vdi.list_pools(keyword=name) if p.name == name)
    vms = vdi.list_pool_vms(pool.id)
    yield {"id": pool.id, "name": name, "vms": vms}
    if any(p.id == pool.id for p in vdi.list_pools(keyword=name)):
        vdi.delete_pool(pool.id)


def _conn(lab: dict[str, Any]) -> libvirt.virConnect:
    return libvirt.open(lab["uri"])


def _wait_status(vdi: VdiClient, vm_id: str, status: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (current := vdi.get_vm(vm_id).status) != status:
        assert time.monotonic() < deadline, f"VM {vm_id} status {current}, wanted {status} within {timeout} s"
        time.sleep(0.5)


def _refresh(lab: dict[str, Any]) -> None:
    httpx.post(f"{lab['vdi']['url']}/_sim/refresh", timeout=30).raise_for_status()


def test_pool_vms_are_lab_domains_with_the_vm_id_as_uuid(lab: dict[str, Any], pool: dict[str, Any]) -> None:
    conn = _conn(lab)
    try:
        assert len(pool["vms"]) == 2
        for vm in pool["vms"]:
            dom = conn.lookupByUUIDString(str(uuid.UUID(vm.id)))
            assert dom.name() == f"atp-vdi-{vm.id}"
            assert not dom.isActive() and vm.status == 0
    finally:
        conn.close()


def test_start_boots_real_guests_and_spice_key_is_theirs(
    lab: dict[str, Any], vdi: VdiClient, pool: dict[str, Any], library: Any
) -> None:
    ids = [vm.id for vm in pool["vms"]]
    result = vdi.start_vms(ids)
    assert result.errors == [] and len(result.event_ids) == 2
    assert {vdi.get_vm(i).status for i in ids} <= {5, 1}
    for event_id in result.event_ids:
        assert vdi.wait_for_event(event_id, timeout=60).succeeded
    conn = _conn(lab)
    try:
        for vm_id in ids:
            _wait_status(vdi, vm_id, 1)
            name = f"atp-vdi-{vm_id}"
            kw(library, "Guest Agent Should Respond", name, timeout=120)  # the guest really booted
            spice = vdi.get_spice(vm_id)
            secure = conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
            assert (spice.host, spice.port, spice.password) == (
                "127.0.0.1",
                spice_port_of(secure),
                spice_password_of(secure),
            )
    finally:
        conn.close()


def test_destroyed_behind_the_platforms_back_is_stale_until_the_refresh(
    lab: dict[str, Any], vdi: VdiClient, pool: dict[str, Any]
) -> None:
    vm = pool["vms"][0]
    _wait_status(vdi, vm.id, 1)
    conn = _conn(lab)
    try:
        conn.lookupByName(f"atp-vdi-{vm.id}").destroy()
    finally:
        conn.close()
    assert vdi.get_vm(vm.id).status == 1, "the platform keeps its own status until it refreshes"
    _refresh(lab)
    assert vdi.get_vm(vm.id).status == 0


def test_a_domain_undefined_behind_the_platforms_back_fails_its_part_of_a_batch(
    lab: dict[str, Any], vdi: VdiClient, pool: dict[str, Any]
) -> None:
    gone, kept = pool["vms"]
    _refresh(lab)
    conn = _conn(lab)
    try:
        dom = conn.lookupByName(f"atp-vdi-{gone.id}")
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    finally:
        conn.close()
    with pytest.raises(VdiBatchError) as info:
        vdi.reboot_vms([gone.id, kept.id])
    message = str(info.value)
    assert gone.name in message and f"atp-vdi-{gone.id}" in message
    assert kept.name not in message.replace(gone.name, "")
    _wait_status(vdi, kept.id, 1)


def test_deleting_the_pool_removes_its_domains(lab: dict[str, Any], vdi: VdiClient, pool: dict[str, Any]) -> None:
    vdi.delete_pool(pool["id"])
    conn = _conn(lab)
    try:
        names = {d.name() for d in conn.listAllDomains(0)}
    finally:
        conn.close()
    assert not any(f"atp-vdi-{vm.id}" in names for vm in pool["vms"])
