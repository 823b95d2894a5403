from __future__ import annotations

import base64
import time
from typing import Any

import libvirt
import pytest
from fakes import FakeAgentCommand, FakeClock, FakeTarget, libvirt_error

from ATPLibrary.errors import GuestAgentError, GuestAgentNotResponding, GuestCommandError, VMStateError
from ATPLibrary.qga import GuestAgent


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ExecGuest:
    """qemu-ga's guest-exec/guest-exec-status: output only with exited:true, entry freed after it."""

    def __init__(
        self,
        polls_before_exit: int = 3,
        out: bytes = b"/dev/sdb\n",
        err: bytes = b"",
        exitcode: int | None = 0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.polls_before_exit = polls_before_exit
        self.out, self.err, self.exitcode = out, err, exitcode
        self.extra = extra or {}
        self.next_pid = 100
        self.entries: dict[int, int] = {}
        self.status_after_exit = 0
        self.killed: list[str] = []

    def __call__(self, name: str, args: dict[str, Any]) -> Any:
        if name == "guest-exec":
            pid = self.next_pid
            self.next_pid += 1
            if args["path"] == "/bin/sh" and "kill -9" in " ".join(args["arg"]):
                self.killed.append(args["arg"][-1])
                self.entries[pid] = 0
            else:
                self.entries[pid] = self.polls_before_exit
            return {"pid": pid}
        if name == "guest-exec-status":
            pid = args["pid"]
            if pid not in self.entries:
                self.status_after_exit += 1
                raise libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, "Invalid parameter 'pid'")
            left = self.entries[pid]
            if left > 0:
                self.entries[pid] = left - 1
                return {"exited": False}
            del self.entries[pid]  # qemu-ga frees the entry once it reports exited:true
            status: dict[str, Any] = {"exited": True, "out-data": b64(self.out)}
            if self.exitcode is not None:
                status["exitcode"] = self.exitcode
            if self.err:
                status["err-data"] = b64(self.err)
            status.update(self.extra)
            return status
        raise AssertionError(f"unexpected command {name}")


def test_exec_polls_until_exited_and_decodes_output_then_never_polls_again() -> None:
    guest = ExecGuest(polls_before_exit=4, out=b"/dev/sdb\n", err=b"warn\n", exitcode=0)
    fake = FakeAgentCommand(guest)
    clock = FakeClock()
    agent = GuestAgent(FakeTarget(), agent_command=fake, clock=clock, sleep=clock.sleep)
    result = agent.exec("blkid", ["-o", "value", "-L", "swap"], timeout=10)
    assert result.rc == 0
    assert result.stdout == "/dev/sdb\n" and result.stdout_bytes == b"/dev/sdb\n"
    assert result.stderr == "warn\n"
    assert fake.names() == ["guest-exec"] + ["guest-exec-status"] * 5
    assert guest.status_after_exit == 0
    assert fake.requests[0][1] == {
        "path": "blkid",
        "arg": ["-o", "value", "-L", "swap"],
        "capture-output": True,
    }


def test_poll_interval_starts_small_and_grows_to_a_cap() -> None:
    guest = ExecGuest(polls_before_exit=30)
    clock = FakeClock()
    agent = GuestAgent(FakeTarget(), agent_command=FakeAgentCommand(guest), clock=clock, sleep=clock.sleep)
    agent.exec("/bin/true", timeout=60)
    assert clock.sleeps[0] == pytest.approx(0.01)
    assert clock.sleeps == sorted(clock.sleeps)
    assert max(clock.sleeps) == pytest.approx(0.2)


def test_run_shell_uses_bin_sh_c_and_passes_input_and_env() -> None:
    guest = ExecGuest(polls_before_exit=0, out=b"x")
    fake = FakeAgentCommand(guest)
    agent = GuestAgent(FakeTarget(), agent_command=fake)
    result = agent.run_shell("echo $A", input_data="in", env={"A": "1"})
    args = fake.requests[0][1]
    assert args["path"] == "/bin/sh" and args["arg"] == ["-c", "echo $A"]
    assert base64.b64decode(args["input-data"]) == b"in"
    assert args["env"] == ["A=1"]
    assert result.command == "echo $A"


def test_exec_flags_truncated_output_and_keeps_bytes_when_not_utf8() -> None:
    guest = ExecGuest(polls_before_exit=0, out=b"\xff\xfeok", exitcode=None, extra={"out-truncated": True, "signal": 9})
    agent = GuestAgent(FakeTarget(), agent_command=FakeAgentCommand(guest))
    result = agent.exec("/bin/x")
    assert result.stdout_truncated and result.truncated and not result.stderr_truncated
    assert result.stdout_bytes == b"\xff\xfeok"
    assert result.stdout == "\ufffd\ufffdok"
    assert result.signal == 9 and result.rc is None


def test_exec_timeout_kills_the_process_and_raises_within_the_bound() -> None:
    guest = ExecGuest(polls_before_exit=10**9)
    fake = FakeAgentCommand(guest)
    agent = GuestAgent(FakeTarget("desk-7", "qemu:///system"), agent_command=fake)
    start = time.monotonic()
    with pytest.raises(GuestCommandError) as info:
        agent.run_shell("sleep 100", timeout=0.3)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert "sleep 100" in message and "desk-7" in message and "300 ms" in message and "killed" in message
    assert guest.killed and guest.killed[0].endswith("k 100")
    assert 0.3 <= elapsed < 0.3 + 2.5  # kill + reap are bounded too


