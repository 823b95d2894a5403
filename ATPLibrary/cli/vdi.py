"""``atp vdi``: look at, check and change an OCloudView VDI platform from the command line.

Subcommands: ``verify`` (the VDI/libvirt agreement), ``list-hosts``, ``list-vms``, ``start``, and the batch chores
``assign`` (bind users to VMs), ``rename`` (VMs to their users' names), ``auto-ad`` (auto-join the AD domain; see
:mod:`ATPLibrary.vdi.chores`).  Connection settings
come from the options, else the environment (``ATP_VDI_URL``, ``ATP_VDI_USERNAME``), else the lab's variables file
(its ``vdi`` section, when the lab is up), else the defaults.  The password is read only from the environment
(``ATP_VDI_PASSWORD``) or the lab's password file, never from the command line.

Exit codes (:class:`ATPLibrary.cli.exitcodes.ExitCode`): 0 ok, 1 a check or a VM failed (differences, VMs that did
not start, VMs a chore could not change), 2 nothing done: usage, settings, no VM matches, an unknown name, or the
platform unreachable (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.output import add_json_option, print_json, progress
from ATPLibrary.cli.output import render_table as render_rows
from ATPLibrary.errors import ATPError, ConfigurationError, VdiConnectionError, VdiError
from ATPLibrary.hosts.connection import HostConnection
from ATPLibrary.hosts.timing import Deadline, format_seconds, poll_intervals
from ATPLibrary.vdi.agreement import (
    DEFAULT_DOMAIN_NAME,
    DEFAULT_HOST_URI,
    DOMAIN_PLACEHOLDERS,
    HOST_PLACEHOLDERS,
    HostConnections,
    check_agreement,
    check_template,
    host_uri,
    locate_domain,
    render_table,
    status_name,
    unreachable_hint,
)
from ATPLibrary.vdi.chores import Directory, Plan, Report, match_vms, plan_assign, plan_auto_ad, plan_rename
from ATPLibrary.vdi.client import VdiClient
from ATPLibrary.vdi.models import Host, Vm

ENV_URL = "ATP_VDI_URL"
ENV_USERNAME = "ATP_VDI_USERNAME"
ENV_PASSWORD = "ATP_VDI_PASSWORD"
OK, FAILED, USAGE = ExitCode.OK, ExitCode.FAILED, ExitCode.ERROR
RUNNING = 1

Out = Callable[[str], None]


class UsageError(ATPError):
    """Wrong or missing settings: exit code 2."""


class _RefusePassword(argparse.Action):
    """``--password`` is refused without echoing its value (argparse would print unknown arguments)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error(f"passwords are never taken from the command line: set {ENV_PASSWORD} in the environment")


# ---------------------------------------------------------------- settings


def lab_vdi_settings() -> dict[str, Any]:
    """The ``vdi`` section of the lab's variables file, or ``{}`` (no lab, no section, unreadable file)."""
    try:
        from ATPLibrary.lab.paths import vars_file

        data = json.loads(vars_file().read_text())
    except (OSError, ValueError, ImportError):
        return {}
    section = data.get("vdi") if isinstance(data, dict) else None
    return section if isinstance(section, dict) else {}


@dataclass(frozen=True)
class Settings:
    url: str
    username: str
    password: str
    host_uri: str
    domain_name: str
    timeout: float

    def __repr__(self) -> str:
        return f"Settings(url={self.url!r}, username={self.username!r}, host_uri={self.host_uri!r})"


