"""The direct QMP socket transport on a real guest (the lab gives every guest an extra ``-qmp unix:...``
monitor); the tests use the session's leased typing guest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ATPLibrary.keywords.qmp import QmpKeywords
from ATPLibrary.qmp import LibvirtQmpTransport, SocketQmpTransport
from tests.integration.helpers import kw, read_file_when, wait_console_ready

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

#: The lab guests' spare virtio-serial port, which no guest program holds open: opening and closing it from
#: the guest makes QEMU send VSERPORT_CHANGE (the event of failure kind 3) to every monitor.
IDLE_PORT = "/dev/virtio-ports/com.atp.test.0"


@pytest.fixture()
def vm(typing_vm: str) -> str:
    return typing_vm


@pytest.fixture()
def qmp_socket(lab: dict[str, Any], vm: str) -> str:
    path = lab["guests"][vm].get("qmp_socket")
    if not path:
        pytest.fail(f"the lab gives {vm} no 'qmp_socket' (lab-vars.json); the lab should define one per guest")
    return str(path)


@pytest.fixture()
def qmp_lib(library: Any, qmp_socket: str, vm: str) -> Iterator[Any]:
    """The library with the QMP keywords (added here if ATPLibrary does not register them yet)."""
    if "Use QMP Socket" not in library.get_keyword_names():
        library.add_library_components([QmpKeywords(library.ctx)])
    yield library
    kw(library, "Use Libvirt QMP", vm)  # closes the socket: QEMU serves one client per QMP socket


def socket_transport(lib: Any, vm: str) -> SocketQmpTransport:
    transport = lib.ctx.qmp_transport(vm)
    assert isinstance(transport, SocketQmpTransport), transport
    return transport


def test_query_status_via_socket_equals_via_libvirt(qmp_lib: Any, qmp_socket: str, vm: str) -> None:
    assert isinstance(qmp_lib.ctx.qmp_transport(vm), LibvirtQmpTransport)
    via_libvirt = qmp_lib.ctx.monitor(vm).status()
    name_via_libvirt = qmp_lib.ctx.monitor(vm).execute("query-name")
    kw(qmp_lib, "Use QMP Socket", vm, qmp_socket)
    transport = socket_transport(qmp_lib, vm)
    assert transport.path == qmp_socket
    assert qmp_lib.ctx.monitor(vm).status() == via_libvirt
    assert via_libvirt["status"] == "running" and via_libvirt["running"] is True
    assert qmp_lib.ctx.monitor(vm).execute("query-name") == name_via_libvirt == {"name": vm}
    assert transport.commands_sent == 2


def test_type_text_over_the_socket_lands_in_the_guest(qmp_lib: Any, qmp_socket: str, vm: str) -> None:
    wait_console_ready(qmp_lib, vm)
    kw(qmp_lib, "Execute Command In Guest", vm, "rm -f /tmp/qmpsock")
    kw(qmp_lib, "Use QMP Socket", vm, qmp_socket)
    transport = socket_transport(qmp_lib, vm)
    before = transport.commands_sent
    kw(qmp_lib, "Type Text", vm, "echo via-socket > /tmp/qmpsock\n")
    assert transport.commands_sent > before  # the keys went over the socket, not through libvirt
    assert read_file_when(qmp_lib, vm, "/tmp/qmpsock", "via-socket\n") == "via-socket\n"


def test_events_from_qemu_are_captured(qmp_lib: Any, qmp_socket: str, vm: str) -> None:
    kw(qmp_lib, "Guest Agent Should Respond", vm)
    kw(qmp_lib, "Use QMP Socket", vm, qmp_socket)
    transport = socket_transport(qmp_lib, vm)
    transport.clear_events()
    result = kw(qmp_lib, "Execute Command In Guest", vm, f"test -c {IDLE_PORT} && exec 3<>{IDLE_PORT} && exec 3>&-")
    assert result.rc == 0
    opened = transport.wait_event("VSERPORT_CHANGE", 10)
    closed = transport.wait_event("VSERPORT_CHANGE", 10)
    assert opened["data"]["open"] is True and closed["data"]["open"] is False
    assert opened["data"]["id"] == closed["data"]["id"]
    assert {"seconds", "microseconds"} <= set(opened["timestamp"])
