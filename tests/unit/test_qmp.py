from __future__ import annotations

import json
from typing import Any

import pytest
from fakes import FakeTarget

from ATPLibrary.errors import KeyMapError, QMPCommandError, QMPError
from ATPLibrary.qmp import LibvirtQmpTransport, MonitorClient, QmpKeyboard, QmpTransport, chunk_events
from ATPLibrary.qmp.keyboard import CHARS_PER_COMMAND

pytestmark = pytest.mark.timeout(10)


class FakeMonitor:
    """Stands in for ``libvirt_qemu.qemuMonitorCommand``; records every command."""

    def __init__(self, reply: dict[str, Any] | None = None) -> None:
        self.commands: list[dict[str, Any]] = []
        self.reply = reply if reply is not None else {"return": {}}

    def __call__(self, dom: Any, cmd: str, flags: int) -> str:
        self.commands.append(json.loads(cmd))
        return json.dumps(self.reply)

    def input_batches(self) -> list[list[dict[str, Any]]]:
        return [c["arguments"]["events"] for c in self.commands if c["execute"] == "input-send-event"]

    def key_sequence(self) -> list[tuple[str, bool]]:
        return [(e["data"]["key"]["data"], e["data"]["down"]) for batch in self.input_batches() for e in batch]


def make(reply: dict[str, Any] | None = None) -> tuple[FakeMonitor, MonitorClient]:
    fake = FakeMonitor(reply)
    return fake, MonitorClient(LibvirtQmpTransport(FakeTarget(), monitor_command=fake))


class RecordingTransport:
    """A QmpTransport that records what MonitorClient asks of it."""

    description = "fake transport"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, float, bool]] = []

    def execute(self, command: str, arguments: Any = None, timeout: float = 30.0, *, idempotent: bool = False) -> Any:
        self.calls.append((command, arguments, timeout, idempotent))
        return {"command": command}

    def close(self) -> None:
        pass


def test_monitor_client_passes_timeout_and_idempotence_to_its_transport() -> None:
    transport = RecordingTransport()
    assert isinstance(transport, QmpTransport)
    monitor = MonitorClient(transport, timeout=7.5)
    assert monitor.execute("query-status") == {"command": "query-status"}
    monitor.execute("input-send-event", {"events": []})
    monitor.execute("stop", idempotent=True, timeout=1)
    assert transport.calls == [
        ("query-status", None, 7.5, True),
        ("input-send-event", {"events": []}, 7.5, False),
        ("stop", None, 1, True),
    ]
    assert monitor.commands_sent == 3


def test_monitor_client_wraps_a_domain_target_in_the_libvirt_transport() -> None:
    fake = FakeMonitor({"return": {"running": True, "status": "running"}})
    target = FakeTarget()
    monitor = MonitorClient(target, monitor_command=fake)
    assert isinstance(monitor.transport, LibvirtQmpTransport)
    assert monitor.status() == {"running": True, "status": "running"}
    assert target.calls == ["QMP command query-status"]
    with pytest.raises(TypeError):
        MonitorClient(RecordingTransport(), monitor_command=fake)


def test_libvirt_transport_rejects_a_reply_that_is_not_json() -> None:
    transport = LibvirtQmpTransport(FakeTarget(), monitor_command=lambda dom, cmd, flags: "not json")
    with pytest.raises(QMPError, match=r"VM 'vm1' \(test:///fake\): QMP reply to query-status is not JSON"):
        transport.execute("query-status")


def test_chunk_events_keeps_order_and_limit() -> None:
    events = [{"n": i} for i in range(131)]
    chunks = chunk_events(events, 60)
    assert [len(c) for c in chunks] == [60, 60, 11]
    assert [e for c in chunks for e in c] == events


def test_send_input_events_never_sends_more_than_60_events() -> None:
    fake, monitor = make()
    events = [{"type": "key", "data": {"down": True, "key": {"type": "qcode", "data": "a"}}}] * 250
    sent = monitor.send_input_events(events, limit=100)
    batches = fake.input_batches()
    assert sent == len(batches) == 5
    assert max(len(b) for b in batches) <= 60
    assert sum(len(b) for b in batches) == 250


def test_execute_returns_value_and_maps_errors() -> None:
    fake, monitor = make({"return": {"running": True, "status": "running"}})
    assert monitor.execute("query-status") == {"running": True, "status": "running"}
    assert fake.commands == [{"execute": "query-status"}]
    _, monitor = make({"error": {"class": "DeviceNotFound", "desc": "Device 'input3' not found"}})
    with pytest.raises(QMPCommandError) as info:
        monitor.execute("input-send-event", {"device": "input3", "events": []})
    assert info.value.error_class == "DeviceNotFound"
    assert info.value.desc == "Device 'input3' not found"
    assert "vm1" in str(info.value)


