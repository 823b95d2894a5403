*** Settings ***
Documentation    Keyboard input through QEMU, proven in a closed loop: keys typed on the guest's
...              console land in a file that is read back through the guest agent.

Resource         ../../resources/console.resource

Suite Setup      Use A Lab VM Ready For Typing
Test Setup       Log Test VM

Test Tags        area:keyboard    speed:fast


*** Variables ***
# \# keeps Robot from reading a comment; ${SPACE} keeps the double space (two spaces separate cells).
${SHIFTED_PUNCTUATION}    Hello_World-42 (a>b) & {x|y} \#~$ tail
${REPEATED_LETTERS}       aabbcc${SPACE}${SPACE}::
${ANGLE_BRACKETS}         1 < 2 and 3 > 2, <tag/>


*** Test Cases ***
Typed Shell Command Writes A File
    [Documentation]    A command typed on the console runs; the file it writes is read back.
    [Tags]    smoke
    Execute Command In Guest    ${VM}    rm -f /tmp/hello
    Type Text    ${VM}    echo typed-by-atp > /tmp/hello\n
    Wait Until Keyword Succeeds    15s    0.2s    Guest File Should Be    /tmp/hello    typed-by-atp\n

Repeated Letters Are Typed Each Time
    [Documentation]    Failure kind 2: ``aabbcc  ::`` must not collapse repeated keys.
    Type Into Console File    ${REPEATED_LETTERS}

Shifted Punctuation Is Typed With Shift
    [Documentation]    Failure kind 1: shifted punctuation arrives shifted, exactly as written.
    Type Into Console File    ${SHIFTED_PUNCTUATION}

Angle Brackets Are Not Swapped
    Type Into Console File    ${ANGLE_BRACKETS}

Every Printable ASCII Character Arrives Exactly
    ${ascii}=    Evaluate    ''.join(chr(c) for c in range(0x20, 0x7f))
    Type Into Console File    ${ascii}

Ctrl+C Interrupts A Running Command
    [Documentation]    ``Press Keys`` sends a combo: Ctrl+C stops ``sleep``; its exit status is 130.
    Execute Command In Guest    ${VM}    rm -f /tmp/status
    Type Text    ${VM}    sleep 60\n
    Wait Until Keyword Succeeds    10s    0.2s
    ...    Execute Command In Guest    ${VM}    pgrep -fx 'sleep 60'
    Press Keys    ${VM}    ctrl+c
    Type Text    ${VM}    echo $? > /tmp/status\n
    Wait Until Keyword Succeeds    10s    0.2s    Guest File Should Be    /tmp/status    130\n

Key Sequence Edits The Command Line
    [Documentation]    Several keys in one call are pressed in order: type, go back, fix, run.
    Execute Command In Guest    ${VM}    rm -f /tmp/seq
    Type Text    ${VM}    echo ac > /tmp/seq
    Press Keys    ${VM}    HOME    RIGHT    RIGHT    RIGHT    RIGHT    RIGHT    RIGHT    b    ENTER
    Wait Until Keyword Succeeds    10s    0.2s    Guest File Should Be    /tmp/seq    abc\n

Unknown Key Name Fails Before Anything Is Sent
    Run Keyword And Expect Error    *ENTERR*ENTER*    Press Keys    ${VM}    ENTERR
