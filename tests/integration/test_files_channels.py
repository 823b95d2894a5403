"""Guest files (qemu-ga guest-file-*) and virtio-serial channels (libvirt channel streams) on a real lab guest.

The channel tests use ``com.atp.test.0``, a free ``<channel type='unix'>`` without a source path on every lab
guest (libvirt picks the host path: the remote-friendly case). In the guest a small Python echo loop answers
on ``/dev/virtio-ports/com.atp.test.0``: a JSON line ``{"data": x}`` gets ``{"result": x}``, any other line
comes back as it is.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ATPLibrary.channels import VirtioChannel, open_channel
from ATPLibrary.errors import (
    ChannelBusyError,
    ChannelClosedError,
    ChannelError,
    ChannelTimeout,
    GuestFileNotFoundError,
)
from ATPLibrary.keywords.channels import ChannelKeywords
from ATPLibrary.keywords.files import FilesKeywords
from tests.conftest import IN_CI
from tests.integration.helpers import kw, wait_console_ready

pytestmark = pytest.mark.lab

CHANNEL = "com.atp.test.0"
ECHO = "/tmp/atp_channel_echo.py"
ECHO_READY = "/tmp/atp_channel_echo.ready"
ECHO_SCRIPT = r"""
import json, os, signal, sys, time
signal.alarm(int(sys.argv[2]))  # never outlive the test
fd = os.open(sys.argv[1], os.O_RDWR)
open(sys.argv[3], "w").close()
buf = b""
while True:
    chunk = os.read(fd, 65536)
    if not chunk:  # no host end connected (yet, or any more): the port reads as end-of-file
        time.sleep(0.02)
        continue
    buf += chunk
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        if line == b"quit":
            sys.exit(0)
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if isinstance(message, dict) and "data" in message:
            line = json.dumps({"result": message["data"]}).encode()
        os.write(fd, line + b"\n")
