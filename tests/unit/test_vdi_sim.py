"""The VDI simulator, driven by the real VdiClient over HTTP; every reply checked against the closed spec."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openapi_core  # noqa: F401  (a dev dependency: the response check must run, never skip)
import pytest
from test_vdi_conformance import missing_read_fields, validate_response

from ATPLibrary.errors import VdiBatchError, VdiConnectionError, VdiError
from ATPLibrary.vdi import VdiClient
from ATPLibrary.vdi.models import READ_FIELDS
from ATPLibrary.vdi.sim import SimServer, Timings, make_server, serve_in_thread

pytestmark = pytest.mark.timeout(120)

DELAY = 0.2


class RecordingTransport(httpx.HTTPTransport):
    """Keeps every /ocloud exchange so the test can validate it against the spec."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        if request.url.path.startswith("/ocloud/"):
            self.exchanges.append((request, response))
        return response


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    server = make_server(port=0, token_lifetime=1.0, timings=Timings.uniform(DELAY))
    serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def client(sim: SimServer, transport: RecordingTransport) -> Iterator[VdiClient]:
    with VdiClient(sim.url, "admin", "11111111", transport=transport, retries=0, timeout=5) as c:
        yield c
    problems: list[str] = []
    for request, response in transport.exchanges:
        validate_response(request, response)
        problems += missing_read_fields(request, response)[1]
    assert problems == [], "replies lack fields the keywords read:\n" + "\n".join(problems)
    _sim(sim, "POST", "/_sim/faults", {})


def _sim(sim: SimServer, method: str, path: str, body: Any = None) -> Any:
    return httpx.request(method, sim.url + path, json=body, timeout=5).json()


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _new_vms(client: VdiClient, prefix: str, amount: int) -> list[str]:
    template = client.all_templates()[0]
    event = client.create_vms_from_template(template.id, prefix, amount)
    client.wait_for_event(event, timeout=5, interval=0.05)
    return [vm.id for vm in client.list_vms(keyword=prefix)]


def test_login_and_wrong_password(sim: SimServer, client: VdiClient) -> None:
    client.login()
    assert client.token
    with VdiClient(sim.url, "admin", "wrong", retries=0) as bad, pytest.raises(VdiError, match="5099"):
        bad.login()
    with VdiClient(sim.url, "nobody", "x", retries=0) as bad, pytest.raises(VdiError, match="5098"):
        bad.login()


def test_missing_token_is_1006(sim: SimServer) -> None:
    reply = httpx.get(sim.url + "/ocloud/v1/host/all").json()
    assert reply == {"status": 1006, "msg": "token校验失败"}


def test_token_expiry_logs_in_again_exactly_once(sim: SimServer, client: VdiClient) -> None:
    client.all_hosts()
    before = sum(r["login"] for r in _sim(sim, "GET", "/_sim/log")["requests"])
    time.sleep(1.2)  # token lifetime 1 s
    assert client.all_hosts()
    log = _sim(sim, "GET", "/_sim/log")["requests"]
    assert sum(r["login"] for r in log) == before + 1
    assert [r["status"] for r in log[-3:]] == [1006, 0, 0]


def test_start_and_close_take_time_and_complete_events(client: VdiClient) -> None:
    ids = _new_vms(client, "trans-", 2)
    result = client.start_vms(ids)
    assert len(result.event_ids) == 2
    assert {client.get_vm(i).status for i in ids} == {5}
    for event in result.event_ids:
        assert client.wait_for_event(event, timeout=5, interval=0.05).succeeded
    assert {client.get_vm(i).status for i in ids} == {1}
    client.close_vms(ids, force=True)
    assert client.get_vm(ids[0]).status == 5
    _wait(lambda: {client.get_vm(i).status for i in ids} == {0})


def test_unknown_vm_is_named_in_error_list(client: VdiClient) -> None:
    ids = _new_vms(client, "partial-", 1)
    with pytest.raises(VdiBatchError, match="no-such-vm") as excinfo:
        client.start_vms([ids[0], "no-such-vm"])
    assert [e.domain_id for e in excinfo.value.errors] == ["no-such-vm"]
    result = client.close_vms(["no-such-vm"], tolerate_errors=True)
    assert result.errors and not result.event_ids


