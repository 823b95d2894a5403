*** Settings ***
Documentation       QMP 键盘输入基础测试
...
...                 Converted by atp scenario convert from the scenario basic-keyboard-test (01-basic-keyboard.yaml):
...                 one test runs its 5 step(s) in order, each step one keyword line under a comment with the step's
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
Test Tags           keyboard    qmp    basic


*** Test Cases ***
Basic Keyboard Test
    [Documentation]    QMP 键盘输入基础测试
    [Timeout]    90s
    # 1. 发送 Enter 键
    Press Keys    ${VM}    ret
    # 2. 等待 500ms (wait 1s)
    Sleep    1s    reason=The scenario asks for this fixed pause.
    # 3. 发送 'hello' 文本
    Type Text    ${VM}    hello
    # 4. 等待 500ms (wait 1s)
    Sleep    1s    reason=The scenario asks for this fixed pause.
    # 5. 发送 Enter 键确认
    Press Keys    ${VM}    ret


*** Keywords ***
Set Up Scenario Target
    [Documentation]    Suite setup: connects and leases the scenario's target.
    Use A Lab VM For This Suite
    VM Should Be Ready For Typing    ${VM}
