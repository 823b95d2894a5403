"""A SPICE session opened from the VDI platform's spice-key: the lab's VDI simulator hands out the real SPICE port
and password of its ``atp-vdi-<id>`` guest (the lab image and domain template), and our client types a string
into it that the guest's verification agent confirms."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from robot.api.types import Secret

from ATPLibrary import ATPLibrary
from tests.integration.helpers import kw, read_file_when, wait_console_ready, wait_for_file

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]


@pytest.fixture
def vdi_vm(lab: dict[str, Any]) -> Iterator[tuple[ATPLibrary, str, str]]:
    """A desk pool of 1 VM from the lab-image template, started through the platform and console-ready: the
    library (logged in to the simulator and connected to the lab host), the VDI VM name and its domain.
    The pool (and so its domain) is deleted afterwards."""
    section = lab["vdi"]
    library = ATPLibrary(timeout=timedelta(seconds=60), run_on_failure="NONE")
    password = Secret(Path(section["password_file"]).read_text().strip())
    kw(library, "Connect To Host", lab["uri"])
    kw(library, "Connect To VDI", section["url"], section["username"], password, host_uri=section["host_uri"])
    pool = f"spice-{uuid.uuid4().hex[:6]}"
    kw(library, "Create Desk Pool", pool, section["template"], 1)
    try:
        (vm,) = kw(library, "Get Desk Pool VMs", pool)
        kw(library, "Start VDI VMs", vm, timeout=timedelta(minutes=2))
        kw(library, "Wait Until VDI VM Guest Agent Responds", vm, timeout=timedelta(seconds=120))
        domain = kw(library, "Get VDI VM Domain", vm)
        wait_console_ready(library, domain, timeout=120)
        yield library, vm, domain
    finally:
        kw(library, "Close SPICE Session")
        kw(library, "Stop Verification Server")
        kw(library, "Delete Desk Pool", pool)
        kw(library, "Disconnect From VDI")
        kw(library, "Disconnect All Hosts")


def test_a_session_from_the_platforms_spice_key_types_a_verified_string(
    vdi_vm: tuple[ATPLibrary, str, str], lab: dict[str, Any]
) -> None:
    library, vm, domain = vdi_vm
    spice = kw(library, "Get SPICE Connection", vm)
    assert isinstance(spice["password"], Secret) and spice["vm"] == vm
    # The documented way: the connection dictionary, the session named after the libvirt domain so that input
    # keywords (via=spice) and the verification agent (the domain's com.atp.verifier.0) find it.
    name = kw(library, "Open SPICE Session", connection=spice, alias=domain, timeout=30)
    assert name == domain
    session = library.ctx.spice_session(domain)
    assert (session.endpoint.host, session.endpoint.port) == (spice["host"], spice["port"])
    text = "vdi-spice: Hello_World 42!"
    # No ctrl+c first: the guest has just booted to an empty prompt, and on a busy new guest bash can handle the
    # SIGINT after the next characters arrived, dropping them ('cat' ran as 'at').
    kw(library, "Execute Command In Guest", domain, "rm -f /tmp/vdi.txt")
    kw(library, "Type Text", domain, "cat > /tmp/vdi.txt\n", via="spice", verify=True)
    wait_for_file(library, domain, "/tmp/vdi.txt")
    kw(library, "Type Text", domain, text + "\n", via="spice", verify=True)
    kw(library, "Press Keys", domain, "ctrl+d", via="spice", verify=True)
    assert read_file_when(library, domain, "/tmp/vdi.txt", text + "\n") == text + "\n"
    stats = kw(library, "Get Verification Latencies", domain)
    assert stats["count"] == 3, stats  # the agent in the VDI guest confirmed all three
    stats = kw(library, "Get Verification Latencies", domain)
    assert stats["count"] == 3, stats  # the agent in the VDI guest confirmed all three
    kw(library, "Close SPICE Session", domain)
    assert domain not in library.ctx.spice_sessions
