*** Settings ***
Documentation       错误处理和失败恢复测试
...
...                 Converted by atp scenario convert from the scenario error-handling-test (05-error-handling.yaml):
...                 one test runs its 4 step(s) in order, each step one keyword line under a comment with the step's
...                 name.
...
...                 Target: the VM TARGET_VM (target_domain) on TARGET_HOST, leased with Acquire VM; override them
...                 with --variable TARGET_VM:name --variable TARGET_HOST:uri.
...
...                 Failures as in the original executor: a failed command step or a failed check is recorded and the
...                 test goes on (Run Keyword And Continue On Failure), even when the command timed out (the original
...                 stopped then); any other failing step stops the test. The test fails if any step failed.
Library             ATPLibrary    timeout=30s
Suite Setup         Set Up Scenario Target
Test Tags           error    testing    qga


*** Variables ***
${TARGET_HOST}          qemu:///system
${TARGET_VM}            test-vm


*** Test Cases ***
Error Handling Test
    [Documentation]    错误处理和失败恢复测试
    [Timeout]    60s
    # 1. 成功的命令 - 应该通过
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}
    ...    echo 'This command will succeed' && exit 0    timeout=10s
    # 2. 失败的命令 - 应该失败
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}    echo 'This command will fail' && exit 1
    ...    timeout=10s
    # 3. 这一步不应该执行 (wait 1s)
    Sleep    1s    reason=The scenario asks for this fixed pause.
    # 4. 这一步也不应该执行
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}    echo 'This should not run'
    ...    timeout=10s


*** Keywords ***
Set Up Scenario Target
    [Documentation]    Suite setup: connects and leases the scenario's target.
    Connect To Host    ${TARGET_HOST}
    ${vm}=    Acquire VM    ${TARGET_VM}
    VAR    ${VM}=    ${vm}    scope=SUITE