"""


class Keywords:
    """Runs FilesKeywords / ChannelKeywords through the library when it registers them, else directly."""

    def __init__(self, library: Any) -> None:
        self.library = library
        names = set(library.get_keyword_names())
        self.registered = "Open Channel" in names and "Upload File To Guest" in names
        self.files = FilesKeywords(library.ctx)
        self.channels = ChannelKeywords(library.ctx)

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.registered or name not in _LOCAL:
            return kw(self.library, name, *args, **kwargs)
        owner = self.files if name in _FILE_KEYWORDS else self.channels
        return getattr(owner, _LOCAL[name])(*args, **kwargs)


_FILE_KEYWORDS = {"Upload File To Guest", "Download File From Guest", "Guest File Should Exist"}
_LOCAL = {
    "Upload File To Guest": "upload_file_to_guest",
    "Download File From Guest": "download_file_from_guest",
    "Guest File Should Exist": "guest_file_should_exist",
    "Open Channel": "open_channel",
    "Write To Channel": "write_to_channel",
    "Read From Channel": "read_from_channel",
    "Close Channel": "close_channel",
    "Close All Channels": "close_all_channels",
}


@pytest.fixture()
def ready_vm(library: Any, typing_vm: str) -> str:
    wait_console_ready(library, typing_vm)
    return typing_vm


@pytest.fixture()
def keywords(library: Any) -> Iterator[Keywords]:
    k = Keywords(library)
    yield k
    k("Close All Channels")


# ---------------------------------------------------------------- files


def test_five_mib_random_file_round_trips_byte_for_byte(
    keywords: Keywords, library: Any, ready_vm: str, tmp_path: Path
) -> None:
    data = os.urandom(5 * 1024 * 1024)
    local = tmp_path / "random.bin"
    local.write_bytes(data)
    guest_path = "/tmp/atp-random.bin"
    try:
        result = keywords("Upload File To Guest", ready_vm, str(local), guest_path, checksum=True)
        assert result.size == len(data) and result.checksum_verified
        assert result.chunks == 5 * 1024 // 96 + 1  # 96 KiB per guest-file-write
        print(f"upload: {result}")
        keywords("Guest File Should Exist", ready_vm, guest_path)
        in_guest = kw(library, "Execute Command In Guest", ready_vm, f"sha256sum {guest_path}").stdout.split()[0]
        assert in_guest == hashlib.sha256(data).hexdigest()
        started = time.monotonic()
        back = keywords("Download File From Guest", ready_vm, guest_path, str(tmp_path / "back.bin"))
        print(f"download: 5 MiB in {time.monotonic() - started:.2f} s")
        assert Path(back).read_bytes() == data
    finally:
        kw(library, "Execute Command In Guest", ready_vm, f"rm -f {guest_path}", expected_rc="any")


def test_upload_sets_the_mode(keywords: Keywords, library: Any, ready_vm: str, tmp_path: Path) -> None:
    local = tmp_path / "tool.sh"
    local.write_text("#!/bin/sh\necho tool-ran\n")
    keywords("Upload File To Guest", ready_vm, str(local), "/tmp/atp-tool.sh", mode="0750")
    mode = kw(library, "Execute Command In Guest", ready_vm, "stat -c %a /tmp/atp-tool.sh").stdout.strip()
    assert mode == "750"
    assert kw(library, "Execute Command In Guest", ready_vm, "/tmp/atp-tool.sh").stdout == "tool-ran\n"


def test_missing_guest_file_fails_naming_vm_and_path(keywords: Keywords, ready_vm: str, tmp_path: Path) -> None:
    with pytest.raises(GuestFileNotFoundError) as info:
        keywords("Download File From Guest", ready_vm, "/tmp/atp-no-such-file", str(tmp_path / "x"))
    message = str(info.value)
    assert ready_vm in message and "/tmp/atp-no-such-file" in message and "does not exist" in message
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()
    with pytest.raises(GuestFileNotFoundError, match="/tmp/atp-no-dir/f"):
        keywords("Upload File To Guest", ready_vm, str(_small(tmp_path)), "/tmp/atp-no-dir/f")


def _small(tmp_path: Path) -> Path:
    path = tmp_path / "small.txt"
    path.write_text("small\n")
    return path


# ---------------------------------------------------------------- channels


@pytest.fixture()
def echo_vm(library: Any, ready_vm: str) -> Iterator[str]:
    """``ready_vm`` with the echo loop running on com.atp.test.0 (skipped/failed if the lab lacks the channel)."""
    xml = library.ctx.domain(ready_vm).run(lambda d: d.XMLDesc(0), what="reading the XML", idempotent=True)
    if f"name='{CHANNEL}'" not in xml:
        message = f"{ready_vm} has no channel {CHANNEL}: redeploy the lab"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    agent = library.ctx.agent(ready_vm)
    agent.run_shell(f"cat > {ECHO}", input_data=ECHO_SCRIPT, timeout=30)
    kw(library, "Execute Command In Guest", ready_vm, f"rm -f {ECHO_READY}")
    kw(
        library,
        "Execute Command In Guest",
        ready_vm,
        f"nohup python3 {ECHO} /dev/virtio-ports/{CHANNEL} 120 {ECHO_READY} > /tmp/atp_echo.log 2>&1 &",
    )
    deadline = time.monotonic() + 30
    while kw(library, "Execute Command In Guest", ready_vm, f"test -e {ECHO_READY}", expected_rc="any").rc != 0:
        if time.monotonic() > deadline:
            log = kw(library, "Execute Command In Guest", ready_vm, "cat /tmp/atp_echo.log", expected_rc="any")
            raise AssertionError(f"echo loop did not start: {log.stdout}")
        time.sleep(0.2)
    yield ready_vm
    # stop the loop: a 'quit' line if the channel can still be opened, else signal.alarm ends it
    try:
        with open_channel(library.ctx.domain(ready_vm), CHANNEL, force=True) as channel:
            channel.write(b"quit\n")
            time.sleep(0.2)
    except ChannelError:
        pass


def test_channel_round_trip_raw_line_and_json(keywords: Keywords, echo_vm: str) -> None:
    keywords("Open Channel", echo_vm, CHANNEL)
    keywords("Write To Channel", "hello raw\n")
    assert keywords("Read From Channel", timeout=10) == "hello raw"
    keywords("Close Channel")

    keywords("Open Channel", echo_vm, CHANNEL, mode="line", alias="lines")
    for i in range(20):
        keywords("Write To Channel", f"line {i} " + "x" * 200)
    got = [keywords("Read From Channel", timeout=10) for _ in range(20)]
    assert got == [f"line {i} " + "x" * 200 for i in range(20)]
    keywords("Close Channel", "lines")

    keywords("Open Channel", echo_vm, CHANNEL, mode="json")
    keywords("Write To Channel", "héllo json")
    assert keywords("Read From Channel", timeout=10) == "héllo json"


def test_channel_read_timeout_fails_within_its_bound(keywords: Keywords, echo_vm: str) -> None:
    keywords("Open Channel", echo_vm, CHANNEL, mode="json")
    started = time.monotonic()
    with pytest.raises(ChannelTimeout) as info:
        keywords("Read From Channel", timeout=1)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.0, elapsed
    assert CHANNEL in str(info.value) and echo_vm in str(info.value)
    keywords("Write To Channel", "after the timeout")  # the channel still works
    assert keywords("Read From Channel", timeout=10) == "after the timeout"


def test_second_open_is_busy_and_force_takes_the_channel_over(library: Any, echo_vm: str) -> None:
    target = library.ctx.domain(echo_vm)
    first: VirtioChannel = open_channel(target, CHANNEL, mode="line")
    try:
        with pytest.raises(ChannelBusyError, match="force=True"):
            open_channel(target, CHANNEL)
        second = open_channel(target, CHANNEL, mode="line", force=True)
        try:
            second.send("taken over")
            assert second.receive(10) == "taken over"
            with pytest.raises(ChannelClosedError):
                first.read_line(5)
        finally:
            second.close()
    finally:
        first.close()
