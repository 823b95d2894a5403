"""`atp vdi …` against the in-process simulator (no guests) and libvirt test-driver hosts."""

from __future__ import annotations

import contextlib
import json
import socket
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ATPLibrary.cli import vdi as cli_vdi
from ATPLibrary.cli.main import main
from ATPLibrary.hosts.connection import HostConnection
from ATPLibrary.vdi import VdiClient
from ATPLibrary.vdi.models import Vm
from ATPLibrary.vdi.sim import SimServer, Timings, make_server, serve_in_thread

pytestmark = pytest.mark.timeout(60)

PASSWORD = "Cli-Secret-3k2x"
FAST = Timings(start=0.05, close=0.05, reboot=30, suspend=0.05, resume=0.05, create=0.05)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SimServer]:
    monkeypatch.setenv("ATP_LAB_DIR", str(tmp_path / "lab"))  # no lab variables unless a test writes them
    monkeypatch.setenv("ATP_VDI_PASSWORD", PASSWORD)
    for name in ("ATP_VDI_URL", "ATP_VDI_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    server = make_server(port=0, password=PASSWORD, timings=FAST)
    serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(sim: SimServer) -> Iterator[VdiClient]:
    with VdiClient(sim.url, "admin", PASSWORD, retries=0) as c:
        yield c


def make_vms(client: VdiClient, prefix: str, amount: int) -> list[Vm]:
    template = client.all_templates()[0]
    client.wait_for_event(client.create_vms_from_template(template.id, prefix, amount), timeout=5, interval=0.02)
    return sorted(client.list_vms(keyword=prefix), key=lambda v: v.name)


def node(path: Path, domains: list[tuple[str, str, int]]) -> str:
    body = "".join(
        "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        f"<name>{name}</name><uuid>{uuid}</uuid><memory>65536</memory><os><type>hvm</type></os>"
        f"<test:runstate>{state}</test:runstate></domain>"
        for name, uuid, state in domains
    )
    path.write_text(f"<node>{body}</node>")
    return f"test://{path}"


def atp(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_list_hosts_table_and_json(sim: SimServer, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = atp(capsys, "vdi", "list-hosts", "--url", sim.url)
    assert rc == 0 and err == ""
    header, row = out.splitlines()
    assert header.split() == ["ID", "NAME", "IP", "STATUS", "LIBVIRT"]
    assert row.split() == ["host-1", "sim-host-1", "127.0.0.1", "enabled", "qemu+tcp://127.0.0.1/system"]
    rc, out, _ = atp(
        capsys, "vdi", "list-hosts", "--url", sim.url, "--host-uri", "qemu+ssh://root@{name}/system", "--format", "json"
    )
    assert json.loads(out) == [
        {
            "id": "host-1",
            "name": "sim-host-1",
            "ip": "127.0.0.1",
            "status": "enabled",
            "libvirt_uri": "qemu+ssh://root@sim-host-1/system",
        }
    ]


def test_list_vms_all_and_by_host(
    sim: SimServer, client: VdiClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    vms = make_vms(client, "lst-", 3)
    monkeypatch.setenv("ATP_VDI_URL", sim.url)
    rc, out, _ = atp(capsys, "vdi", "list-vms")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ID", "STATUS", "HOST", "IP", "POOL"]
    assert [line.split()[0] for line in lines[1:]] == ["lst-1", "lst-2", "lst-3"]  # no template
    assert lines[1].split()[1:4] == [vms[0].id, "off", "sim-host-1"]
    for host in ("sim-host-1", "host-1", "127.0.0.1"):
        rc, out, _ = atp(capsys, "vdi", "list-vms", "--host", host, "--format", "json")
        assert rc == 0 and [v["name"] for v in json.loads(out)] == ["lst-1", "lst-2", "lst-3"]
    rc, out, err = atp(capsys, "vdi", "list-vms", "--host", "nowhere")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "no VDI host with id, name or IP 'nowhere'" in err and "sim-host-1" in err


def test_verify_exit_codes_table_and_json(
    sim: SimServer, client: VdiClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = make_vms(client, "ver-", 3)
    client.wait_for_event(client.start_vms([a.id]).event_ids[0], timeout=5, interval=0.02)
    uri = node(tmp_path / "n.xml", [("da", a.id, 1), ("db", b.id, 5), ("dc", c.id, 5)])
    rc, out, err = atp(capsys, "vdi", "verify", "--url", sim.url, "--host-uri", uri)
    assert (rc, err) == (0, "")
    assert out.splitlines()[0].split()[:6] == ["VM", "ID", "HOST", "PLATFORM", "LIBVIRT", "RESULT"]
    assert out.splitlines()[-1] == "OK: 3 VM(s): 3 agree"
    uri = node(tmp_path / "m.xml", [("da", a.id, 5), ("db", b.id, 5)])
    rc, out, _ = atp(capsys, "vdi", "verify", "--url", sim.url, "--host-uri", uri)
    assert rc == 1
    assert out.splitlines()[-1] == "DIFFERENCES: 3 VM(s): 1 agree, 1 differs, 1 not defined on host"
    rc, out, _ = atp(capsys, "vdi", "verify", "--url", sim.url, "--host-uri", uri, "--only-diff")
    assert rc == 1 and "ver-2" not in out and "ver-1" in out and "ver-3" in out
    rc, out, _ = atp(capsys, "vdi", "verify", "--url", sim.url, "--host-uri", uri, "--format", "json", "--only-diff")
    data = json.loads(out)
    assert rc == 1 and data["ok"] is False
    assert {(v["name"], v["kind"]) for v in data["vms"]} == {("ver-1", "differs"), ("ver-3", "not defined on host")}
    rc, out, _ = atp(capsys, "vdi", "verify", "--url", sim.url, "--host-uri", uri, "ver-2")
    assert rc == 0
    rc, _, err = atp(capsys, "vdi", "verify", "--url", sim.url, "--host-uri", uri, "ver-9")
    assert rc == 2 and "'ver-9'" in err


def test_verify_reports_an_unreachable_host(
    sim: SimServer, client: VdiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    make_vms(client, "unr-", 1)
    rc, out, _ = atp(capsys, "vdi", "verify", "--url", sim.url, "--host-uri", "qemu+tcp://{ip}:1/system")
    assert rc == 1
    assert "host unreachable" in out and "qemu+tcp://127.0.0.1:1/system" in out
    assert "Hosts map to libvirt URIs by the template 'qemu+tcp://{ip}:1/system'" in out and "--host-uri" in out


def test_verify_of_a_desk_pool(
    sim: SimServer, client: VdiClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_vms(client, "out-", 1)
    client.wait_for_event(client.create_pool("clipool", 1, 0, client.all_templates()[0].id), timeout=5, interval=0.02)
    uri = node(tmp_path / "p.xml", [])
    rc, out, _ = atp(capsys, "vdi", "verify", "--url", sim.url, "--host-uri", uri, "--pool", "clipool")
    assert rc == 1 and "clipool-1" in out and "out-1" not in out
    rc, _, err = atp(capsys, "vdi", "verify", "--url", sim.url, "--pool", "nopool")
    assert rc == 2 and "no desk pool named or with id 'nopool'" in err


def test_start_by_pattern_dry_run_and_for_real(
    sim: SimServer, client: VdiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    make_vms(client, "st-a-", 2)
    make_vms(client, "st-b-", 1)
    rc, out, _ = atp(capsys, "vdi", "start", "--url", sim.url, "--pattern", "st-a-*", "--dry-run")
    assert rc == 0 and out.count("would start") == 2 and "st-b-1" not in out
    assert {vm.status for vm in client.list_vms(keyword="st-")} == {0}
    rc, out, _ = atp(capsys, "vdi", "start", "--url", sim.url, "--pattern", "st-a-*", "--format", "json")
    rows = json.loads(out)
    assert rc == 0
    assert [(r["name"], r["status"], r["result"]) for r in rows] == [
        ("st-a-1", "running", "running"),
        ("st-a-2", "running", "running"),
    ]
    assert next(client.list_vms(keyword="st-b-")).status == 0
    rc, _, err = atp(capsys, "vdi", "start", "--url", sim.url, "--pattern", "zz-*")
    assert rc == 2 and "no VDI VM name matches 'zz-*'" in err


def test_start_reports_refused_vms(sim: SimServer, client: VdiClient, capsys: pytest.CaptureFixture[str]) -> None:
    _, second = make_vms(client, "ref-", 2)
    client.wait_for_event(client.start_vms([second.id]).event_ids[0], timeout=5, interval=0.02)
    client.reboot_vms([second.id])  # status 5 for 30 s
    rc, out, _ = atp(capsys, "vdi", "start", "--url", sim.url, "--pattern", "ref-?")
    assert rc == 1
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert lines["ref-1"].rstrip().endswith("running")
    assert "refused: 虚拟机正在操作中" in lines["ref-2"]


def test_start_with_check_agent(
    sim: SimServer,
    client: VdiClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vms = make_vms(client, "ag-", 2)
    uri = node(tmp_path / "a.xml", [(f"dom-{vm.name}", vm.id, 1) for vm in vms])
    pinged: list[tuple[str, str]] = []

    def fake_ping(host: HostConnection, domain: str, timeout: float) -> float:
        pinged.append((host.uri, domain))
        return 0.25

    monkeypatch.setattr(cli_vdi, "ping_agent", fake_ping)
    rc, out, _ = atp(capsys, "vdi", "start", "--url", sim.url, "--host-uri", uri, "--pattern", "ag-*", "--check-agent")
    assert rc == 0, out
    assert out.count("guest agent answered after 250 ms") == 2
    assert sorted(pinged) == [(uri, "dom-ag-1"), (uri, "dom-ag-2")]
    monkeypatch.undo()
    monkeypatch.setenv("ATP_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setenv("ATP_VDI_PASSWORD", PASSWORD)
    # the libvirt test driver has no guest agent: the real ping fails and says so
    rc, out, _ = atp(capsys, "vdi", "start", "--url", sim.url, "--host-uri", uri, "--pattern", "ag-1", "--check-agent")
    assert rc == 1 and "running, guest agent:" in out and "dom-ag-1" in out


def test_password_only_from_the_environment(
    sim: SimServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATP_VDI_PASSWORD")
    rc, out, err = atp(capsys, "vdi", "list-hosts", "--url", sim.url)
    assert (
        rc == 2
        and out == ""
        and err
        == "atp vdi: error: no VDI password: set ATP_VDI_PASSWORD " + ("(it is never taken from the command line)\n")
    )
    with pytest.raises(SystemExit) as excinfo:
        main(["vdi", "list-hosts", "--url", sim.url, "--password", PASSWORD])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "never taken from the command line: set ATP_VDI_PASSWORD" in err and PASSWORD not in err
    monkeypatch.setenv("ATP_VDI_PASSWORD", "wrong")
    rc, out, err = atp(capsys, "vdi", "list-hosts", "--url", sim.url)
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot log in to the VDI platform at {sim.url}" in err and "status 5099: 密码错误 (wrong password)" in err
    monkeypatch.setenv("ATP_VDI_PASSWORD", "")
    rc, out, err = atp(capsys, "vdi", "list-hosts", "--url", sim.url)
    assert (rc, out) == (2, "") and "ATP_VDI_PASSWORD is set but empty" in err


def test_missing_or_unreachable_url(sim: SimServer, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = atp(capsys, "vdi", "verify")
    assert rc == 2 and "no VDI URL: give --url or set ATP_VDI_URL" in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    rc, _, err = atp(capsys, "vdi", "list-vms", "--url", url, "--timeout", "2")
    assert rc == 2 and err.count("\n") == 1 and url in err
    rc, _, err = atp(capsys, "vdi", "list-vms", "--url", sim.url, "--host-uri", "qemu://{host}/system")
    assert rc == 2 and "{host}" in err
    rc, _, err = atp(capsys, "vdi", "list-vms", "--url", sim.url + "/not-here")  # a server, but not the API there
    assert rc == 2 and err.count("\n") == 1
    assert "HTTP 404" in err and "is this the OCloudView admin API? Check the URL" in err


def test_settings_from_the_lab_variables_file(
    sim: SimServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "vdi-password").write_text(PASSWORD + "\n")
    section = {
        "url": sim.url,
        "username": "admin",
        "password_file": str(lab / "vdi-password"),
        "host_uri": "qemu:///system",
        "domain_name": "atp-vdi-{id}",
    }
    (lab / "lab-vars.json").write_text(json.dumps({"uri": "qemu:///system", "vdi": section}))
    monkeypatch.delenv("ATP_VDI_PASSWORD")
    rc, out, err = atp(capsys, "vdi", "list-hosts")
    assert (rc, err) == (0, "") and "qemu:///system" in out
    rc, out, _ = atp(capsys, "vdi", "list-hosts", "--host-uri", "test:///default")  # options beat the lab's
    assert rc == 0 and "test:///default" in out
    (lab / "lab-vars.json").write_text("{not json")
    rc, _, err = atp(capsys, "vdi", "list-hosts")
    assert rc == 2 and "no VDI URL" in err
    (lab / "lab-vars.json").write_text(json.dumps({"vdi": "not a section"}))
    rc, _, err = atp(capsys, "vdi", "list-hosts")
    assert rc == 2 and "no VDI URL" in err


# ---------------------------------------------------------------- batch chores: assign, rename, auto-ad

QA_OU = "OU=QA,DC=atp,DC=local"


def add_ou(sim: SimServer, client: VdiClient, dn: str, ou: str, *users: str) -> None:
    """An OU with users (the simulator has no OU-creating route: straight into its store)."""
    sim.platform.store.put("groups", {"id": f"g-{ou}", "ou": ou, "distinguishedName": dn, "parent": ""})
    for name in users:
        client.create_user(name, dn)


def bound(client: VdiClient, prefix: str) -> dict[str, str]:
    """VM name -> bound account name ('' for none), as the platform shows it."""
    users = {u.id: u.sam_account_name for g in client.ou_tree() for u in client.list_users(g.distinguished_name)}
    return {vm.name: users.get(vm.user_id, vm.user_id) for vm in client.list_vms(keyword=prefix)}


def calls(sim: SimServer, method: str, path_prefix: str) -> list[str]:
    return [r["path"] for r in list(sim.requests) if r["method"] == method and r["path"].startswith(path_prefix)]


def chore(capsys: pytest.CaptureFixture[str], sim: SimServer, *argv: str) -> tuple[int, dict[str, Any], str]:
    """Run a chore with --json; returns (exit code, the JSON report, stderr)."""
    rc, out, err = atp(capsys, "vdi", *argv, "--url", sim.url, "--json")
    return rc, (json.loads(out) if out.strip() else {}), err


def results(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(r["vm"], r["before"], r["after"], r["result"]) for r in report["vms"]]


@pytest.fixture
def qa(sim: SimServer, client: VdiClient) -> list[Vm]:
    """VMs qa-1..qa-3 (and a VM 'other-1' outside the pattern), users alice, bob, carol in OU QA."""
    add_ou(sim, client, QA_OU, "QA", "carol", "alice", "bob")
    make_vms(client, "other-", 1)
    return make_vms(client, "qa-", 3)


def test_assign_dry_run_changes_nothing_then_binds_in_order(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = atp(
        capsys, "vdi", "assign", "--url", sim.url, "--pattern", "qa-*", "--users", "bob,alice,carol", "--dry-run"
    )
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["VM", "BEFORE", "AFTER", "RESULT"]
    assert [line.split() for line in lines[1:4]] == [
        ["qa-1", "-", "bob", "would", "bind"],
        ["qa-2", "-", "alice", "would", "bind"],
        ["qa-3", "-", "carol", "would", "bind"],
    ]
    assert lines[-1] == "OK: assign (dry run: nothing changed): 3 VM(s): 3 planned"
    assert bound(client, "qa-") == {"qa-1": "", "qa-2": "", "qa-3": ""}
    assert calls(sim, "POST", "/ocloud/v1/domain/") == []  # no bind, no unbind: reads only
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "qa-*", "--users", "bob, alice ,carol")
    assert rc == 0 and report["ok"] is True and report["dry_run"] is False
    assert results(report) == [
        ("qa-1", "-", "bob", "bound"),
        ("qa-2", "-", "alice", "bound"),
        ("qa-3", "-", "carol", "bound"),
    ]
    assert bound(client, "qa-") == {"qa-1": "bob", "qa-2": "alice", "qa-3": "carol"}
    assert bound(client, "other-") == {"other-1": ""}  # outside the pattern
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "qa-*", "--users", "BOB,alice,carol")  # AD: any case
    assert rc == 0 and report["counts"] == {"unchanged": 3}


def test_assign_skips_a_vm_bound_to_another_user_unless_force(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str]
) -> None:
    chore(capsys, sim, "assign", "--pattern", "qa-1", "--users", "carol")
    sim.requests.clear()
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "qa-*", "--users", "alice,bob")
    assert rc == 1  # qa-3 got no user
    assert results(report)[:2] == [
        ("qa-1", "carol", "carol", "skipped: bound to carol; --force unbinds it and binds alice"),
        ("qa-2", "-", "bob", "bound"),
    ]
    assert bound(client, "qa-")["qa-1"] == "carol"
    assert calls(sim, "POST", "/ocloud/v1/domain/unbind-user") == []
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "qa-?", "--users", "alice,bob", "--force", "--dry-run")
    assert results(report)[0] == ("qa-1", "carol", "alice", "would unbind carol, then bind")
    assert bound(client, "qa-")["qa-1"] == "carol"
    sim.requests.clear()
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "qa-[12]", "--users", "alice,bob", "--force")
    assert rc == 0
    assert results(report) == [
        ("qa-1", "carol", "alice", "reassigned"),
        ("qa-2", "bob", "bob", "unchanged: already bound to bob"),
    ]
    assert bound(client, "qa-") == {"qa-1": "alice", "qa-2": "bob", "qa-3": ""}
    changes = calls(sim, "POST", "/ocloud/v1/domain/")
    assert changes == ["/ocloud/v1/domain/unbind-user", "/ocloud/v1/domain/bind-user"]  # unbind first


def test_assign_with_too_few_or_too_many_users(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = atp(capsys, "vdi", "assign", "--url", sim.url, "--pattern", "qa-*", "--users", "alice")
    assert rc == 1
    assert "VMs that got no user (2): qa-2, qa-3" in out
    assert out.splitlines()[-1] == "FAILED: assign: 3 VM(s): 1 done, 2 failed"
    assert "failed: no user left (1 user(s) for 3 VM(s))" in out
    assert bound(client, "qa-") == {"qa-1": "alice", "qa-2": "", "qa-3": ""}
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "qa-1", "--users", "alice,bob,carol")
    assert rc == 0 and report["users_without_vm"] == ["bob", "carol"]
    assert report["notes"] == ["users without a VM (2): bob, carol"]


def test_assign_a_group_by_dn_or_name(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "qa-*", "--group", QA_OU.lower(), "--dry-run")
    assert rc == 0 and [r["after"] for r in report["vms"]] == ["alice", "bob", "carol"]  # by account name
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "qa-*", "--group", "QA")
    assert rc == 0 and report["counts"] == {"done": 3}
    assert bound(client, "qa-") == {"qa-1": "alice", "qa-2": "bob", "qa-3": "carol"}
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "*", "--group", "OU=ATP,DC=atp,DC=local", "--force")
    assert rc == 1  # 4 VMs, 1 user in ATP
    assert [(r["vm"], r["after"], r["outcome"]) for r in report["vms"]] == [
        ("other-1", "atpuser", "done"),
        ("qa-1", "alice", "failed"),  # no user left: keeps its user
        ("qa-2", "bob", "failed"),
        ("qa-3", "carol", "failed"),
    ]


def test_assign_usage_errors_change_nothing(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in [
        (("--users", "alice,bobb"), "no user 'bobb' in any OU of the platform (4 users in 2 OUs); close names: bob"),
        (("--users", " , "), "--users ' , ' names no user"),
        (("--group", "Sales"), "no OU 'Sales' (a distinguished name, an OU name or an id); OUs: ATP"),
    ]:
        rc, out, err = atp(capsys, "vdi", "assign", "--url", sim.url, "--pattern", "qa-*", *argv)
        assert (rc, out) == (2, "") and err.count("\n") == 1 and message in err, err
    add_ou(sim, client, "OU=Empty,DC=atp,DC=local", "Empty")
    rc, _, err = atp(capsys, "vdi", "assign", "--url", sim.url, "--pattern", "qa-*", "--group", "Empty")
    assert rc == 2 and "OU 'OU=Empty,DC=atp,DC=local' has no users: nothing to assign" in err
    rc, _, err = atp(capsys, "vdi", "assign", "--url", sim.url, "--pattern", "qa-x*", "--users", "alice")
    assert rc == 2 and "no VDI VM name matches 'qa-x*' (4 VMs on the platform)" in err
    for argv in (("--pattern", "qa-*"), ("--pattern", "qa-*", "--users", "a", "--group", "QA"), ("--users", "a")):
        with pytest.raises(SystemExit) as excinfo:
            main(["vdi", "assign", "--url", sim.url, *argv])
        assert excinfo.value.code == 2
    capsys.readouterr()
    assert calls(sim, "POST", "/ocloud/v1/domain/") == []
    assert bound(client, "qa-") == {"qa-1": "", "qa-2": "", "qa-3": ""}


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("*", ["other-1", "qa-1", "qa-2", "qa-3"]),
        ("qa-*", ["qa-1", "qa-2", "qa-3"]),
        ("*-2", ["qa-2"]),
        ("*a-*", ["qa-1", "qa-2", "qa-3"]),
        ("other-1", ["other-1"]),
        ("qa-?", ["qa-1", "qa-2", "qa-3"]),
    ],
)
def test_chore_patterns(
    sim: SimServer, qa: list[Vm], capsys: pytest.CaptureFixture[str], pattern: str, names: list[str]
) -> None:
    rc, report, _ = chore(capsys, sim, "auto-ad", "--pattern", pattern, "--enable", "--dry-run")
    assert rc == 0 and [r["vm"] for r in report["vms"]] == names


def test_chores_list_vms_in_natural_order(
    sim: SimServer, client: VdiClient, capsys: pytest.CaptureFixture[str]
) -> None:
    make_vms(client, "n-", 11)
    rc, report, _ = chore(capsys, sim, "auto-ad", "--pattern", "n-*", "--disable", "--dry-run")
    assert rc == 0 and [r["vm"] for r in report["vms"]] == [f"n-{i}" for i in range(1, 12)]


def test_a_platform_error_on_one_vm_fails_only_that_vm(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str]
) -> None:
    fault = {"error_status": 4711, "error_msg": "绑定失败", "path": "/ocloud/v1/domain/bind-user", "count": 1}
    httpx.post(sim.url + "/_sim/faults", json=fault, timeout=5)
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "qa-*", "--users", "alice,bob,carol")
    assert rc == 1
    assert results(report) == [
        ("qa-1", "-", "-", "failed: binding alice: VDI POST /ocloud/v1/domain/bind-user failed: status 4711: 绑定失败"),
        ("qa-2", "-", "bob", "bound"),
        ("qa-3", "-", "carol", "bound"),
    ]
    assert bound(client, "qa-") == {"qa-1": "", "qa-2": "bob", "qa-3": "carol"}
    second = qa[1].id
    fault = {"error_status": 4712, "error_msg": "改名失败", "method": "PATCH", "path": f"/ocloud/v1/domain/{second}"}
    httpx.post(sim.url + "/_sim/faults", json=fault | {"count": 1}, timeout=5)
    rc, out, _ = atp(capsys, "vdi", "rename", "--url", sim.url, "--pattern", "qa-*")
    assert rc == 1
    rows = {line.split()[0]: line for line in out.splitlines()[1:4]}
    assert rows["qa-1"].split()[1:] == ["qa-1", "qa-1", "skipped:", "no", "user", "bound"]
    assert (
        "failed: renaming to bob: VDI PATCH /ocloud/v1/domain/" in rows["qa-2"]
        and "status 4712: 改名失败" in rows["qa-2"]
    )
    assert rows["qa-3"].split() == ["qa-3", "qa-3", "carol", "renamed"]  # VM: its name before the chore
    assert out.splitlines()[-1] == "FAILED: rename: 3 VM(s): 1 done, 1 skipped, 1 failed"
    assert {vm.id: vm.name for vm in client.list_vms()}[second] == "qa-2"
    client.wait_for_event(client.start_vms([qa[0].id]).event_ids[0], timeout=5, interval=0.02)
    client.reboot_vms([qa[0].id])  # qa-1 is operating (status 5) for 30 s: the platform refuses a change
    rc, report, _ = chore(capsys, sim, "auto-ad", "--pattern", "*", "--enable")
    assert rc == 1
    assert report["vms"][2] == {
        "vm": "qa-1",
        "id": qa[0].id,
        "before": "off",
        "after": "off",
        "outcome": "failed",
        "result": "failed: setting autoJoinDomain on: VDI PATCH /ocloud/v1/domain/"
        f"{qa[0].id} failed: status 1001: 虚拟机正在操作中",
    }
    assert [r["outcome"] for r in report["vms"]] == ["done", "done", "failed", "done"]  # carol, other-1, qa-1, qa-2


def test_a_connection_lost_mid_batch_fails_the_rest_untried(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str]
) -> None:
    fault = {"drop_connection": True, "method": "PATCH", "path": f"/ocloud/v1/domain/{qa[1].id}", "count": 1}
    httpx.post(sim.url + "/_sim/faults", json=fault, timeout=5)
    rc, report, _ = chore(capsys, sim, "auto-ad", "--pattern", "qa-*", "--enable")
    assert rc == 1
    outcomes = [(r["vm"], r["outcome"], r["result"].split(":")[0:2]) for r in report["vms"]]
    assert outcomes[0] == ("qa-1", "failed", ["failed", " reading it back"])  # done, but could not be read back
    assert outcomes[1][:2] == ("qa-2", "failed") and "not retried" in report["vms"][1]["result"]
    assert outcomes[2] == ("qa-3", "failed", ["failed", " not tried"])
    assert [vm.auto_join_domain for vm in sorted(client.list_vms(keyword="qa-"), key=lambda v: v.name)] == [1, 0, 0]


def test_rename_to_bound_users_with_collisions(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str]
) -> None:
    make_vms(client, "qb-", 2)
    client.rename_vm(next(client.list_vms(keyword="other-1")).id, "bob")  # outside the pattern, holds 'bob'
    chore(capsys, sim, "assign", "--pattern", "q*", "--users", "alice,alice,bob,carol")  # qb-2: none
    sim.requests.clear()
    rc, report, _ = chore(capsys, sim, "rename", "--pattern", "q*", "--dry-run")
    assert rc == 0
    assert results(report) == [
        ("qa-1", "qa-1", "alice", "would rename"),
        ("qa-2", "qa-2", "alice-2", "would rename ('alice' is taken)"),
        ("qa-3", "qa-3", "bob-2", "would rename ('bob' is taken)"),
        ("qb-1", "qb-1", "carol", "would rename"),
        ("qb-2", "qb-2", "qb-2", "skipped: no user bound"),
    ]
    assert calls(sim, "PATCH", "/ocloud/v1/domain/") == []
    assert sorted(vm.name for vm in client.list_vms()) == ["bob", "qa-1", "qa-2", "qa-3", "qb-1", "qb-2"]
    rc, out, _ = atp(capsys, "vdi", "rename", "--url", sim.url, "--pattern", "q*")
    assert rc == 0 and out.splitlines()[-1] == "OK: rename: 5 VM(s): 4 done, 1 skipped"
    assert sorted(vm.name for vm in client.list_vms()) == ["alice", "alice-2", "bob", "bob-2", "carol", "qb-2"]
    rc, report, _ = chore(capsys, sim, "rename", "--pattern", "*")  # again: nothing to do
    assert rc == 0 and report["counts"] == {"unchanged": 4, "skipped": 2}  # 'bob' (other-1) has no user


