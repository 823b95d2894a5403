"""Closed-loop verification on real lab guests: the verification agent in the guest reports what its
kernel received, and verified keywords fail unless it is exactly what was sent."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ATPLibrary._version import __version__
from ATPLibrary.errors import ATPError
from tests.integration.helpers import kw, read_file_when, wait_console_ready, wait_for_file

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

MIXED = ("The quick brown fox: jumps over 13 lazy dogs! <a href='x'>{y|z}</a> ~`@#$%^&*()_+-=[]\\;,./?" * 3)[:200]


@pytest.fixture()
def vlib(library: Any, lifecycle_vm: str) -> Iterator[Any]:
    """The library with the image's agent connected on the lifecycle guest (whose agent these tests replace
    and kill); the guest's console is ready."""
    wait_console_ready(library, lifecycle_vm)
    kw(library, "Press Keys", lifecycle_vm, "ctrl+c")  # a fresh, empty command line
    yield library
    kw(library, "Stop Verification Server")


def test_verified_typing_of_200_mixed_characters(vlib: Any, lifecycle_vm: str) -> None:
    vm = lifecycle_vm
    assert len(MIXED) == 200
    kw(vlib, "Verification Agent Should Be Connected", vm, timeout=30)
    kw(vlib, "Execute Command In Guest", vm, "rm -f /tmp/mixed.txt")
    kw(vlib, "Type Text", vm, "cat > /tmp/mixed.txt\n", verify=True)
    wait_for_file(vlib, vm, "/tmp/mixed.txt")
    kw(vlib, "Type Text", vm, MIXED + "\n", verify=True)
    kw(vlib, "Press Keys", vm, "ctrl+d", verify=True)
    assert read_file_when(vlib, vm, "/tmp/mixed.txt", MIXED + "\n") == MIXED + "\n"
    stats = kw(vlib, "Get Verification Latencies", vm)
    assert stats["count"] == 3 and stats["p50"] is not None


def test_unverified_typing_checked_afterwards_names_the_first_difference(vlib: Any, lifecycle_vm: str) -> None:
    vm = lifecycle_vm
    kw(vlib, "Verification Agent Should Be Connected", vm, timeout=30)
    kw(vlib, "Type Text", vm, "abcXef")
    with pytest.raises(ATPError) as info:
        kw(vlib, "Input Should Be Received", vm, "abcdef", timeout=3)
    assert "Position 4: expected 'd', received 'X'" in str(info.value)
    kw(vlib, "Press Keys", vm, "ctrl+c")
    kw(vlib, "Type Text", vm, "abcdef")
    kw(vlib, "Input Should Be Received", vm, "abcdef", timeout=5)
    kw(vlib, "Press Keys", vm, "ctrl+c")


def test_mouse_input_is_verified(vlib: Any, lifecycle_vm: str) -> None:
    vm = lifecycle_vm
    kw(vlib, "Verification Agent Should Be Connected", vm, timeout=30)
    kw(vlib, "Move Mouse To", vm, 10, 20, verify=True)
    kw(vlib, "Move Mouse To", vm, 700, 380, verify=True)
    kw(vlib, "Move Mouse By", vm, 10, -5, verify=True)
    kw(vlib, "Click", vm, button="right", verify=True)
    kw(vlib, "Click", vm, double=True, verify=True)
    kw(vlib, "Scroll", vm, 3, "up", verify=True)
    kw(vlib, "Drag From To", vm, 100, 100, 200, 150, steps=3, verify=True)


def test_deployed_agent_replaces_the_image_agent_and_reports_the_package_version(vlib: Any, lifecycle_vm: str) -> None:
    vm = lifecycle_vm
    version = kw(vlib, "Deploy Verification Agent", vm, timeout=60)
    assert version == __version__
    running = kw(vlib, "Execute Command In Guest", vm, "pgrep -af '[a]tp-agent.pyz'").stdout
    assert "/run/atp/atp-agent.pyz" in running and "/usr/local/lib/atp" not in running, running
    kw(vlib, "Type Text", vm, "echo deployed\n", verify=True)


def test_deploying_again_in_the_same_process_keeps_verification_working(vlib: Any, lifecycle_vm: str) -> None:
    """Two suites in one robot process each deploy the agent: the second deploy must wait for the new agent.
    (It once took the session it had just closed for a live one, and the next verified input timed out.)"""
    vm = lifecycle_vm
    kw(vlib, "Deploy Verification Agent", vm, timeout=60)
    kw(vlib, "Type Text", vm, "echo one\n", verify=True)
    kw(vlib, "Deploy Verification Agent", vm, timeout=60)
    kw(vlib, "Type Text", vm, "echo two\n", verify=True)
    kw(vlib, "Deploy Verification Agent", vm, timeout=60)
    kw(vlib, "Press Keys", vm, "ctrl+c", verify=True)


