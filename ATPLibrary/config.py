"""The ``atp`` configuration file: libvirt hosts, the VDI platform, defaults.

Plain Python (no Robot import).  Which file is used, first match wins:

1. ``$ATP_CONFIG`` (the file need not exist yet: ``atp host add`` creates it);
2. ``./atp.toml``;
3. ``$XDG_CONFIG_HOME/atp/atp.toml`` (default ``~/.config/atp/atp.toml``);
4. the original system's files, read-only: ``$ATP_TEST_CONFIG``, ``./config/atp.toml``, ``/etc/atp/atp.toml``.

Any of these files may be in the original system's format (it has a ``[libvirt]`` table): it is read, mapped
(``[libvirt] uri`` becomes host ``default``, ``[libvirt.hosts.<id>]`` the other hosts, ``[vdi] base_url`` the
VDI URL, ``[vm] name`` the default VM, ``[test] timeout`` the default timeout) and never written.  When no file
has a host, the local lab's libvirt (``qemu:///system``) is the implicit host ``local``.

Secrets are never written to the file: the VDI password comes from ``$ATP_VDI_PASSWORD`` (an original-format file's
``[vdi] password`` is read as a fallback), and an SSH password is stored only as the *name* of an environment
variable (``ssh_password_env``).  A ``password`` key in our format is an error naming the file and line.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ATPLibrary.errors import ConfigurationError

FORMAT_VERSION = 1
LOCAL_HOST_ID = "local"
LOCAL_HOST_URI = "qemu:///system"
ORIGINAL_DEFAULT_HOST_ID = "default"
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0

ENV_CONFIG = "ATP_CONFIG"
ENV_ORIGINAL_CONFIG = "ATP_TEST_CONFIG"
ENV_VDI_URL = "ATP_VDI_URL"
ENV_VDI_BASE_URL = "ATP_VDI_BASE_URL"  # the original system's name for it
ENV_VDI_USERNAME = "ATP_VDI_USERNAME"
ENV_VDI_PASSWORD = "ATP_VDI_PASSWORD"
ENV_VDI_VERIFY_SSL = "ATP_VDI_VERIFY_SSL"
ENV_TIMEOUT = "ATP_TIMEOUT"
ENV_ORIGINAL_TIMEOUT = "ATP_TEST_TIMEOUT"
ENV_CONNECT_TIMEOUT = "ATP_CONNECT_TIMEOUT"
ENV_ORIGINAL_HOST = "ATP_TEST_HOST"  # the original system's libvirt URI override (host "default")
ENV_VM = "ATP_TEST_VM"

#: every environment variable read here, for ``--help`` and the docs.
ENVIRONMENT: dict[str, str] = {
    ENV_CONFIG: "the config file to use (and to write)",
    ENV_ORIGINAL_CONFIG: "the original system's config file (read-only fallback)",
    ENV_VDI_URL: "VDI platform URL (also ATP_VDI_BASE_URL, the original's name)",
    ENV_VDI_USERNAME: "VDI platform user",
    ENV_VDI_PASSWORD: "VDI platform password (never stored in the file)",
    ENV_VDI_VERIFY_SSL: "verify the VDI platform's TLS certificate (true/false)",
    ENV_TIMEOUT: "default timeout in seconds (also ATP_TEST_TIMEOUT, the original's name)",
    ENV_CONNECT_TIMEOUT: "seconds to wait for a libvirt host to answer",
    ENV_ORIGINAL_HOST: "libvirt URI of host 'default' of an original-format file",
    ENV_VM: "default VM name",
}

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ORIGINAL_TABLES = frozenset({"libvirt", "environment", "protocols", "test", "database", "ssh", "vm"})

Kind = Literal["atp", "original", "none"]


# ---------------------------------------------------------------- the model


@dataclass
class HostConfig:
    """One libvirt host.  ``uri`` is what was configured; :meth:`libvirt_uri` adds the SSH settings."""

    id: str
    uri: str
    address: str | None = None
    ssh_user: str | None = None
    ssh_port: int | None = None
    ssh_key: str | None = None
    ssh_password_env: str | None = None
    implicit: bool = False

    def libvirt_uri(self) -> str:
        """The URI to open: for ``qemu+ssh://`` the SSH user, port and key are added unless the URI has them."""
        parts = urllib.parse.urlsplit(self.uri)
        if not parts.scheme.endswith("+ssh") and not parts.scheme.endswith("+libssh2"):
            return self.uri
        netloc = parts.netloc
        userinfo, _, hostport = netloc.rpartition("@")
        if not userinfo and self.ssh_user:
            userinfo = self.ssh_user
        if self.ssh_port is not None and not re.search(r":\d+$", hostport):
            hostport = f"{hostport}:{self.ssh_port}"
        netloc = f"{userinfo}@{hostport}" if userinfo else hostport
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if self.ssh_key and not any(k == "keyfile" for k, _ in query):
            query.append(("keyfile", self.ssh_key))
        encoded = urllib.parse.urlencode(query, safe="/", quote_via=urllib.parse.quote)  # libvirt unescapes %XX
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, encoded, parts.fragment))

    def ssh_password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The SSH password from the environment variable this host names (``None`` when none is named/set)."""
        if not self.ssh_password_env:
            return None
        return (os.environ if environ is None else environ).get(self.ssh_password_env)

    def to_dict(self) -> dict[str, Any]:
        """For ``--json`` output (no secrets: only the variable's name)."""
        return {
            "id": self.id,
            "uri": self.uri,
            "libvirt_uri": self.libvirt_uri(),
            "address": self.address,
            "ssh_user": self.ssh_user,
            "ssh_port": self.ssh_port,
            "ssh_key": self.ssh_key,
            "ssh_password_env": self.ssh_password_env,
            "implicit": self.implicit,
        }


def implicit_local_host() -> HostConfig:
    """The host used when none is configured: the local lab's libvirt."""
    return HostConfig(LOCAL_HOST_ID, LOCAL_HOST_URI, implicit=True)


@dataclass
class VdiConfig:
    url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_ssl: bool | None = None
    connect_timeout: float | None = None


@dataclass
class Defaults:
    host: str | None = None
    vm: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT


@dataclass
class AtpConfig:
    """A loaded configuration.

    ``hosts`` always has at least one host: with none configured it holds the implicit ``local`` host.
    ``path`` is the file it came from (or will be written to); ``kind`` says its format (``none``: no file).
    """

    path: Path | None = None
    kind: Kind = "none"
    hosts: dict[str, HostConfig] = field(default_factory=lambda: {LOCAL_HOST_ID: implicit_local_host()})
    vdi: VdiConfig = field(default_factory=VdiConfig)
    defaults: Defaults = field(default_factory=Defaults)
    notes: list[str] = field(default_factory=list)

    @property
    def writable(self) -> bool:
        return self.kind != "original" and self.path is not None

    @property
    def configured_hosts(self) -> dict[str, HostConfig]:
        """The hosts written in the file (without the implicit ``local``)."""
        return {k: h for k, h in self.hosts.items() if not h.implicit}

    def describe(self) -> str:
        """One line saying where the configuration came from."""
        if self.path is None:
            return "no config file"
        if self.kind == "original":
            return f"{self.path} (the original system's format, read-only)"
        if not self.path.exists():
            return f"{self.path} (does not exist yet)"
        return str(self.path)


# ---------------------------------------------------------------- search order


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/atp/atp.toml`` (default ``~/.config/atp/atp.toml``)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "atp" / "atp.toml"


def search_paths(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> list[Path]:
    """The files looked at, in order (the first that exists is used)."""
    env = os.environ if environ is None else environ
    here = cwd or Path.cwd()
    paths: list[Path] = []
    if env.get(ENV_CONFIG):
        paths.append(Path(env[ENV_CONFIG]).expanduser())
    paths += [here / "atp.toml", user_config_path(env)]
    if env.get(ENV_ORIGINAL_CONFIG):
        paths.append(Path(env[ENV_ORIGINAL_CONFIG]).expanduser())
    paths += [here / "config" / "atp.toml", Path("/etc/atp/atp.toml")]
    return paths


def find_config_path(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The file :func:`load_config` reads: ``$ATP_CONFIG`` (even when missing), else the first existing file."""
    env = os.environ if environ is None else environ
    if env.get(ENV_CONFIG):
        return Path(env[ENV_CONFIG]).expanduser()
    for path in search_paths(env, cwd):
        if path.is_file():
            return path
    return None


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> AtpConfig:
    """Load ``path`` (or the file found by the search order), then apply the environment overrides.

    A ``path`` (or ``$ATP_CONFIG``) that does not exist yet gives an empty configuration bound to that path.  With
    no file at all the configuration is bound to the user config file, so that saving creates it there.
    Raises :class:`ConfigurationError` naming the file (and line) for a malformed file.
    """
    env = os.environ if environ is None else environ
    chosen = Path(path).expanduser() if path is not None else find_config_path(env, cwd)
    if chosen is None:
        config = AtpConfig(path=user_config_path(env), kind="none")
    elif not chosen.exists():
        config = AtpConfig(path=chosen, kind="none")
    else:
        config = parse_config(_read(chosen), chosen)
    _apply_environment(config, env)
    return config


def _read(path: Path) -> str:
    if path.is_dir():
        raise ConfigurationError(f"Config file {path} is a directory; give the path of a .toml file.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"Config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from None
    except OSError as exc:
        raise ConfigurationError(f"Cannot read config file {path}: {exc.strerror or exc}.") from None


# ---------------------------------------------------------------- parsing


def parse_config(text: str, path: Path) -> AtpConfig:
    """Parse ``text`` (the contents of ``path``) in either format; errors name the file and the line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"Config file {path} is not valid TOML: {exc}.") from None
    where = _Locator(text, path)
    if "libvirt" in data or (set(data) & _ORIGINAL_TABLES and "hosts" not in data and "version" not in data):
        return _parse_original(data, path, where)
    return _parse_atp(data, path, where)


class _Locator:
    """Finds the line of a table or key in the file text (tomllib does not keep positions)."""

    def __init__(self, text: str, path: Path) -> None:
        self.lines = text.splitlines()
        self.path = path

    def line(self, table: Sequence[str], key: str | None = None) -> int | None:
        """The first line defining ``table`` (or ``key`` in it), through headers or dotted keys; None if unsure."""
        want = [*table, key] if key is not None else list(table)
        current: list[str] = []
        for number, raw in enumerate(self.lines, start=1):
            header = re.match(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$", raw)
            if header:
                current = _key_parts(header.group(1))
                if key is None and current == want:
                    return number
                continue
            assignment = re.match(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=", raw)
            if assignment:
                full = current + _key_parts(assignment.group(1))
                if full[: len(want)] == want:
                    return number
        return None

    def error(self, message: str, table: Sequence[str], key: str | None = None) -> ConfigurationError:
        number = self.line(table, key)
        at = f"{self.path}, line {number}" if number else str(self.path)
        return ConfigurationError(f"Config file {at}: {message}")


def _key_parts(dotted: str) -> list[str]:
    return [p.strip("\"'") for p in re.findall(r"\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+", dotted)]


def _check_keys(
    table: Mapping[str, Any], allowed: Sequence[str], where: _Locator, path: Sequence[str], what: str
) -> None:
    for key in table:
        if key in allowed:
            continue
        if key == "password" or key.endswith("_password"):
            env = ENV_VDI_PASSWORD if path[:1] == ["vdi"] else "an environment variable named by ssh_password_env"
            raise where.error(
                f"'{key}' in [{'.'.join(path)}]: passwords are never stored in atp.toml; remove it and use {env}.",
                path,
                key,
            )
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise where.error(
            f"unknown key '{key}' in {what}.{hint} Allowed: {', '.join(allowed)}.",
            path,
            key,
        )


def _typed(
    table: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: _Locator,
    path: Sequence[str],
    example: str,
) -> Any:
    value = table.get(key)
    if value is None:
        return None
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float, (int, float)))
    if not ok:
        raise where.error(f"'{key}' in [{'.'.join(path)}] must be {example}, got {value!r}.", path, key)
    return value


def _positive(value: Any, key: str, where: _Locator, path: Sequence[str]) -> float | None:
    if value is None:
        return None
    if float(value) <= 0:
        raise where.error(
            f"'{key}' in [{'.'.join(path)}] must be a positive number of seconds, got {value!r}.", path, key
        )
    return float(value)


def _check_id(host_id: str, where: _Locator, path: Sequence[str]) -> None:
    if not _ID.match(host_id):
        raise where.error(
            f"host id '{host_id}' is not allowed: use letters, digits, '_', '.', '-' (at most 64, first a letter "
            "or digit).",
            path,
        )


HOST_KEYS = ("uri", "address", "ssh_user", "ssh_port", "ssh_key", "ssh_password_env")


def _parse_host(host_id: str, table: Any, where: _Locator) -> HostConfig:
    path = ["hosts", host_id]
    if not isinstance(table, dict):
        raise where.error(f'hosts.{host_id} must be a table like [hosts.{host_id}] with uri = "...".', path)
    _check_id(host_id, where, path)
    _check_keys(table, HOST_KEYS, where, path, f"[hosts.{host_id}]")
    uri = _typed(table, "uri", str, where, path, 'a libvirt URI such as "qemu+ssh://root@host/system"')
    if not uri:
        raise where.error(f'[hosts.{host_id}] has no uri; add uri = "qemu+tcp://<host>/system" (or another).', path)
    check_uri(uri, where.error, path)
    port = _typed(table, "ssh_port", int, where, path, "a port number such as 22")
    if port is not None and not 0 < port < 65536:
        raise where.error(f"'ssh_port' in [hosts.{host_id}] must be 1..65535, got {port}.", path, "ssh_port")
    password_env = _typed(table, "ssh_password_env", str, where, path, "the name of an environment variable")
    if password_env is not None and not _ENV_NAME.match(password_env):
        raise where.error(
            f"'ssh_password_env' in [hosts.{host_id}] must be an environment variable's name (such as "
            f"LAB_SSH_PASSWORD), not a password.",
            path,
            "ssh_password_env",
        )
    return HostConfig(
        id=host_id,
        uri=uri,
        address=_typed(table, "address", str, where, path, "a host name or IP address"),
        ssh_user=_typed(table, "ssh_user", str, where, path, 'a user name such as "root"'),
        ssh_port=port,
        ssh_key=_typed(table, "ssh_key", str, where, path, "the path of a private key file"),
        ssh_password_env=password_env,
    )


def check_uri(uri: str, error: Any = None, path: Sequence[str] = ()) -> None:
    """Reject what is clearly not a libvirt URI (``error(message, path, key)`` builds the exception)."""
    scheme = urllib.parse.urlsplit(uri).scheme
    if "://" in uri and scheme and re.match(r"^[a-z][a-z0-9+]*$", scheme):
        return
    message = (
        f"'{uri}' is not a libvirt URI; write it like qemu:///system, qemu+ssh://root@host/system or "
        "qemu+tcp://host/system."
    )
    if error is None:
        raise ConfigurationError(message)
    raise error(message, path, "uri")


def _parse_atp(data: dict[str, Any], path: Path, where: _Locator) -> AtpConfig:
    _check_keys(data, ("version", "defaults", "vdi", "hosts"), where, [], "the top level")
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise where.error(f"version = {version!r} is not supported; this ATPLibrary reads version = 1.", [], "version")
    config = AtpConfig(path=path, kind="atp", hosts={})
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise where.error("defaults must be a table: [defaults].", [], "defaults")
    _check_keys(defaults, ("host", "vm", "timeout", "connect_timeout"), where, ["defaults"], "[defaults]")
    config.defaults.host = _typed(defaults, "host", str, where, ["defaults"], "a host id")
    config.defaults.vm = _typed(defaults, "vm", str, where, ["defaults"], "a VM name")
    for key in ("timeout", "connect_timeout"):
        value = _positive(
            _typed(defaults, key, (int, float), where, ["defaults"], "a number of seconds"), key, where, ["defaults"]
        )
        if value is not None:
            setattr(config.defaults, key, value)
    vdi = data.get("vdi", {})
    if not isinstance(vdi, dict):
        raise where.error("vdi must be a table: [vdi].", [], "vdi")
    _check_keys(vdi, ("url", "username", "verify_ssl", "connect_timeout"), where, ["vdi"], "[vdi]")
    config.vdi.url = _typed(vdi, "url", str, where, ["vdi"], 'a URL such as "http://vdi:8088"')
    config.vdi.username = _typed(vdi, "username", str, where, ["vdi"], "a user name")
    config.vdi.verify_ssl = _typed(vdi, "verify_ssl", bool, where, ["vdi"], "true or false")
    config.vdi.connect_timeout = _positive(
        _typed(vdi, "connect_timeout", (int, float), where, ["vdi"], "a number of seconds"),
        "connect_timeout",
        where,
        ["vdi"],
    )
    hosts = data.get("hosts", {})
    if not isinstance(hosts, dict):
        raise where.error('hosts must be tables: [hosts.<id>] with uri = "...".', [], "hosts")
    for host_id, table in hosts.items():
        config.hosts[host_id] = _parse_host(host_id, table, where)
    if config.defaults.host is not None and config.defaults.host not in config.hosts:
        known = ", ".join(config.hosts) or "(none)"
        raise where.error(
            f"defaults.host = '{config.defaults.host}' is not a configured host; hosts: {known}.",
            ["defaults"],
            "host",
        )
    if not config.hosts:
        config.hosts[LOCAL_HOST_ID] = implicit_local_host()
    return config


def _parse_original(data: dict[str, Any], path: Path, where: _Locator) -> AtpConfig:
    """The original system's ``atp.toml`` (``config/atp.toml``), mapped read-only."""
    config = AtpConfig(path=path, kind="original", hosts={})
    libvirt = data.get("libvirt", {})
    if not isinstance(libvirt, dict):
        raise where.error("libvirt must be a table: [libvirt].", [], "libvirt")
    uri = _typed(libvirt, "uri", str, where, ["libvirt"], 'a libvirt URI such as "qemu:///system"')
    if uri:
        check_uri(uri, where.error, ["libvirt"])
        config.hosts[ORIGINAL_DEFAULT_HOST_ID] = HostConfig(ORIGINAL_DEFAULT_HOST_ID, uri)
        config.defaults.host = ORIGINAL_DEFAULT_HOST_ID
    connect = _typed(libvirt, "connect_timeout", (int, float), where, ["libvirt"], "a number of seconds")
    if connect is not None:
        config.defaults.connect_timeout = _positive(connect, "connect_timeout", where, ["libvirt"]) or 0.0
    hosts = libvirt.get("hosts", {})
    if not isinstance(hosts, dict):
        raise where.error("libvirt.hosts must be tables: [libvirt.hosts.<id>].", ["libvirt"], "hosts")
    for host_id, table in hosts.items():
        hpath = ["libvirt", "hosts", host_id]
        if not isinstance(table, dict):
            raise where.error(f"libvirt.hosts.{host_id} must be a table with host and/or uri.", hpath)
        _check_id(host_id, where, hpath)
        address = _typed(table, "host", str, where, hpath, "a host name or IP address")
        host_uri = _typed(table, "uri", str, where, hpath, "a libvirt URI")
        if not host_uri and not address:
            raise where.error(f"[libvirt.hosts.{host_id}] needs host or uri.", hpath)
        host_uri = host_uri or f"qemu+tcp://{address}/system"  # the original's default
        check_uri(host_uri, where.error, hpath)
        config.hosts[host_id] = HostConfig(host_id, host_uri, address=address)
    vm = data.get("vm", {})
    if isinstance(vm, dict):
        config.defaults.vm = _typed(vm, "name", str, where, ["vm"], "a VM name")
    test = data.get("test", {})
    if isinstance(test, dict):
        timeout = _typed(test, "timeout", (int, float), where, ["test"], "a number of seconds")
        if timeout is not None:
            config.defaults.timeout = _positive(timeout, "timeout", where, ["test"]) or DEFAULT_TIMEOUT
    vdi = data.get("vdi", {})
    if isinstance(vdi, dict):
        config.vdi.url = _typed(vdi, "base_url", str, where, ["vdi"], "a URL")
        config.vdi.username = _typed(vdi, "username", str, where, ["vdi"], "a user name")
        config.vdi.password = _typed(vdi, "password", str, where, ["vdi"], "a string")
        config.vdi.verify_ssl = _typed(vdi, "verify_ssl", bool, where, ["vdi"], "true or false")
        config.vdi.connect_timeout = _positive(
            _typed(vdi, "connect_timeout", (int, float), where, ["vdi"], "a number of seconds"),
            "connect_timeout",
            where,
            ["vdi"],
        )
        if config.vdi.password is not None:
            config.notes.append(
                f"{path}: [vdi] password is read from the file; set {ENV_VDI_PASSWORD} instead (atp.toml never "
                "stores passwords)"
            )
    ignored = sorted(set(data) - {"libvirt", "vm", "test", "vdi"})
    if ignored:
        config.notes.append(f"{path}: tables not used by ATPLibrary: {', '.join(ignored)}")
    if not config.hosts:
        config.hosts[LOCAL_HOST_ID] = implicit_local_host()
    return config


# ---------------------------------------------------------------- environment


def _apply_environment(config: AtpConfig, env: Mapping[str, str]) -> None:
    url = env.get(ENV_VDI_URL) or env.get(ENV_VDI_BASE_URL)
    if url:
        config.vdi.url = url
    if env.get(ENV_VDI_USERNAME):
        config.vdi.username = env[ENV_VDI_USERNAME]
    if env.get(ENV_VDI_PASSWORD):
        config.vdi.password = env[ENV_VDI_PASSWORD]
    if env.get(ENV_VDI_VERIFY_SSL):
        config.vdi.verify_ssl = _env_bool(env, ENV_VDI_VERIFY_SSL)
    for name in (ENV_TIMEOUT, ENV_ORIGINAL_TIMEOUT):
        if env.get(name):
            config.defaults.timeout = _env_seconds(env, name)
            break
    if env.get(ENV_CONNECT_TIMEOUT):
        config.defaults.connect_timeout = _env_seconds(env, ENV_CONNECT_TIMEOUT)
    if env.get(ENV_VM):
        config.defaults.vm = env[ENV_VM]
    if config.kind == "original" and env.get(ENV_ORIGINAL_HOST):
        uri = env[ENV_ORIGINAL_HOST]
        try:
            check_uri(uri)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{ENV_ORIGINAL_HOST}: {exc}") from None
        config.hosts.pop(LOCAL_HOST_ID, None)
        config.hosts[ORIGINAL_DEFAULT_HOST_ID] = HostConfig(ORIGINAL_DEFAULT_HOST_ID, uri)
        config.defaults.host = ORIGINAL_DEFAULT_HOST_ID


def _env_seconds(env: Mapping[str, str], name: str) -> float:
    try:
        value = float(env[name])
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(f"{name}={env[name]!r} must be a positive number of seconds, such as 30.")
    return value


def _env_bool(env: Mapping[str, str], name: str) -> bool:
    value = env[name].strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name}={env[name]!r} must be true or false.")


# ---------------------------------------------------------------- choosing hosts


def resolve_hosts(config: AtpConfig, host_ids: Sequence[str] | None) -> list[HostConfig]:
    """The hosts named by ``host_ids`` (in that order), or every host when ``host_ids`` is None or empty.

    A name containing ``://`` is taken as a libvirt URI of an ad-hoc host.  An unknown id raises
    :class:`ConfigurationError` listing the configured ids.
    """
    if not host_ids:
        return list(config.hosts.values())
    chosen: list[HostConfig] = []
    for host_id in host_ids:
        if host_id in config.hosts:
            host = config.hosts[host_id]
        elif "://" in host_id:
            check_uri(host_id)
            host = HostConfig(host_id, host_id)
        else:
            raise unknown_host(config, host_id)
        if host not in chosen:
            chosen.append(host)
    return chosen


def pick_host(config: AtpConfig, host_id: str | None) -> HostConfig:
    """The one host a single-VM command uses: ``host_id``, else ``defaults.host``, else the only host.

    Several hosts and no choice raise :class:`ConfigurationError` listing them.
    """
    wanted = host_id or config.defaults.host
    if wanted:
        return resolve_hosts(config, [wanted])[0]
    if len(config.hosts) == 1:
        return next(iter(config.hosts.values()))
    listed = ", ".join(f"{h.id} ({h.uri})" for h in config.hosts.values())
    raise ConfigurationError(
        f"Several hosts are configured in {config.describe()}: {listed}. Pick one with --host ID "
        "(or set host under [defaults])."
    )


def unknown_host(config: AtpConfig, host_id: str) -> ConfigurationError:
    known = list(config.hosts)
    close = difflib.get_close_matches(host_id, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigurationError(
        f"No host '{host_id}' in {config.describe()}.{hint} Hosts: {', '.join(known) or '(none)'}. "
        "Add one with: atp host add ID URI."
    )


# ---------------------------------------------------------------- editing and saving


def check_host_id(host_id: str) -> None:
    if not _ID.match(host_id):
        raise ConfigurationError(
            f"Host id '{host_id}' is not allowed: use letters, digits, '_', '.', '-' (at most 64, first a letter or "
            "digit), e.g. lab-01."
        )


def check_env_name(name: str) -> None:
    if not _ENV_NAME.match(name):
        raise ConfigurationError(
            f"'{name}' is not an environment variable's name (letters, digits, '_'), e.g. LAB_SSH_PASSWORD. "
            "Give the variable's name, never the password."
        )


def to_toml_data(config: AtpConfig) -> dict[str, Any]:
    """``config`` as our file's data (no implicit host, no password)."""
    data: dict[str, Any] = {"version": FORMAT_VERSION}
    defaults: dict[str, Any] = {}
    if config.defaults.host and config.defaults.host in config.configured_hosts:
        defaults["host"] = config.defaults.host
    if config.defaults.vm:
        defaults["vm"] = config.defaults.vm
    if config.defaults.timeout != DEFAULT_TIMEOUT:
        defaults["timeout"] = config.defaults.timeout
    if config.defaults.connect_timeout != DEFAULT_CONNECT_TIMEOUT:
        defaults["connect_timeout"] = config.defaults.connect_timeout
    if defaults:
        data["defaults"] = defaults
    vdi = {
        k: v
        for k, v in dataclasses.asdict(config.vdi).items()
        if v is not None and k != "password"  # never written
    }
    if vdi:
        data["vdi"] = vdi
    hosts: dict[str, Any] = {}
    for host in config.configured_hosts.values():
        table = {k: v for k, v in dataclasses.asdict(host).items() if k in HOST_KEYS and v is not None}
        hosts[host.id] = table
    if hosts:
        data["hosts"] = hosts
    return data


HEADER = (
    "# ATPLibrary configuration, written by `atp host ...` (see docs/cli.md).\n"
    "# Passwords are never stored here: ATP_VDI_PASSWORD, and ssh_password_env names a variable.\n"
)


def save_config(config: AtpConfig, path: str | Path | None = None) -> Path:
    """Write ``config`` in our format to ``path`` (default ``config.path``), atomically; returns the path.

    Writing over a file in the original system's format is refused (it stays read-only).
    """
    import tomli_w

    target = Path(path).expanduser() if path is not None else config.path
    if target is None:
        raise ConfigurationError("No config file to write: give --config PATH or set ATP_CONFIG.")
    if target.exists() and target.is_file():
        try:
            current = tomllib.loads(target.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            current = {}
        if "libvirt" in current:
            raise ConfigurationError(
                f"{target} is in the original system's format and is only read, never written: give a new file "
                "(--config PATH or ATP_CONFIG)."
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(HEADER + tomli_w.dumps(to_toml_data(config)), encoding="utf-8")
    os.replace(tmp, target)
    config.path = target
    config.kind = "atp"
    return target
