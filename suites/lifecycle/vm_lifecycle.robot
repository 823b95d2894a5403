*** Settings ***
Documentation     VM lifecycle through libvirt: state, graceful shutdown, start, reboot, destroy, waits.
...               The suite leaves its VM running and ready for typing.

Resource          ../../resources/lifecycle.resource

Suite Setup       Use A Lab VM For This Suite
Suite Teardown    VM Should Be Ready For Typing
Test Setup        Log Test VM

Test Tags         area:lifecycle    speed:slow


*** Test Cases ***
Running VM Reports Its State
    [Tags]    smoke
    Start VM    ${VM}
    ${state}=    Get VM State    ${VM}
    Should Be Equal    ${state}    running

Graceful Shutdown Waits Until Shut Off
    Guest Agent Should Respond    ${VM}    timeout=60s
    Shutdown VM    ${VM}    timeout=60s
    ${state}=    Get VM State    ${VM}
    Should Be Equal    ${state}    shut off

Guest Agent Responds Right After Start
    [Documentation]    Failure kind 6: the agent is not connected at first; the keyword waits for it.
    Start VM    ${VM}
    Guest Agent Should Respond    ${VM}    timeout=90s

Reboot Brings The Guest Back
    VM Should Be Ready For Typing
    Execute Command In Guest    ${VM}    touch /run/before-reboot
    Reboot VM    ${VM}
    Wait Until Keyword Succeeds    90s    1s    File Should Be Gone After Reboot

Destroy Stops The VM At Once
    Destroy VM    ${VM}
    Wait Until VM State    ${VM}    shut off    timeout=10s
    Start VM    ${VM}
    Wait Until VM State    ${VM}    running    timeout=10s

Stopped Guest Agent Fails Clearly Within Its Timeout
    [Documentation]    Failure kind 6, the other half: with qemu-ga stopped the keyword fails by its timeout.
    Guest Agent Should Respond    ${VM}    timeout=90s
    # qemu-ga stops a moment after answering this command (killing it at once would lose the answer).
    Execute Command In Guest    ${VM}    (sleep 0.5; kill $(cat /run/qemu-ga.pid)) >/dev/null 2>&1 &
    Wait Until Keyword Succeeds    15s    0.5s    Guest Agent Should Be Gone
    ${started}=    Get Time    epoch
    Run Keyword And Expect Error    *guest agent not responding*
    ...    Guest Agent Should Respond    ${VM}    timeout=5s
    ${elapsed}=    Evaluate    time.time() - ${started}    modules=time
    Should Be True    4 <= ${elapsed} < 15    failed after ${elapsed} s, expected about 5 s
    [Teardown]    Restart VM After Test

Unknown VM Fails Naming The VM
    Run Keyword And Expect Error    *no-such-vm*    Get VM State    no-such-vm
