"""VDI ↔ libvirt agreement: the in-process simulator (no guests) against libvirt test-driver hosts.

Each host is a ``test:///<file>.xml`` node whose domains carry the simulator's VM ids as UUIDs and chosen states,
so every outcome (agree, differs, in transition, not defined, host unreachable) is produced for real.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from ATPLibrary.errors import ConfigurationError
from ATPLibrary.hosts.connection import HostConnection
from ATPLibrary.hosts.state import VMState
from ATPLibrary.vdi import VdiClient
from ATPLibrary.vdi.agreement import (
    AgreementReport,
    HostConnections,
    Kind,
    check_agreement,
    check_template,
    domain_name,
    host_uri,
    is_uuid,
    platform_status_of,
    render_table,
)
from ATPLibrary.vdi.models import Host, Vm
from ATPLibrary.vdi.sim import SimServer, Timings, make_server, serve_in_thread

pytestmark = pytest.mark.timeout(60)

# libvirt virDomainState numbers for <test:runstate>
RUNNING, PAUSED, SHUTOFF = 1, 3, 5


def node_xml(domains: list[tuple[str, str, int]]) -> str:
    """A libvirt test-driver node with (name, uuid, runstate) domains."""
    parts = ["<node>"]
    for name, uuid, state in domains:
        parts.append(
            "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
            f"<name>{name}</name><uuid>{uuid}</uuid><memory>65536</memory><os><type>hvm</type></os>"
            f"<test:runstate>{state}</test:runstate></domain>"
        )
    parts.append("</node>")
    return "".join(parts)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    # reboot stays in status 5 for the whole test: a VM in transition on demand
    server = make_server(port=0, timings=Timings(start=0.05, close=0.05, reboot=60, suspend=0.05, create=0.05))
    serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(sim: SimServer) -> Iterator[VdiClient]:
    with VdiClient(sim.url, "admin", "11111111", retries=0, timeout=5) as c:
        yield c


def make_vms(client: VdiClient, prefix: str, amount: int) -> dict[str, Vm]:
    template = client.all_templates()[0]
    client.wait_for_event(client.create_vms_from_template(template.id, prefix, amount), timeout=5, interval=0.02)
    return {vm.name: vm for vm in client.list_vms(keyword=prefix)}


def start(client: VdiClient, *vms: Vm) -> None:
    for event in client.start_vms([v.id for v in vms]).event_ids:
        client.wait_for_event(event, timeout=5, interval=0.02)


def by_name(report: AgreementReport) -> dict[str, Kind]:
    return {r.name: r.kind for r in report.rows}


@pytest.fixture
def scene(client: VdiClient, tmp_path: Path) -> tuple[dict[str, Vm], Path]:
    """agree-1 agrees, agree-2 differs, agree-3 is in transition, agree-4 has no domain, agree-5 is found by name."""
    vms = make_vms(client, "agree-", 5)
    start(client, vms["agree-1"], vms["agree-3"])
    client.reboot_vms(vms["agree-3"].id)  # status 5 for a minute
    node = tmp_path / "host-1.xml"
    node.write_text(
        node_xml(
            [
                ("atp-vdi-a", vms["agree-1"].id, RUNNING),
                ("atp-vdi-b", vms["agree-2"].id, RUNNING),  # the platform says off
                ("atp-vdi-c", vms["agree-3"].id, RUNNING),
                ("agree-5", "0123456789abcdef0123456789abcdef", SHUTOFF),  # another UUID, the VM's name
            ]
        )
    )
    return vms, tmp_path


def test_each_outcome_against_a_test_driver_host(client: VdiClient, scene: tuple[dict[str, Vm], Path]) -> None:
    vms, tmp = scene
    report = check_agreement(client, host_uri_template=f"test://{tmp}/{{id}}.xml")
    assert by_name(report) == {
        "agree-1": Kind.AGREE,
        "agree-2": Kind.DIFFERS,
        "agree-3": Kind.IN_TRANSITION,
        "agree-4": Kind.NOT_DEFINED,
        "agree-5": Kind.AGREE,
    }
    rows = {r.name: r for r in report.rows}
    differs = rows["agree-2"]
    assert differs.platform_status == 0 and differs.libvirt_state is VMState.RUNNING
    assert "agree-2" in differs.describe() and vms["agree-2"].id in differs.describe()
    assert "off (0)" in differs.detail and "'atp-vdi-b' is running" in differs.detail
    assert rows["agree-5"].domain == "agree-5"  # the name rule, after the UUID rule found nothing
    assert rows["agree-1"].domain == "atp-vdi-a"
    missing = rows["agree-4"]
    assert vms["agree-4"].id in missing.detail and "agree-4" in missing.detail and "host-1.xml" in missing.detail
    assert not report.ok
    assert [r.name for r in report.differences()] == ["agree-2", "agree-4"]
    assert [r.name for r in report.in_transition()] == ["agree-3"]
    assert report.counts()["agree"] == 2
    table = report.table()
    assert table.splitlines()[0].split() == ["VM", "ID", "HOST", "PLATFORM", "LIBVIRT", "RESULT", "DETAIL"]
    assert len(table.splitlines()) == 6
    only = report.table(only_differences=True)
    assert "agree-2" in only and "agree-1" not in only
    data = json.loads(report.to_json())
    assert data["ok"] is False and {v["kind"] for v in data["vms"]} == {
        "agree",
        "differs",
        "in transition",
        "not defined on host",
    }


def test_domain_name_template_and_restriction_to_vms(client: VdiClient, tmp_path: Path) -> None:
    vms = make_vms(client, "named-", 2)
    (tmp_path / "n.xml").write_text(
        node_xml([(f"vdi-{vms['named-1'].name}", "11111111222233334444555555555555", SHUTOFF)])
    )
    report = check_agreement(
        client, host_uri_template=f"test://{tmp_path}/n.xml", domain_name_template="vdi-{name}", vms=["named-1"]
    )
    assert [(r.name, r.kind, r.domain) for r in report.rows] == [("named-1", Kind.AGREE, "vdi-named-1")]
    report = check_agreement(client, host_uri_template=f"test://{tmp_path}/n.xml", vms=[vms["named-2"].id])
    assert [(r.name, r.kind) for r in report.rows] == [("named-2", Kind.NOT_DEFINED)]
    with pytest.raises(ConfigurationError, match="'no-such-vm'"):
        check_agreement(client, host_uri_template=f"test://{tmp_path}/n.xml", vms=["no-such-vm"])


def test_restriction_to_a_desk_pool(client: VdiClient, tmp_path: Path) -> None:
    make_vms(client, "outside-", 1)
    template = client.all_templates()[0]
    client.wait_for_event(client.create_pool("agreepool", 2, 0, template.id), timeout=5, interval=0.02)
    pool = next(p for p in client.list_pools() if p.name == "agreepool")
    (tmp_path / "p.xml").write_text(node_xml([]))
    report = check_agreement(client, host_uri_template=f"test://{tmp_path}/p.xml", pool_id=pool.id)
    assert sorted(r.name for r in report.rows) == ["agreepool-1", "agreepool-2"]


def test_unreachable_host_names_the_uri_and_error(client: VdiClient, scene: tuple[dict[str, Vm], Path]) -> None:
    started = time.monotonic()
    report = check_agreement(client, host_uri_template="qemu+tcp://{ip}:1/system", connect_timeout=5)
    assert time.monotonic() - started < 5
    kinds = by_name(report)
    assert kinds.pop("agree-3") is Kind.IN_TRANSITION  # never a difference, even on a lost host
    assert set(kinds.values()) == {Kind.HOST_UNREACHABLE}
    row = next(r for r in report.rows if r.name == "agree-1")
    assert row.uri == "qemu+tcp://127.0.0.1:1/system"
    assert "qemu+tcp://127.0.0.1:1/system" in row.detail and "Cannot connect" in row.detail


def test_one_host_unreachable_among_two(sim: SimServer, client: VdiClient, scene: tuple[dict[str, Vm], Path]) -> None:
    vms, tmp = scene
    store = sim.platform.store
    store.put("hosts", {"id": "host-2", "name": "sim-host-2", "ip": "192.0.2.1", "status": 1})
    store.update("domains", vms["agree-4"].id, hostId="host-2", hostName="sim-host-2")
    report = check_agreement(client, host_uri_template=f"test://{tmp}/{{id}}.xml")  # host-2.xml does not exist
    rows = {r.name: r for r in report.rows}
    assert rows["agree-4"].kind is Kind.HOST_UNREACHABLE and rows["agree-4"].host == "sim-host-2"
    assert f"test://{tmp}/host-2.xml" in rows["agree-4"].detail
    assert rows["agree-1"].kind is Kind.AGREE
    store.update("domains", vms["agree-4"].id, hostId="host-9")
    rows = {r.name: r for r in check_agreement(client, host_uri_template=f"test://{tmp}/{{id}}.xml").rows}
    assert rows["agree-4"].kind is Kind.NO_HOST and "host-9" in rows["agree-4"].detail


def test_a_host_that_never_answers_does_not_hang() -> None:
    def slow(uri: str) -> libvirt.virConnect:
        time.sleep(3)
        raise libvirt.libvirtError("too late")

    conns = HostConnections(0.3, factory=lambda uri: HostConnection(uri, opener=slow))
    host = Host("h", "h", "192.0.2.1", 1, raw={})
    vm = Vm("0123456789abcdef0123456789abcdef", "v", 1, "h", "h", "", 1, 1, "", "", False, raw={})

    class Source:
        def list_vms(self, **_: object) -> list[Vm]:
            return [vm]

        def list_pool_vms(self, pool_id: str) -> list[Vm]:
            return []

        def all_hosts(self, **_: object) -> list[Host]:
            return [host]

    started = time.monotonic()
    report = check_agreement(Source(), connections=conns)
    assert time.monotonic() - started < 2
    assert report.rows[0].kind is Kind.HOST_UNREACHABLE
    assert "qemu+tcp://192.0.2.1/system" in report.rows[0].detail and "no answer within 300 ms" in report.rows[0].detail


def test_connections_are_reused_between_checks(client: VdiClient, scene: tuple[dict[str, Vm], Path]) -> None:
    _, tmp = scene
    opened: list[str] = []

    def factory(uri: str) -> HostConnection:
        opened.append(uri)
        return HostConnection(uri, keepalive=None)

    with HostConnections(5, factory=factory) as conns:
        for _ in range(2):
            check_agreement(client, host_uri_template=f"test://{tmp}/{{id}}.xml", connections=conns)
    assert opened == [f"test://{tmp}/host-1.xml"]


def test_libvirt_state_mapping() -> None:
    assert {s: platform_status_of(s) for s in VMState} == {
        VMState.RUNNING: 1,
        VMState.BLOCKED: 1,
        VMState.PAUSED: 2,
        VMState.PMSUSPENDED: 2,
        VMState.SHUTOFF: 0,
        VMState.SHUTDOWN: 0,
        VMState.CRASHED: 0,
        VMState.NOSTATE: 0,
    }


def test_uuid_and_templates() -> None:
    assert is_uuid("0123456789abcdef0123456789ABCDEF")
    assert is_uuid("01234567-89ab-cdef-0123-456789abcdef")
    assert not is_uuid("tpl-1") and not is_uuid("0123456789abcdef")
    host = Host("h-1", "node1", "10.0.0.5", 1, raw={})
    assert host_uri("qemu+tcp://{ip}/system", host) == "qemu+tcp://10.0.0.5/system"
    assert host_uri("qemu+ssh://root@{name}/system?x={id}", host) == "qemu+ssh://root@node1/system?x=h-1"
    assert host_uri("qemu+tcp://{ip}/system", Host("h", "n", "fe80::1", 1, raw={})) == "qemu+tcp://[fe80::1]/system"
    vm = Vm("abc", "desk-1", 0, "h-1", "", "", 1, 1, "", "", False, raw={})
    assert domain_name("atp-vdi-{id}", vm) == "atp-vdi-abc"
    with pytest.raises(ConfigurationError, match=r"unknown placeholder\(s\) \{host\}.*\{ip\}, \{name\}, \{id\}"):
        check_template("qemu+tcp://{host}/system", ("ip", "name", "id"), "host URI")
    with pytest.raises(ConfigurationError, match="malformed"):
        check_template("qemu+tcp://{ip/system", ("ip",), "host URI")


def test_render_table_aligns_columns() -> None:
    assert render_table(("A", "BB", "C"), [("xxx", "y", "last"), ("z", "", "")]).splitlines() == [
        "A    BB  C",
        "xxx  y   last",
        "z",
    ]
