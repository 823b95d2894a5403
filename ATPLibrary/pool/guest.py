"""The in-guest lease: ``/run/atp-lease`` inside the VM, the proof of exclusive use that does not trust the pool.

Taking it writes the record to a file of its own (``/run/atp-lease.take.<shell pid>``) and hard-links that
file to ``/run/atp-lease``: ``link()`` fails when the name exists, so exactly one of two racing takers wins, and
the lease file is never seen half-written (no check-then-create).  A taker that loses reads the file and
fails naming its holder.  Release removes the file only when it holds our token.

A stale file (its holder was killed) may be broken only by a process that holds the VM's *pool* lease, and
only when its recorded holder is provably gone: it ran on this machine and its PID (with its start time) is
gone, or it recorded a PabotLib caller whose liveness key stopped being renewed (its process or machine died).
A live holder is never broken, even if the pool says the VM is ours: that is the double use this proves.
``/run`` is a tmpfs, so a reboot or power-off of the guest removes the lease too.

Plain Python: ``agent`` is anything with :meth:`ATPLibrary.qga.agent.GuestAgent.run_shell`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ATPLibrary.errors import ATPError, GuestCommandError
from ATPLibrary.pool.identity import Holder

LEASE_FILE = "/run/atp-lease"

_TAKE = f"""p={LEASE_FILE}; t="$p.take.$$"
cat > "$t" || {{ rm -f "$t"; echo "ATP-ERROR cannot write $t"; exit 4; }}
if ln "$t" "$p" 2>/dev/null; then rm -f "$t"; echo ATP-TAKEN; exit 0; fi
rm -f "$t"
[ -e "$p" ] || {{ echo "ATP-ERROR cannot create $p"; exit 5; }}
echo ATP-HELD; cat "$p"; exit 3
"""

# Removes the file only when it carries the token in $ATP_TOKEN.
_REMOVE = f"""p={LEASE_FILE}
[ -e "$p" ] || {{ echo ATP-MISSING; exit 0; }}
if grep -q -F "\\"token\\": \\"$ATP_TOKEN\\"" "$p"; then rm -f "$p"; echo ATP-RELEASED; exit 0; fi
echo ATP-OTHER; cat "$p"; exit 3
"""


class ShellAgent(Protocol):
    def run_shell(
        self,
        command: str,
        timeout: float = ...,
        input_data: bytes | str | None = ...,
        env: Mapping[str, str] | None = ...,
    ) -> Any: ...


class GuestLeaseHeldError(ATPError):
    """The VM's in-guest lease is held by someone else: two processes would drive one VM."""


@dataclass(frozen=True)
class GuestLeaseRecord:
    """What ``/run/atp-lease`` holds."""

    holder: Holder
    test: str
    vm: str
    #: PabotLib caller id of the holder's pool (its liveness key), "" with the local backend.
    caller: str = ""
    taken: float = field(default_factory=time.time)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def dump(self) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.taken))
        return (
            json.dumps(
                {
                    "token": self.token,
                    **self.holder.to_dict(),
                    "test": self.test,
                    "vm": self.vm,
                    "caller": self.caller,
                    "taken": self.taken,
                    "time": stamp,
                }
            )
            + "\n"
        )

    @classmethod
    def parse(cls, text: str) -> GuestLeaseRecord | None:
        try:
            data = json.loads(text)
            return cls(
                holder=Holder.from_dict(data),
                test=str(data.get("test", "?")),
                vm=str(data.get("vm", "?")),
                caller=str(data.get("caller", "")),
                taken=float(data.get("taken", 0.0)),
                token=str(data["token"]),
            )
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.taken))
        who = self.holder.describe()
        if self.test and self.test not in self.holder.scope:
            who = f"test '{self.test}' of {who}"
        return f"{who}, taken {stamp}"


def _after(marker: str, stdout: str) -> str:
    return stdout.split(marker, 1)[1].lstrip("\n") if marker in stdout else ""


def _describe_text(text: str) -> str:
    record = GuestLeaseRecord.parse(text)
    return record.describe() if record else f"an unreadable record {text.strip()[:200]!r}"


