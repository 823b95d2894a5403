*** Settings ***
Documentation       SPICE 鼠标操作测试
...
...                 Converted by atp scenario convert from the scenario mouse-operations-test
...                 (03-mouse-operations.yaml): one test runs its 7 step(s) in order, each step one keyword line under
...                 a comment with the step's name.
...
...                 Target: a lab VM leased from the pool (Use A Lab VM For This Suite in lab.resource).
...
...                 Failures as in the original executor: a failed command step or a failed check is recorded and the
...                 test goes on (Run Keyword And Continue On Failure), even when the command timed out (the original
...                 stopped then); any other failing step stops the test. The test fails if any step failed.
...
...                 Adapted for the lab: (1) step 3 clicks at (719, 399) instead of (800, 400), which is outside the
...                 lab's 720x400 screen. (2) target_domain 'test-vm' is replaced by a lab VM leased from the pool.
...                 (3) the lab VM's console shell is made ready for typing first (VM Should Be Ready For Typing).
Resource            ../../../../resources/lab.resource
Suite Setup         Set Up Scenario Target
Test Tags           mouse    spice    input


*** Test Cases ***
Mouse Operations Test
    [Documentation]    SPICE 鼠标操作测试
    [Timeout]    130s
    # 1. 左键点击屏幕左上角 (100, 100)
    Click    ${VM}    100    100
    # 2. 等待 1 秒 (wait 1s)
    Sleep    1s    reason=The scenario asks for this fixed pause.
    # 3. 左键点击屏幕中央 (800, 400) (adapted for the lab: (800, 400) is outside its 720x400 screen)
    Click    ${VM}    719    399
    # 4. 等待 1 秒 (wait 1s)
    Sleep    1s    reason=The scenario asks for this fixed pause.
    # 5. 右键点击 (200, 200) - 打开上下文菜单
    Click    ${VM}    200    200    button=right
    # 6. 等待 1 秒 (wait 1s)
    Sleep    1s    reason=The scenario asks for this fixed pause.
    # 7. 按 ESC 键关闭菜单
    Press Keys    ${VM}    esc


*** Keywords ***
Set Up Scenario Target
    [Documentation]    Suite setup: connects and leases the scenario's target.
    Use A Lab VM For This Suite
    VM Should Be Ready For Typing    ${VM}
