"""Turn a :class:`~ATPLibrary.scenario.model.Scenario` into a readable Robot Framework suite.

One test per scenario; each step is one keyword line under a comment with the step's name. What cannot be
converted becomes a failing ``Fail    Not converted: ...`` line that keeps the original data, and is listed
in :attr:`Conversion.placeholders`. See docs/scenarios.md for the whole mapping.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ATPLibrary.errors import ConfigurationError
from ATPLibrary.hosts.state import VMState
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP
from ATPLibrary.scenario.model import ActionType, OnFailure, Scenario, SelectorMode, Step
from ATPLibrary.scenario.robotfmt import SEP, cell, comment, documentation, line, seconds

#: The original executor's step timeout when a step gives none (seconds); also the library import timeout.
DEFAULT_STEP_TIMEOUT = 30.0
#: The lab guests' screen: a 720x400 VGA text console.
LAB_SCREEN = (720, 400)
#: ``--adapt`` profiles.
ADAPT_PROFILES = ("lab",)
CONTINUE = "Run Keyword And Continue On Failure"
NOT_CONVERTED = "Not converted"


@dataclass(frozen=True)
class Placeholder:
    """A step left in the suite as a failing ``Fail    Not converted: ...`` line."""

    step: int
    label: str
    reason: str

    def __str__(self) -> str:
        return f"step {self.step} ({self.label}): {self.reason}"


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert.

    - ``adapt``: ``"lab"`` runs the scenario on a leased lab guest (see :data:`ADAPT_PROFILES`).
    - ``stop_on_failure``: a failed command or check stops the test (what ``05-error-handling.yaml``'s comments
      expect) instead of being recorded while the test goes on (what the original executor did).
    - ``output``: where the suite will be written (resource paths are made relative to it; default: the
      current directory); ``resources``: the folder with ``lab.resource`` and ``vdi.resource``.
    """

    adapt: str | None = None
    stop_on_failure: bool = False
    output: Path | None = None
    resources: Path | None = None

    def __post_init__(self) -> None:
        if self.adapt is not None and self.adapt not in ADAPT_PROFILES:
            raise ConfigurationError(f"Unknown adaptation '{self.adapt}': use {', '.join(ADAPT_PROFILES)}.")


@dataclass
class Conversion:
    """The suite text, the steps left as placeholders, and what was adapted or differs from the original."""

    text: str
    placeholders: list[Placeholder] = field(default_factory=list)
    adaptations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.placeholders


def default_resources() -> Path:
    """``resources/`` of this checkout (the package is installed in development mode next to it)."""
    return Path(__file__).resolve().parents[2] / "resources"


def convert_scenario(scenario: Scenario, options: ConvertOptions | None = None) -> Conversion:
    """Converts ``scenario`` into a suite (see the module documentation)."""
    return _Converter(scenario, options or ConvertOptions()).run()


@dataclass
class _StepCode:
    cells: list[str]
    note: str = ""
    assign: str | None = None
    may_continue: bool = False


