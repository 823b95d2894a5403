"""Every public VdiClient method, called against a recorder, sends only requests the OCloudView spec allows.

The spec is read from ``shared/vdi/`` beside the checkout (never copied into the project) and patched in memory:
request schemas are CLOSED (``additionalProperties: false`` on every object schema), ``*/*`` media types become
``application/json``, the two broken places NOTES.md lists are repaired, and ``servers`` points nowhere real.
Beyond openapi-core's check, query parameter names must be declared by the operation (openapi-core ignores extras).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.validation.request.exceptions import RequestValidationError
from openapi_core.validation.response.exceptions import InvalidData
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from ATPLibrary.vdi import VdiClient
from ATPLibrary.vdi import routes as R
from ATPLibrary.vdi.models import READ_FIELDS

SPEC_PATH = Path(
    os.environ.get("ATP_VDI_SPEC")
    or Path(__file__).resolve().parents[2] / ".." / "shared" / "vdi" / "ocloudview-9.0-openapi.json"
)
BASE = "http://vdi.invalid:8088"

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------ spec loading
def _close_schema(schema: Any) -> None:
    """Recursively forbid properties a schema does not define."""
    if not isinstance(schema, dict):
        return
    if "properties" in schema or schema.get("type") == "object":
        schema.setdefault("additionalProperties", False)
        for sub in (schema.get("properties") or {}).values():
            _close_schema(sub)
    if isinstance(schema.get("additionalProperties"), dict):
        _close_schema(schema["additionalProperties"])
    _close_schema(schema.get("items"))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            _close_schema(sub)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@cache
def raw_spec() -> dict[str, Any]:
    if not SPEC_PATH.is_file():
        message = f"OCloudView spec not found at {SPEC_PATH} (shared/vdi beside the checkout, or ATP_VDI_SPEC)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)  # CI has shared/ beside the clone: a missing spec is an error there
        pytest.skip(message)
    with SPEC_PATH.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@cache
def patched_spec() -> dict[str, Any]:
    spec = copy.deepcopy(raw_spec())
    spec["servers"] = [{"url": BASE}]
    for node in _walk(spec):
        # 1. one $ref names a Java class instead of a schema: make it an (open) object
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#/"):
            node.clear()
            node["type"] = "object"
        # 2. every body is declared as */*: the platform speaks JSON
        content = node.get("content")
        if isinstance(content, dict) and "*/*" in content:
            content.setdefault("application/json", content.pop("*/*"))
    # 3. a path parameter the operation does not declare
    monitor = spec["paths"]["/ocloud/v1/domain/{domainId}/monitor/{requestId}"]
    for op in monitor.values():
        names = {p.get("name") for p in op.get("parameters", [])}
        if "requestId" not in names:
            op.setdefault("parameters", []).append(
                {"name": "requestId", "in": "path", "required": True, "schema": {"type": "string"}}
            )
    for schema in spec["components"]["schemas"].values():
        _close_schema(schema)
    for node in _walk(spec["paths"]):
        if "schema" in node and isinstance(node["schema"], dict):
            _close_schema(node["schema"])
    return spec


@cache
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(patched_spec())


def _template_for(path: str, method: str | None = None) -> str | None:
    """The spec path template matching a concrete path (literal segments beat parameters, like the server).

    With ``method``, templates that declare that method win (the spec has ``/domain/{id}/nic`` for GET/POST
    beside ``/domain/{domainId}/nic`` for PATCH).
    """
    best: tuple[int, str] | None = None
    for template, item in patched_spec()["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            score = template.count("{") + (0 if method is None or method.lower() in item else 100)
            if best is None or score < best[0]:
                best = (score, template)
    return best[1] if best else None


def _werkzeug_request(request: httpx.Request) -> WerkzeugOpenAPIRequest:
    environ = EnvironBuilder(
        method=request.method,
        base_url=BASE,
        path=request.url.path,
        query_string=request.url.query.decode(),
        headers={k: v for k, v in request.headers.items() if k.lower() not in {"content-length", "host"}},
        data=request.content,
    ).get_environ()
    return WerkzeugOpenAPIRequest(WerkzeugRequest(environ))


def validate_response(request: httpx.Request, response: httpx.Response) -> None:
    """The recorder's canned replies must themselves fit the (closed) response schemas."""
    reply = WerkzeugResponse(response.content, status=response.status_code, content_type="application/json")
    openapi().validate_response(_werkzeug_request(request), WerkzeugOpenAPIResponse(reply))


