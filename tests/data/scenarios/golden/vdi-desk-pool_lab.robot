*** Settings ***
Documentation       Desk pool lifecycle on the VDI platform
...
...                 Converted by atp scenario convert from the scenario vdi-desk-pool-lifecycle (vdi-desk-pool.yaml):
...                 one test runs its 13 step(s) in order, each step one keyword line under a comment with the step's
...                 name.
...
...                 Target: no step drives a VM, so no VM is leased.
...
...                 Failures as in the original executor: a failed command step or a failed check is recorded and the
...                 test goes on (Run Keyword And Continue On Failure), even when the command timed out (the original
...                 stopped then); any other failing step stops the test. The test fails if any step failed.
Resource            ../../../../resources/vdi.resource
Suite Setup         Connect To The VDI Platform
Test Tags           vdi    desk-pool


*** Test Cases ***
Vdi Desk Pool Lifecycle    # robocop: off=too-long-test-case,too-many-calls-in-test-case
    [Documentation]    Desk pool lifecycle on the VDI platform
    [Timeout]    1020s
    # Create a desk pool of 2 VMs
    Create Desk Pool    scn-pool    atp-lab-image    amount=2    timeout=180s
    # Enable the desk pool
    Enable Desk Pool    scn-pool
    # List the pool's VMs
    Get Desk Pool VMs    scn-pool
    # Start the first VM
    Start VDI VMs    scn-pool-1    timeout=120s
    # Start the second VM
    Start VDI VMs    scn-pool-2    timeout=120s
    # Every VM of the pool runs
    Run Keyword And Continue On Failure    All Desk Pool VMs Should Be Running    scn-pool    timeout=60s
    # libvirt agrees: the domain of scn-pool-1 runs
    Run Keyword And Continue On Failure    VDI VM Domain Should Be    scn-pool-1    running    timeout=30s
    # Bind a user
    Bind User To VDI VM    scn-pool-1    atpuser
    # Reboot the first VM
    Reboot VDI VMs    scn-pool-1    timeout=180s
    # Shut the second VM down
    Shutdown VDI VMs    scn-pool-2    timeout=180s
    # Delete the second VM
    Delete VDI VMs    scn-pool-2
    # Disable the desk pool
    Disable Desk Pool    scn-pool
    # Delete the desk pool (and its VMs)
    Delete Desk Pool    scn-pool


*** Keywords ***
VDI VM Domain Should Be
    [Documentation]    verify_domain_status in a VDI scenario: the libvirt domain behind VDI VM vm reaches state
    ...                within timeout.
    [Arguments]    ${vm}    ${state}    ${timeout}=${NONE}
    ${domain}=    Get VDI VM Domain    ${vm}
    Wait Until VM State    ${domain}    ${state}    timeout=${timeout}

All Desk Pool VMs Should Be Running
    [Documentation]    verify_all_domains_running: every VDI VM of desk pool pool shows running within timeout. An
    ...                empty pool fails (the original passed it without looking).
    [Arguments]    ${pool}    ${timeout}=${NONE}
    @{vms}=    Get Desk Pool VMs    ${pool}
    Should Not Be Empty    ${vms}    msg=Desk pool ${pool} has no VDI VMs.
    FOR    ${vdi_vm}    IN    @{vms}
        Run Keyword And Continue On Failure    Wait Until VDI VM Status    ${vdi_vm}    running    timeout=${timeout}
    END
