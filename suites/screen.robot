*** Settings ***
Documentation       Screenshots of the guest's display, embedded in log.html.
Library             OperatingSystem
Resource            ../resources/lab.resource
Suite Setup         Prepare Screen Suite
Test Setup          Log Test VM
Test Tags           area:screen    speed:fast


*** Test Cases ***
Screenshot Of The Console Is Embedded In The Log
    [Tags]    smoke
    Execute Command In Guest    ${VM}    rm -f /tmp/shown
    Type Text    ${VM}    clear; echo ATPLibrary screenshot on ${VM}; touch /tmp/shown\n
    Wait Until Keyword Succeeds    10s    0.2s    Execute Command In Guest    ${VM}    test -e /tmp/shown
    Wait Until Keyword Succeeds    10s    0.5s    Screen Should Not Be Blank    ${VM}
    ${path}=    Take Screenshot    ${VM}
    File Should Exist    ${path}

Screenshot Changes When The Screen Changes
    Type Text    ${VM}    clear\n
    ${first}=    Take Screenshot    ${VM}    before.png
    Type Text    ${VM}    echo something new on the screen\n
    Wait Until Keyword Succeeds    10s    0.5s    Screen Should Differ From    ${first}


*** Keywords ***
Prepare Screen Suite
    [Documentation]    Picks this process's VM and waits until its console takes typing.
    Use This Process's Lab VM
    VM Should Be Ready For Typing

Screen Should Differ From
    [Documentation]    Fails when a new screenshot is byte-identical to the one at ``${path}``.
    [Arguments]    ${path}
    ${now}=    Take Screenshot    ${VM}    after.png
    ${same}=    Evaluate    pathlib.Path($path).read_bytes() == pathlib.Path($now).read_bytes()    modules=pathlib
    Should Not Be True    ${same}    the screen did not change
