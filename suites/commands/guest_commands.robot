*** Settings ***
Documentation    Commands in the guest through the QEMU guest agent: exit code, stdout, stderr, timeouts.

Resource         ../../resources/lab.resource

Suite Setup      Use A Lab VM For This Suite
Test Setup       Log Test VM

Test Tags        area:commands    speed:fast


*** Test Cases ***
Command Output Is Read After The Command Exits
    [Documentation]    Failure kind 4: output printed after a delay is not lost.
    [Tags]    smoke
    ${result}=    Execute Command In Guest    ${VM}    sleep 1; echo x
    Should Be Equal    ${result.stdout}    x\n
    Should Be Equal As Integers    ${result.rc}    0

Standard Error And Exit Code Are Returned
    ${result}=    Execute Command In Guest    ${VM}    echo out; echo err >&2; exit 3    expected_rc=3
    Should Be Equal    ${result.stdout}    out\n
    Should Be Equal    ${result.stderr}    err\n
    Should Be Equal As Integers    ${result.rc}    3

Unexpected Exit Code Fails With The Error Output
    Run Keyword And Expect Error    *exited with rc 2*No such file*
    ...    Execute Command In Guest    ${VM}    ls /does-not-exist

Any Exit Code Can Be Accepted
    ${result}=    Execute Command In Guest    ${VM}    exit 7    expected_rc=any
    Should Be Equal As Integers    ${result.rc}    7

A Command That Never Exits Fails Within Its Timeout
    ${started}=    Get Time    epoch
    Run Keyword And Expect Error    *did not finish within 3 seconds*killed*
    ...    Execute Command In Guest    ${VM}    sleep 600    timeout=3s
    ${elapsed}=    Evaluate    time.time() - ${started}    modules=time
    Should Be True    ${elapsed} < 10    the timeout took ${elapsed} s
    ${left}=    Execute Command In Guest    ${VM}    pgrep -fx 'sleep 600'    expected_rc=any
    Should Not Be Equal As Integers    ${left.rc}    0    msg=the timed-out command still runs in the guest

Guest Identity Is The VM Name
    [Documentation]    The lab sets the SMBIOS serial to the VM name; the guest takes it as its hostname.
    ${result}=    Execute Command In Guest    ${VM}    hostname
    Should Be Equal    ${result.stdout}    ${VM}\n
