"""SPICE over TLS on the lab guests' real SPICE servers: the lab's qemu.conf sets ``spice_tls = 1`` with its own
CA and server certificate (``<lab dir>/spice-tls``), so every guest has a tlsPort in its live XML.

Link, ticket and inputs go over that tlsPort, trusting the lab's CA; a CA that did not sign the server's
certificate fails naming certificate verification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libvirt
import pytest
from robot.api.types import Secret

from ATPLibrary.lab.domains import spice_port_of, spice_tls_port_of
from ATPLibrary.lab.spice_tls import write_ca_file
from ATPLibrary.spice.protocol import SpiceAuthError, SpiceTlsError
from tests.integration.helpers import kw, read_file_when, wait_console_ready, wait_for_file

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]


def _live_ports(library: Any, vm: str) -> tuple[int | None, int | None]:
    xml = library.ctx.domain(vm).run(lambda d: d.XMLDesc(0), what=f"reading the live XML of '{vm}'", idempotent=True)
    return spice_port_of(xml), spice_tls_port_of(xml)


def test_link_ticket_and_verified_input_over_the_live_tls_port(
    library: Any, typing_vm: str, lab: dict[str, Any]
) -> None:
    vm = typing_vm
    wait_console_ready(library, vm)
    port, tls_port = _live_ports(library, vm)
    assert tls_port is not None and tls_port != port, f"{vm} has no tlsPort in its live XML (port {port})"
    ca = lab["spice_ca_file"]
    kw(library, "Open SPICE Session", vm, tls=True, ca_file=ca, timeout=30)
    try:
        session = library.ctx.spice_session(vm)
        assert (session.endpoint.port, session.endpoint.tls, session.endpoint.ca_file) == (tls_port, True, ca)
        assert session.main is not None and session.main.session_id != 0
        kw(library, "Press Keys", vm, "ctrl+c")
        kw(library, "Execute Command In Guest", vm, "rm -f /tmp/tls.txt")
        kw(library, "Type Text", vm, "cat > /tmp/tls.txt\n", via="spice", verify=True)
        wait_for_file(library, vm, "/tmp/tls.txt")
        kw(library, "Type Text", vm, "Q\n", via="spice", verify=True)
        kw(library, "Press Keys", vm, "ctrl+d", via="spice", verify=True)
        assert read_file_when(library, vm, "/tmp/tls.txt", "Q\n") == "Q\n"
    finally:
        kw(library, "Close SPICE Session", vm)
        kw(library, "Stop Verification Server")


def test_wrong_password_over_tls_is_link_error_7(library: Any, typing_vm: str, lab: dict[str, Any]) -> None:
    with pytest.raises(SpiceAuthError, match=r"error 7 \(PERMISSION_DENIED") as caught:
        kw(
            library,
            "Open SPICE Session",
            typing_vm,
            tls=True,
            ca_file=lab["spice_ca_file"],
            password=Secret("not-the-password"),
            timeout=15,
        )
    assert "spice+tls://" in str(caught.value)
    assert lab["guests"][typing_vm]["spice_password"] not in str(caught.value)


def test_a_ca_that_did_not_sign_the_server_certificate_fails_naming_verification(
    library: Any, typing_vm: str, lab: dict[str, Any], tmp_path: Path
) -> None:
    other_ca = write_ca_file(tmp_path / "unrelated-ca.pem", "an unrelated CA")
    _port, tls_port = _live_ports(library, typing_vm)
    with pytest.raises(SpiceTlsError) as caught:
        kw(library, "Open SPICE Session", typing_vm, tls=True, ca_file=str(other_ca), timeout=15)
    message = str(caught.value)
    assert "TLS certificate verification failed" in message, message
    assert str(other_ca) in message and f"spice+tls://127.0.0.1:{tls_port}" in message
    assert "ca_file=" in message  # says what to do
    assert typing_vm not in library.ctx.spice_sessions


def test_the_plain_port_still_works_beside_tls(library: Any, typing_vm: str) -> None:
    """spice_tls = 1 with the default channel mode keeps the plain port usable (tls-channel only when asked)."""
    kw(library, "Open SPICE Session", typing_vm, timeout=30, display=False)
    try:
        port, _tls = _live_ports(library, typing_vm)
        assert library.ctx.spice_session(typing_vm).endpoint.port == port
    finally:
        kw(library, "Close SPICE Session", typing_vm)


def test_every_lab_guest_has_a_tls_port_and_the_ca_is_in_the_lab_variables(lab: dict[str, Any]) -> None:
    conn = libvirt.open(lab["uri"])
    try:
        for vm in lab["vms"]:
            xml = conn.lookupByName(vm).XMLDesc(0)
            assert spice_tls_port_of(xml) == lab["guests"][vm]["spice_tls_port"], vm
    finally:
        conn.close()
    assert Path(lab["spice_ca_file"]).is_file() and lab["spice_ca_file"].endswith("spice-tls/ca-cert.pem")