def _schema_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def missing_read_fields(request: httpx.Request, response: httpx.Response) -> tuple[set[str], list[str]]:
    """Walk the reply along the operation's 200 schema; returns the READ_FIELDS schemas seen and, for each
    object of one of them that lacks a field the keywords read, ``"<schema> at <where>: no <field>"``."""
    template = _template_for(request.url.path, request.method)
    assert template is not None, f"{request.method} {request.url.path}: path not in the spec"
    operation = raw_spec()["paths"][template][request.method.lower()]
    content = operation["responses"]["200"].get("content") or {}
    schema = next(iter(content.values()), {}).get("schema", {})
    schemas = raw_spec()["components"]["schemas"]
    seen: set[str] = set()
    problems: list[str] = []

    def walk(node: Any, schema: dict[str, Any], where: str) -> None:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = _schema_name(ref)
            if name in READ_FIELDS and isinstance(node, dict):
                seen.add(name)
                problems.extend(f"{name} at {where}: no {f}" for f in sorted(READ_FIELDS[name] - node.keys()))
            schema = schemas.get(name, {}) if ref.startswith("#/") else {}
        if isinstance(node, dict):
            for key, sub in (schema.get("properties") or {}).items():
                if key in node:
                    walk(node[key], sub, f"{where}.{key}")
        elif isinstance(node, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(node):
                walk(item, schema["items"], f"{where}[{i}]")

    walk(response.json(), schema, f"{request.method} {request.url.path}")
    return seen, problems


def validate_request(request: httpx.Request) -> None:
    """Raise AssertionError (or openapi-core's error) if the request is not one the spec allows."""
    path = request.url.path
    template = _template_for(path, request.method)
    assert template is not None, f"{request.method} {path}: path not in the spec"
    operation = patched_spec()["paths"][template].get(request.method.lower())
    assert operation is not None, f"{request.method} {template}: method not in the spec"
    declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
    extra = set(request.url.params.keys()) - declared
    assert not extra, f"{request.method} {template}: query parameters not in the spec: {sorted(extra)}"
    if request.content:
        assert "requestBody" in operation, f"{request.method} {template}: the spec declares no body"
    openapi().validate_request(_werkzeug_request(request))


# ------------------------------------------------------------------ recorder
def _page(item: dict[str, Any]) -> dict[str, Any]:
    return {"list": [item], "pageNum": 1, "pageSize": 100, "pages": 1, "total": 1}


VM = {"id": "vm-1", "name": "atp-vdi-1", "status": 1, "hostId": "h-1", "isModel": 0}
TEMPLATE = {"id": "tpl-1", "name": "win10", "status": 0, "isModel": 1}
POOL = {"id": "pool-1", "name": "p1", "type": 0, "amount": 2, "enabled": 1, "modelId": "tpl-1"}
HOST = {"id": "h-1", "name": "host1", "ip": "10.0.0.1", "status": 1}
USER = {"id": "u-1", "sAMAccountName": "alice", "displayName": "Alice"}
BATCH = {"errorList": [], "eventIdList": ["ev-1"]}

REPLIES: dict[tuple[str, str], Any] = {
    ("POST", "/ocloud/v1/login"): {"token": "tok-1", "username": "admin"},
    ("GET", "/ocloud/v1/domain"): _page(VM),
    ("GET", "/ocloud/v1/domain/{id}"): VM,
    ("POST", "/ocloud/v1/domain"): {"uuid": "vm-2"},
    ("POST", "/ocloud/v1/domain/start"): BATCH,
    ("POST", "/ocloud/v1/domain/close"): BATCH,
    ("POST", "/ocloud/v1/domain/reboot"): BATCH,
    ("POST", "/ocloud/v1/domain/suspend"): BATCH,
    ("POST", "/ocloud/v1/domain/resume"): BATCH,
    ("POST", "/ocloud/v1/domain/{id}/clone"): {"cloneUuid": "vm-3", "eventId": "ev-2"},
    ("POST", "/ocloud/v1/model/{id}/clone"): {"eventId": "ev-3"},
    ("GET", "/ocloud/v1/domain/{id}/nic"): [{"mac": "52:54:00:00:00:01", "vlanId": "v1"}],
    ("POST", "/ocloud/v1/domain/bind-user"): {"notBindDomainIdList": []},
    ("GET", "/ocloud/v1/domain/{id}/spice-key"): {"ip": "10.0.0.1", "port": "5900", "key": "c2VjcmV0"},
    ("GET", "/ocloud/v1/model"): _page(TEMPLATE),
    ("GET", "/ocloud/v1/model/all"): [TEMPLATE],
    ("GET", "/ocloud/v1/desk-pool"): _page(POOL),
    ("POST", "/ocloud/v1/desk-pool"): {"eventId": "ev-4"},
    ("PATCH", "/ocloud/v1/desk-pool/{id}"): {"eventId": "ev-5"},
    ("GET", "/ocloud/v1/desk-pool/{id}/domain/list"): [VM],
    ("POST", "/ocloud/v1/desk-pool/domain"): [],
    ("POST", "/ocloud/v1/desk-pool/group"): [],
    ("POST", "/ocloud/v1/desk-pool/switch-model"): {"eventId": "ev-6"},
    ("GET", "/ocloud/v1/host"): _page(HOST),
    ("GET", "/ocloud/v1/host/all"): [HOST],
    ("GET", "/ocloud/v1/host/{id}"): HOST,
    ("GET", "/ocloud/v1/user"): _page(USER),
    ("GET", "/ocloud/v1/user/detail"): {"sAMAccountName": "alice", "displayName": "Alice", "mail": "a@x"},
    ("GET", "/ocloud/v1/group/tree"): [{"id": "g-1", "ou": "QA", "distinguishedName": "OU=QA,DC=x", "list": []}],
    ("GET", "/ocloud/v1/event/{id}"): {"id": "ev-1", "isSuccess": 0},
}


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        template = _template_for(request.url.path, request.method) or request.url.path
        body: dict[str, Any] = {"status": 0, "msg": "操作成功"}
        data = REPLIES.get((request.method, template))
        if data is not None:
            body["data"] = data
        response = httpx.Response(200, json=body)
        self.exchanges.append((request, response))
        return response


def make_client(recorder: Recorder) -> VdiClient:
    return VdiClient(BASE, "admin", "11111111", transport=httpx.MockTransport(recorder), sleep=lambda s: None)


def _auto_join_on_and_off(client: VdiClient) -> None:
    client.set_vm_auto_join_domain("vm-1", True)
    client.set_vm_auto_join_domain("vm-1", False)


# Every public method and how to call it.  The coverage test fails when a method is missing here.
CALLS: dict[str, Callable[[VdiClient], Any]] = {
    "login": lambda c: c.login(),
    "logout": lambda c: (c.login(), c.logout()),
    "list_vms": lambda c: list(c.list_vms(keyword="atp", status="1", hostId="h-1", poolId="p")),
    "get_vm": lambda c: c.get_vm("vm-1"),
    "rename_vm": lambda c: c.rename_vm("vm-1", "alice"),
    "set_vm_auto_join_domain": lambda c: _auto_join_on_and_off(c),
    "start_vms": lambda c: c.start_vms(["vm-1", "vm-2"], host_id="h-1"),
    "close_vms": lambda c: c.close_vms(["vm-1"], force=True),
    "reboot_vms": lambda c: c.reboot_vms(["vm-1"]),
    "suspend_vms": lambda c: c.suspend_vms("vm-1"),
    "resume_vms": lambda c: c.resume_vms("vm-1"),
    "delete_vms": lambda c: c.delete_vms(["vm-1"], recycle=True),
    "create_vm": lambda c: c.create_vm(
        {
            "name": "vm-new",
            "autoJoinDomain": 0,
            "bootloader": "bios",
            "cores": 2,
            "sockets": 1,
            "threads": 1,
            "graphicsCardNum": 1,
            "mainBoard": "pc",
            "vgpuType": "",
            "cpu": 2,
            "memory": 4096,
        }
    ),
    "clone_vm": lambda c: c.clone_vm("vm-1", "vm-1-clone", storage_pool_id="sp-1"),
    "create_vms_from_template": lambda c: c.create_vms_from_template("tpl-1", "atp-", 2, storage_names=["default"]),
    "set_vm_cpu_memory": lambda c: c.set_vm_cpu_memory(["vm-1"], cpu=2, memory=2048),
    "list_nics": lambda c: c.list_nics("vm-1"),
    "add_nic": lambda c: c.add_nic("vm-1", "vlan-1"),
    "modify_nic": lambda c: c.modify_nic("vm-1", "52:54:00:00:00:01", vlan_id="vlan-2", ovs_id="ovs-1"),
    "delete_nic": lambda c: c.delete_nic("vm-1", "52:54:00:00:00:01"),
    "bind_user": lambda c: c.bind_user(["vm-1"], "u-1"),
    "unbind_user": lambda c: c.unbind_user(["vm-1"]),
    "get_spice": lambda c: c.get_spice("vm-1"),
    "list_templates": lambda c: list(c.list_templates(keyword="win")),
    "all_templates": lambda c: c.all_templates(pool_id="p-1"),
    "list_pools": lambda c: list(c.list_pools(keyword="p", type=0)),
    "create_pool": lambda c: c.create_pool("p1", 2, 0, "tpl-1", domain_prefix="atp-", remark="r"),
    "update_pool": lambda c: c.update_pool("pool-1", "p1", 3, model_id="tpl-1", remark="r"),
    "enable_pool": lambda c: c.enable_pool("pool-1"),
    "disable_pool": lambda c: c.disable_pool("pool-1"),
    "activate_pool": lambda c: c.activate_pool("pool-1"),
    "delete_pool": lambda c: c.delete_pool("pool-1"),
    "list_pool_vms": lambda c: c.list_pool_vms("pool-1"),
    "add_pool_vms": lambda c: c.add_pool_vms("pool-1", ["vm-1"]),
    "remove_pool_vms": lambda c: c.remove_pool_vms("pool-1", ["vm-1"]),
    "bind_pool_departments": lambda c: c.bind_pool_departments("pool-1", ["OU=QA,DC=x"]),
    "unbind_pool_departments": lambda c: c.unbind_pool_departments("pool-1", ["OU=QA,DC=x"]),
    "switch_pool_template": lambda c: c.switch_pool_template("pool-1", "tpl-2"),
    "list_hosts": lambda c: list(c.list_hosts(status="1")),
    "all_hosts": lambda c: c.all_hosts(),
    "get_host": lambda c: c.get_host("h-1"),
    "list_users": lambda c: list(c.list_users("OU=QA,DC=x", keyword="a")),
    "get_user": lambda c: c.get_user("alice"),
    "create_user": lambda c: c.create_user("bob", "OU=QA,DC=x", sn="B", givenName="Bob"),
    "ou_tree": lambda c: c.ou_tree(),
    "get_event": lambda c: c.get_event("ev-1"),
    "wait_for_event": lambda c: c.wait_for_event("ev-1", timeout=1),
}

# Public methods that send no request.
NO_REQUEST = {"close"}


def public_methods() -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(VdiClient, inspect.isfunction)
        if not name.startswith("_") and name not in NO_REQUEST
    }


