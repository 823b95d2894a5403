*** Settings ***
Documentation     VM power through libvirt: state, graceful shutdown, start, destroy, waits. The suite leaves its
...               VM running and ready for typing (reboot and a stopped guest agent: guest_recovery.robot).

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

Destroy Stops The VM At Once
    Destroy VM    ${VM}
    Wait Until VM State    ${VM}    shut off    timeout=10s
    Start VM    ${VM}
    Wait Until VM State    ${VM}    running    timeout=10s

Unknown VM Fails Naming The VM
    Run Keyword And Expect Error    *no-such-vm*    Get VM State    no-such-vm
