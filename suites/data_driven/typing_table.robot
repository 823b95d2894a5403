*** Settings ***
Documentation     Typing driven by a table: each row of ``typing_table.csv`` (next to this file) is one test that
...               types a string into ``cat`` on the guest's console, presses key combos, and checks the file
...               the guest wrote; every keyword is confirmed by the guest's verification agent too.
...
...               The table is **UTF-8** and **comma-separated** with Python's ``csv`` dialect **excel**: cells
...               holding commas are in double quotes, a double quote inside them is doubled. DataDriver's
...               own default is ``Excel-EU`` (semicolons) and ``cp1252``, so both are given explicitly below
...               (failure kind 9: a comma table read with the default dialect is one column).
...               Columns: ``*** Test Cases ***`` (test name), ``${text}`` (typed as written), ``${keys}``
...               (combos pressed after it, separated by spaces, e.g. ``BACKSPACE ctrl+w``), ``${expected}``
...               (the line the file must hold), ``[Tags]``, ``[Documentation]``.
...
...               Under pabot it runs with or without ``--testlevelsplit``; with it, give ``--pabotlib``
...               (DataDriver then hands groups of rows to the pabot processes; each row runs once).

Library           DataDriver    file=typing_table.csv    encoding=utf_8    dialect=excel
Resource          ../../resources/verification.resource

Suite Setup       Use A Lab VM With Its Verification Agent
Suite Teardown    Stop Verifying
Test Setup        Log Test VM
Test Template     Type A Row Of The Table

Test Tags         area:data_driven    speed:fast


*** Test Cases ***
Typing table row    ${EMPTY}    ${EMPTY}    ${EMPTY}
    # Keeps this suite in `--include smoke` runs; only the rows tagged smoke in the table carry it.
    [Tags]    smoke


*** Keywords ***
Type A Row Of The Table
    [Documentation]    One row: ``${text}`` typed, ``${keys}`` pressed, ``${expected}`` in the file. Fails at once
    ...    when DataDriver did not read the table (this test would otherwise be the bare template).
    [Arguments]    ${text}    ${keys}    ${expected}
    Variable Should Exist    ${DataDriver_DATA_LIST}
    ...    msg=DataDriver did not read typing_table.csv (see the errors above this test)
    Typed Line With Keys Should Land In File    ${text}    ${keys}    ${expected}
