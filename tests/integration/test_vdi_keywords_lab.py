"""The VDI keywords against the lab's running simulator (real guests behind it): a token that expires, a
``status != 0`` reply, a batch that partly fails because a domain was undefined behind the platform's back,
and a platform that cannot be reached each end the way a QA engineer needs."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest
from robot.api.types import Secret

from ATPLibrary import ATPLibrary
from ATPLibrary.errors import VdiBatchError, VdiConnectionError, VdiError
from tests.integration.helpers import kw

pytestmark = pytest.mark.lab


def _sim(lab: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    reply = httpx.request(method, lab["vdi"]["url"] + path, json=body, timeout=30)
    reply.raise_for_status()
    return reply.json()


def _password(lab: dict[str, Any]) -> Secret:
    return Secret(Path(lab["vdi"]["password_file"]).read_text().strip())


@pytest.fixture
def vdi_lib(lab: dict[str, Any]) -> Iterator[ATPLibrary]:
    """A library logged in to the lab's simulator, as `Connect To VDI` in a suite would be."""
    section = lab["vdi"]
    library = ATPLibrary(timeout=timedelta(seconds=60), run_on_failure="NONE")
    kw(library, "Connect To VDI", section["url"], section["username"], _password(lab), host_uri=section["host_uri"])
    yield library
    kw(library, "Disconnect From VDI")


@pytest.fixture
def pool(vdi_lib: ATPLibrary, lab: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """A desk pool of 2 VMs from the lab-image template (its name and VM names), deleted afterwards."""
    name = f"kw-{uuid.uuid4().hex[:6]}"
    kw(vdi_lib, "Create Desk Pool", name, lab["vdi"]["template"], 2)
    vms = list(kw(vdi_lib, "Get Desk Pool VMs", name))
    yield name, vms
    kw(vdi_lib, "Delete Desk Pool", name)


def test_an_expired_token_is_renewed_by_exactly_one_login(lab: dict[str, Any], pool: tuple[str, list[str]]) -> None:
    section = lab["vdi"]
    name, vms = pool
    _sim(lab, "POST", "/_sim/tokens", {"lifetime": 1})
    library = ATPLibrary(timeout=timedelta(seconds=30), run_on_failure="NONE")
    try:
        kw(library, "Connect To VDI", section["url"], section["username"], _password(lab), retries=0)
        _sim(lab, "DELETE", "/_sim/log")
        time.sleep(1.5)  # the token Connect To VDI got has expired
        assert kw(library, "Get Desk Pool VMs", name) == vms
        log = _sim(lab, "GET", "/_sim/log")["requests"]
    finally:
        _sim(lab, "POST", "/_sim/tokens", {})
        kw(library, "Disconnect From VDI")
    assert _sim(lab, "GET", "/_sim/tokens")["lifetime"] > 1
    calls = [(r["method"], r["path"], r["status"]) for r in log]
    assert sum(r["login"] for r in log) == 1, calls
    login = next(i for i, r in enumerate(log) if r["login"])
    assert login > 0 and log[login - 1]["status"] == 1006, calls  # the expired token was refused,
    assert log[login]["status"] == 0, calls  # one login,
    assert calls[login + 1] == (*calls[login - 1][:2], 0), calls  # and the refused call succeeded on retry
    assert all(status == 0 for _, _, status in calls[login:]), calls


def test_a_status_error_reply_fails_the_keyword_with_code_and_message(
    lab: dict[str, Any], vdi_lib: ATPLibrary, pool: tuple[str, list[str]]
) -> None:
    name, vms = pool
    _sim(lab, "POST", "/_sim/faults", {"error_status": 3007, "error_msg": "桌面池状态异常", "count": 1})
    try:
        with pytest.raises(VdiError) as excinfo:
            kw(vdi_lib, "Get Desk Pool VMs", name)
    finally:
        _sim(lab, "POST", "/_sim/faults", {})
    assert excinfo.value.code == 3007
    assert "status 3007: 桌面池状态异常" in str(excinfo.value)
    assert kw(vdi_lib, "Get Desk Pool VMs", name) == vms  # the next call is not affected


def test_a_domain_undefined_behind_the_platforms_back_fails_its_part_of_a_start(
    lab: dict[str, Any], vdi_lib: ATPLibrary, pool: tuple[str, list[str]]
) -> None:
    _, (gone, kept) = pool
    gone_id = kw(vdi_lib, "Get VDI VM", gone).id
    domain = kw(vdi_lib, "Get VDI VM Domain", gone)
    assert domain == f"atp-vdi-{gone_id}"
    conn = libvirt.open(lab["uri"])
    try:
        conn.lookupByName(domain).undefine()
    finally:
        conn.close()
    with pytest.raises(VdiBatchError) as excinfo:
        kw(vdi_lib, "Start VDI VMs", gone, kept, timeout=timedelta(minutes=2))
    message = str(excinfo.value)
    assert message.startswith("Start VDI VMs: ")
    failed = [line for line in message.splitlines() if line.startswith("- ")]
    assert len(failed) == 1 and failed[0].startswith(f"- {gone}: ") and domain in failed[0], message
    assert kept not in message
    assert kw(vdi_lib, "Get VDI VM Status", kept) == "running"  # the rest of the batch went ahead
    kw(vdi_lib, "Wait Until VDI VM Status", kept, "running", timeout=timedelta(seconds=5))


def test_an_unreachable_platform_fails_connect_naming_the_url(lab: dict[str, Any]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"  # nothing listens there now
    library = ATPLibrary(run_on_failure="NONE")
    started = time.monotonic()
    with pytest.raises(VdiConnectionError) as excinfo:
        kw(library, "Connect To VDI", url, lab["vdi"]["username"], _password(lab), timeout=timedelta(seconds=5))
    assert time.monotonic() - started < 30
    assert f"Cannot reach the VDI platform at {url}" in str(excinfo.value)
