"""ATPLibrary inside real Robot runs on a lab guest: run-on-failure screenshots, held keys released at the
end of a test, secrets never written to output.xml or log.html, Set ATP Timeout."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

SECRET = "S3cr3t-Pa55_w0rd!"

SUITE = """\
*** Settings ***
Library    ATPLibrary    timeout=30s
Suite Setup    Connect To Host    {uri}

*** Variables ***
${{VM}}    {vm}

*** Test Cases ***
A Failing Keyword Leaves A Screenshot
    Execute Command In Guest    ${{VM}}    exit 3

Shift Held And Not Released
    Execute Command In Guest    ${{VM}}    rm -f /tmp/held.txt
    Type Text    ${{VM}}    cat > /tmp/held.txt\\n
    Wait Until Keyword Succeeds    10s    0.1s    Execute Command In Guest    ${{VM}}    test -e /tmp/held.txt
    Hold Key    ${{VM}}    shift

Keys Are Released Between Tests
    Type Text    ${{VM}}    abc\\n
    Press Keys    ${{VM}}    ctrl+d
    Wait Until Keyword Succeeds    10s    0.2s    Held File Is    abc\\n

Secret Is Typed But Never Logged
    VAR    ${{password: Secret}}    %{{ATP_TEST_SECRET}}
    Execute Command In Guest    ${{VM}}    rm -f /tmp/secret.txt
    Type Text    ${{VM}}    cat > /tmp/secret.txt\\n
    Wait Until Keyword Succeeds    10s    0.1s    Execute Command In Guest    ${{VM}}    test -e /tmp/secret.txt
    Type Secret    ${{VM}}    ${{password}}
    Type Text    ${{VM}}    \\n
    Press Keys    ${{VM}}    ctrl+d
    Wait Until Keyword Succeeds    10s    0.2s    Secret File Matches

Set ATP Timeout Changes The Default And Returns The Old One
    ${{old}}=    Set ATP Timeout    2s
    Run Keyword And Expect Error    *within 2 seconds*    Execute Command In Guest    ${{VM}}    sleep 30
    Set ATP Timeout    ${{old}}

*** Keywords ***
Held File Is
    [Arguments]    ${{expected}}
    ${{r}}=    Execute Command In Guest    ${{VM}}    cat /tmp/held.txt
    Should Be Equal    ${{r.stdout}}    ${{expected}}

Secret File Matches
    [Documentation]    Compares a digest, so that not even this check writes the secret to the log.
    ${{r}}=    Execute Command In Guest    ${{VM}}    sha256sum < /tmp/secret.txt
    Should Start With    ${{r.stdout}}    {digest}
"""


def test_library_behaviour_in_a_real_robot_run(lab: dict[str, Any], typing_vm: str, tmp_path: Path) -> None:
    from ATPLibrary import ATPLibrary
    from tests.integration.helpers import wait_console_ready

    lib = ATPLibrary()
    lib.run_keyword("Connect To Host", [lab["uri"]], {})
    wait_console_ready(lib, typing_vm)
    suite = tmp_path / "library_in_robot.robot"
    digest = hashlib.sha256((SECRET + "\n").encode()).hexdigest()
    suite.write_text(SUITE.format(uri=lab["uri"], vm=typing_vm, digest=digest))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "robot", "--loglevel", "TRACE", "--outputdir", str(out), str(suite)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "ATP_TEST_SECRET": SECRET},
        check=False,
    )
    output = (out / "output.xml").read_text()
    # Exactly the first test fails (on purpose); everything else passes.
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "A Failing Keyword Leaves A Screenshot" in output
    assert output.count('status="FAIL"') >= 1
    for name in (
        "Keys Are Released Between Tests",
        "Secret Is Typed But Never Logged",
        "Set ATP Timeout Changes The Default And Returns The Old One",
    ):
        block = output.split(f'name="{name}"', 1)[1].split("</test>", 1)[0]
        assert block.rsplit("<status ", 1)[1].startswith('status="PASS"'), f"{name} did not pass"
    # Run-on-failure: a screenshot of the VM is linked from the log of the failing test.
    first = output.split('name="A Failing Keyword Leaves A Screenshot"', 1)[1].split("</test>", 1)[0]
    assert "&lt;img" in first and "data:image/png;base64," in first  # embedded; escaped in the XML
    assert any(out.glob("*.png"))
    # The secret never reaches output.xml or log.html, even at TRACE level.
    assert SECRET not in output
    assert SECRET not in (out / "log.html").read_text()
