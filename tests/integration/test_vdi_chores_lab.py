"""`atp vdi assign | rename | auto-ad` as a user runs them: the real command in a subprocess, against the lab's
running VDI simulator (settings and password from the lab's variables), on VMs whose libvirt domains it defined."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ATPLibrary.vdi.client import VdiClient
from ATPLibrary.vdi.models import Vm

pytestmark = pytest.mark.lab

#: the installed ``atp`` beside this Python (``.venv/bin/atp``), as a user runs it
ATP = [str(Path(sys.executable).with_name("atp"))]


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The lab's variables with its VDI simulator running the code under test.

    Unlike the session's ``lab`` fixture this does not wait for console-ready guests: the chores define
    ``atp-vdi-…`` domains but never boot them, so a lab guest that is slow to boot must not skip this test.
    The simulator is (re)started under the lab's own lock, as `atp lab up` does when the code changed.
    """
    from ATPLibrary.lab.lab import Lab
    from ATPLibrary.lab.vdi_sim import LabVdiSim, code_key, port

    try:
        lab_vars: dict[str, Any] = dict(request.getfixturevalue("running_lab"))
        owner = Lab(log=lambda message: print(f"[lab] {message}", flush=True))
        sim = LabVdiSim(owner.dir, owner.log)
        state = json.loads(sim.state_file.read_text()) if sim.state_file.exists() else {}
        if sim.running_pid() is not None and state.get("code") == code_key() and state.get("port") == port():
            lab_vars["vdi"] = sim.up()  # already the code under test: nothing to restart, no need to wait
        else:
            with owner._exclusive("the VDI chores test", timeout=600):
                lab_vars["vdi"] = sim.up()
    except Exception as exc:  # no lab on this machine, or its simulator cannot start
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the lab's VDI simulator is not available (CI never skips lab tests): {exc}")
        pytest.skip(f"the lab's VDI simulator is not available (run `atp lab up`): {exc}")
    return lab_vars


@pytest.fixture(scope="module")
def vdi(lab: dict[str, Any]) -> Iterator[VdiClient]:
    section = lab["vdi"]
    password = Path(section["password_file"]).read_text().strip()
    with VdiClient(section["url"], section["username"], password, timeout=30) as client:
        yield client


@pytest.fixture
def batch(vdi: VdiClient, lab: dict[str, Any]) -> Iterator[tuple[str, list[Vm], list[str]]]:
    """Three VMs ``<tag>-vm-1..3`` from the lab-image template (real ``atp-vdi-<id>`` domains, not started) and
    two new users ``<tag>-a``, ``<tag>-b`` in the seeded OU; the VMs are deleted afterwards."""
    tag = f"chr{uuid.uuid4().hex[:6]}"
    template = next(t for t in vdi.all_templates() if t.name == lab["vdi"]["template"])
    vdi.wait_for_event(vdi.create_vms_from_template(template.id, f"{tag}-vm-", 3), timeout=120)
    vms = sorted(vdi.list_vms(keyword=f"{tag}-vm-"), key=lambda v: v.name)
    group = vdi.ou_tree()[0].distinguished_name
    users = [f"{tag}-a", f"{tag}-b"]
    for name in users:
        vdi.create_user(name, group)
    try:
        yield tag, vms, users
    finally:
        httpx.post(f"{lab['vdi']['url']}/_sim/faults", json={}, timeout=30)
        vdi.delete_vms([vm.id for vm in vms])


def atp(*argv: str) -> tuple[int, Any, str]:
    """``atp vdi …`` in a subprocess with the lab's settings only (no ATP_VDI_* variables); (rc, JSON, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATP_VDI_")}
    done = subprocess.run(
        [*ATP, "vdi", *argv, "--json"], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, done.stdout + done.stderr


def rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(r["vm"], r["before"], r["after"], r["outcome"]) for r in report["vms"]]


def test_assign_rename_auto_ad_on_the_lab_simulator(
    vdi: VdiClient, lab: dict[str, Any], batch: tuple[str, list[Vm], list[str]]
) -> None:
    tag, vms, (a, b) = batch
    names = [vm.name for vm in vms]
    password = Path(lab["vdi"]["password_file"]).read_text().strip()
    outputs: list[str] = []

    rc, report, text = atp("assign", "--pattern", f"{tag}-vm-*", "--users", f"{a},{b}", "--dry-run")
    outputs.append(text)
    assert rc == 1, text  # three VMs, two users: the plan already says the third gets none
    assert rows(report) == [
        (names[0], "-", a, "planned"),
        (names[1], "-", b, "planned"),
        (names[2], "-", "-", "failed"),
    ]
    assert [vm.user_id for vm in vdi.list_vms(keyword=f"{tag}-vm-")] == ["", "", ""]  # the dry run changed nothing

    rc, report, text = atp("assign", "--pattern", f"{tag}-vm-*", "--users", f"{a},{b}")
    outputs.append(text)
    assert rc == 1, text
    assert rows(report) == [(names[0], "-", a, "done"), (names[1], "-", b, "done"), (names[2], "-", "-", "failed")]
    assert f"VMs that got no user (1): {names[2]}" in report["notes"]
    users = {u.sam_account_name: u.id for u in vdi.list_users(vdi.ou_tree()[0].distinguished_name)}
    assert [vdi.get_vm(vm.id).user_id for vm in vms] == [users[a], users[b], ""]

    rc, report, text = atp("rename", "--pattern", f"{tag}-vm-*")
    outputs.append(text)
    assert rc == 0, text
    assert rows(report) == [
        (names[0], names[0], a, "done"),
        (names[1], names[1], b, "done"),
        (names[2],) * 3 + ("skipped",),
    ]
    assert [vdi.get_vm(vm.id).name for vm in vms] == [a, b, names[2]]

    rc, report, text = atp("verify", *(vm.id for vm in vms))  # the renamed VMs still agree with their domains
    outputs.append(text)
    assert rc == 0 and report["ok"] is True, text

    rc, report, text = atp("auto-ad", "--pattern", f"{tag}-*", "--enable")
    outputs.append(text)
    assert rc == 0, text
    assert [(r["before"], r["after"], r["result"]) for r in report["vms"]] == [("off", "on", "enabled")] * 3
    assert [vdi.get_vm(vm.id).auto_join_domain for vm in vms] == [1, 1, 1]

    # a status != 0 reply for one VM fails only that VM
    fault = {"error_status": 3107, "error_msg": "模拟失败", "method": "PATCH", "path": f"/ocloud/v1/domain/{vms[1].id}"}
    httpx.post(f"{lab['vdi']['url']}/_sim/faults", json=fault | {"count": 1}, timeout=30).raise_for_status()
    rc, report, text = atp("auto-ad", "--pattern", f"{tag}-*", "--disable")
    outputs.append(text)
    assert rc == 1, text
    assert [r["outcome"] for r in report["vms"]] == ["done", "failed", "done"]
    assert "status 3107: 模拟失败" in report["vms"][1]["result"]
    assert [vdi.get_vm(vm.id).auto_join_domain for vm in vms] == [0, 1, 0]

    rc, report, text = atp("rename", "--pattern", f"{tag}-nothing-*")
    outputs.append(text)
    assert rc == 2 and report is None and f"no VDI VM name matches '{tag}-nothing-*'" in text
    assert all(password not in out for out in outputs)  # the lab's VDI password never reaches the output
