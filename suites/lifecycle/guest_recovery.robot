*** Settings ***
Documentation     A guest coming back: a reboot really restarts it, and a guest whose agent stopped fails the
...               agent check within its timeout, then is powered off and started again. The suite leaves its
...               VM running and ready for typing. (A suite of its own, so that pabot runs it beside
...               vm_lifecycle.robot: the two are the longest of the lab suites.)

Resource          ../../resources/lifecycle.resource

Suite Setup       Use A Lab VM For This Suite
Suite Teardown    VM Should Be Ready For Typing
Test Setup        Log Test VM

Test Tags         area:lifecycle    speed:slow


*** Test Cases ***
Reboot Brings The Guest Back
    VM Should Be Ready For Typing
    Execute Command In Guest    ${VM}    touch /run/before-reboot
    Reboot VM    ${VM}
    Wait Until Keyword Succeeds    90s    1s    File Should Be Gone After Reboot

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
