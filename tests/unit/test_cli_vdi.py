"""`atp vdi …` against the in-process simulator (no guests) and libvirt test-driver hosts."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

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