def test_rename_swaps_names_through_a_temporary_one(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str]
) -> None:
    chore(capsys, sim, "assign", "--pattern", "qa-[12]", "--users", "alice,bob")
    chore(capsys, sim, "rename", "--pattern", "qa-*")
    rc, report, _ = chore(capsys, sim, "assign", "--pattern", "[ab]*", "--users", "bob,alice", "--force")
    assert rc == 0 and [(r["vm"], r["after"]) for r in report["vms"]] == [("alice", "bob"), ("bob", "alice")]
    sim.requests.clear()
    rc, report, _ = chore(capsys, sim, "rename", "--pattern", "[ab]*")
    assert rc == 0 and results(report) == [("alice", "alice", "bob", "renamed"), ("bob", "bob", "alice", "renamed")]
    assert {vm.id: vm.name for vm in client.list_vms(keyword="")}[qa[0].id] == "bob"
    assert {vm.id: vm.name for vm in client.list_vms(keyword="")}[qa[1].id] == "alice"
    assert len(calls(sim, "PATCH", "/ocloud/v1/domain/")) == 3  # one of them went through a temporary name


def test_auto_ad_enable_disable_and_dry_run(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = atp(capsys, "vdi", "auto-ad", "--url", sim.url, "--pattern", "qa-*", "--enable", "--dry-run")
    assert rc == 0 and out.count("would enable") == 3
    assert {vm.auto_join_domain for vm in client.list_vms()} == {0}
    assert calls(sim, "PATCH", "/ocloud/v1/domain/") == []
    rc, out, _ = atp(capsys, "vdi", "auto-ad", "--url", sim.url, "--pattern", "qa-2", "--enable")
    assert rc == 0 and out.splitlines()[1].split() == ["qa-2", "off", "on", "enabled"]
    rc, report, _ = chore(capsys, sim, "auto-ad", "--pattern", "qa-*", "--enable")
    assert [r["result"] for r in report["vms"]] == ["enabled", "unchanged", "enabled"]
    assert {vm.name: vm.auto_join_domain for vm in client.list_vms()} == {"other-1": 0, "qa-1": 1, "qa-2": 1, "qa-3": 1}
    rc, report, _ = chore(capsys, sim, "auto-ad", "--pattern", "*", "--disable")
    assert rc == 0 and report["counts"] == {"done": 3, "unchanged": 1}
    assert {vm.auto_join_domain for vm in client.list_vms()} == {0}
    with pytest.raises(SystemExit) as excinfo:
        main(["vdi", "auto-ad", "--url", sim.url, "--pattern", "*"])
    assert excinfo.value.code == 2 and "one of the arguments --enable --disable is required" in capsys.readouterr().err


def test_a_long_batch_advances_the_progress_bar_once_per_call(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, int, list[str]]] = []

    @contextlib.contextmanager
    def fake_progress(description: str, total: int, interactive: bool | None = None) -> Iterator[Any]:
        steps: list[str] = []
        seen.append((description, total, steps))
        yield types.SimpleNamespace(advance=steps.append)

    monkeypatch.setattr(cli_vdi, "progress", fake_progress)
    chore(capsys, sim, "assign", "--pattern", "qa-1", "--users", "carol")
    rc, _, _ = chore(capsys, sim, "assign", "--pattern", "qa-*", "--users", "alice,bob,carol", "--force")
    assert rc == 0
    assert seen[-1] == ("atp vdi assign", 4, ["qa-1", "qa-1", "qa-2", "qa-3"])  # unbind + bind, bind, bind
    seen.clear()
    chore(capsys, sim, "assign", "--pattern", "qa-*", "--users", "alice,bob,carol", "--dry-run")
    assert seen == []  # a dry run makes no call: no bar