def test_pagination_over_1000_vms(client: VdiClient, transport: RecordingTransport) -> None:
    assert len(_new_vms(client, "scale-", 1000)) == 1000
    first = len(transport.exchanges)
    names = [vm.name for vm in client.list_vms(keyword="scale-", page_size=100)]
    assert len(names) == 1000 and len(set(names)) == 1000
    pages = [q for q, r in transport.exchanges[first:] if q.url.path == "/ocloud/v1/domain" and r.json()["status"] == 0]
    assert len(pages) == 10  # pageNum 1..10, stopped at ``pages`` (a 1006 retry may add a request)
    transport.exchanges[:] = transport.exchanges[-5:]  # keep the spec check quick


def test_error_fault_gives_a_clear_error(sim: SimServer, client: VdiClient) -> None:
    client.login()
    _sim(sim, "POST", "/_sim/faults", {"error_status": 4321, "error_msg": "模拟故障", "count": 1})
    with pytest.raises(VdiError, match="status 4321: 模拟故障"):
        client.all_hosts()
    assert client.all_hosts()


def test_dropped_connection_is_a_connection_error(sim: SimServer, client: VdiClient) -> None:
    client.login()
    _sim(sim, "POST", "/_sim/faults", {"drop_connection": True, "count": 1})
    with pytest.raises(VdiConnectionError, match="not retried"):
        client.start_vms(["x"])


def test_expire_tokens_switch(sim: SimServer, client: VdiClient) -> None:
    client.all_hosts()
    _sim(sim, "POST", "/_sim/faults", {"expire_tokens": True})
    assert client.all_hosts()


def test_unreachable_platform() -> None:
    with VdiClient("http://127.0.0.1:9", "admin", "x", retries=0, timeout=2) as c, pytest.raises(VdiConnectionError):
        c.login()


def test_pool_lifecycle_and_other_operations(client: VdiClient, transport: RecordingTransport) -> None:
    template = client.all_templates()[0]
    client.wait_for_event(
        client.create_pool("pool-a", 2, 0, template.id, domain_prefix="pa-"), timeout=5, interval=0.05
    )
    pool = next(p for p in client.list_pools(keyword="pool-a"))
    vms = client.list_pool_vms(pool.id)
    assert sorted(v.name for v in vms) == ["pa-1", "pa-2"]
    client.disable_pool(pool.id)
    client.enable_pool(pool.id)
    client.activate_pool(pool.id)
    group = client.ou_tree()[0]
    assert client.bind_pool_departments(pool.id, [group.distinguished_name]) == []
    client.unbind_pool_departments(pool.id, [group.distinguished_name])
    user = next(iter(client.list_users(group.distinguished_name)))
    assert client.bind_user([vms[0].id], user.id) == []
    client.unbind_user([vms[0].id])
    client.set_vm_cpu_memory([vms[0].id], cpu=4, memory=4096)
    assert client.get_vm(vms[0].id).raw["cpu"] == 4
    client.add_nic(vms[0].id, "vlan-1")
    mac = client.list_nics(vms[0].id)[0]["mac"]
    client.modify_nic(vms[0].id, mac, vlan_id="vlan-2")
    client.delete_nic(vms[0].id, mac)
    client.start_vms([vms[0].id])
    _wait(lambda: client.get_vm(vms[0].id).status == 1)
    spice = client.get_spice(vms[0].id)
    assert spice.port >= 5900 and spice.password
    clone = client.clone_vm(vms[1].id, "pa-clone")
    client.add_pool_vms(pool.id, [clone.clone_id])
    client.remove_pool_vms(pool.id, [clone.clone_id])
    client.wait_for_event(client.switch_pool_template(pool.id, template.id), timeout=5, interval=0.05)
    client.wait_for_event(client.update_pool(pool.id, "pool-a", 3), timeout=5, interval=0.05)
    assert len(client.list_pool_vms(pool.id)) == 3
    client.delete_pool(pool.id)
    assert not list(client.list_pools(keyword="pool-a"))
    with pytest.raises(VdiError, match="3001"):
        client.enable_pool(pool.id)
    client.create_user("bob", group.distinguished_name, sn="B", givenName="Bob")
    assert client.get_user("bob").raw["displayName"] == "Bob B"
    assert client.get_host(client.all_hosts()[0].id).status == 1
    client.delete_vms([clone.clone_id])
    new = client.create_vm(
        {"name": "pa-new", "cores": 1, "sockets": 1, "threads": 1, "cpu": 1, "memory": 1024, "bootloader": "bios"}
    )
    started = client.start_vms([new, "no-such-vm"], tolerate_errors=True)
    assert started.errors[0].domain_id == "no-such-vm"
    event = client.wait_for_event(started.event_ids[0], timeout=5, interval=0.05).raw
    assert (event["domainId"], event["domainName"], event["isSuccess"]) == (new, "pa-new", 0)  # read by batch keywords
    client.bind_user([new], user.id)
    assert client.get_vm(new).raw["userId"] == user.id  # read by Get VDI VM once a user is bound
    seen = set().union(*(missing_read_fields(q, r)[0] for q, r in transport.exchanges))
    assert seen >= set(READ_FIELDS), f"no reply of {sorted(set(READ_FIELDS) - seen)} was checked"
    client.logout()


