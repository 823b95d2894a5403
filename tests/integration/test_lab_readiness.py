"""Console readiness when a guest's serial log lost its ATP-CONSOLE-READY line (seen twice on guests that tests
restarted): the guest agent's view of /run/atp-console-ready decides, and only for the boot whose agent started."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from ATPLibrary.lab import lab as lab_module
from ATPLibrary.lab.lab import Lab, agent_file_exists, console_status
from tests.integration.helpers import wait_console_ready


class _LogIn(Lab):
    def __init__(self, log: Path) -> None:
        super().__init__(log=lambda message: None)
        self._log = log

    def serial_log(self, name: str) -> Path:
        return self._log


@pytest.mark.lab
def test_a_lost_ready_line_is_recovered_from_the_guest_agent(
    library: object, typing_vm: str, lab: dict[str, object], tmp_path: Path
) -> None:
    wait_console_ready(library, typing_vm)
    conn = libvirt.open(str(lab["uri"]))
    try:
        dom = conn.lookupByName(typing_vm)
        assert agent_file_exists(dom, lab_module.READY_FILE)
        assert not agent_file_exists(dom, "/run/atp-no-such-file")
        log = tmp_path / "serial.log"
        log.write_text("ATP-GUEST-AGENT 3.92\n")  # what the broken logs held
        assert console_status(log) == "booting"
        assert _LogIn(log)._agent_says_ready(conn, typing_vm)
        # Not before this boot's agent started, and not while shutting down.
        log.write_text("")
        assert not _LogIn(log)._agent_says_ready(conn, typing_vm)
        log.write_text("ATP-GUEST-AGENT 3.92\nATP-CONSOLE-READY 8.1 x\nATP-SHUTDOWN 99.0 reboot -> sysrq b\n")
        assert not _LogIn(log)._agent_says_ready(conn, typing_vm)
        # Asked at most every 2 s per guest.
        log.write_text("ATP-GUEST-AGENT 3.92\n")
        checked: dict[str, float] = {}
        assert _LogIn(log)._agent_says_ready(conn, typing_vm, checked)
        assert not _LogIn(log)._agent_says_ready(conn, typing_vm, checked)
    finally:
        conn.close()