def test_killed_agent_fails_the_next_verified_keyword_then_recovers(vlib: Any, lifecycle_vm: str) -> None:
    vm = lifecycle_vm
    kw(vlib, "Deploy Verification Agent", vm, timeout=60)
    kw(vlib, "Set ATP Timeout", "8s")
    kw(vlib, "Execute Command In Guest", vm, "kill -9 $(cat /run/atp/agent.pid)")
    started = time.monotonic()
    with pytest.raises(ATPError, match=vm):
        kw(vlib, "Type Text", vm, "echo after-kill\n", verify=True)
    elapsed = time.monotonic() - started
    assert elapsed < 8 + 10, f"the failure took {elapsed:.1f} s for an 8 s timeout"
    kw(vlib, "Press Keys", vm, "ctrl+c")
    # Restart it through the guest agent, as a user would; it reconnects and the next keyword passes.
    kw(
        vlib,
        "Execute Command In Guest",
        vm,
        "nohup python3 /run/atp/atp-agent.pyz --transport virtio --log-file /run/atp/agent.log "
        "</dev/null >/dev/null 2>&1 & echo $! > /run/atp/agent.pid",
    )
    kw(vlib, "Verification Agent Should Be Connected", vm, timeout=30)
    kw(vlib, "Type Text", vm, "echo recovered\n", verify=True)


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
def test_tcp_and_websocket_over_a_libvirt_tcp_channel(
    vlib: Any, lifecycle_vm: str, lab: dict[str, Any], transport: str
) -> None:
    vm = lifecycle_vm
    # Only the listener under test: QEMU connects every lab guest's tcp *and* ws channel to whatever listens.
    # A channel no guest process reads is never read by QEMU either, so when the server stops QEMU does not see
    # the close: that connection stays half-closed (CLOSE-WAIT) with the server's last bytes unread, and the next
    # agent on that port first meets a dead connection. One listener per case keeps the unused channel unconnected.
    port = lab["verifier_tcp_port"] if transport == "tcp" else lab["verifier_ws_port"]
    options = {"tcp_port": port} if transport == "tcp" else {"websocket_port": port}
    ports = kw(vlib, "Start Verification Server", **options)
    assert ports == {transport: port}
    device = f"/dev/virtio-ports/com.atp.verifier.{'tcp' if transport == 'tcp' else 'ws'}.0"
    kw(vlib, "Deploy Verification Agent", vm, transport=transport, port=device, timeout=60)
    info = kw(vlib, "Verification Agent Should Be Connected", vm)
    assert info["transport"] != "virtio-serial" and transport[:3] in info["transport"].lower()
    kw(vlib, "Type Text", vm, "echo over-" + transport + "\n", verify=True)
    kw(vlib, "Deploy Verification Agent", vm, timeout=60)  # back to virtio for the other tests


def test_wrong_token_is_rejected_and_logged_while_the_right_vm_keeps_working(
    vlib: Any, lifecycle_vm: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vm = lifecycle_vm
    ports = kw(vlib, "Start Verification Server", tcp_port=0)
    kw(vlib, "Verification Agent Should Be Connected", vm, timeout=30)
    server = vlib.ctx.verification
    server.register_token("impostor-vm", "the-right-token-1234")
    from ATPLibrary.agent.package import build_zip

    agent = build_zip(tmp_path)
    wrong = "wrong-token-5678"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-I",
            str(agent),
            "--transport",
            "tcp",
            "--server",
            f"127.0.0.1:{ports['tcp']}",
            "--vm-id",
            "impostor-vm",
            "--token",
            wrong,
            "--log-file",
            str(tmp_path / "impostor.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        notices: list[str] = []
        while time.monotonic() < deadline and not any("impostor-vm" in n for n in notices):
            notices += server.notices()
            time.sleep(0.2)
        rejected = [n for n in notices if "impostor-vm" in n]
        assert rejected, f"no rejection logged: {notices}"
        assert not server.is_connected("impostor-vm")
        assert wrong not in " ".join(notices) and "the-right-token-1234" not in " ".join(notices)
        assert wrong not in caplog.text
        kw(vlib, "Type Text", vm, "echo still-fine\n", verify=True)  # the right VM is unaffected
    finally:
        proc.terminate()
        proc.wait(timeout=10)
