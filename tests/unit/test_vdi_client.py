"""VdiClient behaviour against scripted httpx.MockTransport replies (no network)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest

from ATPLibrary.errors import ConfigurationError, VdiBatchError, VdiConnectionError, VdiError, WaitTimeoutError
from ATPLibrary.vdi import VdiClient, md5_password
from ATPLibrary.vdi.models import Event, SpiceInfo

pytestmark = pytest.mark.timeout(10)

BASE = "http://vdi.invalid:8088"
PASSWORD = "S3cret-pässword"


def ok(data: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"status": 0, "msg": "操作成功"}
    if data is not None:
        body["data"] = data
    return httpx.Response(200, json=body)


def err(status: int, msg: str) -> httpx.Response:
    return httpx.Response(200, json={"status": status, "msg": msg})


class Server:
    """Answers login with a fresh token; other routes from a per-path script (a list is consumed in order)."""

    def __init__(self, script: dict[str, Any] | None = None) -> None:
        self.script: dict[str, Any] = script or {}
        self.requests: list[httpx.Request] = []
        self.logins = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/ocloud/v1/login":
            self.logins += 1
            return ok({"token": f"tok-{self.logins}"})
        answer = self.script.get(path)
        if isinstance(answer, list):
            answer = answer.pop(0)
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return ok(answer)

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


def client(server: Server, **kw: Any) -> VdiClient:
    kw.setdefault("sleep", lambda s: None)
    return VdiClient(BASE, "admin", PASSWORD, transport=httpx.MockTransport(server), **kw)


def test_md5_rule() -> None:
    assert md5_password("11111111") == "1bbd886460827015e5d605ed44252251"


def test_login_sends_md5_and_later_calls_send_token_header() -> None:
    server = Server({"/ocloud/v1/domain/vm-1": {"id": "vm-1", "name": "a", "status": 1}})
    c = VdiClient(BASE, "admin", "11111111", transport=httpx.MockTransport(server))
    vm = c.get_vm("vm-1")
    login, get = server.requests
    assert json.loads(login.content) == {"username": "admin", "password": "1bbd886460827015e5d605ed44252251"}
    assert "Token" not in login.headers
    assert get.headers["Token"] == "tok-1"
    assert (vm.id, vm.status, vm.status_name) == ("vm-1", 1, "running")


def test_token_expiry_logs_in_again_exactly_once_then_succeeds() -> None:
    server = Server({"/ocloud/v1/domain/vm-1": [err(1006, "token校验失败"), {"id": "vm-1"}]})
    c = client(server)
    c.login()
    assert c.get_vm("vm-1").id == "vm-1"
    assert server.logins == 2
    gets = server.calls("/ocloud/v1/domain/vm-1")
    assert [r.headers["Token"] for r in gets] == ["tok-1", "tok-2"]


def test_second_token_expiry_is_an_error() -> None:
    server = Server({"/ocloud/v1/domain/vm-1": [err(1006, "token校验失败"), err(1006, "token校验失败")]})
    c = client(server)
    with pytest.raises(VdiError) as excinfo:
        c.get_vm("vm-1")
    assert excinfo.value.code == 1006
    assert server.logins == 2


def test_error_status_carries_code_and_chinese_message() -> None:
    server = Server({"/ocloud/v1/desk-pool/p1/enable": err(3001, "桌面池不存在")})
    with pytest.raises(VdiError, match="桌面池不存在") as excinfo:
        client(server).enable_pool("p1")
    assert (excinfo.value.code, excinfo.value.msg) == (3001, "桌面池不存在")
    assert "3001" in str(excinfo.value)


def test_login_failure_is_an_error_without_the_password() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return err(5099, "密码错误")

    c = VdiClient(BASE, "admin", PASSWORD, transport=httpx.MockTransport(handler))
    with pytest.raises(VdiError, match="密码错误") as excinfo:
        c.login()
    assert excinfo.value.code == 5099
    text = str(excinfo.value) + repr(excinfo.value) + repr(c)
    assert PASSWORD not in text
    assert md5_password(PASSWORD) not in text


def test_batch_error_list_names_each_vm() -> None:
    reply = {
        "errorList": [
            {"domainId": "vm-1", "domainName": "desk-01", "errorMsg": "虚机不存在"},
            {"domainId": "vm-2", "domainName": "desk-02", "errorMsg": "主机离线"},
        ],
        "eventIdList": ["ev-3"],
    }
    server = Server({"/ocloud/v1/domain/start": reply})
    with pytest.raises(VdiBatchError) as excinfo:
        client(server).start_vms(["vm-1", "vm-2", "vm-3"])
    text = str(excinfo.value)
    for part in ("desk-01", "vm-1", "虚机不存在", "desk-02", "主机离线"):
        assert part in text
    assert [e.domain_id for e in excinfo.value.errors] == ["vm-1", "vm-2"]


def test_batch_error_list_tolerated_on_request() -> None:
    reply = {"errorList": [{"domainId": "vm-1", "domainName": "d", "errorMsg": "x"}], "eventIdList": ["ev-2"]}
    result = client(Server({"/ocloud/v1/domain/close": reply})).close_vms(["vm-1", "vm-2"], tolerate_errors=True)
    assert [e.domain_id for e in result.errors] == ["vm-1"]
    assert result.event_ids == ["ev-2"]


def test_force_close_sends_is_force() -> None:
    server = Server({"/ocloud/v1/domain/close": {"errorList": [], "eventIdList": []}})
    client(server).close_vms("vm-1", force=True)
    assert json.loads(server.calls("/ocloud/v1/domain/close")[0].content) == {"idList": ["vm-1"], "isForce": 1}


def test_pagination_iterates_over_all_pages() -> None:
    def page(request: httpx.Request) -> dict[str, Any]:
        n = int(request.url.params["pageNum"])
        size = int(request.url.params["pageSize"])
        items = [{"id": f"vm-{i}"} for i in range((n - 1) * size, min(n * size, 5))]
        return {"list": items, "pageNum": n, "pageSize": size, "pages": 3, "total": 5}

    server = Server({"/ocloud/v1/domain": page})
    vms = list(client(server).list_vms(page_size=2, keyword="atp"))
    assert [v.id for v in vms] == [f"vm-{i}" for i in range(5)]
    pages = server.calls("/ocloud/v1/domain")
    assert [r.url.params["pageNum"] for r in pages] == ["1", "2", "3"]
    assert all(r.url.params["keyword"] == "atp" for r in pages)


def test_pagination_stops_on_an_empty_page() -> None:
    server = Server({"/ocloud/v1/host": {"list": [], "pageNum": 1, "pageSize": 100, "pages": 0, "total": 0}})
    assert list(client(server).list_hosts()) == []
    assert len(server.calls("/ocloud/v1/host")) == 1


def test_event_polling_until_success() -> None:
    server = Server(
        {"/ocloud/v1/event/ev-1": [{"id": "ev-1"}, {"id": "ev-1", "isSuccess": None}, {"id": "ev-1", "isSuccess": 0}]}
    )
    event = client(server).wait_for_event("ev-1", timeout=5, interval=0.01)
    assert event.done and event.succeeded
    assert len(server.calls("/ocloud/v1/event/ev-1")) == 3


def test_event_failure_raises_with_reason() -> None:
    server = Server({"/ocloud/v1/event/ev-1": {"id": "ev-1", "isSuccess": 1, "errorReason": "存储空间不足"}})
    with pytest.raises(VdiError, match="存储空间不足"):
        client(server).wait_for_event("ev-1", timeout=5)


def test_event_polling_is_bounded_by_its_timeout() -> None:
    server = Server({"/ocloud/v1/event/ev-1": lambda r: {"id": "ev-1"}})
    c = client(server, sleep=time.sleep)
    start = time.monotonic()
    with pytest.raises(WaitTimeoutError, match="ev-1"):
        c.wait_for_event("ev-1", timeout=0.3, interval=0.1)
    assert time.monotonic() - start < 1.5
    assert 2 <= len(server.calls("/ocloud/v1/event/ev-1")) <= 6


def test_event_done_and_success_rules() -> None:
    assert not Event.from_api({"id": "e"}).done
    assert Event.from_api({"id": "e", "isSuccess": 0}).succeeded
    failed = Event.from_api({"id": "e", "isSuccess": 1})
    assert failed.done and not failed.succeeded


def test_post_is_not_resent_after_a_read_timeout() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    server = Server({"/ocloud/v1/domain/start": boom})
    with pytest.raises(VdiConnectionError, match="not retried"):
        client(server, retries=3).start_vms(["vm-1"])
    assert len(server.calls("/ocloud/v1/domain/start")) == 1


def test_get_is_retried_with_bounded_backoff() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    server = Server({"/ocloud/v1/host/h-1": [boom, boom, {"id": "h-1", "status": 1}]})
    slept: list[float] = []
    host = client(server, retries=2, backoff=0.1, sleep=slept.append).get_host("h-1")
    assert host.status_name == "enabled"
    assert slept == [0.1, 0.2]


def test_get_retries_give_up() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    server = Server({"/ocloud/v1/host/h-1": boom})
    with pytest.raises(VdiConnectionError):
        client(server, retries=2).get_host("h-1")
    assert len(server.calls("/ocloud/v1/host/h-1")) == 3


def test_post_retried_when_it_cannot_have_reached_the_server() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    server = Server({"/ocloud/v1/domain/start": [refuse, {"errorList": [], "eventIdList": ["ev-1"]}]})
    assert client(server).start_vms(["vm-1"]).event_ids == ["ev-1"]
    assert len(server.calls("/ocloud/v1/domain/start")) == 2


def test_unreachable_platform_is_a_connection_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    c = VdiClient(BASE, "admin", PASSWORD, transport=httpx.MockTransport(refuse), sleep=lambda s: None)
    with pytest.raises(VdiConnectionError, match=r"vdi\.invalid"):
        c.get_vm("vm-1")


def test_password_absent_from_logs_and_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = Server({"/ocloud/v1/domain/vm-1": [err(1006, "token校验失败"), err(500, "内部错误")]})
    with pytest.raises(VdiError) as excinfo:
        client(server).get_vm("vm-1")
    for text in (caplog.text, str(excinfo.value), repr(excinfo.value)):
        assert PASSWORD not in text
        assert md5_password(PASSWORD) not in text
    assert "logging in again" in caplog.text


def test_spice_key_password_is_decoded() -> None:
    info = SpiceInfo.from_api({"ip": "10.0.0.5", "port": "5901", "key": "c2VjcmV0", "domainId": "vm-1"})
    assert (info.host, info.port, info.password) == ("10.0.0.5", 5901, "secret")
    assert "secret" not in repr(info)


def test_set_cpu_memory_uses_list_id() -> None:
    server = Server({"/ocloud/v1/domain/mem-cpu": None})
    client(server).set_vm_cpu_memory(["vm-1"], cpu=4, memory=8192)
    request = server.calls("/ocloud/v1/domain/mem-cpu")[0]
    assert request.method == "PATCH"
    assert json.loads(request.content) == {"listId": ["vm-1"], "cpu": 4, "memory": 8192}


def test_non_json_and_http_errors() -> None:
    server = Server({"/ocloud/v1/host/a": httpx.Response(200, text="<html>"), "/ocloud/v1/host/b": httpx.Response(502)})
    c = client(server)
    with pytest.raises(VdiError, match="not JSON"):
        c.get_host("a")
    with pytest.raises(VdiError, match="HTTP 502"):
        c.get_host("b")


def test_unknown_filter_is_rejected_before_sending() -> None:
    server = Server()
    with pytest.raises(ConfigurationError, match="domain_id"):
        list(client(server).list_vms(domain_id="x"))
    assert server.requests == []


def test_create_user_rejects_fields_the_spec_lacks() -> None:
    server = Server()
    with pytest.raises(ConfigurationError, match="password"):
        client(server).create_user("bob", "OU=QA,DC=x", password="x")
    assert server.requests == []
