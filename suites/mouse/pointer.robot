*** Settings ***
Documentation     Mouse input through QEMU, confirmed inside the guest: every keyword runs with
...               ``verify=True``, so it fails unless the guest's kernel received exactly the pointer events
...               it sent (the tablet's absolute position, the mouse's relative deltas, wheel notches and
...               button presses in order), as reported by the verification agent.

Resource          ../../resources/verification.resource

Suite Setup       Use A Lab VM With Its Verification Agent
Suite Teardown    Stop Verifying
Test Setup        Log Test VM

Test Tags         area:mouse    speed:fast


*** Test Cases ***
Pointer Reaches The Corners And The Middle Of The Screen
    [Documentation]    Absolute moves: the last pixel of each axis is the tablet's maximum (32767).
    [Tags]    smoke
    Move Mouse To    ${VM}    0    0    verify=True
    Move Mouse To    ${VM}    719    399    verify=True
    Move Mouse To    ${VM}    360    200    verify=True

Relative Moves Arrive As The Exact Deltas
    Move Mouse By    ${VM}    10    -5    verify=True
    Move Mouse By    ${VM}    -3    7    verify=True

Each Button Clicks Down And Up
    FOR    ${button}    IN    left    middle    right
        Click    ${VM}    button=${button}    verify=True
    END

Click At A Position Moves There First
    Click    ${VM}    100    50    verify=True
    Click    ${VM}    600    350    button=right    verify=True

Double Click Is Two Full Clicks
    Click    ${VM}    double=True    verify=True

Wheel Turns Both Ways
    Scroll    ${VM}    2    UP    verify=True
    Scroll    ${VM}    1    DOWN    verify=True

Drag Holds The Button From Start To End
    Drag From To    ${VM}    10    20    700    380    steps=4    verify=True

Every Verified Move Records A Latency
    ${before}=    Get Verification Latencies    ${VM}
    Move Mouse To    ${VM}    200    100    verify=True
    Click    ${VM}    verify=True
    ${after}=    Get Verification Latencies    ${VM}
    Should Be Equal As Integers    ${after}[count]    ${{ $before['count'] + 2 }}

Position Outside The Screen Fails Naming The Valid Range
    Run Keyword And Expect Error    *x=720 is outside the screen (0..719 pixels)*
    ...    Move Mouse To    ${VM}    720    0    verify=True
    Run Keyword And Expect Error    *y=400 is outside the screen (0..399 pixels)*
    ...    Move Mouse To    ${VM}    0    400    verify=True

Click With Only One Coordinate Fails
    Run Keyword And Expect Error    *needs both x and y*
    ...    Click    ${VM}    100    verify=True
