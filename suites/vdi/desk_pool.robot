*** Settings ***
Documentation     A desk pool on the VDI platform, end to end: made from a template with 2 VMs, started
...               through the platform, the guests really boot, a user is bound, the platform and libvirt
...               agree; a VM destroyed behind the platform's back is named by the same check.

Resource          ../../resources/vdi.resource

Suite Setup       Make A Desk Pool Of Two VMs
Suite Teardown    Delete Desk Pool If It Exists    ${POOL}

Test Tags         area:vdi    speed:slow


*** Variables ***
${POOL}         ${EMPTY}
${POOL_NAME}    ${EMPTY}
${VDI_USER}     atpuser


*** Test Cases ***
Pool Holds Two VMs From The Template
    ${pools}=    Get Desk Pools
    Should Contain    ${pools}    ${POOL_NAME}
    ${vms}=    Get Desk Pool VMs    ${POOL}
    Length Should Be    ${vms}    2
    FOR    ${vm}    IN    @{vms}
        ${status}=    Get VDI VM Status    ${vm}
        Should Be Equal    ${status}    off
    END

Started VMs Really Boot
    Start VDI VMs    @{VMS}    timeout=${VDI_BOOT_TIMEOUT}
    FOR    ${vm}    IN    @{VMS}
        Wait Until VDI VM Status    ${vm}    running
        Wait Until VDI VM Guest Agent Responds    ${vm}    timeout=${VDI_BOOT_TIMEOUT}
    END

A User Is Bound To A VM
    Bind User To VDI VM    ${VMS}[0]    ${VDI_USER}
    ${vm}=    Get VDI VM    ${VMS}[0]
    Should Not Be Empty    ${vm.user_id}

SPICE Connection Is The Guest's Console
    ${spice}=    Get SPICE Connection    ${VMS}[1]
    Should Be True    ${spice.port} > 0
    Should Be Equal    ${spice.vm}    ${VMS}[1]

Platform And Libvirt Agree
    VDI And Libvirt Should Agree    pool=${POOL}

A VM Destroyed Behind The Platform's Back Is Named
    ${domain}=    Get VDI VM Domain    ${VMS}[1]
    Destroy VM    ${domain}
    ${error}=    Run Keyword And Expect Error    *
    ...    VDI And Libvirt Should Agree    pool=${POOL}
    Should Contain    ${error}    ${VMS}[1]
    Should Not Contain    ${error}    ${VMS}[0]


*** Keywords ***
Make A Desk Pool Of Two VMs
    [Documentation]    Suite setup: the desk pool (id ``${POOL}``, name ``${POOL_NAME}``) and its VMs ``@{VMS}``.
    Connect To The VDI Platform
    ${name}=    A Unique Desk Pool Name    demo
    ${new_pool}=    Create Desk Pool    ${name}    ${VDI_TEMPLATE}    amount=2
    VAR    ${POOL}=    ${new_pool}    scope=SUITE
    VAR    ${POOL_NAME}=    ${name}    scope=SUITE
    ${names}=    Get Desk Pool VMs    ${new_pool}
    VAR    @{VMS}=    @{names}    scope=SUITE