def test_request_log_has_handling_time(sim: SimServer, client: VdiClient) -> None:
    client.all_hosts()
    path = "/ocloud/v1/host/all"
    _wait(lambda: any(r["path"] == path for r in _sim(sim, "GET", "/_sim/log")["requests"]))
    entry = [r for r in _sim(sim, "GET", "/_sim/log")["requests"] if r["path"] == path][-1]
    assert entry["status"] == 0
    assert isinstance(entry["ms"], int | float) and not isinstance(entry["ms"], bool)
    assert entry["ms"] >= 0


def test_rename_and_auto_join_domain(sim: SimServer, client: VdiClient) -> None:
    first, second = _new_vms(client, "upd-", 2)
    assert client.get_vm(first).auto_join_domain == 0  # every VM says whether it joins the domain
    client.rename_vm(first, "upd-alice")
    client.set_vm_auto_join_domain(first, True)
    vm = client.get_vm(first)
    assert (vm.name, vm.auto_join_domain) == ("upd-alice", 1)
    assert client.get_vm(second).name == "upd-2"  # only the VM in the path changed
    client.set_vm_auto_join_domain(first, False)
    assert client.get_vm(first).auto_join_domain == 0 and client.get_vm(first).name == "upd-alice"
    with pytest.raises(VdiError, match="status 1001: 虚拟机名称已存在: upd-alice"):
        client.rename_vm(second, "upd-alice")
    with pytest.raises(VdiError, match="status 1001: 虚拟机名称已存在"):
        client.rename_vm(second, client.all_templates()[0].name)  # templates are domains too
    client.rename_vm(first, "upd-alice")  # its own name again: no collision
    with pytest.raises(VdiError, match="3001"):
        client.rename_vm("no-such-vm", "x")
    client.start_vms([second])  # status 5 for DELAY
    with pytest.raises(VdiError, match="虚拟机正在操作中"):
        client.rename_vm(second, "upd-bob")
    _wait(lambda: client.get_vm(second).status == 1)
    client.rename_vm(second, "upd-bob")
    assert client.get_vm(second).name == "upd-bob"


def test_a_fault_can_target_one_method_and_path(sim: SimServer, client: VdiClient) -> None:
    first, second = _new_vms(client, "flt-", 2)
    fault = {"error_status": 4001, "error_msg": "只有这台", "method": "patch", "path": f"/ocloud/v1/domain/{second}"}
    _sim(sim, "POST", "/_sim/faults", fault | {"count": 1})
    client.rename_vm(first, "flt-a")  # another path: not affected, not counted
    assert client.get_vm(second).name == "flt-2"  # same path, another method: not affected
    with pytest.raises(VdiError, match="status 4001: 只有这台"):
        client.rename_vm(second, "flt-b")
    client.rename_vm(second, "flt-b")  # count 1: used up
    assert [client.get_vm(i).name for i in (first, second)] == ["flt-a", "flt-b"]