class _Unconvertible(Exception):
    def __init__(self, reason: str, *, may_continue: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.may_continue = may_continue


class _Converter:
    def __init__(self, scenario: Scenario, options: ConvertOptions) -> None:
        self.s = scenario
        self.o = options
        self.lab = options.adapt == "lab"
        self.multi = scenario.target_domains is not None and scenario.needs_vm
        self.vm = "${vm}" if self.multi else "${VM}"
        self.result = Conversion("")
        self.helpers: set[str] = set()
        self.resources: list[str] = []
        self.commands_checked = {
            i
            for i, step in enumerate(scenario.steps)
            if step.action.type is ActionType.EXEC_COMMAND
            and any(
                later.action.type is ActionType.VERIFY_COMMAND_SUCCESS
                for later in scenario.steps[i + 1 : self._next_command(i)]
            )
        }
        self.seen_command = False

    def _next_command(self, i: int) -> int:
        for j in range(i + 1, len(self.s.steps)):
            if self.s.steps[j].action.type is ActionType.EXEC_COMMAND:
                return j
        return len(self.s.steps)

    # ------------------------------------------------------------------ whole suite
    def run(self) -> Conversion:
        body = self.steps()
        setup = self.setup_lines()
        test = self.test(body)
        variables = self.variables()
        keywords = self.keywords(body, setup)
        out: list[str] = ["*** Settings ***"]
        out += documentation("Documentation       ", self.suite_doc())
        if not self.resources:  # else the resources import it (a second import with other arguments is ignored)
            out.append(f"Library             ATPLibrary{SEP}timeout={seconds(DEFAULT_STEP_TIMEOUT)}")
        if self.multi:
            out.append("Library             ATPLibrary.scenario.targets")
        for resource in self.resources:
            out.append(f"Resource            {self.resource_path(resource)}")
        if setup:
            out.append(
                "Suite Setup         Set Up Scenario Target" if len(setup) > 1 else f"Suite Setup         {setup[0]}"
            )
        if self.s.tags:
            out.append("Test Tags           " + SEP.join(cell(t) for t in self.s.tags))
        if variables:
            out += ["", "", "*** Variables ***", *variables]
        out += ["", "", "*** Test Cases ***", *_lint_exemptions(test, test=True)]
        if keywords:
            out += ["", "", "*** Keywords ***", *keywords]
        self.result.text = "\n".join(out).rstrip() + "\n"
        return self.result

    def resource_path(self, name: str) -> str:
        folder = self.o.resources or default_resources()
        base = (self.o.output.parent if self.o.output else Path.cwd()).resolve()
        path = os.path.relpath(folder.resolve() / name, base).replace(os.sep, "/")
        return cell(path)

    def suite_doc(self) -> str:
        s = self.s
        parts = [s.description or s.name]
        parts.append(
            f"Converted by atp scenario convert from the scenario {s.name} ({s.file_name}): one test runs its "
            f"{len(s.steps)} step(s) in order, each step one keyword line under a comment with the step's name."
        )
        parts.append(self.target_doc())
        if self.o.stop_on_failure:
            parts.append("Failures: any failed step stops the test (--stop-on-failure).")
        else:
            parts.append(
                "Failures as in the original executor: a failed command step or a failed check is recorded and "
                "the test goes on (Run Keyword And Continue On Failure), even when the command timed out (the "
                "original stopped then); any other failing step stops the test. The test fails if any step failed."
            )
        if self.result.adaptations:
            parts.append(
                "Adapted for the lab: " + " ".join(f"({i}) {a}" for i, a in enumerate(self.result.adaptations, 1))
            )
        if self.result.placeholders:
            parts.append(
                f"{len(self.result.placeholders)} step(s) could not be converted and fail with '{NOT_CONVERTED}': "
                + "; ".join(str(p) for p in self.result.placeholders)
            )
        if self.result.notes:
            parts.append("Notes: " + " ".join(self.result.notes))
        return "\n\n".join(parts)

    def target_doc(self) -> str:
        s = self.s
        if not s.needs_vm:
            return "Target: no step drives a VM, so no VM is leased."
        if self.multi:
            where = "the lab's VMs (LAB_VMS)" if self.lab else "the VMs given as TARGET_CANDIDATES"
            stop = (
                "the first failing VM stops the run (on_failure: stop_all)"
                if self._stop_all
                else "a failing VM is recorded and the next one runs"
            )
            return (
                f"Target: each VM of {where} that target_domains selects, one after the other (the original ran "
                f"multi-target scenarios serially); each is leased with Acquire VM; {stop}."
            )
        if self.lab:
            return "Target: a lab VM leased from the pool (Use A Lab VM For This Suite in lab.resource)."
        if s.target_domain:
            return (
                "Target: the VM TARGET_VM (target_domain) on TARGET_HOST, leased with Acquire VM; override them "
                "with --variable TARGET_VM:name --variable TARGET_HOST:uri."
            )
        return (
            "Target: the scenario names none (the original took the first running VDI VM), so a lab VM is "
            "leased from the pool (Use A Lab VM For This Suite in lab.resource; LAB_VMS, LAB_URI)."
        )

    @property
    def _stop_all(self) -> bool:
        return self.s.parallel is not None and self.s.parallel.on_failure is OnFailure.STOP_ALL

    def variables(self) -> list[str]:
        s = self.s
        out: list[str] = []
        checks_state = any(st.action.type is ActionType.VERIFY_DOMAIN_STATUS for st in s.steps)
        own_host = (s.needs_vm and (s.target_domain or self.multi)) or (
            not s.needs_vm and checks_state and not s.needs_vdi
        )
        if own_host and not self.lab:
            out.append("${TARGET_HOST}".ljust(24) + cell(self.host_uri()))
        if s.needs_vm and not self.lab and not self.multi and s.target_domain:
            out.append("${TARGET_VM}".ljust(24) + cell(s.target_domain))
        if self.multi and not self.lab:
            out.append("@{TARGET_CANDIDATES}".ljust(24) + "@{EMPTY}")
        return out

    def host_uri(self) -> str:
        host = self.s.target_host
        if self.s.target_hosts is not None:
            self.result.notes.append(
                "target_hosts (a selector over the original's host table) is not converted: the suite "
                "uses TARGET_HOST (one libvirt URI)."
            )
        if host and "://" in host:
            return host
        if host:
            self.result.notes.append(
                f"target_host '{host}' is a host id of the original's host table, not a libvirt URI: give "
                "it with --variable TARGET_HOST:qemu+ssh://.../system."
            )
        return "qemu:///system"

    # ------------------------------------------------------------------ setup
    def setup_lines(self) -> list[str]:
        s = self.s
        lines: list[str] = []
        if s.needs_vdi:
            self.resources.append("vdi.resource")
            lines.append("Connect To The VDI Platform")
        needs_lab_resource = s.needs_vm and (self.lab or (not s.target_domain and not self.multi))
        if needs_lab_resource:
            self.resources.insert(0, "lab.resource")
        if not s.needs_vm:
            if any(st.action.type is ActionType.VERIFY_DOMAIN_STATUS for st in s.steps) and not s.needs_vdi:
                lines.append(SEP.join(["Connect To Host", "${LAB_URI}" if self.lab else "${TARGET_HOST}"]))
            return lines
        if self.multi:
            lines.append(SEP.join(["Connect To Host", "${LAB_URI}" if self.lab else "${TARGET_HOST}"]))
            if self.lab and "lab.resource" not in self.resources:
                self.resources.insert(0, "lab.resource")
            return lines
        if needs_lab_resource:
            lines.append("Use A Lab VM For This Suite")
            if self.lab and s.target_domain:
                self.result.adaptations.append(
                    f"target_domain '{s.target_domain}' is replaced by a lab VM leased from the pool."
                )
        else:
            lines += [
                SEP.join(["Connect To Host", "${TARGET_HOST}"]),
                SEP.join(["${vm}=", "Acquire VM", "${TARGET_VM}"]),
                SEP.join(["VAR", "${VM}=", "${vm}", "scope=SUITE"]),
            ]
        lines += self.per_vm_setup("${VM}")
        return lines

    def per_vm_setup(self, vm: str) -> list[str]:
        """What a VM needs before the steps: a console ready for typing (lab), SPICE, the verification agent."""
        s = self.s
        types = {st.action.type for st in s.steps}
        input_steps = types & {ActionType.SEND_KEY, ActionType.SEND_TEXT, ActionType.MOUSE_CLICK}
        lines: list[str] = []
        if self.lab and input_steps:
            lines.append(SEP.join(["VM Should Be Ready For Typing", vm]))
            self._adapt_once(
                "the lab VM's console shell is made ready for typing first (VM Should Be Ready For Typing)."
            )
        if self.spice_input and input_steps:
            lines.append(SEP.join(["Open SPICE Session", vm]))
        if any(st.verify and st.action.type in input_steps for st in s.steps):
            wait = s.verification.connection_timeout if s.verification else None
            lines.append(SEP.join(["Verification Agent Should Be Connected", vm, f"timeout={seconds(wait or 30)}"]))
        return lines

    @property
    def spice_input(self) -> bool:
        return self.s.input_channel.channel_type == "spice"

    # ------------------------------------------------------------------ test and keywords
    def test_timeout(self) -> float:
        total = 0.0
        for step in self.s.steps:
            limit = step.timeout if step.timeout is not None else DEFAULT_STEP_TIMEOUT
            if step.action.type is ActionType.WAIT:
                limit = max(limit, float(step.action["duration"]))
            total += limit
        return total

    def test(self, body: list[str]) -> list[str]:
        s = self.s
        out = [self.title]
        if s.description:
            out += documentation(f"{SEP}[Documentation]{SEP}", s.description)
        if not self.multi:
            out.append(f"{SEP}[Timeout]{SEP}{seconds(self.test_timeout())}")
            return out + body
        sel = s.target_domains
        assert sel is not None
        args = ["@{LAB_VMS}" if self.lab else "@{TARGET_CANDIDATES}", f"mode={sel.mode.value}"]
        if sel.pattern:
            args.append(f"pattern={cell(sel.pattern, positional=False)}")
        if sel.names:
            args.append("names=" + cell(",".join(sel.names), positional=False))
        if sel.exclude:
            args.append("exclude=" + cell(",".join(sel.exclude), positional=False))
        if sel.limit is not None:
            args.append(f"limit={sel.limit}")
        if self.lab:
            self.result.adaptations.append("target_domains selects among the lab's VMs (LAB_VMS).")
        if sel.mode is SelectorMode.SINGLE:
            self.result.notes.append("target_domains mode single runs on the first selected VM only.")
        out.append(line("${targets}=", "Select Scenario Targets", *args))
        out.append(line("FOR", "${vm}", "IN", "@{targets}"))
        lease = ["Acquire VM", "${vm}"] + (["timeout=${VM_LEASE_TIMEOUT}"] if self.lab else [])
        out.append(line(*lease, indent=2))
        out += [SEP * 2 + x for x in self.per_vm_setup("${vm}")]
        run = [self.steps_keyword, "${vm}"]
        out.append(line(*(run if self._stop_all or self.o.stop_on_failure else [CONTINUE, *run]), indent=2))
        out.append(line("END"))
        return out

    @property
    def title(self) -> str:
        """The scenario name as a test name, words capitalised: ``basic-keyboard-test`` -> ``Basic Keyboard Test``."""
        words = re.split(r"[\s_-]+", self.s.name.strip())
        return cell(" ".join(w[:1].upper() + w[1:] for w in words if w), positional=False)

    @property
    def steps_keyword(self) -> str:
        return f"Run {self.title} Steps"

    def keywords(self, body: list[str], setup: list[str]) -> list[str]:
        out: list[str] = []
        if len(setup) > 1:
            out += ["Set Up Scenario Target"]
            out += documentation(
                f"{SEP}[Documentation]{SEP}", "Suite setup: connects and leases the scenario's target."
            )
            out += [SEP + x for x in setup]
        if self.multi:
            out += [""] if out else []
            block = [self.steps_keyword]
            block += documentation(f"{SEP}[Documentation]{SEP}", f"The steps of scenario {self.s.name} on one VM.")
            block += [f"{SEP}[Arguments]{SEP}${{vm}}", f"{SEP}[Timeout]{SEP}{seconds(self.test_timeout())}", *body]
            out += _lint_exemptions(block, test=False)
        if "vdi domain state" in self.helpers:
            out += [""] if out else []
            out += [
                "VDI VM Domain Should Be",
                *documentation(
                    f"{SEP}[Documentation]{SEP}",
                    "verify_domain_status in a VDI scenario: the libvirt domain behind VDI VM vm reaches state "
                    "within timeout.",
                ),
                f"{SEP}[Arguments]{SEP}${{vm}}{SEP}${{state}}{SEP}${{timeout}}=${{NONE}}",
                line("${domain}=", "Get VDI VM Domain", "${vm}"),
                line("Wait Until VM State", "${domain}", "${state}", "timeout=${timeout}"),
            ]
        if "pool running" in self.helpers:
            out += [""] if out else []
            out += [
                "All Desk Pool VMs Should Be Running",
                *documentation(
                    f"{SEP}[Documentation]{SEP}",
                    "verify_all_domains_running: every VDI VM of desk pool pool shows running within timeout. "
                    "An empty pool fails (the original passed it without looking).",
                ),
                f"{SEP}[Arguments]{SEP}${{pool}}{SEP}${{timeout}}=${{NONE}}",
                line("@{vms}=", "Get Desk Pool VMs", "${pool}"),
                line("Should Not Be Empty", "${vms}", "msg=Desk pool ${pool} has no VDI VMs."),
                line("FOR", "${vdi_vm}", "IN", "@{vms}"),
                line(CONTINUE, "Wait Until VDI VM Status", "${vdi_vm}", "running", "timeout=${timeout}", indent=2),
                line("END"),
            ]
        return out

    # ------------------------------------------------------------------ steps
    def steps(self) -> list[str]:
        out: list[str] = []
        for position, step in enumerate(self.s.steps):
            note = ""
            try:
                code = self.step(position, step)
                note = code.note
                cells = code.cells
                if code.may_continue and not self.o.stop_on_failure:
                    cells = [CONTINUE, *cells]
                if code.assign:
                    cells = [code.assign, *cells]
            except _Unconvertible as exc:
                self.result.placeholders.append(Placeholder(step.index, step.label, exc.reason))
                data = json.dumps(
                    {"name": step.name, "action": step.action.raw(), "verify": step.verify, "timeout": step.timeout},
                    ensure_ascii=False,
                )
                message = f"{NOT_CONVERTED}: step {step.index} ({step.label}): {exc.reason} Original step: {data}"
                cells = ["Fail", cell(message)]
                if exc.may_continue and not self.o.stop_on_failure:
                    cells = [CONTINUE, *cells]
                cells.append("# robocop: off=line-too-long")
            out.append(comment(step.label + (f" ({note})" if note else ""), indent=1))
            out.append(line(*cells))
        return out

    def step(self, position: int, step: Step) -> _StepCode:
        handler: Callable[[int, Step], _StepCode] = getattr(self, f"_{step.action.type.value}")
        return handler(position, step)

    def _input_options(self, step: Step, *, mouse: bool = False) -> list[str]:
        opts: list[str] = []
        if self.spice_input:
            if mouse and self.lab:
                self._adapt_once(
                    "mouse clicks go through QMP: the lab's SPICE pointer is relative (no absolute clicks)."
                )
            else:
                opts.append("via=spice")
        if step.verify:
            opts.append("verify=True")
        return opts

    def _adapt_once(self, text: str) -> None:
        if text not in self.result.adaptations:
            self.result.adaptations.append(text)

    def _timeout(self, step: Step) -> list[str]:
        return [f"timeout={seconds(step.timeout)}"] if step.timeout is not None else []

    # the 19 action types ------------------------------------------------
    def _send_key(self, _: int, step: Step) -> _StepCode:
        key = str(step.action["key"])
        try:
            DEFAULT_KEYMAP.parse_combo(key)
        except ConfigurationError as exc:
            raise _Unconvertible(f"key '{key}' is not a key name this library knows ({exc}).") from None
        return _StepCode(["Press Keys", self.vm, cell(key), *self._input_options(step)])

    def _send_text(self, _: int, step: Step) -> _StepCode:
        return _StepCode(["Type Text", self.vm, cell(step.action["text"]), *self._input_options(step)])

    def _mouse_click(self, _: int, step: Step) -> _StepCode:
        x, y = int(step.action["x"]), int(step.action["y"])
        button = str(step.action["button"] or "left").lower()
        note = ""
        if button not in ("left", "right", "middle"):
            self.result.notes.append(f"step {step.index}: button '{button}' is clicked as left, as the original did.")
            note = f"button '{button}' clicked as left, as the original did"
            button = "left"
        if self.lab and (x >= LAB_SCREEN[0] or y >= LAB_SCREEN[1]):
            nx, ny = min(x, LAB_SCREEN[0] - 1), min(y, LAB_SCREEN[1] - 1)
            self.result.adaptations.append(
                f"step {step.index} clicks at ({nx}, {ny}) instead of ({x}, {y}), which is outside the lab's "
                f"{LAB_SCREEN[0]}x{LAB_SCREEN[1]} screen."
            )
            note = f"adapted for the lab: ({x}, {y}) is outside its {LAB_SCREEN[0]}x{LAB_SCREEN[1]} screen"
            x, y = nx, ny
        cells = ["Click", self.vm, str(x), str(y)]
        if button != "left":
            cells.append(f"button={button}")
        return _StepCode(cells + self._input_options(step, mouse=True), note=note)

    def _exec_command(self, position: int, step: Step) -> _StepCode:
        self.seen_command = True
        note = ""
        if step.verify:
            note = "verify: true: the original verified keyboard input only; the exit code 0 is checked"
        return _StepCode(
            ["Execute Command In Guest", self.vm, cell(step.action["command"]), *self._timeout(step)],
            note=note,
            assign="${command}=" if position in self.commands_checked else None,
            may_continue=True,
        )

    def _wait(self, _: int, step: Step) -> _StepCode:
        duration = float(step.action["duration"])
        return _StepCode(
            ["Sleep", seconds(duration), "reason=The scenario asks for this fixed pause."],
            note=f"wait {seconds(duration)}",
        )

    def _custom(self, _: int, step: Step) -> _StepCode:
        raise _Unconvertible(
            "custom actions have no meaning outside the original (it skipped them as not implemented); "
            "write the keyword line this step stands for.",
            may_continue=True,
        )

    def _vdi_create_desk_pool(self, _: int, step: Step) -> _StepCode:
        a = step.action
        return _StepCode(
            ["Create Desk Pool", cell(a["name"]), cell(a["template_id"]), f"amount={a['count']}", *self._timeout(step)]
        )

    def _pool_step(self, keyword: str, step: Step) -> _StepCode:
        return _StepCode([keyword, cell(step.action["pool_id"])])

    def _vdi_enable_desk_pool(self, _: int, step: Step) -> _StepCode:
        return self._pool_step("Enable Desk Pool", step)

    def _vdi_disable_desk_pool(self, _: int, step: Step) -> _StepCode:
        return self._pool_step("Disable Desk Pool", step)

    def _vdi_delete_desk_pool(self, _: int, step: Step) -> _StepCode:
        return self._pool_step("Delete Desk Pool", step)

    def _vdi_get_desk_pool_domains(self, _: int, step: Step) -> _StepCode:
        return self._pool_step("Get Desk Pool VMs", step)

    def _vdi_start_domain(self, _: int, step: Step) -> _StepCode:
        return _StepCode(["Start VDI VMs", cell(step.action["domain_id"]), *self._timeout(step)])

    def _vdi_shutdown_domain(self, _: int, step: Step) -> _StepCode:
        return _StepCode(["Shutdown VDI VMs", cell(step.action["domain_id"]), *self._timeout(step)])

    def _vdi_reboot_domain(self, _: int, step: Step) -> _StepCode:
        return _StepCode(["Reboot VDI VMs", cell(step.action["domain_id"]), *self._timeout(step)])

    def _vdi_delete_domain(self, _: int, step: Step) -> _StepCode:
        return _StepCode(["Delete VDI VMs", cell(step.action["domain_id"])])

    def _vdi_bind_user(self, _: int, step: Step) -> _StepCode:
        return _StepCode(["Bind User To VDI VM", cell(step.action["domain_id"]), cell(step.action["user_id"])])

    def _verify_domain_status(self, _: int, step: Step) -> _StepCode:
        a = step.action
        wanted = str(a["expected_status"])
        state = _state(wanted)
        if state is None:
            raise _Unconvertible(
                f"expected_status '{wanted}' is no libvirt state; use one of {', '.join(s.value for s in VMState)}."
            )
        limit = a["timeout_secs"] if a["timeout_secs"] is not None else step.timeout
        keyword = "Wait Until VM State"
        if self.s.needs_vdi:  # domain_id is a VDI VM there, as in the scenario's other VDI steps
            keyword = "VDI VM Domain Should Be"
            self.helpers.add("vdi domain state")
        cells = [keyword, cell(a["domain_id"]), cell(state.value)]
        if limit is not None:
            cells.append(f"timeout={seconds(float(limit))}")
        return _StepCode(cells, may_continue=True)

    def _verify_all_domains_running(self, _: int, step: Step) -> _StepCode:
        self.helpers.add("pool running")
        a = step.action
        limit = a["timeout_secs"] if a["timeout_secs"] is not None else step.timeout
        cells = ["All Desk Pool VMs Should Be Running", cell(a["pool_id"])]
        if limit is not None:
            cells.append(f"timeout={seconds(float(limit))}")
        return _StepCode(cells, may_continue=True)

    def _verify_command_success(self, _: int, step: Step) -> _StepCode:
        if not self.seen_command:
            raise _Unconvertible("verify_command_success checks the command step before it, and there is none.")
        return _StepCode(
            [
                "Should Be True",
                "$command is not None and $command.rc == 0",
                "msg=The command step before this check did not succeed.",
            ],
            note="checks the exit code of the command step before it",
        )


def _state(text: str) -> VMState | None:
    """The libvirt state ``text`` names; like the original, a part of a state name matches it (``shut``)."""
    try:
        return VMState.parse(text)
    except ConfigurationError:
        pass
    key = text.strip().lower()
    for matches in (lambda s: s.value.startswith(key), lambda s: key in s.value or s.value in key):
        found = [s for s in VMState if key and matches(s)]
        if len(found) == 1:
            return found[0]
    return None


def _lint_exemptions(block: list[str], *, test: bool) -> list[str]:
    """Robocop disablers on the block's name line for what a converted scenario is by nature: long (one line
    per step), and continuing after some failed steps only (so not the ``robot:continue-on-failure`` tag)."""
    lines = "\n".join(block).split("\n")
    calls = [x.strip() for x in lines[1:] if x.strip() and not x.strip().startswith(("#", "[", "...", "END", "FOR"))]
    rules = []
    if test and len(lines) > 20:
        rules.append("too-long-test-case")
    if test and len(calls) > 10:
        rules.append("too-many-calls-in-test-case")
    if len(calls) >= 2 and all(c.startswith(CONTINUE) for c in calls):
        rules.append("could-be-continue-on-failure-tag")
    if rules:
        lines[0] += f"{SEP}# robocop: off={','.join(rules)}"
    return lines
