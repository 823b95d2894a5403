"""Scenario loader and converter without VMs: each of the 19 action types, targets, failure semantics,
adaptations, Robot escaping, error messages for bad input, and the ``atp scenario`` command line."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from robot.run import run as robot_run

from ATPLibrary.cli.main import main
from ATPLibrary.cli.scenario import robot_exit
from ATPLibrary.errors import ConfigurationError
from ATPLibrary.scenario import ConvertOptions, ScenarioError, convert_scenario, load_scenario, parse_scenario
from ATPLibrary.scenario.model import ACTION_FIELDS, ActionType
from ATPLibrary.scenario.robotfmt import cell
from ATPLibrary.scenario.targets import select_scenario_targets

DATA = Path(__file__).resolve().parents[1] / "data" / "scenarios"
CONTINUE = "Run Keyword And Continue On Failure"


def scenario(*steps: dict[str, Any], **top: Any) -> str:
    return yaml.safe_dump(
        {"name": "unit", "target_domain": "vm-1", **top, "steps": list(steps)}, allow_unicode=True, sort_keys=False
    )


def step(kind: str, **fields: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {k: fields.pop(k) for k in ("verify", "timeout") if k in fields}
    if "step_name" in fields:
        extra["name"] = fields.pop("step_name")
    return {"action": {"type": kind, **fields}, **extra}


def convert(text: str, **options: Any) -> Any:
    return convert_scenario(parse_scenario(text), ConvertOptions(**options))


def body(text: str, **options: Any) -> list[str]:
    """The keyword lines of the converted test (comments and settings dropped), continuation lines joined."""
    suite = convert(text, **options).text
    lines = suite.split("*** Test Cases ***")[1].split("*** Keywords ***")[0].splitlines()[1:]
    out: list[str] = []
    for raw in lines:
        if not raw.startswith(" "):
            continue  # the test's name
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", "[")):
            continue
        if stripped.startswith("..."):
            out[-1] += "    " + stripped[3:].strip()
        else:
            out.append(stripped)
    return out


# ---------------------------------------------------------------------- the 19 action types
ONE_LINE: list[tuple[dict[str, Any], str]] = [
    (step("send_key", key="ret"), "Press Keys    ${VM}    ret"),
    (step("send_key", key="esc", verify=True), "Press Keys    ${VM}    esc    verify=True"),
    (step("send_text", text="hello"), "Type Text    ${VM}    hello"),
    (step("send_text", text="a  b", verify=True), "Type Text    ${VM}    a ${SPACE}b    verify=True"),
    (step("mouse_click", x=100, y=100, button="left"), "Click    ${VM}    100    100"),
    (step("mouse_click", x=200, y=200, button="right"), "Click    ${VM}    200    200    button=right"),
    (step("mouse_click", x=5, y=6, button="middle"), "Click    ${VM}    5    6    button=middle"),
    (
        step("exec_command", command="uname -a", timeout=10),
        f"{CONTINUE}    Execute Command In Guest    ${{VM}}    uname -a    timeout=10s",
    ),
    (step("wait", duration=2), "Sleep    2s    reason=The scenario asks for this fixed pause."),
    (
        step("vdi_create_desk_pool", name="p", template_id="tpl", count=3, timeout=120),
        "Create Desk Pool    p    tpl    amount=3    timeout=120s",
    ),
    (step("vdi_enable_desk_pool", pool_id="p"), "Enable Desk Pool    p"),
    (step("vdi_disable_desk_pool", pool_id="p"), "Disable Desk Pool    p"),
    (step("vdi_delete_desk_pool", pool_id="p"), "Delete Desk Pool    p"),
    (step("vdi_start_domain", domain_id="d", timeout=60), "Start VDI VMs    d    timeout=60s"),
    (step("vdi_shutdown_domain", domain_id="d"), "Shutdown VDI VMs    d"),
    (step("vdi_reboot_domain", domain_id="d", timeout=5), "Reboot VDI VMs    d    timeout=5s"),
    (step("vdi_delete_domain", domain_id="d"), "Delete VDI VMs    d"),
    (step("vdi_bind_user", domain_id="d", user_id="u1"), "Bind User To VDI VM    d    u1"),
    (step("vdi_get_desk_pool_domains", pool_id="p"), "Get Desk Pool VMs    p"),
    (
        step("verify_domain_status", domain_id="d", expected_status="Running", timeout_secs=7),
        f"{CONTINUE}    Wait Until VM State    d    running    timeout=7s",
    ),
    (
        step("verify_domain_status", domain_id="d", expected_status="shut"),
        f"{CONTINUE}    Wait Until VM State    d    shut off",
    ),
    (
        step("verify_all_domains_running", pool_id="p", timeout_secs=30),
        f"{CONTINUE}    All Desk Pool VMs Should Be Running    p    timeout=30s",
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), ONE_LINE, ids=lambda v: v["action"]["type"] if isinstance(v, dict) else ""
)
def test_each_action_type_is_one_keyword_line(data: dict[str, Any], expected: str) -> None:
    assert body(scenario(data)) == [expected]


def test_the_table_covers_all_19_action_types() -> None:
    covered = {d["action"]["type"] for d, _ in ONE_LINE} | {"custom", "verify_command_success"}
    assert covered == {t.value for t in ActionType}
    assert len(ActionType) == len(ACTION_FIELDS) == 19


def test_verify_command_success_checks_the_command_before_it() -> None:
    lines = body(
        scenario(step("exec_command", command="true"), step("wait", duration=1), step("verify_command_success"))
    )
    assert lines[0] == f"${{command}}=    {CONTINUE}    Execute Command In Guest    ${{VM}}    true"
    assert lines[2].startswith("Should Be True    $command is not None and $command.rc == 0")


def test_verify_command_success_without_a_command_is_a_placeholder() -> None:
    result = convert(scenario(step("verify_command_success")))
    assert [p.step for p in result.placeholders] == [1]
    assert "there is none" in result.placeholders[0].reason


def test_custom_step_is_a_failing_placeholder_keeping_its_data() -> None:
    data = step("custom", data={"plugin": "x", "n": [1, 2]}, step_name="vendor hook")
    result = convert(scenario(data))
    assert not result.complete
    assert str(result.placeholders[0]).startswith("step 1 (vendor hook):")
    line = body(scenario(data))[0]
    assert line.startswith(f"{CONTINUE}    Fail    Not converted: step 1 (vendor hook):")
    assert json.dumps({"plugin": "x", "n": [1, 2]}) in line
    assert "vendor hook" in result.text.split("*** Settings ***")[1].split("Library")[0]  # named in the docs


def test_unknown_key_becomes_a_stopping_placeholder() -> None:
    result = convert(scenario(step("send_key", key="notakey")))
    assert "notakey" in result.placeholders[0].reason
    assert body(scenario(step("send_key", key="notakey")))[0].startswith("Fail    Not converted")


def test_unknown_expected_status_becomes_a_placeholder() -> None:
    result = convert(scenario(step("verify_domain_status", domain_id="d", expected_status="flying")))
    assert "no libvirt state" in result.placeholders[0].reason


def test_unknown_button_is_clicked_left_as_the_original_did() -> None:
    result = convert(scenario(step("mouse_click", x=1, y=2, button="fourth")))
    assert "Click    ${VM}    1    2" in result.text
    assert any("clicked as left" in n for n in result.notes)


def test_stop_on_failure_drops_the_continue_wrapper() -> None:
    lines = body(scenario(step("exec_command", command="false")), stop_on_failure=True)
    assert lines == ["Execute Command In Guest    ${VM}    false"]


def test_test_timeout_is_the_sum_of_step_timeouts() -> None:
    text = convert(
        scenario(step("send_key", key="a", timeout=10), step("wait", duration=45), step("send_text", text="x"))
    ).text
    assert "[Timeout]    85s" in text  # 10 + the wait's 45 + 30 (the original's default step timeout)


def test_spice_input_channel_types_through_spice() -> None:
    text = convert(scenario(step("send_key", key="a"), input_channel={"channel_type": "spice"})).text
    assert "Press Keys    ${VM}    a    via=spice" in text
    assert "Open SPICE Session    ${VM}" in text


def test_verified_input_waits_for_the_agent() -> None:
    text = convert(scenario(step("send_key", key="a", verify=True), verification={"connection_timeout": 45})).text
    assert "Verification Agent Should Be Connected    ${VM}    timeout=45s" in text


# ---------------------------------------------------------------------- targets
def test_target_domain_is_leased_on_target_host() -> None:
    text = convert(scenario(step("send_key", key="a"), target_host="qemu+ssh://root@h/system")).text
    assert re.search(r"^\$\{TARGET_HOST\} +qemu\+ssh://root@h/system$", text, re.M)
    assert re.search(r"^\$\{TARGET_VM\} +vm-1$", text, re.M)
    assert "${vm}=    Acquire VM    ${TARGET_VM}" in text


def test_no_target_leases_a_lab_vm() -> None:
    text = convert(yaml.safe_dump({"name": "n", "steps": [step("send_key", key="a")]})).text
    assert "Use A Lab VM For This Suite" in text
    assert "resources/lab.resource" in text


def test_host_id_target_host_is_reported() -> None:
    result = convert(scenario(step("send_key", key="a"), target_host="host-7"))
    assert any("host-7" in n for n in result.notes)


def test_multi_target_loops_over_selected_vms() -> None:
    result = convert_scenario(load_scenario(DATA / "multi-target.json"))
    text = result.text
    assert "Library             ATPLibrary.scenario.targets" in text
    assert "Select Scenario Targets    @{TARGET_CANDIDATES}    mode=pattern    pattern=atp-lab-0*" in text
    assert "exclude=atp-lab-08    limit=2" in text
    # stop_all: a failing VM stops the loop (no continue wrapper around the steps keyword)
    assert "        Run Multi Target Commands Steps    ${vm}" in text


def test_multi_target_without_stop_all_goes_on() -> None:
    text = convert(scenario(step("send_key", key="a"), target_domains="win*")).text
    assert f"        {CONTINUE}    Run Unit Steps    ${{vm}}" in text


def test_lab_adaptation_clamps_clicks_and_replaces_the_target() -> None:
    result = convert(scenario(step("mouse_click", x=800, y=400, button="left")), adapt="lab")
    assert "Click    ${VM}    719    399" in result.text
    assert any("(800, 400)" in a for a in result.adaptations)
    assert any("vm-1" in a for a in result.adaptations)
    assert "VM Should Be Ready For Typing    ${VM}" in result.text


def test_unknown_adaptation_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="Unknown adaptation 'cloud'"):
        ConvertOptions(adapt="cloud")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"pattern": "vm-*"}, ["vm-1", "vm-2", "vm-10"]),
        ({"mode": "regex", "pattern": r"^vm-\d$"}, ["vm-1", "vm-2"]),
        ({"mode": "list", "names": "vm-2,vm-1,other"}, ["vm-2", "vm-1"]),
        ({"mode": "all", "exclude": ["*-1*"]}, ["vm-2", "x-3"]),
        ({"mode": "single", "pattern": "vm-*"}, ["vm-1"]),
        ({"pattern": "vm-*", "limit": 2}, ["vm-1", "vm-2"]),
    ],
)
def test_select_scenario_targets(kwargs: dict[str, Any], expected: list[str]) -> None:
    assert select_scenario_targets("vm-1,vm-2", "vm-10", "x-3", **kwargs) == expected


def test_select_scenario_targets_fails_clearly() -> None:
    with pytest.raises(ConfigurationError, match=r"no candidate VMs.*TARGET_CANDIDATES"):
        select_scenario_targets(pattern="*")
    with pytest.raises(ConfigurationError, match=r"no VM matches mode=pattern pattern=win\* among 1 candidate"):
        select_scenario_targets("vm-1", pattern="win*")
    with pytest.raises(ConfigurationError, match="unknown mode 'some'"):
        select_scenario_targets("vm-1", mode="some")


# ---------------------------------------------------------------------- escaping
CELL_VALUES = ["a  b", " lead", "trail ", "${HOME} and @{x} &{y} %{z}", "back\\slash", "#hash", "key=value"]
CELL_VALUES += ["tab\there", "line\n", "", "text=with=equals", "  two leading"]


def test_cells_read_back_as_the_same_value(tmp_path: Path) -> None:
    """Every value, written with cell(), is what Robot passes to the keyword (checked by a real Robot run)."""
    (tmp_path / "values.py").write_text(f"VALUES = {CELL_VALUES!r}\n")
    lines = ["*** Test Cases ***"]
    for i, value in enumerate(CELL_VALUES):
        lines += [f"Value {i}", f"    Should Be Equal    {cell(value)}    ${{VALUES}}[{i}]"]
    (tmp_path / "cells.robot").write_text("\n".join(lines) + "\n")
    code = robot_run(
        str(tmp_path / "cells.robot"),
        variablefile=str(tmp_path / "values.py"),
        outputdir=str(tmp_path),
        log=None,
        report=None,
        stdout=io.StringIO(),
    )
    assert code == 0, (tmp_path / "cells.robot").read_text()


# ---------------------------------------------------------------------- loader errors
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "a scenario is a mapping"),
        ("name: x\n", "'steps' must be a list"),
        ("steps: []\n", "'name' must be a string"),
        ("name: x\nsteps: [{action: {type: fly}}]\n", "step 1: unknown action type 'fly'; known types: send_key"),
        ("name: x\nsteps: [{name: s1, action: {type: send_key}}]\n", "step 1 ('s1'): send_key needs 'key'"),
        ("name: x\nsteps: [{action: {type: send_key, key: a, kee: b}}]\n", "send_key has no field(s) kee"),
        ("name: x\nsteps: [{action: {type: wait, duration: soon}}]\n", "wait 'duration' must be a number"),
        ("name: x\nsteps: [{action: {type: mouse_click, x: 1.5, y: 2}}]\n", "'x' must be a whole number"),
        ("name: x\nsteps: [{action: {type: wait, duration: 1}, verify: maybe}]\n", "'verify' must be true or false"),
        ("name: x\nsteps: [{action: {type: wait, duration: 1}, timeout: -1}]\n", "must not be negative"),
        ("name: x\nsteps: [{type: wait}]\n", "unknown field(s) type"),
        ("name: x\nsteps: [{name: a}]\n", "'action' is missing"),
        ("name: x\nsteps: []\nfoo: 1\n", "unknown top-level field(s) foo"),
        ("name: x\nsteps: []\ntarget_domains: {mode: regex, pattern: '('}\n", "not a valid regular expression"),
        ("name: x\nsteps: []\ntarget_domains: {mode: list}\n", "mode list needs 'names'"),
        ("name: x\nsteps: []\nparallel: {on_failure: panic}\n", "unknown on_failure 'panic'"),
        ("name: x\nsteps: []\ninput_channel: {channel_type: vnc}\n", "channel_type must be qmp or spice"),
        ("name: [x\n", "not valid YAML"),
    ],
)
def test_bad_input_names_the_file_step_and_field(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_json_scenarios_load() -> None:
    loaded = load_scenario(DATA / "multi-target.json")
    assert loaded.name == "multi-target-commands" and len(loaded.steps) == 4
    assert loaded.target_domains is not None and loaded.target_domains.limit == 2


def test_bad_json_is_named_as_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{name: 1")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_scenario(path)


# ---------------------------------------------------------------------- command line
def test_cli_convert_prints_the_suite_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = tmp_path / "ok.yaml"
    ok.write_text(scenario(step("send_key", key="a")))
    assert main(["scenario", "convert", str(ok)]) == 0
    assert "Press Keys    ${VM}    a" in capsys.readouterr().out
    assert main(["scenario", "convert", str(DATA / "multi-target.json"), "-o", str(tmp_path / "m.robot")]) == 1
    err = capsys.readouterr().err
    assert "not converted (left as a failing placeholder): step 4 (vendor hook)" in err
    assert (tmp_path / "m.robot").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps: [{action: {type: fly}}]\n")
    assert main(["scenario", "convert", str(bad)]) == 2
    assert "unknown action type 'fly'" in capsys.readouterr().err


def test_cli_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(scenario(step("send_key", key="a"), tags=["kb"]))
    (tmp_path / "b.json").write_text((DATA / "multi-target.json").read_text())
    (tmp_path / "c.yml").write_text("name: broken\n")
    (tmp_path / "notes.txt").write_text("not a scenario")
    assert main(["scenario", "list", "--dir", str(tmp_path), "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [(r["file"], r["steps"], r["convertible"]) for r in rows] == [
        ("a.yaml", 1, True),
        ("b.json", 4, False),
        ("c.yml", None, False),
    ]
    assert rows[0]["tags"] == ["kb"] and "'steps' must be a list" in rows[2]["error"]
    assert main(["scenario", "list", "--dir", str(tmp_path)]) == 1
    table = capsys.readouterr().out
    assert "no: 1 placeholder(s)" in table and "no: invalid" in table and "yes" in table
    assert main(["scenario", "list", "--dir", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize(("robot", "atp"), [(0, 0), (1, 1), (250, 1), (251, 0), (252, 2), (253, 130), (255, 2)])
def test_robot_exit_codes_map_to_atp_exit_codes(robot: int, atp: int) -> None:
    assert robot_exit(robot) == atp


def test_verify_domain_status_in_a_vdi_scenario_finds_the_domain_behind_the_vdi_vm() -> None:
    text = convert(
        scenario(
            step("vdi_start_domain", domain_id="qa-1"),
            step("verify_domain_status", domain_id="qa-1", expected_status="running", timeout_secs=9),
        )
    ).text
    assert f"{CONTINUE}    VDI VM Domain Should Be    qa-1    running    timeout=9s" in text
    assert "    ${domain}=    Get VDI VM Domain    ${vm}\n    Wait Until VM State    ${domain}    ${state}" in text


def test_cli_run_converts_runs_robot_and_maps_its_exit_code(tmp_path: Path) -> None:
    """No VM needed: a scenario of a pause only passes; a placeholder fails; a bad robot option is exit 2."""
    ok = tmp_path / "pause.yaml"
    ok.write_text(yaml.safe_dump({"name": "pause", "steps": [step("wait", duration=0)]}))
    out = tmp_path / "out"
    # run's own options may follow FILE; robot's follow '--'
    assert main(["scenario", "run", str(ok), "--outputdir", str(out), "--", "--console", "none"]) == 0
    assert (out / "pause.robot").is_file() and (out / "output.xml").is_file()
    bad = tmp_path / "custom.yaml"
    bad.write_text(yaml.safe_dump({"name": "c", "steps": [step("custom", data=1)]}))
    assert main(["scenario", "run", str(bad), "--outputdir", str(out), "--", "--console", "none"]) == 1
    assert main(["scenario", "run", str(ok), "--outputdir", str(out), "--", "--no-such-option"]) == 2
