"""``atp host``: the libvirt hosts of the config file (add, list, remove, update-ssh, check).

Hosts live in the config file (``ATPLibrary.config``: ``--config PATH``, else ``$ATP_CONFIG``, ``./atp.toml``, the
user config dir, then the original system's files, read-only).  With no host configured, the local lab's libvirt
``qemu:///system`` is the implicit host ``local``.  Also holds what ``atp vm`` shares: loading the config for a
command, opening a host within a timeout, and running a call under a deadline.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.output import Out, add_json_option, print_json, print_table, progress
from ATPLibrary.config import (
    ENV_CONFIG,
    LOCAL_HOST_ID,
    LOCAL_HOST_URI,
    AtpConfig,
    HostConfig,
    check_env_name,
    check_host_id,
    check_uri,
    load_config,
    resolve_hosts,
    save_config,
    unknown_host,
)
from ATPLibrary.errors import ATPError, ConfigurationError, HostConnectionError, WaitTimeoutError
from ATPLibrary.hosts.connection import HostConnection
from ATPLibrary.hosts.timing import format_seconds

T = TypeVar("T")

CONFIG_HELP = (
    f"config file (default: ${ENV_CONFIG}, else ./atp.toml, else ~/.config/atp/atp.toml, else the original "
    "system's $ATP_TEST_CONFIG or ./config/atp.toml, read-only)"
)
IMPLICIT_NOTE = (
    f"With no host configured, the local lab's libvirt ({LOCAL_HOST_URI}) is the implicit host '{LOCAL_HOST_ID}'."
)


class HostUnreachable(HostConnectionError):
    """A host did not answer within the timeout: exit code 2."""


# ---------------------------------------------------------------- shared with atp vm


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)


def add_timeout_option(parser: argparse.ArgumentParser, default: float | None = None, what: str = "") -> None:
    shown = f"{default:g}" if default is not None else "the config's [defaults] timeout, 30"
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=default,
        metavar="SECONDS",
        help=f"seconds to wait{what} (default: {shown})",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds (e.g. 30)") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def command_config(args: argparse.Namespace) -> AtpConfig:
    """The config a command uses (``--config`` or the search order)."""
    return load_config(getattr(args, "config", None))


def timeout_of(args: argparse.Namespace, config: AtpConfig) -> float:
    value = getattr(args, "timeout", None)
    return float(value) if value is not None else config.defaults.timeout


def bounded(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run ``fn`` in a worker thread and wait at most ``timeout`` seconds (libvirt calls have no timeout of their
    own; an abandoned call dies with the process).  Raises :class:`WaitTimeoutError` naming ``what``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=f"atp {what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise WaitTimeoutError(f"{what}: no answer within {format_seconds(timeout)}")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def open_host(host: HostConfig, timeout: float) -> HostConnection:
    """An open connection to ``host`` within ``timeout`` seconds, else :class:`HostUnreachable` (exit 2)."""
    connection = HostConnection(host.libvirt_uri(), alias=host.id, keepalive=None, reconnect_timeout=timeout)
    try:
        bounded(connection.open, timeout, f"opening host '{host.id}' ({host.uri})")
    except WaitTimeoutError as exc:
        raise HostUnreachable(f"host '{host.id}' ({host.uri}) is unreachable: {exc}") from None
    except HostConnectionError as exc:
        raise HostUnreachable(f"host '{host.id}' ({host.uri}) is unreachable: {_one_line(str(exc))}") from None
    return connection


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def error_line(command: str, exc: BaseException) -> None:
    print(f"atp {command}: error: {_one_line(str(exc))}", file=sys.stderr)


# ---------------------------------------------------------------- subcommands


def _writable(config: AtpConfig) -> AtpConfig:
    if config.kind == "original":
        raise ConfigurationError(
            f"{config.path} is in the original system's format and is only read, never written: give a new file "
            "with --config PATH (or set ATP_CONFIG) for the hosts you manage with atp host"
        )
    return config


def cmd_add(args: argparse.Namespace, out: Out) -> int:
    check_host_id(args.id)
    config = _writable(command_config(args))
    if "://" in args.target:
        if args.uri:
            raise ConfigurationError(f"give either a URI ('{args.target}') or an address with --uri, not both")
        uri, address = args.target, None
    else:
        address = args.target
        uri = args.uri or f"qemu+tcp://{address}/system"
    check_uri(uri)
    if args.id in config.configured_hosts and not args.replace:
        raise ConfigurationError(
            f"host '{args.id}' is already in {config.path} ({config.hosts[args.id].uri}); use --replace to change "
            "it or atp host remove first"
        )
    config.hosts = config.configured_hosts
    config.hosts[args.id] = HostConfig(args.id, uri, address=address)
    if args.default:
        config.defaults.host = args.id
    path = save_config(config)
    out(f"host '{args.id}' = {uri} saved in {path}")
    return ExitCode.OK


def cmd_list(args: argparse.Namespace, out: Out) -> int:
    config = command_config(args)
    hosts = list(config.hosts.values())
    if args.json:
        print_json(
            {"config": str(config.path) if config.path else None, "format": config.kind, "hosts": _rows(hosts, config)},
            out,
        )
        return ExitCode.OK
    out(f"config: {config.describe()}")
    for note in config.notes:
        out(f"note: {note}")
    print_table(
        _rows(hosts, config),
        ["id", "uri", "ssh", "note"],
    )
    return ExitCode.OK


def _rows(hosts: list[HostConfig], config: AtpConfig) -> list[dict[str, Any]]:
    rows = []
    for host in hosts:
        ssh = ""
        if host.ssh_user or host.ssh_port or host.ssh_key or host.ssh_password_env:
            ssh = f"{host.ssh_user or '-'}@port {host.ssh_port or 22}"
            if host.ssh_key:
                ssh += f" key {host.ssh_key}"
            if host.ssh_password_env:
                ssh += f" password from ${host.ssh_password_env}"
        notes = []
        if host.implicit:
            notes.append("implicit: no host configured")
        if config.defaults.host == host.id:
            notes.append("default")
        rows.append(host.to_dict() | {"ssh": ssh, "note": ", ".join(notes), "default": config.defaults.host == host.id})
    return rows


def cmd_remove(args: argparse.Namespace, out: Out) -> int:
    config = _writable(command_config(args))
    if args.id not in config.configured_hosts:
        if config.hosts.get(args.id, None) is not None and config.hosts[args.id].implicit:
            raise ConfigurationError(
                f"'{args.id}' is the implicit host (no host configured); there is nothing to remove"
            )
        raise unknown_host(config, args.id)
    config.hosts = {k: h for k, h in config.configured_hosts.items() if k != args.id}
    if config.defaults.host == args.id:
        config.defaults.host = None
    path = save_config(config)
    left = ", ".join(config.hosts) or f"none (the implicit host '{LOCAL_HOST_ID}' applies again)"
    out(f"host '{args.id}' removed from {path}; hosts: {left}")
    return ExitCode.OK


def cmd_update_ssh(args: argparse.Namespace, out: Out) -> int:
    config = _writable(command_config(args))
    host = config.configured_hosts.get(args.id)
    if host is None:
        raise unknown_host(config, args.id)
    if args.key is not None:
        key = Path(args.key).expanduser()
        if not key.is_file():
            raise ConfigurationError(f"SSH key file {key} does not exist (or is not a file); give the private key")
        host.ssh_key = str(key.resolve())
    if args.password_env is not None:
        check_env_name(args.password_env)
        host.ssh_password_env = args.password_env
    host.ssh_user = args.user
    host.ssh_port = args.port
    path = save_config(config)
    out(f"host '{args.id}': SSH {host.ssh_user}@port {host.ssh_port}; libvirt opens {host.libvirt_uri()} ({path})")
    return ExitCode.OK


def host_facts(connection: HostConnection) -> dict[str, Any]:
    """libvirt and hypervisor versions, and the VM counts, of an open host."""

    def read(conn: Any) -> dict[str, Any]:
        domains = conn.listAllDomains(0)
        return {
            "libvirt_version": _version(conn.getLibVersion()),
            "hypervisor": str(conn.getType()),
            "hypervisor_version": _version(conn.getVersion()),
            "hostname": str(conn.getHostname()),
            "vms": len(domains),
            "running": sum(1 for d in domains if d.isActive()),
        }

    return connection.call(read, what="reading host facts", idempotent=True)


def _version(number: int) -> str:
    major, rest = divmod(int(number), 1_000_000)
    minor, release = divmod(rest, 1000)
    return f"{major}.{minor}.{release}"


def cmd_check(args: argparse.Namespace, out: Out) -> int:
    config = command_config(args)
    timeout = timeout_of(args, config)
    hosts = resolve_hosts(config, args.ids or None)
    rows: list[dict[str, Any]] = []
    with progress("checking hosts", len(hosts)) as bar:
        for host in hosts:
            row: dict[str, Any] = {"id": host.id, "uri": host.uri}
            try:
                connection = open_host(host, timeout)
                try:
                    facts = bounded(partial(host_facts, connection), timeout, f"reading host '{host.id}'")
                finally:
                    connection.close()
                row |= {"ok": True} | facts | {"error": None}
            except (ATPError, OSError) as exc:
                row |= {"ok": False, "error": _one_line(str(exc))}
            rows.append(row)
            bar.advance(host.id)
    if args.json:
        print_json(rows, out)
    else:
        for row in rows:
            if row["ok"]:
                row["result"] = (
                    f"libvirt {row['libvirt_version']}, {row['hypervisor']} {row['hypervisor_version']}, "
                    f"{row['vms']} VMs ({row['running']} running)"
                )
            else:
                row["result"] = f"UNREACHABLE: {row['error']}"
        print_table(rows, ["id", "uri", "result"])
    failed = [r for r in rows if not r["ok"]]
    if not failed:
        return ExitCode.OK
    if len(failed) == len(rows):
        if not args.json:
            print(f"atp host check: error: {failed[0]['error']}", file=sys.stderr)
        return ExitCode.ERROR
    return ExitCode.FAILED


# ---------------------------------------------------------------- parser


class _RefusePassword(argparse.Action):
    """``--password`` is refused without repeating its value: passwords are never stored in the config file."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error(
            "passwords are never stored in the config file: use --key for a private key (libvirt's qemu+ssh cannot "
            "type a password), or --password-env VAR to store only the name of a variable that holds it"
        )


