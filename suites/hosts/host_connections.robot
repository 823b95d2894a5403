*** Settings ***
Documentation    Host connections: URIs, aliases, and clear errors for bad input.

Resource         ../../resources/lab.resource

Suite Setup      Use A Lab VM For This Suite
Test Setup       Log Test VM

Test Tags        area:hosts    speed:fast


*** Test Cases ***
Hosts Are Switched By Alias
    [Tags]    smoke
    Connect To Host    test:///default    alias=test-driver
    ${state}=    Get VM State    test
    Should Be Equal    ${state}    running
    Switch Host    lab
    ${state}=    Get VM State    ${VM}
    Should Be Equal    ${state}    running
    [Teardown]    Switch Host    lab

Wrong Host URI Fails Naming The URI
    Run Keyword And Expect Error    *nosuchdriver:///system*
    ...    Connect To Host    nosuchdriver:///system    alias=broken

Unknown VM Lists The Defined Domains
    Run Keyword And Expect Error    *atp-lab-0x*${VM}*
    ...    Get VM State    atp-lab-0x
