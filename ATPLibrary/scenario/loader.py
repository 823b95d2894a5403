"""Load a scenario file (YAML or JSON) into :class:`~ATPLibrary.scenario.model.Scenario`, checking everything.

Every problem is a :class:`ScenarioError` naming the file, the step (counted from 1, with its name) and the
field, and saying what is expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ATPLibrary.errors import ConfigurationError
from ATPLibrary.scenario.model import (
    ACTION_FIELDS,
    Action,
    ActionType,
    FieldSpec,
    InputChannel,
    OnFailure,
    Parallel,
    Scenario,
    SelectorMode,
    Step,
    TargetSelector,
    Verification,
)

#: File suffixes ``atp scenario`` reads.
SUFFIXES = (".yaml", ".yml", ".json")

_TOP_LEVEL = {
    "name",
    "description",
    "tags",
    "steps",
    "target_host",
    "target_hosts",
    "target_domain",
    "target_domains",
    "parallel",
    "verification",
    "input_channel",
}
_STEP_KEYS = {"name", "action", "verify", "timeout"}
_SELECTOR_KEYS = {"mode", "pattern", "names", "exclude", "limit"}


class ScenarioError(ConfigurationError):
    """A scenario file that cannot be read: the message names the file, the step and the field."""


def load_scenario(path: str | Path) -> Scenario:
    """Reads ``path`` (``.yaml``, ``.yml`` or ``.json``) and returns the checked scenario."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot read the scenario file: {exc.strerror or exc}") from None
    return parse_scenario(text, source)


