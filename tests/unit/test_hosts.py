from __future__ import annotations

from typing import Any

import libvirt
import pytest
from fakes import FakeClock, libvirt_error

from ATPLibrary.errors import (
    ConfigurationError,
    HostConnectionError,
    HostError,
    VMNotFoundError,
    VMStateTimeout,
    WaitTimeoutError,
)
from ATPLibrary.hosts import Backoff, HostConnection, HostRegistry, VMState, format_seconds


@pytest.fixture
def host() -> Any:
    conn = HostConnection("test:///default", keepalive=None)
    yield conn
    if conn.state("test") is not VMState.RUNNING:
        conn.start("test")
    conn.close()


def test_opens_lazily(host: HostConnection) -> None:
    assert not host.is_open
    assert "test" in host.domain_names()
    assert host.is_open


def test_state_start_destroy_on_the_test_driver(host: HostConnection) -> None:
    assert host.state("test") is VMState.RUNNING
    assert str(host.state("test")) == "running"
    assert host.start("test") is False  # already running
    assert host.destroy("test") is True
    assert host.state("test") is VMState.SHUTOFF and str(VMState.SHUTOFF) == "shut off"
    assert host.destroy("test") is False  # already off
    assert host.start("test") is True
    assert host.wait_for_state("test", "running", 1) is VMState.RUNNING


def test_graceful_shutdown_waits_until_shut_off(host: HostConnection) -> None:
    assert host.shutdown("test", 5) is True
    assert host.state("test") is VMState.SHUTOFF
    assert host.shutdown("test", 5) is False


def test_wait_for_state_timeout_names_vm_states_and_timeout(host: HostConnection) -> None:
    with pytest.raises(VMStateTimeout) as info:
        host.wait_for_state("test", "shut off", 0.3, poll=0.05)
    message = str(info.value)
    assert "'test'" in message and "'shut off'" in message and "'running'" in message and "300 ms" in message
    assert isinstance(info.value, WaitTimeoutError)


def test_vm_not_found_names_vm_uri_and_lists_domains(host: HostConnection) -> None:
    with pytest.raises(VMNotFoundError) as info:
        host.state("tset")
    message = str(info.value)
    assert "'tset'" in message and "test:///default" in message and "Did you mean 'test'" in message


def test_not_found_lists_close_matches_first() -> None:
    host = HostConnection("qemu:///fake", keepalive=None)
    message = host._not_found_message("desk-02", ["alpha", "desk-01", "zeta", "desk-12"])
    listed = message.split("Defined domains: ")[1]
    assert listed.index("desk-01") < listed.index("alpha") and listed.index("desk-12") < listed.index("zeta")


def test_bad_uri_raises_naming_the_uri() -> None:
    host = HostConnection("nosuchdriver:///x", keepalive=None)
    with pytest.raises(HostConnectionError, match="nosuchdriver:///x"):
        host.open()


def test_vm_state_parse() -> None:
    assert VMState.parse("Shut Off") is VMState.SHUTOFF
    assert VMState.parse("shutoff") is VMState.SHUTOFF
    assert VMState.parse("RUNNING") is VMState.RUNNING
    assert VMState.from_libvirt(7) is VMState.PMSUSPENDED
    with pytest.raises(ConfigurationError, match="running"):
        VMState.parse("flying")


class FakeConn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.alive = True
        self.closed = False
        self.calls = 0

    def isAlive(self) -> int:
        return int(self.alive)

    def close(self) -> int:
        self.closed = True
        return 0


class FlakyOpener:
    """Opens FakeConns; fails ``failures`` times after the first successful open."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.opened: list[FakeConn] = []
        self.attempts = 0

    def __call__(self, uri: str) -> Any:
        self.attempts += 1
        if self.opened and self.failures > 0:
            self.failures -= 1
            raise libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, "Failed to connect socket", libvirt.VIR_FROM_RPC)
        conn = FakeConn(f"c{len(self.opened)}")
        self.opened.append(conn)
        return conn


def broken_on_first(conn: Any) -> str:
    conn.calls += 1
    if conn.name == "c0":
        conn.alive = False
        raise libvirt_error(
            libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot recv data: Connection reset by peer", libvirt.VIR_FROM_RPC
        )
    return f"ok from {conn.name}"


def test_reconnects_with_exponential_backoff_and_retries_idempotent_once() -> None:
    clock = FakeClock()
    opener = FlakyOpener(failures=4)
    host = HostConnection(
        "qemu+ssh://root@h/system",
        opener=opener,
        clock=clock,
        sleep=clock.sleep,
        backoff=Backoff(0.5, 2.0, 3.0),
        reconnect_timeout=60,
    )
    assert host.call(broken_on_first, what="state read", idempotent=True) == "ok from c1"
    assert clock.sleeps == [0.5, 1.0, 2.0, 3.0]
    assert opener.opened[0].closed
    assert host.reconnects == 1 and host.generation == 2


def test_non_idempotent_call_is_not_retried_but_next_call_reconnects() -> None:
    clock = FakeClock()
    opener = FlakyOpener(failures=0)
    host = HostConnection("qemu:///system", opener=opener, clock=clock, sleep=clock.sleep)
    with pytest.raises(HostConnectionError, match="not retried"):
        host.call(broken_on_first, what="starting 'vm'", idempotent=False)
    assert opener.opened[0].calls == 1 and len(opener.opened) == 1
    assert host.call(broken_on_first, what="state read", idempotent=True) == "ok from c1"


def test_reconnect_gives_up_at_the_deadline() -> None:
    clock = FakeClock()
    opener = FlakyOpener(failures=10**6)
    host = HostConnection(
        "qemu:///system",
        opener=opener,
        clock=clock,
        sleep=clock.sleep,
        backoff=Backoff(0.5, 2.0, 4.0),
        reconnect_timeout=10,
    )
    with pytest.raises(HostConnectionError) as info:
        host.call(broken_on_first, what="state read", idempotent=True)
    assert "could not reconnect within 10 seconds" in str(info.value)
    assert clock.now - 1000.0 == pytest.approx(10.0)
    assert max(clock.sleeps) == 4.0


def test_operation_errors_on_a_live_connection_are_not_reconnects() -> None:
    opener = FlakyOpener(failures=0)
    host = HostConnection("qemu:///system", opener=opener)

    def fails(conn: Any) -> None:
        raise libvirt_error(libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "agent not connected")

    with pytest.raises(libvirt.libvirtError):
        host.call(fails, what="agent", idempotent=True)
    assert len(opener.opened) == 1 and host.reconnects == 0


def test_registry_aliases_and_current_host() -> None:
    made: list[HostConnection] = []

    def factory(uri: str, alias: str) -> HostConnection:
        made.append(HostConnection(uri, alias=alias, opener=FlakyOpener(0)))
        return made[-1]

    reg = HostRegistry(factory)
    with pytest.raises(HostError, match="Connect To Host"):
        reg.get()
    reg.add("qemu:///system", "local")
    reg.add("qemu+ssh://root@h/system", "remote")
    assert reg.get().alias == "remote"
    assert reg.switch("local").uri == "qemu:///system"
    with pytest.raises(ConfigurationError, match="local, remote"):
        reg.switch("nope")
    reg.remove()
    assert reg.current is not None and reg.current.alias == "remote"
    reg.close_all()
    assert len(reg) == 0 and reg.current is None


def test_format_seconds() -> None:
    assert format_seconds(30) == "30 seconds"
    assert format_seconds(1) == "1 second"
    assert format_seconds(90) == "1 minute 30 seconds"
    assert format_seconds(0.25) == "250 ms"
    assert format_seconds(1.07942) == "1.08 seconds"
