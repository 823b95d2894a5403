*** Settings ***
Documentation       混合协议操作测试 (QMP + QGA + SPICE)
...
...                 Converted by atp scenario convert from the scenario mixed-protocol-test (04-mixed-protocols.yaml):
...                 one test runs its 10 step(s) in order, each step one keyword line under a comment with the step's
...                 name.
...
...                 Target: a lab VM leased from the pool (Use A Lab VM For This Suite in lab.resource).
...
...                 Failures as in the original executor: a failed command step or a failed check is recorded and the
...                 test goes on (Run Keyword And Continue On Failure), even when the command timed out (the original
...                 stopped then); any other failing step stops the test. The test fails if any step failed.
...
...                 Adapted for the lab: (1) target_domain 'test-vm' is replaced by a lab VM leased from the pool. (2)
...                 the lab VM's console shell is made ready for typing first (VM Should Be Ready For Typing).
Resource            ../../../../resources/lab.resource
Suite Setup         Set Up Scenario Target
Test Tags           integration    qmp    qga    spice


*** Test Cases ***
Mixed Protocol Test    # robocop: off=too-long-test-case
    [Documentation]    混合协议操作测试 (QMP + QGA + SPICE)
    [Timeout]    180s
    # 1. QGA: 获取系统信息
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}
    ...    echo '=== System Information ===' && uname -a && echo ''    timeout=10s
    # 2. 等待 1 秒 (wait 1s)
    Sleep    1s    reason=The scenario asks for this fixed pause.
    # 3. QGA: 查看内存使用
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}    free -h    timeout=10s
    # 4. 等待 1 秒 (wait 1s)
    Sleep    1s    reason=The scenario asks for this fixed pause.
    # 5. SPICE: 鼠标点击激活窗口
    Click    ${VM}    500    300
    # 6. 等待 1 秒 (wait 1s)
    Sleep    1s    reason=The scenario asks for this fixed pause.
    # 7. QMP: 发送键盘输入
    Type Text    ${VM}    test
    # 8. QMP: 发送 Enter 键
    Press Keys    ${VM}    ret
    # 9. 等待 2 秒 (wait 2s)
    Sleep    2s    reason=The scenario asks for this fixed pause.
    # 10. QGA: 验证测试完成
    Run Keyword And Continue On Failure    Execute Command In Guest    ${VM}
    ...    echo 'Mixed protocol test completed successfully' && date    timeout=10s


*** Keywords ***
Set Up Scenario Target
    [Documentation]    Suite setup: connects and leases the scenario's target.
    Use A Lab VM For This Suite
    VM Should Be Ready For Typing    ${VM}