def parse_scenario(text: str, source: Path | None = None) -> Scenario:
    """Parses scenario ``text`` (JSON when ``source`` ends in ``.json``, else YAML, which also reads JSON)."""
    where = str(source) if source else "<scenario>"
    try:
        data = json.loads(text) if source is not None and source.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{where}: not valid {'JSON' if _is_json(source) else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: a scenario is a mapping with 'name' and 'steps', not {_kind(data)}.")
    return _Reader(where, source).scenario(data)


def _is_json(source: Path | None) -> bool:
    return source is not None and source.suffix == ".json"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


class _Reader:
    def __init__(self, where: str, source: Path | None) -> None:
        self.where = where
        self.source = source

    def fail(self, message: str) -> ScenarioError:
        return ScenarioError(f"{self.where}: {message}")

    def scenario(self, data: dict[str, Any]) -> Scenario:
        unknown = sorted(set(map(str, data)) - _TOP_LEVEL)
        if unknown:
            raise self.fail(
                f"unknown top-level field(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOP_LEVEL))}. "
                "(Files with steps of 'type: vdi_action' use the removed orchestrator format, which the "
                "original executor did not read either.)"
            )
        name = self.text(data.get("name"), "'name'")
        if not name.strip():
            raise self.fail("'name' is missing or empty: every scenario needs a name.")
        steps_data = data.get("steps")
        if not isinstance(steps_data, list):
            raise self.fail(f"'steps' must be a list of steps, not {_kind(steps_data)}.")
        tags = data.get("tags") or []
        if not isinstance(tags, list):
            raise self.fail(f"'tags' must be a list of strings, not {_kind(tags)}.")
        return Scenario(
            name=name,
            steps=tuple(self.step(i, s) for i, s in enumerate(steps_data, start=1)),
            source=self.source,
            description=self.optional_text(data.get("description"), "'description'"),
            tags=tuple(str(t) for t in tags),
            target_host=self.optional_text(data.get("target_host"), "'target_host'"),
            target_hosts=data.get("target_hosts"),
            target_domain=self.optional_text(data.get("target_domain"), "'target_domain'"),
            target_domains=self.selector(data.get("target_domains")),
            parallel=self.parallel(data.get("parallel")),
            verification=self.verification(data.get("verification")),
            input_channel=self.input_channel(data.get("input_channel")),
        )

    # ------------------------------------------------------------------ fields
    def text(self, value: Any, what: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(f"{what} must be a string, not {_kind(value)}.")
        return str(value)

    def optional_text(self, value: Any, what: str) -> str | None:
        return None if value is None else self.text(value, what)

    def number(self, value: Any, what: str, *, integer: bool = False) -> float | int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{what} must be a {'whole ' if integer else ''}number, not {_kind(value)} ({value!r}).")
        if integer and not float(value).is_integer():
            raise self.fail(f"{what} must be a whole number, not {value!r}.")
        if value < 0:
            raise self.fail(f"{what} must not be negative ({value!r}).")
        return int(value) if integer else value

    def mapping(self, value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{what} must be a mapping, not {_kind(value)}.")
        return value

    # ------------------------------------------------------------------ steps
    def step(self, index: int, data: Any) -> Step:
        at = f"step {index}"
        if not isinstance(data, dict):
            raise self.fail(
                f"{at}: a step is a mapping with 'action' (and 'name', 'verify', 'timeout'), not {_kind(data)}."
            )
        name = self.optional_text(data.get("name"), f"{at}: 'name'")
        if name:
            at = f"step {index} ('{name}')"
        unknown = sorted(set(map(str, data)) - _STEP_KEYS)
        if unknown:
            raise self.fail(f"{at}: unknown field(s) {', '.join(unknown)}; a step has {', '.join(sorted(_STEP_KEYS))}.")
        if "action" not in data:
            raise self.fail(f"{at}: 'action' is missing (e.g. action: {{type: send_key, key: ret}}).")
        verify = data.get("verify", False)
        if not isinstance(verify, bool):
            raise self.fail(f"{at}: 'verify' must be true or false, not {verify!r}.")
        timeout = data.get("timeout")
        return Step(
            index=index,
            action=self.action(at, data["action"]),
            name=name,
            verify=verify,
            timeout=None if timeout is None else float(self.number(timeout, f"{at}: 'timeout' (seconds)")),
        )

    def action(self, at: str, data: Any) -> Action:
        action = self.mapping(data, f"{at}: 'action'")
        if "type" not in action:
            raise self.fail(f"{at}: the action has no 'type'; known types: {', '.join(t.value for t in ActionType)}.")
        try:
            kind = ActionType(str(action["type"]))
        except ValueError:
            raise self.fail(
                f"{at}: unknown action type '{action['type']}'; known types: {', '.join(t.value for t in ActionType)}."
            ) from None
        specs = ACTION_FIELDS[kind]
        known = {s.name for s in specs}
        extra = sorted(set(map(str, action)) - known - {"type"})
        if extra:
            fields = ", ".join(sorted(known)) or "no fields"
            raise self.fail(f"{at}: {kind.value} has no field(s) {', '.join(extra)}; it takes {fields}.")
        values: dict[str, Any] = {}
        for spec in specs:
            if spec.name not in action or action[spec.name] is None:
                if spec.required:
                    raise self.fail(f"{at}: {kind.value} needs '{spec.name}' ({_describe(spec)}).")
                if spec.default is not None:
                    values[spec.name] = spec.default
                continue
            values[spec.name] = self.value(spec, action[spec.name], f"{at}: {kind.value} '{spec.name}'")
        return Action(kind, values)

    def value(self, spec: FieldSpec, value: Any, what: str) -> Any:
        if spec.kind == "any":
            return value
        if spec.kind == "int":
            if spec.name in ("x", "y") and isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise self.fail(f"{what} must be a pixel position (0 or more), not {value}.")
            return self.number(value, what, integer=True)
        if spec.kind == "number":
            return self.number(value, what)
        return self.text(value, what)

    # ------------------------------------------------------------------ settings
    def selector(self, value: Any) -> TargetSelector | None:
        if value is None:
            return None
        if isinstance(value, str):
            if not value.strip():
                raise self.fail("'target_domains' is empty: give a glob such as 'win10*' or a selector mapping.")
            return TargetSelector(SelectorMode.PATTERN, pattern=value)
        data = self.mapping(value, "'target_domains'")
        unknown = sorted(set(map(str, data)) - _SELECTOR_KEYS)
        if unknown:
            raise self.fail(
                f"'target_domains': unknown field(s) {', '.join(unknown)}; known: mode, pattern, names, exclude, limit."
            )
        try:
            mode = SelectorMode(str(data.get("mode", "pattern")))
        except ValueError:
            raise self.fail(
                f"'target_domains': unknown mode '{data.get('mode')}'; use single, all, pattern, list or regex."
            ) from None
        names = data.get("names") or []
        exclude = data.get("exclude") or []
        for what, items in (("names", names), ("exclude", exclude)):
            if not isinstance(items, list):
                raise self.fail(f"'target_domains': '{what}' must be a list, not {_kind(items)}.")
        pattern = self.optional_text(data.get("pattern"), "'target_domains': 'pattern'")
        if mode in (SelectorMode.PATTERN, SelectorMode.REGEX) and not pattern:
            raise self.fail(f"'target_domains': mode {mode.value} needs 'pattern'.")
        if mode is SelectorMode.LIST and not names:
            raise self.fail("'target_domains': mode list needs 'names' (a list of VM names).")
        if mode is SelectorMode.REGEX and pattern:
            import re

            try:
                re.compile(pattern)
            except re.error as exc:
                raise self.fail(
                    f"'target_domains': pattern '{pattern}' is not a valid regular expression: {exc}."
                ) from None
        limit = data.get("limit")
        return TargetSelector(
            mode=mode,
            pattern=pattern,
            names=tuple(str(n) for n in names),
            exclude=tuple(str(e) for e in exclude),
            limit=None if limit is None else int(self.number(limit, "'target_domains': 'limit'", integer=True)),
        )

    def parallel(self, value: Any) -> Parallel | None:
        if value is None:
            return None
        data = self.mapping(value, "'parallel'")
        try:
            on_failure = OnFailure(str(data.get("on_failure", "continue")))
        except ValueError:
            raise self.fail(
                f"'parallel': unknown on_failure '{data.get('on_failure')}'; use continue, stop_all or fail_fast."
            ) from None
        enabled = data.get("enabled", False)
        if not isinstance(enabled, bool):
            raise self.fail(f"'parallel': 'enabled' must be true or false, not {enabled!r}.")
        limit = data.get("max_concurrent", 10)
        return Parallel(enabled, int(self.number(limit, "'parallel': 'max_concurrent'", integer=True)), on_failure)

    def verification(self, value: Any) -> Verification | None:
        if value is None:
            return None
        data = self.mapping(value, "'verification'")
        timeout = data.get("connection_timeout")
        return Verification(
            connection_timeout=None
            if timeout is None
            else float(self.number(timeout, "'verification': 'connection_timeout'")),
            settings=dict(data),
        )

    def input_channel(self, value: Any) -> InputChannel:
        if value is None:
            return InputChannel()
        data = self.mapping(value, "'input_channel'")
        kind = str(data.get("channel_type", "qmp")).lower()
        if kind not in ("qmp", "spice"):
            raise self.fail(f"'input_channel': channel_type must be qmp or spice, not '{data.get('channel_type')}'.")
        delay, hold = data.get("key_delay_ms"), data.get("key_hold_ms")
        return InputChannel(
            kind,
            None if delay is None else int(self.number(delay, "'input_channel': 'key_delay_ms'", integer=True)),
            None if hold is None else int(self.number(hold, "'input_channel': 'key_hold_ms'", integer=True)),
        )


def _describe(spec: FieldSpec) -> str:
    return {"int": "a whole number", "number": "a number of seconds", "any": "any value"}.get(spec.kind, "a string")


def scenario_files(directory: str | Path) -> list[Path]:
    """The scenario files directly in ``directory`` (``.yaml``, ``.yml``, ``.json``), sorted by name."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ScenarioError(f"{folder}: no such scenario directory (give one with --dir).")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
