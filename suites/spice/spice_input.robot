*** Settings ***
Documentation     Input through our own SPICE client, the way VDI users send it: a session to the leased
...               guest's SPICE server over TLS (the lab's CA), keys typed and pressed through its inputs
...               channel and confirmed by the guest's verification agent, and a screenshot of what the
...               SPICE client sees. The SPICE password comes from the live domain XML and never shows
...               in the logs.

Resource          ../../resources/spice.resource

Suite Setup       Open SPICE Session On The Suite VM
Suite Teardown    Close SPICE Session On The Suite VM
Test Setup        Log Test VM

Test Tags         area:spice    speed:fast


*** Variables ***
${SPICE_TEXT}    Hello via SPICE: {x|y} <a> ~42!


*** Test Cases ***
Typed Text Via SPICE Is Verified And Lands In A File
    [Documentation]    Every character reaches the guest's kernel (verified) and the console (the file).
    Type Into Console File Via SPICE    ${SPICE_TEXT}

Key Combo Via SPICE Interrupts A Running Command
    [Documentation]    A verified Ctrl+C through the SPICE inputs channel stops ``sleep``: exit status 130.
    Execute Command In Guest    ${VM}    rm -f /tmp/status
    Type Text    ${VM}    sleep 60\n    via=spice    verify=True
    Wait Until Keyword Succeeds    10s    0.2s
    ...    Execute Command In Guest    ${VM}    pgrep -fx 'sleep 60'
    Press Keys    ${VM}    ctrl+c    via=spice    verify=True
    Type Text    ${VM}    echo $? > /tmp/status\n    via=spice    verify=True
    Wait Until Keyword Succeeds    10s    0.2s    Guest File Should Be    /tmp/status    130\n

SPICE Screenshot Shows The Console
    [Documentation]    The display channel's primary surface: the lab's 720x400 text console, in the log.
    ${path}=    Take SPICE Screenshot    ${VM}
    ${size}=    Evaluate    PIL.Image.open($path).size    modules=PIL.Image
    Should Be Equal    ${size}    ${{ (720, 400) }}