def test_every_public_method_is_exercised() -> None:
    missing = public_methods() - set(CALLS)
    stale = set(CALLS) - public_methods()
    assert not missing, f"public VdiClient methods not called by the conformance test: {sorted(missing)}"
    assert not stale, f"conformance calls for methods that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_method_sends_only_spec_requests(name: str) -> None:
    recorder = Recorder()
    client = make_client(recorder)
    CALLS[name](client)
    assert recorder.requests, f"{name} sent no request"
    for request, response in recorder.exchanges:
        validate_request(request)
        validate_response(request, response)


def test_every_route_constant_exists_in_the_spec() -> None:
    for route in R.ALL_ROUTES:
        assert route.path in raw_spec()["paths"], f"{route}: path not in the spec"
        assert route.method.lower() in raw_spec()["paths"][route.path], f"{route}: method not in the spec"


def test_every_route_constant_is_used() -> None:
    recorder = Recorder()
    client = make_client(recorder)
    for call in CALLS.values():
        call(client)
    used = {(r.method, _template_for(r.url.path, r.method)) for r in recorder.requests}
    unused = [str(route) for route in R.ALL_ROUTES if (route.method, route.path) not in used]
    assert not unused, f"route constants no client method uses: {unused}"


# ------------------------------------------------------------------ the check itself catches off-spec requests
def _request(method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> httpx.Request:
    return httpx.Request(method, BASE + path, json=body, params=params, headers={"Token": "t"})


def _schema_errors(excinfo: pytest.ExceptionInfo[RequestValidationError]) -> str:
    cause = excinfo.value.__cause__
    return " ".join(str(e.message) for e in getattr(cause, "schema_errors", ()))


def test_closed_schema_rejects_an_extra_field() -> None:
    validate_request(_request("POST", "/ocloud/v1/domain/start", {"idList": ["vm-1"]}))
    with pytest.raises(RequestValidationError) as excinfo:
        validate_request(_request("POST", "/ocloud/v1/domain/start", {"idList": ["vm-1"], "domain_id": "x"}))
    assert "'domain_id' was unexpected" in _schema_errors(excinfo)


def test_a_client_sending_an_extra_field_fails_the_conformance_check() -> None:
    class OffSpecClient(VdiClient):
        def start_vms(self, ids: Any, **kw: Any) -> Any:
            return self._call(R.DOMAIN_START, body={"idList": list(ids), "domain_id": ids[0]})

    recorder = Recorder()
    OffSpecClient(BASE, "admin", "pw", transport=httpx.MockTransport(recorder)).start_vms(["vm-1"])
    with pytest.raises(RequestValidationError):
        for request in recorder.requests:
            validate_request(request)


def test_wrong_field_name_is_rejected() -> None:
    with pytest.raises(RequestValidationError) as excinfo:
        validate_request(_request("PATCH", "/ocloud/v1/domain/mem-cpu", {"idList": ["vm-1"], "cpu": 2}))
    assert "'idList' was unexpected" in _schema_errors(excinfo)


def test_missing_required_field_is_rejected() -> None:
    with pytest.raises(RequestValidationError):
        validate_request(_request("POST", "/ocloud/v1/domain/delete", {"domainIdList": ["vm-1"]}))


def test_off_spec_routes_are_rejected() -> None:
    with pytest.raises(AssertionError, match="path not in the spec"):
        validate_request(_request("POST", "/ocloud/v1/domain/vm-1/start", {"domain_id": "vm-1"}))
    with pytest.raises(AssertionError, match="method not in the spec"):
        validate_request(_request("DELETE", "/ocloud/v1/domain/start"))


def test_undeclared_query_parameter_is_rejected() -> None:
    with pytest.raises(AssertionError, match="query parameters not in the spec"):
        validate_request(_request("GET", "/ocloud/v1/domain", params={"page": "1"}))


def test_route_query_names_match_the_spec() -> None:
    for route in R.ALL_ROUTES:
        operation = raw_spec()["paths"][route.path][route.method.lower()]
        declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
        paging = {"pageNum", "pageSize"}
        assert route.paged == (paging <= declared), f"{route}: paged={route.paged} but the spec declares {declared}"
        assert route.query == declared - (paging if route.paged else set()), f"{route}: query names differ from spec"


def test_closed_response_schema_rejects_an_unknown_field() -> None:
    request = _request("GET", "/ocloud/v1/event/ev-1")
    validate_response(request, httpx.Response(200, json={"status": 0, "msg": "", "data": {"isSuccess": 0}}))
    with pytest.raises(InvalidData, match="done"):
        bad = {"status": 0, "msg": "", "data": {"isSuccess": 0, "done": True}}
        validate_response(request, httpx.Response(200, json=bad))


def test_a_reply_without_a_field_the_keywords_read_is_caught() -> None:
    request = _request("GET", "/ocloud/v1/domain")
    whole = {k: "x" for k in READ_FIELDS["DomainVO"]}
    seen, problems = missing_read_fields(request, httpx.Response(200, json={"status": 0, "data": _page(whole)}))
    assert seen == {"DomainVO"} and problems == []
    partial = {k: v for k, v in whole.items() if k != "hostId"}
    _, problems = missing_read_fields(request, httpx.Response(200, json={"status": 0, "data": _page(partial)}))
    assert problems == ["DomainVO at GET /ocloud/v1/domain.data.list[0]: no hostId"]
    batch = _request("POST", "/ocloud/v1/domain/start")
    reply = {"status": 0, "data": {"errorList": [{"domainId": "a", "errorMsg": "m"}], "eventIdList": []}}
    seen, problems = missing_read_fields(batch, httpx.Response(200, json=reply))
    assert seen == {"DomainBatchTaskVO", "ErrorInfo"}
    assert problems == ["ErrorInfo at POST /ocloud/v1/domain/start.data.errorList[0]: no domainName"]


def test_every_read_field_is_in_its_spec_schema() -> None:
    schemas = raw_spec()["components"]["schemas"]
    for name, fields in READ_FIELDS.items():
        assert name in schemas, f"READ_FIELDS names {name}, which the spec does not have"
        unknown = fields - set(schemas[name].get("properties") or {})
        assert not unknown, f"{name}: {sorted(unknown)} are not fields of the spec's schema"
