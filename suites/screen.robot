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
    Show On Console    clear; echo ATPLibrary screenshot on ${VM}
    Wait Until Keyword Succeeds    10s    0.5s    Screen Should Not Be Blank    ${VM}
    ${path}=    Take Screenshot    ${VM}
    File Should Exist    ${path}

Screenshot Changes When The Screen Changes
    Show On Console    clear
    ${first}=    Take Screenshot    ${VM}    before.png
    Show On Console    echo something new on the screen
    Screen Should Differ From    ${first}


*** Keywords ***
Prepare Screen Suite
    [Documentation]    Picks this process's VM and waits until its console takes typing.
    Use A Lab VM For This Suite
    VM Should Be Ready For Typing

Show On Console
    [Documentation]    Runs ``${command}`` on the console and waits until it has run (its marker file exists).
    [Arguments]    ${command}
    Execute Command In Guest    ${VM}    rm -f /tmp/shown
    Type Text    ${VM}    ${command}; touch /tmp/shown\n
    Wait Until Keyword Succeeds    10s    0.2s    Execute Command In Guest    ${VM}    test -e /tmp/shown

Screen Should Differ From
    [Documentation]    Fails when a new screenshot is byte-identical to the one at ``${path}``.
    [Arguments]    ${path}
    ${now}=    Take Screenshot    ${VM}    after.png
    ${same}=    Evaluate    pathlib.Path($path).read_bytes() == pathlib.Path($now).read_bytes()    modules=pathlib
    Should Not Be True    ${same}    the screen did not change