EPILOG = f"""{IMPLICIT_NOTE}
Exit codes: 0 ok; 1 some hosts failed the check; 2 nothing done (bad arguments or file, unknown host, every host
unreachable); 130 interrupted."""


def add_parser(sub: Any) -> None:
    """Register ``atp host ...`` on the top-level subparsers."""
    host = sub.add_parser(
        "host",
        help="libvirt hosts in the config file: add, list, remove, update-ssh, check",
        description=f"The libvirt hosts of the config file. {IMPLICIT_NOTE}",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    host_sub = host.add_subparsers(dest="host_command", required=True, metavar="{add,list,remove,update-ssh,check}")

    add = host_sub.add_parser(
        "add",
        help="add a host: atp host add ID URI, or atp host add ID ADDRESS [--uri URI]",
        description="Add a host. TARGET is a libvirt URI (qemu+ssh://root@10.0.0.5/system), or an address whose URI "
        "defaults to qemu+tcp://ADDRESS/system as in the original system.",
        epilog=EPILOG,
    )
    add.add_argument("id", help="host id: letters, digits, '_', '.', '-' (e.g. lab-01)")
    add.add_argument("target", metavar="URI|ADDRESS", help="libvirt URI, or host name/IP address")
    add.add_argument("--uri", help="libvirt URI when TARGET is an address (default qemu+tcp://ADDRESS/system)")
    add.add_argument("--replace", action="store_true", help="replace a host with the same id")
    add.add_argument("--default", action="store_true", help="make it the default host of single-VM commands")
    add_config_option(add)
    add.set_defaults(func=_run(cmd_add))

    lst = host_sub.add_parser("list", help="the configured hosts (or the implicit 'local')", epilog=EPILOG)
    add_config_option(lst)
    add_json_option(lst)
    lst.set_defaults(func=_run(cmd_list))

    remove = host_sub.add_parser("remove", help="remove a host from the config file", epilog=EPILOG)
    remove.add_argument("id", help="host id")
    add_config_option(remove)
    remove.set_defaults(func=_run(cmd_remove))

    ssh = host_sub.add_parser(
        "update-ssh",
        help="set a host's SSH user, port and key (used for qemu+ssh:// URIs)",
        description="Set the SSH settings of a host. For a qemu+ssh:// URI libvirt then opens it with this user, "
        "port and key (unless the URI already names them). Passwords are never stored: --password is refused; "
        "--password-env stores only the name of an environment variable.",
        epilog=EPILOG,
    )
    ssh.add_argument("id", help="host id")
    ssh.add_argument("-u", "--user", default="root", help="SSH user (default root)")
    ssh.add_argument("-p", "--port", type=_port, default=22, help="SSH port (default 22)")
    ssh.add_argument("-k", "--key", help="private key file (stored as an absolute path)")
    ssh.add_argument("--password-env", metavar="VAR", help="name of the environment variable holding the password")
    ssh.add_argument("--password", nargs="?", action=_RefusePassword, help="refused: passwords are never stored")
    add_config_option(ssh)
    ssh.set_defaults(func=_run(cmd_update_ssh))

    check = host_sub.add_parser(
        "check",
        help="connect to hosts; print libvirt and QEMU versions and the number of VMs",
        description="Connect to each host (all when no ID is given) within --timeout and print its libvirt "
        "version, hypervisor (QEMU) version and number of VMs.",
        epilog=EPILOG,
    )
    check.add_argument("ids", nargs="*", metavar="ID", help="host ids or libvirt URIs (default: every host)")
    add_timeout_option(check, what=" for each host to answer")
    add_config_option(check)
    add_json_option(check)
    check.set_defaults(func=_run(cmd_check))


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number (1..65535)") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port must be 1..65535, got {value}")
    return value


def _run(fn: Callable[[argparse.Namespace, Out], int]) -> Callable[[argparse.Namespace], int]:
    """Errors become one line on stderr and exit code 2 (nothing done)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args, print))
        except ATPError as exc:
            error_line(f"host {args.host_command}", exc)
            return ExitCode.ERROR

    return run