def take(
    agent: ShellAgent,
    record: GuestLeaseRecord,
    *,
    stale_reason: Callable[[GuestLeaseRecord], str | None],
    timeout: float,
) -> str:
    """Creates the lease file atomically; returns "" or a note (a stale lease broken, already ours).

    Raises :class:`GuestLeaseHeldError` naming the holder when someone else holds it.
    """
    vm = getattr(agent, "vm", record.vm)
    note = ""
    for _attempt in (1, 2):
        result = agent.run_shell(_TAKE, timeout=timeout, input_data=record.dump())
        if "ATP-TAKEN" in result.stdout:
            return note
        if "ATP-HELD" not in result.stdout:
            raise GuestCommandError(
                f"VM '{vm}': could not create {LEASE_FILE}: {result.stdout.strip()} {result.stderr}"
            )
        text = _after("ATP-HELD", result.stdout)
        current = GuestLeaseRecord.parse(text)
        if current is not None and current.token == record.token:
            return "already held by this test"
        reason = stale_reason(current) if current is not None else None
        if current is None or reason is None or note:
            raise GuestLeaseHeldError(
                f"VM '{vm}' is in use by another holder: {LEASE_FILE} in the guest names {_describe_text(text)}. "
                "Two processes would drive one VM: check that every runner shares one lease store "
                "(ATP_POOL=pabotlib with one PabotLib server, or one ATP_LEASE_DIR on one machine). A file left by "
                "a killed run is broken automatically once its holder is provably gone; otherwise remove it with "
                "Release Guest Lease ... force=True."
            )
        removed = agent.run_shell(_REMOVE, timeout=timeout, env={"ATP_TOKEN": current.token})
        if "ATP-RELEASED" not in removed.stdout and "ATP-MISSING" not in removed.stdout:
            raise GuestLeaseHeldError(
                f"VM '{vm}': {LEASE_FILE} changed while breaking a stale lease: now "
                f"{_describe_text(_after('ATP-OTHER', removed.stdout))}"
            )
        note = f"broke the stale in-guest lease of {current.describe()}: {reason}"
    raise AssertionError("unreachable")  # pragma: no cover


def release(agent: ShellAgent, token: str, *, timeout: float) -> str:
    """Removes the lease file when it carries ``token``: ``"released"`` or ``"missing"``.

    Raises :class:`GuestLeaseHeldError` naming the holder when the file is someone else's.
    """
    result = agent.run_shell(_REMOVE, timeout=timeout, env={"ATP_TOKEN": token})
    if "ATP-RELEASED" in result.stdout:
        return "released"
    if "ATP-MISSING" in result.stdout:
        return "missing"
    if "ATP-OTHER" in result.stdout:
        vm = getattr(agent, "vm", "?")
        raise GuestLeaseHeldError(
            f"VM '{vm}': our in-guest lease was replaced: {LEASE_FILE} now names "
            f"{_describe_text(_after('ATP-OTHER', result.stdout))}. Another process used this VM during the test."
        )
    raise GuestCommandError(f"could not release {LEASE_FILE}: {result.stdout.strip()} {result.stderr}")


def read(agent: ShellAgent, *, timeout: float) -> GuestLeaseRecord | None:
    """The current lease record in the guest (None when there is none)."""
    result = agent.run_shell(f"cat {LEASE_FILE} 2>/dev/null || true", timeout=timeout)
    return GuestLeaseRecord.parse(result.stdout) if result.stdout.strip() else None


def force_remove(agent: ShellAgent, *, timeout: float) -> str:
    """Removes the lease file whoever holds it; returns what it held ("" when none)."""
    result = agent.run_shell(f"cat {LEASE_FILE} 2>/dev/null; rm -f {LEASE_FILE}", timeout=timeout)
    return str(result.stdout)


def stale_reason(
    current: GuestLeaseRecord,
    *,
    pool_lease_held: bool,
    caller_alive: Callable[[str], bool] | None,
) -> str | None:
    """Why ``current`` may be broken, or None.  The rule: see the module docstring."""
    if not pool_lease_held:
        return None
    if current.holder.is_dead_local():
        return f"its process (PID {current.holder.pid}) on this machine ({current.holder.machine}) is gone"
    if current.caller and caller_alive is not None and not caller_alive(current.caller):
        return "its process stopped renewing its liveness in PabotLib (its process or machine died)"
    return None
