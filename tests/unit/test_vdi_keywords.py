"""VDI keywords, run through the library by name against the in-process simulator (no guests, short timings)."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import robot
from robot.api.types import Secret

from ATPLibrary import ATPLibrary
from ATPLibrary.errors import ConfigurationError, VdiBatchError, VdiConnectionError, VdiError, WaitTimeoutError
from ATPLibrary.keywords.vdi import VdiAgreementError
from ATPLibrary.vdi import VdiClient, md5_password
from ATPLibrary.vdi.sim import SimServer, Timings, make_server, serve_in_thread

pytestmark = pytest.mark.timeout(60)

PASSWORD = "Kw-Secret-7h9q"  # must never reach a Robot log
TEMPLATE = "win10-template"  # the simulator's seeded template
FAST = Timings(start=0.1, close=0.1, reboot=30, suspend=0.1, resume=0.1, create=0.1)  # reboot: status 5 on demand


def kw(lib: ATPLibrary, name: str, *args: Any, **kwargs: Any) -> Any:
    return lib.run_keyword(name, list(args), kwargs)


def serve(**options: Any) -> SimServer:
    server = make_server(port=0, password=PASSWORD, **options)
    serve_in_thread(server)
    return server


def stop(server: SimServer) -> None:
    server.shutdown()
    server.server_close()


def sim_call(server: SimServer, method: str, path: str, body: Any = None) -> Any:
    return httpx.request(method, server.url + path, json=body, timeout=5).json()


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = serve(timings=FAST)
    yield server
    stop(server)


@pytest.fixture
def lib(sim: SimServer) -> Iterator[ATPLibrary]:
    library = ATPLibrary(timeout=timedelta(seconds=5), run_on_failure="NONE")
    kw(library, "Connect To VDI", sim.url, "admin", Secret(PASSWORD), retries=0)
    yield library
    kw(library, "Disconnect From VDI")


@pytest.fixture
def pool_vms(lib: ATPLibrary) -> list[str]:
    pool = kw(lib, "Create Desk Pool", "qa", TEMPLATE, 3, prefix="qa-vm-")
    return list(kw(lib, "Get Desk Pool VMs", pool))


# ---------------------------------------------------------------- connection


def test_connect_logs_in_at_once(sim: SimServer) -> None:
    library = ATPLibrary(run_on_failure="NONE")
    kw(library, "Connect To VDI", sim.url, "admin", Secret(PASSWORD))
    assert sim.logins() == 1
    kw(library, "Disconnect From VDI")
    assert sim_call(sim, "GET", "/_sim/log")["requests"][-1]["path"] == "/ocloud/v1/logout"
    with pytest.raises(ConfigurationError, match="Connect To VDI first"):
        kw(library, "Get VDI VM Status", "anything")


def test_wrong_password_fails_with_code_message_and_url(sim: SimServer) -> None:
    library = ATPLibrary(run_on_failure="NONE")
    with pytest.raises(VdiError, match="5099") as excinfo:
        kw(library, "Connect To VDI", sim.url, "admin", Secret("not-it"))
    assert sim.url in str(excinfo.value) and "status 5099: 密码错误 (wrong password)" in str(excinfo.value)
    assert excinfo.value.code == 5099


def test_password_must_be_a_secret(sim: SimServer) -> None:
    library = ATPLibrary(run_on_failure="NONE")
    with pytest.raises(ConfigurationError, match=r"must be a Robot Framework Secret") as excinfo:
        kw(library, "Connect To VDI", sim.url, "admin", PASSWORD)
    assert PASSWORD not in str(excinfo.value)
    assert "${VDI_PASSWORD: Secret}" in str(excinfo.value)
    assert sim.logins() == 0


def test_bad_templates_and_url_fail_before_any_request(sim: SimServer) -> None:
    library = ATPLibrary(run_on_failure="NONE")
    with pytest.raises(ConfigurationError, match=r"\{host\}"):
        kw(library, "Connect To VDI", sim.url, "admin", Secret(PASSWORD), host_uri="qemu+tcp://{host}/system")
    with pytest.raises(ConfigurationError, match="http://"):
        kw(library, "Connect To VDI", "vdi.example:8088", "admin", Secret(PASSWORD))
    assert sim.logins() == 0


def test_refused_connection_names_the_url() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"  # nothing listens there now
    library = ATPLibrary(run_on_failure="NONE")
    with pytest.raises(VdiConnectionError, match=f"Cannot reach the VDI platform at {url}"):
        kw(library, "Connect To VDI", url, "admin", Secret(PASSWORD), retries=0)


def test_silent_platform_fails_within_the_timeout_naming_the_url() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)  # accepts connections (kernel), never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    library = ATPLibrary(run_on_failure="NONE")
    started = time.monotonic()
    try:
        with pytest.raises(VdiConnectionError) as excinfo:
            kw(library, "Connect To VDI", url, "admin", Secret(PASSWORD), timeout=timedelta(seconds=1))
    finally:
        listener.close()
    assert time.monotonic() - started < 3
    assert url in str(excinfo.value) and "Timeout" in str(excinfo.value)


def test_error_status_is_reported_with_code_and_message(sim: SimServer, lib: ATPLibrary) -> None:
    sim_call(sim, "POST", "/_sim/faults", {"error_status": 3007, "error_msg": "桌面池状态异常", "count": 1})
    with pytest.raises(VdiError) as excinfo:
        kw(lib, "Disable Desk Pool", "whatever")
    assert "status 3007: 桌面池状态异常" in str(excinfo.value)
    assert excinfo.value.code == 3007


def test_token_expiry_logs_in_again_exactly_once() -> None:
    server = serve(timings=FAST, token_lifetime=1.0)
    try:
        library = ATPLibrary(run_on_failure="NONE")
        kw(library, "Connect To VDI", server.url, "admin", Secret(PASSWORD), retries=0)
        names = kw(library, "Create VDI VMs From Template", TEMPLATE, "tok-")
        assert kw(library, "Get VDI VM Status", names[0]) == "off"
        time.sleep(1.2)
        assert kw(library, "Get VDI VM Status", names[0]) == "off"
        log = sim_call(server, "GET", "/_sim/log")["requests"]
        assert sum(r["login"] for r in log) == 2  # Connect To VDI, then one renewal
        assert [r["status"] for r in log if r["status"] != 0 or r["login"]][-2:] == [1006, 0]
        kw(library, "Disconnect From VDI")
    finally:
        stop(server)


# ---------------------------------------------------------------- pools and VMs


def test_desk_pool_life(sim: SimServer, lib: ATPLibrary) -> None:
    pool_id = kw(lib, "Create Desk Pool", "life", TEMPLATE, 2, type="shared")
    assert kw(lib, "Get Desk Pool VMs", "life") == ["life-1", "life-2"]
    ids = kw(lib, "Get Desk Pool VMs", pool_id, ids=True)
    assert len(ids) == 2 and all(len(i) == 32 for i in ids)
    kw(lib, "Disable Desk Pool", "life")
    with VdiClient(sim.url, "admin", PASSWORD) as client:
        pool = next(p for p in client.list_pools() if p.id == pool_id)
        assert not pool.enabled and pool.type == 1
    kw(lib, "Enable Desk Pool", pool_id)
    kw(lib, "Delete Desk Pool", "life")
    with pytest.raises(ConfigurationError, match="No desk pool named or with id 'life'"):
        kw(lib, "Get Desk Pool VMs", "life")
    with pytest.raises(ConfigurationError, match=r"No VDI template named or with id 'nope'.*win10-template"):
        kw(lib, "Create Desk Pool", "x", "nope")


def test_power_keywords_wait_for_final_status(lib: ATPLibrary, pool_vms: list[str]) -> None:
    first, second, _ = pool_vms
    assert kw(lib, "Start VDI VMs", first, second) == {}
    assert kw(lib, "Get VDI VM Status", first) == "running"
    assert kw(lib, "Get VDI VM", second).status == "running"
    kw(lib, "Suspend VDI VMs", first)
    assert kw(lib, "Get VDI VM Status", first) == "paused"
    kw(lib, "Resume VDI VMs", [first])
    kw(lib, "Shutdown VDI VMs", first, second, force=True)
    assert {kw(lib, "Get VDI VM Status", v) for v in (first, second)} == {"off"}
    kw(lib, "Start VDI VMs", first, wait=False)
    assert kw(lib, "Get VDI VM Status", first) == "operating"
    kw(lib, "Wait Until VDI VM Status", first, "running")


def test_vms_are_named_by_name_or_id_and_unknown_names_fail(lib: ATPLibrary, pool_vms: list[str]) -> None:
    vm = kw(lib, "Get VDI VM", pool_vms[0])
    assert kw(lib, "Get VDI VM", vm.id).name == pool_vms[0]
    with pytest.raises(ConfigurationError, match=r"No VDI VM named or with id 'qa-vm-9'.*Similar names: .*qa-vm-1"):
        kw(lib, "Start VDI VMs", pool_vms[0], "qa-vm-9")
    with pytest.raises(ConfigurationError, match="name at least one VDI VM"):
        kw(lib, "Start VDI VMs")


def test_partial_batch_failure_names_each_vm_and_message(lib: ATPLibrary, pool_vms: list[str]) -> None:
    first, second, third = pool_vms
    kw(lib, "Start VDI VMs", second)
    kw(lib, "Reboot VDI VMs", second, wait=False)  # stays "operating" (reboot takes 30 s here)
    with pytest.raises(VdiBatchError) as excinfo:
        kw(lib, "Start VDI VMs", first, second)
    message = str(excinfo.value)
    assert "Start VDI VMs: the platform refused 1 of 2 VDI VM(s)" in message
    assert f"- {second}: 虚拟机正在操作中" in message and f"- {first}" not in message
    assert kw(lib, "Get VDI VM Status", first) == "running"  # the accepted VM was waited for before failing
    kw(lib, "Shutdown VDI VMs", first)
    with pytest.raises(VdiBatchError, match=rf"- {third}: 虚拟机状态\(0\)不允许此操作"):
        kw(lib, "Reboot VDI VMs", third)
    failed = kw(lib, "Start VDI VMs", first, second, tolerate_errors=True)
    assert failed == {second: "虚拟机正在操作中"}
    assert kw(lib, "Get VDI VM Status", first) == "running"


def test_wait_until_status_times_out_naming_vm_and_statuses(lib: ATPLibrary, pool_vms: list[str]) -> None:
    vm = pool_vms[0]
    kw(lib, "Start VDI VMs", vm)
    kw(lib, "Reboot VDI VMs", vm, wait=False)
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as excinfo:
        kw(lib, "Wait Until VDI VM Status", vm, "running", timeout=timedelta(seconds=0.5))
    assert time.monotonic() - started < 2
    message = str(excinfo.value)
    assert f"VDI VM '{vm}'" in message and "last status 'operating' (5)" in message
    assert "wanted status 'running' (1)" in message and "500 ms" in message
    with pytest.raises(ConfigurationError, match="not a VDI VM status"):
        kw(lib, "Wait Until VDI VM Status", vm, "booting")


def test_templates_clones_cpu_nics_users_and_delete(lib: ATPLibrary) -> None:
    names = kw(lib, "Create VDI VMs From Template", TEMPLATE, "tpl-vm-", 2)
    assert names == ["tpl-vm-1", "tpl-vm-2"]
    clone_id = kw(lib, "Clone VDI VM", "tpl-vm-1", "tpl-vm-copy")
    assert kw(lib, "Get VDI VM", "tpl-vm-copy").id == clone_id
    kw(lib, "Set VDI VM CPU And Memory", "tpl-vm-1", clone_id, cpu=4, memory=8192)
    vm = kw(lib, "Get VDI VM", "tpl-vm-1")
    assert (vm.cpu, vm.memory) == (4, 8192)
    with pytest.raises(ConfigurationError, match="cpu=, memory="):
        kw(lib, "Set VDI VM CPU And Memory", "tpl-vm-1")
    mac = kw(lib, "Add VDI VM NIC", "tpl-vm-1", "vlan-10")
    assert mac.startswith("52:54:00:")
    kw(lib, "Remove VDI VM NIC", "tpl-vm-1", mac)
    with pytest.raises(VdiError, match="网卡不存在"):
        kw(lib, "Remove VDI VM NIC", "tpl-vm-1", mac)
    kw(lib, "Bind User To VDI VM", "tpl-vm-1", "atpuser")
    assert kw(lib, "Get VDI VM", "tpl-vm-1").user_id == "u-1"
    kw(lib, "Unbind User From VDI VM", "tpl-vm-1")
    assert kw(lib, "Get VDI VM", "tpl-vm-1").user_id == ""
    with pytest.raises(VdiError, match="用户不存在"):
        kw(lib, "Bind User To VDI VM", "tpl-vm-1", "nobody")
    kw(lib, "Delete VDI VMs", "tpl-vm-1", "tpl-vm-2", "tpl-vm-copy")
    with pytest.raises(ConfigurationError, match="tpl-vm-1"):
        kw(lib, "Get VDI VM", "tpl-vm-1")


def test_spice_connection_hides_the_password(sim: SimServer, lib: ATPLibrary, pool_vms: list[str]) -> None:
    vm = pool_vms[0]
    kw(lib, "Start VDI VMs", vm)
    spice = kw(lib, "Get SPICE Connection", vm)
    assert spice.host == "127.0.0.1" and isinstance(spice.port, int)
    assert spice.uri == f"spice://127.0.0.1:{spice.port}" and spice.vm == vm
    assert isinstance(spice.password, Secret) and spice.password.value
    assert spice.password.value not in repr(spice) and spice.password.value not in str(spice)
    with pytest.raises(VdiError) as excinfo:
        kw(lib, "Get SPICE Connection", pool_vms[1])
    message = str(excinfo.value)
    assert message.startswith(f"Getting the SPICE connection of VDI VM '{pool_vms[1]}' (")
    assert "虚拟机未开机" in message and message.endswith("The platform shows it off.")
    assert "{id}" not in message  # the real path, not the route's template


def test_bind_error_names_the_vm_and_user(lib: ATPLibrary, pool_vms: list[str]) -> None:
    with pytest.raises(VdiError) as excinfo:
        kw(lib, "Bind User To VDI VM", pool_vms[0], "nobody-here")
    assert str(excinfo.value).startswith(f"Binding user 'nobody-here' to VDI VM '{pool_vms[0]}' (")


def test_pools_and_vms_are_listed_by_name(lib: ATPLibrary, pool_vms: list[str]) -> None:
    assert kw(lib, "Get Desk Pools") == ["qa"]
    assert kw(lib, "Get VDI VMs") == pool_vms == ["qa-vm-1", "qa-vm-2", "qa-vm-3"]
    kw(lib, "Start VDI VMs", pool_vms[1])
    assert kw(lib, "Get VDI VMs", "qa-vm-*", status="running") == [pool_vms[1]]
    assert kw(lib, "Get VDI VMs", "qa-vm-[13]", status="off") == [pool_vms[0], pool_vms[2]]
    assert kw(lib, "Get VDI VMs", "other-*") == []


def test_a_server_that_is_not_the_platform_is_named(sim: SimServer) -> None:
    library = ATPLibrary(run_on_failure="NONE")
    with pytest.raises(VdiError) as excinfo:
        kw(library, "Connect To VDI", sim.url + "/elsewhere", "admin", Secret(PASSWORD), retries=0)
    assert "HTTP 404" in str(excinfo.value) and "is this the OCloudView admin API?" in str(excinfo.value)


# ---------------------------------------------------------------- agreement


def _node(domains: list[tuple[str, str, int]]) -> str:
    body = "".join(
        "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
        f"<name>{name}</name><uuid>{uuid}</uuid><memory>65536</memory><os><type>hvm</type></os>"
        f"<test:runstate>{state}</test:runstate></domain>"
        for name, uuid, state in domains
    )
    return f"<node>{body}</node>"


def test_vdi_and_libvirt_should_agree(sim: SimServer, tmp_path: Path, pool_vms: list[str]) -> None:
    library = ATPLibrary(timeout=timedelta(seconds=5), run_on_failure="NONE")
    kw(library, "Connect To VDI", sim.url, "admin", Secret(PASSWORD), host_uri=f"test://{tmp_path}/{{name}}.xml")
    first, second, third = pool_vms
    ids = {v: kw(library, "Get VDI VM", v).id for v in pool_vms}
    kw(library, "Start VDI VMs", first, third)
    kw(library, "Reboot VDI VMs", third, wait=False)  # in transition
    node = tmp_path / "sim-host-1.xml"  # the simulator's host is named sim-host-1
    node.write_text(_node([("d1", ids[first], 1), ("d2", ids[second], 5), ("d3", ids[third], 1)]))
    kw(library, "VDI And Libvirt Should Agree")  # agree, agree, in transition
    assert kw(library, "Get VDI VM Domain", first) == "d1"  # by UUID = VM id
    assert kw(library, "Get VDI VM Domain", ids[second]) == "d2"
    kw(library, "VDI And Libvirt Should Agree", pool="qa")
    # behind the platform's back: power one domain off, undefine another
    session = library.ctx.vdi
    assert session is not None
    conn = session.connections.get(f"test://{node}").open()
    conn.lookupByName("d1").destroy()
    conn.lookupByName("d2").undefine()
    with pytest.raises(VdiAgreementError) as excinfo:
        kw(library, "VDI And Libvirt Should Agree")
    message = str(excinfo.value)
    assert message.startswith("VDI and libvirt disagree on 2 of 3 VDI VM(s):")
    lines = message.splitlines()
    assert any(first in line and "platform says running (1), libvirt domain 'd1' is shut off" in line for line in lines)
    assert any(second in line and "not defined on host" in line for line in lines)
    assert f"In transition (not counted): '{third}'" in message
    with pytest.raises(Exception, match=f"'{second}' .*has no libvirt domain at test://{node}"):
        kw(library, "Get VDI VM Domain", second)
    kw(library, "VDI And Libvirt Should Agree", third)  # only the VM in transition: passes
    kw(library, "Disconnect From VDI")


# ---------------------------------------------------------------- the password in Robot's logs


SUITE = """\
*** Settings ***
Library    ATPLibrary    timeout=10s    run_on_failure=NONE

