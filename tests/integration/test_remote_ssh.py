"""A guest driven through qemu+ssh://root@127.0.0.1/system exactly as through qemu:///system.

The fixture starts a private sshd from Debian's openssh-server on 127.0.0.1:22 (key-only, its own host key
and authorized_keys in a temporary folder) and stops it afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.integration.helpers import kw, type_into_file, wait_console_ready

pytestmark = [pytest.mark.lab, pytest.mark.ssh]

SSH_PORT = 22  # the URI then reads exactly qemu+ssh://root@127.0.0.1/system


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def ssh_uri(lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    problem = None
    if not Path(sshd).exists():
        problem = "sshd is not installed (Debian package openssh-server; `make test` installs it)"
    elif os.geteuid() != 0:
        problem = "the qemu+ssh test logs in as root and needs root to run sshd on port 22"
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    # Port 22 when free; when a system sshd already holds it, our own sshd on a free port (same test).
    port = SSH_PORT if not _port_open(SSH_PORT) else _free_port()
    host = "127.0.0.1" if port == SSH_PORT else f"127.0.0.1:{port}"
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True, timeout=30)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile {d}/sshd.pid\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen([sshd, "-D", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")])
    try:
        deadline = time.monotonic() + 10
        while not _port_open(port):
            assert proc.poll() is None, f"sshd exited: {(d / 'sshd.log').read_text()}"
            assert time.monotonic() < deadline, "sshd did not listen within 10 s"
            time.sleep(0.05)
        # keyfile: our client key; no_verify: the throwaway host key is not in known_hosts; no_tty: never prompt.
        yield f"qemu+ssh://root@{host}/system?keyfile={d}/client_key&no_verify=1&no_tty=1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def remote_library(ssh_uri: str) -> Iterator[Any]:
    from ATPLibrary import ATPLibrary

    lib = ATPLibrary(timeout=timedelta(seconds=30))
    kw(lib, "Connect To Host", ssh_uri, alias="remote")
    yield lib
    kw(lib, "Disconnect All Hosts")


def test_same_keywords_work_over_ssh(remote_library: Any, typing_vm: str, tmp_path: Path) -> None:
    lib, vm = remote_library, typing_vm
    assert kw(lib, "Get VM State", vm) == "running"
    kw(lib, "Guest Agent Should Respond", vm, timeout=30)
    wait_console_ready(lib, vm)
    result = kw(lib, "Execute Command In Guest", vm, "sleep 1; echo x")
    assert (result.rc, result.stdout) == (0, "x\n")
    assert type_into_file(lib, vm, "over ssh: aabbcc  :: <>|") == "over ssh: aabbcc  :: <>|\n"
    kw(lib, "Press Keys", vm, "ENTER")
    path = kw(lib, "Take Screenshot", vm, str(tmp_path / "remote.png"))
    assert Path(path).read_bytes()[:4] == b"\x89PNG"


def test_ssh_connection_is_really_remote(remote_library: Any, ssh_uri: str) -> None:
    """The keywords went through our sshd: libvirt reports the ssh URI and sshd logged the root login."""
    conn = remote_library.ctx.host.open()
    assert conn.getURI().startswith("qemu+ssh://root@127.0.0.1")
    log = Path(ssh_uri.split("keyfile=", 1)[1].split("&", 1)[0]).parent / "sshd.log"
    assert "Accepted publickey for root" in log.read_text()