def test_json_flag_on_every_vdi_command(sim: SimServer, capsys: pytest.CaptureFixture[str]) -> None:
    rc, by_flag, _ = atp(capsys, "vdi", "list-hosts", "--url", sim.url, "--json")
    rc2, by_format, _ = atp(capsys, "vdi", "list-hosts", "--url", sim.url, "--format", "json")
    assert (rc, rc2) == (0, 0) and json.loads(by_flag) == json.loads(by_format) and json.loads(by_flag)[0]["id"]


def test_ctrl_c_mid_batch_reports_what_was_done_and_exits_130(
    sim: SimServer, client: VdiClient, qa: list[Vm], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = VdiClient.set_vm_auto_join_domain

    def interrupted_on_qa_2(self: VdiClient, vm_id: str, enabled: bool) -> None:
        if vm_id == qa[1].id:
            raise KeyboardInterrupt
        real(self, vm_id, enabled)

    monkeypatch.setattr(VdiClient, "set_vm_auto_join_domain", interrupted_on_qa_2)
    rc, out, _ = atp(capsys, "vdi", "auto-ad", "--url", sim.url, "--pattern", "qa-*", "--enable")
    assert rc == 130
    assert [line.split(maxsplit=3) for line in out.splitlines()[1:4]] == [
        ["qa-1", "off", "on", "enabled"],
        ["qa-2", "off", "off", "failed: setting autoJoinDomain on: interrupted"],
        ["qa-3", "off", "off", "not tried: interrupted"],
    ]
    assert out.splitlines()[-1] == "INTERRUPTED: auto-ad (interrupted): 3 VM(s): 1 done, 1 skipped, 1 failed"
    assert [vm.auto_join_domain for vm in sorted(client.list_vms(keyword="qa-"), key=lambda v: v.name)] == [1, 0, 0]


def test_the_labs_password_is_never_sent_to_another_url(
    sim: SimServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without ATP_VDI_PASSWORD the lab's password is used only for the lab's own simulator URL."""
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "pw").write_text(PASSWORD)
    monkeypatch.setenv("ATP_LAB_DIR", str(lab))
    monkeypatch.delenv("ATP_VDI_PASSWORD", raising=False)
    (lab / "lab-vars.json").write_text(
        json.dumps({"vdi": {"url": "http://127.0.0.1:9/", "username": "admin", "password_file": str(lab / "pw")}})
    )
    rc, out, err = atp(capsys, "vdi", "list-hosts", "--url", sim.url)
    assert (rc, out) == (2, "") and "only ever sent to the lab's simulator at http://127.0.0.1:9/" in err
    assert PASSWORD not in err
    # The lab's own URL (with or without the trailing slash) still gets it.
    (lab / "lab-vars.json").write_text(
        json.dumps({"vdi": {"url": sim.url + "/", "username": "admin", "password_file": str(lab / "pw")}})
    )
    rc, out, err = atp(capsys, "vdi", "list-hosts", "--url", sim.url)
    assert rc == 0, err