*** Variables ***
${PW: Secret}    %{ATP_TEST_VDI_PASSWORD}

*** Test Cases ***
Pool And Console
    Connect To VDI    ${URL}    admin    ${PW}
    ${pool} =    Create Desk Pool    robot    win10-template    2    type=shared
    @{vms} =    Get Desk Pool VMs    ${pool}
    Start VDI VMs    @{vms}    timeout=10 s
    Wait Until VDI VM Status    ${vms}[0]    running    timeout=2s
    Wait Until VDI VM Status    ${vms}[1]    1
    Run Keyword And Expect Error    *'booting'*(off)*(operating)*(paused)*(running)*
    ...    Wait Until VDI VM Status    ${vms}[0]    booting
    ${spice} =    Get SPICE Connection    ${vms}[0]
    Log    ${spice}
    Log Many    @{vms}
    Disconnect From VDI

A Plain String Is Refused
    Run Keyword And Expect Error    *Secret*    Connect To VDI    ${URL}    admin    plain-text
"""


def test_the_password_never_reaches_robot_logs(sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATP_TEST_VDI_PASSWORD", PASSWORD)
    (tmp_path / "vdi.robot").write_text(SUITE)
    rc = robot.run(
        str(tmp_path / "vdi.robot"),
        outputdir=str(tmp_path),
        variable=[f"URL:{sim.url}"],
        loglevel="TRACE",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    output = (tmp_path / "output.xml").read_text()
    assert rc == 0, output[-3000:]
    with VdiClient(sim.url, "admin", PASSWORD) as client:
        pool = next(p for p in client.list_pools() if p.name == "robot")
        spice_passwords = [client.get_spice(vm.id).password for vm in client.list_pool_vms(pool.id)]
    assert "Connect To VDI" in output and "&lt;secret&gt;" in output
    for name in ("output.xml", "log.html", "report.html"):
        text = (tmp_path / name).read_text()
        assert PASSWORD not in text, name
        assert md5_password(PASSWORD) not in text, name
        for spice_password in spice_passwords:
            assert spice_password not in text, name


def test_library_end_closes_the_vdi_session(sim: SimServer) -> None:
    library = ATPLibrary(run_on_failure="NONE")
    kw(library, "Connect To VDI", sim.url, "admin", Secret(PASSWORD))
    session = library.ctx.vdi
    assert session is not None

    class Suite:
        parent = None
        full_name = "All"

    library.end_suite(Suite(), None)
    assert library.ctx.vdi is None
    assert sim_call(sim, "GET", "/_sim/log")["requests"][-1]["path"] == "/ocloud/v1/logout"
    assert threading.active_count() >= 1