def settings(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    lab = lab_vdi_settings()
    url = args.url or env.get(ENV_URL) or str(lab.get("url") or "")
    if not url:
        raise UsageError(f"no VDI URL: give --url or set {ENV_URL} (or start the lab, whose simulator it then uses)")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"VDI URL '{url}' must start with http:// or https:// (e.g. http://vdi:8088)")
    username = args.username or env.get(ENV_USERNAME) or str(lab.get("username") or "") or "admin"
    password = env.get(ENV_PASSWORD)
    if password == "":
        raise UsageError(f"{ENV_PASSWORD} is set but empty: set it to the platform password, or unset it")
    if password is None and lab.get("password_file") and url.rstrip("/") != str(lab.get("url") or "").rstrip("/"):
        raise UsageError(
            f"no VDI password for {url}: set {ENV_PASSWORD} (the lab's password is only ever sent to the lab's "
            f"simulator at {lab.get('url')})"
        )
    if password is None and lab.get("password_file"):
        try:
            password = Path(str(lab["password_file"])).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the lab's VDI password file {lab['password_file']}: {exc}") from None
    if password is None:
        raise UsageError(f"no VDI password: set {ENV_PASSWORD} (it is never taken from the command line)")
    uri = args.host_uri or str(lab.get("host_uri") or "") or DEFAULT_HOST_URI
    name = args.domain_name or str(lab.get("domain_name") or "") or DEFAULT_DOMAIN_NAME
    try:
        check_template(uri, HOST_PLACEHOLDERS, "--host-uri")
        check_template(name, DOMAIN_PLACEHOLDERS, "--domain-name")
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    for option in ("timeout", "wait_timeout"):
        value = getattr(args, option, 1.0)
        if value <= 0:
            raise UsageError(f"--{option.replace('_', '-')} must be a positive number of seconds, got {value:g}")
    return Settings(url, username, password, uri, name, float(args.timeout))


def connect(s: Settings) -> VdiClient:
    """A logged-in client (a refused login or an unreachable platform raises at once)."""
    client = VdiClient(s.url, s.username, s.password, timeout=s.timeout, retries=1)
    try:
        client.login()
    except VdiConnectionError:
        client.close()
        raise
    except VdiError as exc:
        client.close()
        raise VdiError(f"cannot log in to the VDI platform at {s.url}: {exc}", code=exc.code, msg=exc.msg) from None
    except BaseException:
        client.close()
        raise
    return client


# ---------------------------------------------------------------- output


