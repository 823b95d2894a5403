*** Settings ***
Documentation       QGA 命令执行测试
...
...                 Converted by atp scenario convert from the scenario command-execution-test
...                 (02-command-execution.yaml): one test runs its 5 step(s) in order, each step one keyword line
...                 under a comment with the step's name.
...
...                 Target: the VM TARGET_VM (target_domain) on TARGET_HOST, leased with Acquire VM; override them
...                 with --variable TARGET_VM:name --variable TARGET_HOST:uri.
...
...                 Failures as in the original executor: a failed command step or a failed check is recorded and the
...                 test goes on (Run Keyword And Continue On Failure), even when the command timed out (the original
...                 stopped then); any other failing step stops the test. The test fails if any step failed.
Library             ATPLibrary    timeout=30s
Suite Setup         Set Up Scenario Target
Test Tags           command    qga    basic


*** Variables ***
${TARGET_HOST}          qemu:///system
${TARGET_VM}            test-vm


*** Test Cases ***
Command Execution Test    # robocop: off=could-be-continue-on-failure-tag
    [Documentation]    QGA 命令执行测试
    [Timeout]    50s
    # 1. 执行 echo 命令 (verify: true: the original verified keyboard input only; the exit code 0 is checked)
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}    echo 'Hello from QGA'    timeout=10s
    # 2. 查看系统信息
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}    uname -a    timeout=10s
    # 3. 查看当前时间
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}    date '+%Y-%m-%d %H:%M:%S'    timeout=10s
    # 4. 查看主机名
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}    hostname    timeout=10s
    # 5. 查看 /etc/os-release
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}    cat /etc/os-release | head -n 5
    ...    timeout=10s


*** Keywords ***
Set Up Scenario Target
    [Documentation]    Suite setup: connects and leases the scenario's target.
    Connect To Host    ${TARGET_HOST}
    ${vm}=    Acquire VM    ${TARGET_VM}
    VAR    ${VM}=    ${vm}    scope=SUITE
