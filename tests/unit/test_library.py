from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import libvirt
import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYWORDS = {
    "Configure VM Pool",
    "Take Guest Lease",
    "Release Guest Lease",
    "Execute PowerShell In Guest",
    "Install PowerShell Stand-In",
    "Set PowerShell Path",
    "Open SPICE Session",
    "Close SPICE Session",
    "Take SPICE Screenshot",
    "Connect To Host",
    "Switch Host",
    "Disconnect From Host",
    "Disconnect All Hosts",
    "Get VM State",
    "Start VM",
    "Shutdown VM",
    "Reboot VM",
    "Destroy VM",
    "Wait Until VM State",
    "Guest Agent Should Respond",
    "Execute Command In Guest",
    "Press Keys",
    "Type Text",
    "Take Screenshot",
    "Screen Should Not Be Blank",
    "Type Secret",
    "Hold Key",
    "Release Key",
    "Set Keyboard Layout",
    "Move Mouse To",
    "Move Mouse By",
    "Click",
    "Scroll",
    "Drag From To",
    "Screen Should Match",
    "Wait Until Screen Matches",
    "Wait Until Screen Changes",
    "Wait Until Screen Is Still",
    "Click On Match",
    "Use QMP Socket",
    "Use Libvirt QMP",
    "Set ATP Timeout",
    "Register Keyword To Run On Failure",
    "Acquire VM",
    "Release VM",
    "Close All Channels",
    "Close Channel",
    "Deploy Verification Agent",
    "Download File From Guest",
    "Get Verification Latencies",
    "Guest File Should Exist",
    "Guest File Should Not Exist",
    "Input Should Be Received",
    "Open Channel",
    "Read Bytes From Channel",
    "Read From Channel",
    "Start Verification Server",
    "Stop Verification Server",
    "Switch Channel",
    "Upload File To Guest",
    "Verification Agent Should Be Connected",
    "Write To Channel",
    "Add VDI VM NIC",
    "Bind User To VDI VM",
    "Clone VDI VM",
    "Connect To VDI",
    "Create Desk Pool",
    "Create VDI VMs From Template",
    "Delete Desk Pool",
    "Delete VDI VMs",
    "Disable Desk Pool",
    "Disconnect From VDI",
    "Enable Desk Pool",
    "Get Desk Pool VMs",
    "Get SPICE Connection",
    "Get VDI VM",
    "Get VDI VM Domain",
    "Get VDI VM Status",
    "Reboot VDI VMs",
    "Remove VDI VM NIC",
    "Resume VDI VMs",
    "Set VDI VM CPU And Memory",
    "Shutdown VDI VMs",
    "Start VDI VMs",
    "Suspend VDI VMs",
    "Unbind User From VDI VM",
    "VDI And Libvirt Should Agree",
    "Wait Until VDI VM Status",
    "Wait Until VDI VM Guest Agent Responds",
    "Get Desk Pools",
    "Get VDI VMs",
}


def test_libdoc_lists_every_keyword() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "robot.libdoc", "ATPLibrary", "list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert set(out.splitlines()) == KEYWORDS  # a new keyword must be added here (and documented)


def test_import_and_instantiation_do_no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []

    def no_open(uri: Any = None) -> Any:
        opened.append(str(uri))
        raise AssertionError("libvirt.open called during import")

    monkeypatch.setattr(libvirt, "open", no_open)
    from ATPLibrary import ATPLibrary

    lib = ATPLibrary(timeout=timedelta(seconds=5))
    assert set(lib.get_keyword_names()) >= KEYWORDS
    assert opened == []
    assert lib.ctx.seconds(None) == 5.0


def test_every_keyword_has_a_summary_and_an_example_table() -> None:
    from ATPLibrary import ATPLibrary

    lib = ATPLibrary()
    for name in lib.get_keyword_names():
        doc = lib.get_keyword_documentation(name)
        assert doc.strip().splitlines()[0].endswith("."), name
        assert "| =Keyword" in doc, name


def test_keywords_in_a_robot_run_on_the_test_driver(tmp_path: Path) -> None:
    suite = tmp_path / "t.robot"
    suite.write_text(
        textwrap.dedent("""\
        *** Settings ***
        Library    ATPLibrary    timeout=5s
        Library    OperatingSystem

        *** Test Cases ***
        Power
            Connect To Host    test:///default    alias=t
            ${s}=    Get VM State    test
            Should Be Equal    ${s}    running
            Destroy VM    test
            Wait Until VM State    test    shut off    timeout=2s
            Start VM    test
            Start VM    test
            Run Keyword And Expect Error    *not reach state 'paused' within 300 ms*last seen state 'running'*
            ...    Wait Until VM State    test    paused    timeout=300ms
            Run Keyword And Expect Error    VM 'tset' not found on host 'test:///default'*Did you mean 'test'*
            ...    Get VM State    tset
            Run Keyword And Expect Error    Unknown key name 'ENTRE'*ENTER*
            ...    Press Keys    test    ENTRE

        Screenshot
            ${path}=    Take Screenshot    test
            File Should Exist    ${path}
            Should Start With    ${path}    ${OUTPUT DIR}
            Screen Should Not Be Blank    test
            Disconnect All Hosts
        """)
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "robot",
            "--outputdir",
            str(tmp_path / "out"),
            "--output",
            "output.xml",
            str(suite),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    output = (tmp_path / "out" / "output.xml").read_text()
    embedded = '&lt;a href="test-screenshot-1.png"&gt;&lt;img src="data:image/png;base64,'
    assert 'html="true"' in output and embedded in output
    assert (tmp_path / "out" / "test-screenshot-1.png").read_bytes().startswith(b"\x89PNG")
