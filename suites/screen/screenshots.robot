*** Settings ***
Documentation    Screenshots of the guest's display, embedded in log.html: a 720x400 image of the text console
...              that changes when the console does.

Library          OperatingSystem
Resource         ../../resources/screen.resource

Suite Setup      Use A Lab VM Ready For Typing
Test Setup       Log Test VM

Test Tags        area:screen    speed:fast


*** Test Cases ***
Screenshot Of The Console Is Embedded In The Log
    [Tags]    smoke
    Write On Console Screen    ATPLibrary screenshot on ${VM}
    Wait Until Keyword Succeeds    10s    0.5s    Screen Should Not Be Blank    ${VM}
    ${path}=    Take Screenshot    ${VM}
    File Should Exist    ${path}
    ${size}=    Evaluate    PIL.Image.open($path).size    modules=PIL.Image
    Should Be Equal    ${size}    ${{ (720, 400) }}

Screenshot Changes When The Screen Changes
    Clear Console Screen
    ${first}=    Take Screenshot    ${VM}    before.png
    Write On Console Screen    something new on the screen    clear=${False}
    Wait Until Keyword Succeeds    10s    0.5s    Screen Should Differ From    ${first}
