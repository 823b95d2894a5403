"""A plain XML-RPC client of a PabotLib server (``python -m pabot.pabotlib``, or the one ``pabot --pabotlib`` starts).

PabotLib (pabot 5.2.2) serves its ``_PabotLib`` object through a Robot Framework remote server: every call is
``run_keyword(name, args, kwargs)`` and the server handles one call at a time.  What this module uses:

- ``acquire_lock(name, caller_id) -> bool``: takes the lock when free (or already the caller's; it counts),
  never waits;
- ``release_lock(name, caller_id)`` / ``release_locks(caller_id)``: ``release_locks`` works for any caller id,
  which is how a lock of a dead caller is freed;
- ``get_parallel_value_for_key(key)`` (``""`` when unset) / ``set_parallel_value_for_key(key, value)``.

Locks and values live only in the server's memory and never expire: expiry is ours (see :mod:`.shared`).
"""

from __future__ import annotations

import http.client
import xmlrpc.client
from typing import Any, Protocol

from ATPLibrary.errors import ATPError, ConfigurationError


class PabotLibError(ATPError):
    """The PabotLib server could not be reached or refused a call."""


class LockService(Protocol):
    """What the shared lease store needs from PabotLib (the remote server, or ``_PabotLib`` itself in tests)."""

    def acquire_lock(self, name: str, caller_id: str) -> bool: ...
    def release_lock(self, name: str, caller_id: str) -> None: ...
    def release_locks(self, caller_id: str) -> None: ...
    def get_value(self, key: str) -> str: ...
    def set_value(self, key: str, value: str) -> None: ...


def normalize_uri(uri: str) -> str:
    """``host:port`` (as ``${PABOTLIBURI}`` holds it) or ``http://host:port`` → ``http://host:port``."""
    uri = uri.strip()
    if not uri:
        raise ConfigurationError("the PabotLib URI is empty: give host:port, e.g. 127.0.0.1:8270")
    if "://" not in uri:
        uri = "http://" + uri
    if not uri.startswith(("http://", "https://")):
        raise ConfigurationError(f"PabotLib URI '{uri}' is not http://host:port or host:port")
    return uri.rstrip("/")


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


class RemotePabotLib:
    """PabotLib over XML-RPC; every call is bounded by ``timeout`` seconds."""

    def __init__(self, uri: str, timeout: float = 10.0) -> None:
        self.uri = normalize_uri(uri)
        self.timeout = timeout

    def _call(self, name: str, *args: Any) -> Any:
        # A fresh proxy per call: ServerProxy keeps one HTTP connection, which is not thread-safe.
        proxy = xmlrpc.client.ServerProxy(self.uri, transport=_TimeoutTransport(self.timeout), allow_none=True)
        try:
            result = proxy.run_keyword(name, list(args), {})
        except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
            raise PabotLibError(
                f"PabotLib at {self.uri} did not answer '{name}' within {self.timeout:g} s: {exc!s}. "
                "Is the server running (pabot --pabotlib, or python -m pabot.pabotlib <file> <host> <port>)?"
            ) from exc
        if not isinstance(result, dict) or result.get("status") != "PASS":
            error: Any = result.get("error", result) if isinstance(result, dict) else result
            raise PabotLibError(f"PabotLib at {self.uri} refused '{name}': {error!s}")
        return result.get("return", "")

    def acquire_lock(self, name: str, caller_id: str) -> bool:
        return bool(self._call("acquire_lock", name, caller_id))

    def release_lock(self, name: str, caller_id: str) -> None:
        self._call("release_lock", name, caller_id)

    def release_locks(self, caller_id: str) -> None:
        self._call("release_locks", caller_id)

    def get_value(self, key: str) -> str:
        value = self._call("get_parallel_value_for_key", key)
        return value if isinstance(value, str) else str(value)

    def set_value(self, key: str, value: str) -> None:
        self._call("set_parallel_value_for_key", key, value)

    def reachable(self) -> str | None:
        """None when the server answers, else why not."""
        try:
            self.get_value("atp-pool:probe")
        except PabotLibError as exc:
            return str(exc)
        return None