def test_exec_error_reply_becomes_guest_command_error() -> None:
    def agent_command(dom: Any, cmd: str, timeout: int, flags: int) -> str:
        return '{"error": {"class": "GenericError", "desc": "Failed to execute child process (No such file)"}}'

    agent = GuestAgent(FakeTarget(), agent_command=agent_command)
    with pytest.raises(GuestCommandError, match=r"could not start '/bin/nope'.*No such file"):
        agent.exec("/bin/nope")


def test_ping_retries_code_86_until_it_answers() -> None:
    clock = FakeClock()
    calls = {"n": 0}

    def handler(name: str, args: dict[str, Any]) -> Any:
        assert name == "guest-ping"
        calls["n"] += 1
        if calls["n"] < 5:
            raise libvirt_error(
                libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                "Guest agent is not responding: QEMU guest agent is not connected",
            )
        return {}

    agent = GuestAgent(FakeTarget(), agent_command=FakeAgentCommand(handler), clock=clock, sleep=clock.sleep)
    waited = agent.ping(timeout=30)
    assert calls["n"] == 5
    assert waited == pytest.approx(sum(clock.sleeps))


def test_ping_gives_up_at_the_deadline_with_a_clear_message() -> None:
    clock = FakeClock()

    def handler(name: str, args: dict[str, Any]) -> Any:
        raise libvirt_error(libvirt.VIR_ERR_AGENT_UNRESPONSIVE, "Guest agent is not responding")

    fake = FakeAgentCommand(handler)
    agent = GuestAgent(FakeTarget("desk-1"), agent_command=fake, clock=clock, sleep=clock.sleep)
    with pytest.raises(GuestAgentNotResponding) as info:
        agent.ping(timeout=10)
    assert "guest agent not responding" in str(info.value)
    assert "desk-1" in str(info.value) and "10 seconds" in str(info.value)
    assert clock.now - 1000.0 == pytest.approx(10.0)
    assert len(fake.requests) > 5
    assert all(1 <= t <= 10 for _, _, t in fake.requests)


def test_ping_also_retries_not_connected_messages_with_other_codes() -> None:
    clock = FakeClock()
    seq = [libvirt_error(libvirt.VIR_ERR_OPERATION_FAILED, "QEMU guest agent is not connected")]

    def handler(name: str, args: dict[str, Any]) -> Any:
        if seq:
            raise seq.pop()
        return {}

    agent = GuestAgent(FakeTarget(), agent_command=FakeAgentCommand(handler), clock=clock, sleep=clock.sleep)
    agent.ping(timeout=5)
    assert not seq


def test_ping_fails_at_once_when_the_domain_is_not_running() -> None:
    clock = FakeClock()

    def handler(name: str, args: dict[str, Any]) -> Any:
        raise libvirt_error(
            libvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: domain is not running"
        )

    fake = FakeAgentCommand(handler)
    agent = GuestAgent(FakeTarget(), agent_command=fake, clock=clock, sleep=clock.sleep)
    with pytest.raises(VMStateError, match="not running"):
        agent.ping(timeout=30)
    assert len(fake.requests) == 1


def test_agent_error_reply_is_mapped() -> None:
    def agent_command(dom: Any, cmd: str, timeout: int, flags: int) -> str:
        return '{"error": {"class": "CommandNotFound", "desc": "The command guest-x has not been found"}}'

    agent = GuestAgent(FakeTarget(), agent_command=agent_command)
    with pytest.raises(GuestAgentError, match="CommandNotFound"):
        agent.command("guest-x")


def test_exec_waits_for_an_agent_that_is_not_connected_yet() -> None:
    clock = FakeClock()
    guest = ExecGuest(polls_before_exit=0, out=b"up\n")
    state = {"connected_at": 1003.0}

    def handler(name: str, args: dict[str, Any]) -> Any:
        if clock.now < state["connected_at"]:
            raise libvirt_error(
                libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                "Guest agent is not responding: QEMU guest agent is not connected",
            )
        return {} if name == "guest-ping" else guest(name, args)

    fake = FakeAgentCommand(handler)
    agent = GuestAgent(FakeTarget(), agent_command=fake, clock=clock, sleep=clock.sleep)
    assert agent.run_shell("echo up", timeout=30).stdout == "up\n"
    assert fake.names().count("guest-exec") == 2 and "guest-ping" in fake.names()

    state["connected_at"] = 10**9
    with pytest.raises(GuestAgentNotResponding, match=r"could not run 'echo up'.*not responding within 5 seconds"):
        agent.run_shell("echo up", timeout=5)


def test_too_much_input_data_fails_before_anything_is_sent() -> None:
    from ATPLibrary.errors import ConfigurationError
    from ATPLibrary.qga.agent import MAX_INPUT_DATA, GuestAgent

    sent: list[str] = []

    def agent_command(dom: object, cmd: str, timeout: int, flags: int) -> str:
        sent.append(cmd)
        return '{"return": {}}'

    agent = GuestAgent(FakeTarget(), agent_command=agent_command)
    with pytest.raises(ConfigurationError, match="Upload File To Guest"):
        agent.run_shell("cat > /tmp/big", input_data=b"x" * (MAX_INPUT_DATA + 1))
    assert sent == []