def test_type_text_is_exact_with_explicit_shift_and_batches_of_15() -> None:
    fake, monitor = make()
    text = "Hello_World-42 (a>b) & {x|y} #~$ tail aabbcc  ::\n"
    commands = QmpKeyboard(monitor).type_text(text)
    batches = fake.input_batches()
    assert commands == len(batches) == -(-len(text) // CHARS_PER_COMMAND)
    assert all(len(b) <= 60 for b in batches)
    seq = fake.key_sequence()
    # reconstruct the typed text from the events: shift state + key downs
    qcode_to_char = {
        "minus": "-",
        "spc": " ",
        "ret": "\n",
        "9": "9",
        "0": "0",
        "dot": ".",
        "7": "7",
        "bracket_left": "[",
        "bracket_right": "]",
        "backslash": "\\",
        "3": "3",
        "grave_accent": "`",
        "4": "4",
        "semicolon": ";",
        "2": "2",
    }
    shifted = {
        "-": "_",
        "9": "(",
        "0": ")",
        ".": ">",
        "7": "&",
        "[": "{",
        "]": "}",
        "\\": "|",
        "3": "#",
        "`": "~",
        "4": "$",
        ";": ":",
    }
    typed, shift = [], False
    for qcode, down in seq:
        if qcode == "shift":
            shift = down
            continue
        if down:
            char = qcode_to_char.get(qcode, qcode)
            typed.append((char.upper() if len(char) == 1 and char.isalpha() else shifted[char]) if shift else char)
    assert "".join(typed) == text
    downs = [q for q, d in seq if d and q != "shift"]
    ups = [q for q, d in seq if not d and q != "shift"]
    assert downs == ups  # each char pressed and released in order
    assert seq[:4] == [("shift", True), ("h", True), ("h", False), ("shift", False)]


def test_type_text_with_delay_sends_one_char_per_command() -> None:
    fake, monitor = make()
    sleeps: list[float] = []
    QmpKeyboard(monitor, sleep=sleeps.append).type_text("aA", delay=0.05)
    assert [len(b) for b in fake.input_batches()] == [2, 4]
    assert sleeps == [0.05]


def test_type_text_rejects_bad_char_before_sending_anything() -> None:
    fake, monitor = make()
    with pytest.raises(KeyMapError):
        QmpKeyboard(monitor).type_text("ok so far \u00e9")
    assert fake.commands == []


def test_press_combos_down_in_order_up_in_reverse() -> None:
    fake, monitor = make()
    QmpKeyboard(monitor).press_combos(["ctrl+alt+delete", "ENTER"])
    assert fake.key_sequence() == [
        ("ctrl", True),
        ("alt", True),
        ("delete", True),
        ("delete", False),
        ("alt", False),
        ("ctrl", False),
        ("ret", True),
        ("ret", False),
    ]


def test_press_combos_validates_every_combo_first() -> None:
    fake, monitor = make()
    with pytest.raises(KeyMapError, match="ENTER"):
        QmpKeyboard(monitor).press_combos(["a", "ENTR"])
    assert fake.commands == []


def test_hold_sends_down_waits_then_up_per_character_and_is_bounded() -> None:
    from ATPLibrary.errors import ConfigurationError
    from ATPLibrary.qmp.keyboard import MAX_HOLD, QmpKeyboard

    sent: list[list[dict[str, object]]] = []
    sleeps: list[float] = []

    class Monitor:
        def send_input_events(self, events: list[dict[str, object]]) -> int:
            sent.append(list(events))
            return 1

    kb = QmpKeyboard(Monitor(), sleep=sleeps.append)  # type: ignore[arg-type]
    assert kb.type_text("aB", hold=0.05) == 4
    downs = [[(e["data"]["key"]["data"], e["data"]["down"]) for e in cmd] for cmd in sent]  # type: ignore[index]
    assert downs == [
        [("a", True)],
        [("a", False)],
        [("shift", True), ("b", True)],
        [("b", False), ("shift", False)],
    ]
    assert sleeps == [0.05, 0.05]
    with pytest.raises(ConfigurationError, match="auto-repeat"):
        kb.type_text("a", hold=MAX_HOLD)
    with pytest.raises(ConfigurationError, match="negative"):
        kb.type_text("a", delay=-1)
