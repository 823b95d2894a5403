"""Test doubles shared by the unit tests (no libvirt daemon needed)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import libvirt

T = TypeVar("T")


def libvirt_error(code: int, message: str = "error", domain: int = libvirt.VIR_FROM_QEMU) -> libvirt.libvirtError:
    """A libvirtError carrying ``code``, ``domain`` and ``message`` like the real bindings produce.

    (The real constructor reads the thread's last libvirt error, so it is bypassed.)
    """
    err = libvirt.libvirtError.__new__(libvirt.libvirtError)
    Exception.__init__(err, message)
    err.err = (code, domain, message, 2, None, None, None, 0, 0)
    return err


class FakeTarget:
    """A DomainTarget that hands a dummy domain object to the call."""

    def __init__(self, name: str = "vm1", uri: str = "test:///fake") -> None:
        self._name = name
        self._uri = uri
        self.dom = object()
        self.calls: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def uri(self) -> str:
        return self._uri

    def run(self, fn: Callable[[Any], T], *, what: str, idempotent: bool) -> T:
        self.calls.append(what)
        return fn(self.dom)


class FakeClock:
    """A manual clock; ``sleep`` advances it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeAgentCommand:
    """Stands in for ``libvirt_qemu.qemuAgentCommand``; ``handler(name, args)`` returns a value or raises."""

    def __init__(self, handler: Callable[[str, dict[str, Any]], Any]) -> None:
        self.handler = handler
        self.requests: list[tuple[str, dict[str, Any], int]] = []

    def __call__(self, dom: Any, cmd: str, timeout: int, flags: int) -> str:
        request = json.loads(cmd)
        name = request["execute"]
        args = request.get("arguments", {})
        self.requests.append((name, args, timeout))
        return json.dumps({"return": self.handler(name, args)})

    def names(self) -> list[str]:
        return [r[0] for r in self.requests]
