*** Settings ***
Documentation       Runs on every matching VM; stops at the first failing VM
...
...                 Converted by atp scenario convert from the scenario multi-target-commands (multi-target.json): one
...                 test runs its 4 step(s) in order, each step one keyword line under a comment with the step's name.
...
...                 Target: each VM of the VMs given as TARGET_CANDIDATES that target_domains selects, one after the
...                 other (the original ran multi-target scenarios serially); each is leased with Acquire VM; the
...                 first failing VM stops the run (on_failure: stop_all).
...
...                 Failures as in the original executor: a failed command step or a failed check is recorded and the
...                 test goes on (Run Keyword And Continue On Failure), even when the command timed out (the original
...                 stopped then); any other failing step stops the test. The test fails if any step failed.
...
...                 1 step(s) could not be converted and fail with 'Not converted': step 4 (vendor hook): custom
...                 actions have no meaning outside the original (it skipped them as not implemented); write the
...                 keyword line this step stands for.
Library             ATPLibrary    timeout=30s
Library             ATPLibrary.scenario.targets
Suite Setup         Connect To Host    ${TARGET_HOST}
Test Tags           multi


*** Variables ***
${TARGET_HOST}          qemu:///system
@{TARGET_CANDIDATES}    @{EMPTY}


*** Test Cases ***
Multi Target Commands
    [Documentation]    Runs on every matching VM; stops at the first failing VM
    ${targets}=    Select Scenario Targets    @{TARGET_CANDIDATES}    mode=pattern    pattern=atp-lab-0*
    ...    exclude=atp-lab-08    limit=2
    FOR    ${vm}    IN    @{targets}
        Acquire VM    ${vm}
        Verification Agent Should Be Connected    ${vm}    timeout=30s
        Run Multi Target Commands Steps    ${vm}
    END


*** Keywords ***
Run Multi Target Commands Steps
    [Documentation]    The steps of scenario multi-target-commands on one VM.
    [Arguments]    ${vm}
    [Timeout]    110s
    # who am I
    ${command}=    Run Keyword And Continue On Failure    Execute Command In Guest    ${vm}    hostname    timeout=20s
    # it worked (checks the exit code of the command step before it)
    Should Be True    $command is not None and $command.rc == 0
    ...    msg=The command step before this check did not succeed.
    # press Enter
    Press Keys    ${vm}    ret    verify=True
    # vendor hook
    Run Keyword And Continue On Failure    Fail
    ...    Not converted: step 4 (vendor hook): custom actions have no meaning outside the original (it skipped them as not implemented); write the keyword line this step stands for. Original step: {"name": "vendor hook", "action": {"type": "custom", "data": {"plugin": "x", "args": [1, 2]}}, "verify": false, "timeout": null}
    ...    # robocop: off=line-too-long
