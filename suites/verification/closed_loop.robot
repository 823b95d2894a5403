*** Settings ***
Documentation     Closed-loop verification: the verification agent in the guest reports what the guest's
...               kernel received, and a verified keyword fails unless it is exactly what was sent.

Resource          ../../resources/verification.resource

Suite Setup       Use A Lab VM With Its Verification Agent
Suite Teardown    Stop Verifying
Test Setup        Log Test VM

Test Tags         area:verification    speed:fast


*** Test Cases ***
Typed Command Is Verified Key By Key
    [Tags]    smoke
    Type Text    ${VM}    echo verified > /tmp/verified.txt\n    verify=True
    Wait Until Keyword Succeeds    10s    0.2s    Guest File Should Be    /tmp/verified.txt    verified\n

Shifted Punctuation Is Verified
    Type Text    ${VM}    echo 'a<b> {c|d} ~!@#$%^&*()_+' > /dev/null\n    verify=True

Unverified Typing Is Checked Afterwards
    [Documentation]    A typo sent without verification is caught by `Input Should Be Received`.
    Type Text    ${VM}    abcXef
    Run Keyword And Expect Error    *Position 4: expected 'd', received 'X'*
    ...    Input Should Be Received    ${VM}    abcdef    timeout=3s
    [Teardown]    Press Keys    ${VM}    ctrl+c

Mouse Input Is Verified
    Move Mouse To    ${VM}    360    200    verify=True
    Click    ${VM}    button=right    verify=True
    Scroll    ${VM}    2    verify=True
    ${latencies}=    Get Verification Latencies    ${VM}
    Should Be True    ${latencies}[count] >= 2
