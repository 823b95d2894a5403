"""Named libvirt hosts with one current host."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ATPLibrary.errors import ConfigurationError, HostError
from ATPLibrary.hosts.connection import HostConnection

HostFactory = Callable[[str, str], HostConnection]


class HostRegistry:
    """Host connections keyed by alias; the most recently added or switched-to host is current."""

    def __init__(self, factory: HostFactory | None = None) -> None:
        self._hosts: dict[str, HostConnection] = {}
        self._current: str | None = None
        self._factory: HostFactory = factory or (lambda uri, alias: HostConnection(uri, alias=alias))

    def __len__(self) -> int:
        return len(self._hosts)

    def __iter__(self) -> Iterator[HostConnection]:
        return iter(list(self._hosts.values()))

    def __contains__(self, alias: object) -> bool:
        return alias in self._hosts

    @property
    def aliases(self) -> list[str]:
        return list(self._hosts)

    def add(self, uri: str, alias: str | None = None) -> HostConnection:
        """Register (without opening) a host under ``alias`` (default: the URI) and make it current.

        An existing host with the same alias is closed and replaced.
        """
        key = alias or uri
        old = self._hosts.pop(key, None)
        if old is not None:
            old.close()
        host = self._factory(uri, key)
        self._hosts[key] = host
        self._current = key
        return host

    def get(self, alias: str | None = None) -> HostConnection:
        """The host called ``alias``, or the current host when ``alias`` is None."""
        key = alias if alias is not None else self._current
        if key is None:
            raise HostError("No libvirt host is connected. Use Connect To Host first.")
        try:
            return self._hosts[key]
        except KeyError:
            known = ", ".join(self._hosts) or "(none)"
            raise ConfigurationError(f"No host with alias '{key}'. Known aliases: {known}.") from None

    @property
    def current(self) -> HostConnection | None:
        return self._hosts.get(self._current) if self._current is not None else None

    def switch(self, alias: str) -> HostConnection:
        """Make ``alias`` the current host and return it."""
        host = self.get(alias)
        self._current = alias
        return host

    def remove(self, alias: str | None = None) -> HostConnection | None:
        """Close and forget ``alias`` (default: current); the last added remaining host becomes current."""
        key = alias if alias is not None else self._current
        if key is None or key not in self._hosts:
            return None
        host = self._hosts.pop(key)
        host.close()
        if self._current == key:
            self._current = next(reversed(self._hosts), None) if self._hosts else None
        return host

    def close_all(self) -> None:
        """Close and forget every host."""
        for host in list(self._hosts.values()):
            host.close()
        self._hosts.clear()
        self._current = None
