*** Settings ***
Documentation    Screenshots of the guest's display, embedded in log.html.

Library          OperatingSystem
Resource         ../../resources/screen.resource

Suite Setup      Use A Lab VM Ready For Typing
Test Setup       Log Test VM

Test Tags        area:screen    speed:fast


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