def emit(args: argparse.Namespace, out: Out, rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    """``rows`` as JSON (a list) or as a table of ``columns`` (header, key)."""
    if args.format == "json":
        out(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    out(render_table(tuple(h for h, _ in columns), [tuple(r.get(k) for _, k in columns) for r in rows]))


def _vm_row(vm: Vm, hosts: dict[str, Host]) -> dict[str, Any]:
    host = hosts.get(vm.host_id)
    return {
        "name": vm.name,
        "id": vm.id,
        "status": status_name(vm.status),
        "host": host.name if host else vm.host_name,
        "host_id": vm.host_id,
        "ip": vm.ip,
        "pool_id": vm.desktop_pool_id,
    }


# ---------------------------------------------------------------- subcommands


def cmd_verify(args: argparse.Namespace, client: VdiClient, s: Settings, out: Out) -> int:
    pool_id = None
    if args.pool:
        pools = list(client.list_pools())
        found = [p for p in pools if p.name == args.pool] or [p for p in pools if p.id == args.pool]
        if not found:
            raise UsageError(f"no desk pool named or with id '{args.pool}'")
        pool_id = found[0].id
    try:
        report = check_agreement(
            client,
            host_uri_template=s.host_uri,
            domain_name_template=s.domain_name,
            pool_id=pool_id,
            vms=args.vms or None,
            connect_timeout=s.timeout,
        )
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    if args.format == "json":
        out(report.to_json(only_differences=args.only_diff))
    else:
        out(report.table(only_differences=args.only_diff))
        out(("OK: " if report.ok else "DIFFERENCES: ") + report.summary())
        hint = unreachable_hint(report, s.host_uri, "--host-uri")
        if hint:
            out(hint)
    return OK if report.ok else FAILED


def cmd_list_hosts(args: argparse.Namespace, client: VdiClient, s: Settings, out: Out) -> int:
    rows = [
        {"id": h.id, "name": h.name, "ip": h.ip, "status": h.status_name, "libvirt_uri": host_uri(s.host_uri, h)}
        for h in client.all_hosts()
    ]
    emit(
        args,
        out,
        rows,
        [("ID", "id"), ("NAME", "name"), ("IP", "ip"), ("STATUS", "status"), ("LIBVIRT", "libvirt_uri")],
    )
    return OK


def _host_id(client: VdiClient, ref: str) -> tuple[str, dict[str, Host]]:
    hosts = {h.id: h for h in client.all_hosts()}
    for match in ("id", "name", "ip"):
        for host in hosts.values():
            if getattr(host, match) == ref:
                return host.id, hosts
    known = ", ".join(f"{h.name} ({h.ip}, {h.id})" for h in hosts.values()) or "none"
    raise UsageError(f"no VDI host with id, name or IP '{ref}'; hosts: {known}")


VM_COLUMNS = [("NAME", "name"), ("ID", "id"), ("STATUS", "status"), ("HOST", "host"), ("IP", "ip"), ("POOL", "pool")]


def cmd_list_vms(args: argparse.Namespace, client: VdiClient, s: Settings, out: Out) -> int:
    if args.host:
        host_id, hosts = _host_id(client, args.host)
        vms = list(client.list_vms(hostId=host_id))
    else:
        hosts = {h.id: h for h in client.all_hosts()}
        vms = list(client.list_vms())
    pools = {p.id: p.name for p in client.list_pools()} if any(vm.desktop_pool_id for vm in vms) else {}
    rows = [_vm_row(vm, hosts) | {"pool": pools.get(vm.desktop_pool_id, vm.desktop_pool_id)} for vm in vms]
    emit(args, out, [row for row, vm in zip(rows, vms, strict=True) if not vm.is_model], VM_COLUMNS)
    return OK


def ping_agent(host: HostConnection, domain: str, timeout: float) -> float:
    """Wait for the domain's qemu-ga (guest-ping through libvirt); returns the seconds waited."""
    from ATPLibrary.qga.agent import GuestAgent

    return GuestAgent(host.domain(domain)).ping(timeout)


def _wait_running(client: VdiClient, vms: list[Vm], events: list[str], deadline: Deadline) -> dict[str, str]:
    """Wait for the events and for status running; returns {vm id: problem} for the VMs that did not get there."""
    problems: dict[str, str] = {}
    pending_events = [e for e in events if e]
    pending = {vm.id for vm in vms}
    last: dict[str, Vm] = {vm.id: vm for vm in vms}
    delays = poll_intervals(0.05, 1.5, 1.0)
    while True:
        still_events = []
        for event_id in pending_events:
            event = client.get_event(event_id)
            if not event.done:
                still_events.append(event_id)
            elif not event.succeeded and event.domain_id in pending:
                problems[event.domain_id] = f"failed: {event.error_reason or f'isSuccess={event.is_success}'}"
                pending.discard(event.domain_id)
        pending_events = still_events
        for vm_id in sorted(pending):
            last[vm_id] = client.get_vm(vm_id)
            if last[vm_id].status == RUNNING and not pending_events:
                pending.discard(vm_id)
        if not pending:
            return problems
        if deadline.expired:
            for vm_id in pending:
                problems[vm_id] = (
                    f"not running within {format_seconds(deadline.timeout)} "
                    f"(last status {status_name(last[vm_id].status)})"
                )
            return problems
        time.sleep(min(next(delays), max(deadline.remaining(), 0.001)))


def cmd_start(args: argparse.Namespace, client: VdiClient, s: Settings, out: Out) -> int:
    hosts = {h.id: h for h in client.all_hosts()}
    every = [vm for vm in client.list_vms() if not vm.is_model]
    chosen = [vm for vm in every if fnmatch.fnmatchcase(vm.name, args.pattern)]
    if not chosen:
        raise UsageError(f"no VDI VM name matches '{args.pattern}' ({len(every)} VMs on the platform)")
    columns = [("NAME", "name"), ("ID", "id"), ("STATUS", "status"), ("HOST", "host"), ("RESULT", "result")]
    if args.dry_run:
        rows = [_vm_row(vm, hosts) | {"result": "would start"} for vm in chosen]
        emit(args, out, rows, columns)
        return OK
    deadline = Deadline(args.wait_timeout)
    result = client.start_vms([vm.id for vm in chosen], tolerate_errors=True)
    outcome = {e.domain_id: f"refused: {e.error_msg}" for e in result.errors}
    accepted = [vm for vm in chosen if vm.id not in outcome]
    if accepted:
        outcome |= _wait_running(client, accepted, result.event_ids, deadline)
    started = [vm for vm in accepted if vm.id not in outcome]
    for vm in started:
        outcome[vm.id] = "running"
    if args.check_agent and started:
        with HostConnections(s.timeout) as conns:
            for vm in started:
                try:
                    host, domain = locate_domain(
                        vm, hosts, conns, host_uri_template=s.host_uri, domain_name_template=s.domain_name
                    )
                    waited = ping_agent(host, domain, max(deadline.remaining(), 1.0))
                    outcome[vm.id] = f"running, guest agent answered after {format_seconds(waited)}"
                except ATPError as exc:
                    outcome[vm.id] = f"running, guest agent: {_one_line(str(exc))}"
    rows = []
    for vm in chosen:
        row = _vm_row(client.get_vm(vm.id) if vm in accepted else vm, hosts) | {"result": outcome[vm.id]}
        rows.append(row)
    emit(args, out, rows, columns)
    good = all(r["result"] == "running" or "answered after" in r["result"] for r in rows)
    return OK if good else FAILED


def _emit_chore(args: argparse.Namespace, out: Out, report: Report) -> int:
    if args.format == "json":
        print_json(report.to_json(), out)
    else:
        rows = [{"vm": r.vm.name, "before": r.before, "after": r.after, "result": r.result} for r in report.rows]
        out(render_rows(rows, ("vm", "before", "after", "result")))
        for note in report.notes:
            out(note)
        out(("OK: " if report.ok else "INTERRUPTED: " if report.interrupted else "FAILED: ") + report.summary())
    if report.interrupted:
        return ExitCode.INTERRUPTED
    return OK if report.ok else FAILED


def _run_chore(args: argparse.Namespace, client: VdiClient, out: Out, plan: Plan) -> int:
    if args.dry_run or not plan.ops:
        return _emit_chore(args, out, plan.run(client, dry_run=args.dry_run))
    with progress(f"atp vdi {plan.chore}", total=len(plan.ops)) as bar:
        report = plan.run(client, advance=bar.advance)
    return _emit_chore(args, out, report)


def _user_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--users '{text}' names no user: give account names separated by commas, e.g. --users a,b")
    return names


def cmd_assign(args: argparse.Namespace, client: VdiClient, s: Settings, out: Out) -> int:
    names = _user_list(args.users) if args.users is not None else []
    vms = match_vms(client, args.pattern)
    directory = Directory(client)
    if args.group is not None:
        unit = directory.ou(args.group)
        users = directory.users_of(unit)
        if not users:
            raise UsageError(f"OU '{unit.distinguished_name}' has no users: nothing to assign")
    else:
        users = [directory.user(name) for name in names]
    return _run_chore(args, client, out, plan_assign(client, vms, users, directory, force=args.force))


def cmd_rename(args: argparse.Namespace, client: VdiClient, s: Settings, out: Out) -> int:
    vms = match_vms(client, args.pattern)
    return _run_chore(args, client, out, plan_rename(client, vms, Directory(client)))


def cmd_auto_ad(args: argparse.Namespace, client: VdiClient, s: Settings, out: Out) -> int:
    vms = match_vms(client, args.pattern)
    return _run_chore(args, client, out, plan_auto_ad(client, vms, enable=args.enable))


COMMANDS: dict[str, Callable[[argparse.Namespace, VdiClient, Settings, Out], int]] = {
    "verify": cmd_verify,
    "list-hosts": cmd_list_hosts,
    "list-vms": cmd_list_vms,
    "start": cmd_start,
    "assign": cmd_assign,
    "rename": cmd_rename,
    "auto-ad": cmd_auto_ad,
}


# ---------------------------------------------------------------- parser and entry


def add_parser(sub: Any) -> None:
    """Register ``atp vdi …`` on the top-level subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group(
        f"connection (the password comes from ${ENV_PASSWORD} or the lab's password file, never from an option)"
    )
    group.add_argument("--url", help=f"platform URL, e.g. http://10.0.0.2:8088 (default: ${ENV_URL}, else the lab's)")
    group.add_argument("--username", help=f"platform user (default: ${ENV_USERNAME}, else the lab's, else admin)")
    group.add_argument(
        "--host-uri",
        help="libvirt URI of a platform host, placeholders {ip} {name} {id} "
        f"(default: the lab's, else {DEFAULT_HOST_URI})",
    )
    group.add_argument(
        "--domain-name",
        help="libvirt domain name of a VM whose id is not a UUID, placeholders {name} {id} "
        f"(default: the lab's, else {DEFAULT_DOMAIN_NAME})",
    )
    group.add_argument("--password", nargs="?", action=_RefusePassword, help=argparse.SUPPRESS)
    group.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request and libvirt connect (30)")
    common.add_argument("--format", choices=("table", "json"), default="table", help="output format (table)")
    add_json_option(common)

    vdi = sub.add_parser(
        "vdi", help="the OCloudView VDI platform: verify against libvirt, list, start, assign, rename, auto-ad"
    )
    vdi_sub = vdi.add_subparsers(
        dest="vdi_command", required=True, metavar="{verify,list-hosts,list-vms,start,assign,rename,auto-ad}"
    )
    verify = vdi_sub.add_parser(
        "verify",
        parents=[common],
        help="compare each VM's platform status with its libvirt domain (exit 1 on any difference)",
    )
    verify.add_argument("vms", nargs="*", metavar="VM", help="only these VMs (names or ids)")
    verify.add_argument("--pool", help="only the VMs of this desk pool (name or id)")
    verify.add_argument("--only-diff", action="store_true", help="show only the differences")
    vdi_sub.add_parser("list-hosts", parents=[common], help="the platform's hosts and their libvirt URIs")
    vms = vdi_sub.add_parser("list-vms", parents=[common], help="the platform's VMs")
    vms.add_argument("--host", help="only VMs on this host (id, name or IP)")
    start = vdi_sub.add_parser("start", parents=[common], help="start the VMs whose names match a glob pattern")
    start.add_argument("--pattern", required=True, help="glob on VM names, e.g. 'qa-*' (quote it)")
    start.add_argument("--dry-run", action="store_true", help="show what would be started, start nothing")
    start.add_argument("--check-agent", action="store_true", help="wait for each started VM's guest agent (qemu-ga)")
    start.add_argument(
        "--wait-timeout", type=float, default=300.0, help="seconds to wait for running (and agents) (300)"
    )
    pattern_help = "glob on VM names: '*' all, 'qa-*', '*-win', '*lab*', or an exact name (quote it)"
    dry_run_help = "show the plan (table or JSON), change nothing"
    assign = vdi_sub.add_parser(
        "assign",
        parents=[common],
        help="bind users to the matching VMs: VMs in natural name order, users in the order given (exit 1 if any "
        "VM failed or got no user)",
    )
    assign.add_argument("--pattern", required=True, help=pattern_help)
    who = assign.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", help="account names (sAMAccountName) or ids, comma-separated: --users alice,bob")
    who.add_argument("--group", help="every user of this OU (distinguished name, OU name or id), by account name")
    assign.add_argument("--force", action="store_true", help="reassign VMs bound to another user (unbinds first)")
    assign.add_argument("--dry-run", action="store_true", help=dry_run_help)
    rename = vdi_sub.add_parser(
        "rename", parents=[common], help="rename the matching VMs to their bound users' account names"
    )
    rename.add_argument("--pattern", required=True, help=pattern_help)
    rename.add_argument("--dry-run", action="store_true", help=dry_run_help)
    auto_ad = vdi_sub.add_parser(
        "auto-ad", parents=[common], help="set auto-join-AD-domain (autoJoinDomain) on the matching VMs"
    )
    auto_ad.add_argument("--pattern", required=True, help=pattern_help)
    onoff = auto_ad.add_mutually_exclusive_group(required=True)
    onoff.add_argument("--enable", action="store_true", dest="enable", default=None, help="autoJoinDomain 1")
    onoff.add_argument("--disable", action="store_false", dest="enable", help="autoJoinDomain 0")
    auto_ad.add_argument("--dry-run", action="store_true", help=dry_run_help)
    vdi.set_defaults(func=run)


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def run(args: argparse.Namespace, out: Out = print, err: Out | None = None) -> int:
    """Run one ``atp vdi`` subcommand; errors become one line on stderr and exit code 2."""
    error = err or (lambda line: print(line, file=sys.stderr))
    if getattr(args, "json", False):
        args.format = "json"
    try:
        s = settings(args)
        client = connect(s)
    except ATPError as exc:
        error(f"atp vdi: error: {_one_line(str(exc))}")
        return USAGE
    try:
        return COMMANDS[args.vdi_command](args, client, s, out)
    except (ATPError, libvirt.libvirtError) as exc:
        error(f"atp vdi: error: {_one_line(str(exc))}")
        return USAGE
    finally:
        with contextlib.suppress(VdiError):
            client.logout()
        client.close()
