"""Shared pytest fixtures: the local lab of real guests, brought up once per session.

Under CI (``CI=true``) a test that needs the lab FAILS when the lab cannot start; elsewhere it is skipped
with the reason (e.g. not root on a machine without libvirtd).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
#: Guests the tests need: the session leases two ([0] for typing and commands, [1] for lifecycle tests that stop and
#: start it, see ``leased_vms``), and tests that run real pabot suites (DataDriver, the pool) lease the others.
MIN_TEST_VMS = 4


@pytest.fixture(scope="session")
def lab() -> dict[str, Any]:
    """The lab's variables (``uri``, ``vms``, ``guests``) after `atp lab up`; never shrinks a bigger lab."""
    from ATPLibrary.lab.lab import Lab

    try:
        lab = Lab(log=lambda message: print(f"[lab] {message}", flush=True))
        existing = len(lab.status()["guests"])
        return lab.up(max(MIN_TEST_VMS, existing))
    except Exception as exc:  # any failure to start the lab
        if IN_CI:
            pytest.fail(f"the lab could not start (CI never skips lab tests): {exc}")
        pytest.skip(f"the lab could not start on this machine: {exc}")


@pytest.fixture(scope="session")
def running_lab(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The lab's variables, used as they are when at least ``MIN_TEST_VMS`` of its guests run.

    Tests that lease their own guests take this instead of ``lab``: on a lab shared with others, one guest
    that someone is restarting must not hold them up. Only when the lab is not up (a fresh machine, CI) is
    the ``lab`` fixture asked to bring it up, with its CI rule (fail, never skip).
    """
    import json

    from ATPLibrary.lab.lab import Lab
    from ATPLibrary.lab.paths import vars_file

    try:
        data: dict[str, Any] = json.loads(vars_file().read_text())
        guests = Lab().status()["guests"]
    except Exception:  # no variables file, or no libvirtd yet
        data, guests = {}, {}
    running = [vm for vm in data.get("vms", []) if guests.get(vm, {}).get("state") == "running"]
    if len(running) >= MIN_TEST_VMS:
        return data
    lab: dict[str, Any] = request.getfixturevalue("lab")
    return lab


@pytest.fixture(scope="session")
def leased_vms(lab: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Two lab guests leased for this pytest session (`Acquire VM` leases): parallel suites or another
    test run on this machine never drive them at the same time."""
    from ATPLibrary.pool.leases import LeaseStore

    store = LeaseStore()
    vms = [str(v) for v in lab["vms"]]
    first = store.acquire(lab["uri"], vms, "pytest session", timeout=600)
    second = store.acquire(lab["uri"], [v for v in vms if v != first.vm], "pytest session", timeout=600)
    yield first.vm, second.vm
    second.release()
    first.release()


@pytest.fixture(scope="session")
def typing_vm(leased_vms: tuple[str, str]) -> str:
    """The guest used for typing and commands (kept running)."""
    return leased_vms[0]


@pytest.fixture(scope="session")
def lifecycle_vm(leased_vms: tuple[str, str]) -> str:
    """The guest that lifecycle tests stop, start and break (left running and ready afterwards)."""
    return leased_vms[1]


@pytest.fixture()
def library(lab: dict[str, Any]) -> Iterator[Any]:
    """An ATPLibrary instance connected to the lab host, as a suite would have it."""
    from ATPLibrary import ATPLibrary

    lib = ATPLibrary(timeout=timedelta(seconds=30))
    lib.run_keyword("Connect To Host", [lab["uri"]], {"alias": "lab"})
    yield lib
    lib.run_keyword("Disconnect All Hosts", [], {})
