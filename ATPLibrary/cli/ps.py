"""``atp ps``: PowerShell in Windows guests through qemu-ga, on one, some or all VMs, grouped per host.

``atp ps list-vms [--host ID]`` shows every VM of the configured hosts and whether it runs PowerShell;
``atp ps exec (--vm V | --vms a,b | --all) (--command C | --script-file F)`` runs a script and prints each VM's
exit code, output, route (``encoded-command`` or ``guest-file``) and decoding notes, per host (``--json`` for
scripts).

Which VMs are Windows: qemu-ga's ``guest-get-osinfo`` id ``mswindows``. A VM of another OS counts only when a file
exists at the ``--powershell`` path, and the output says which: ``stand-in`` (ATPLibrary's PowerShell stand-in,
not PowerShell) or ``powershell-path`` (some other file there). ``--all`` runs on running VMs of these kinds;
the others are listed as skipped with the reason.

Hosts come from the ``atp`` configuration (``--config``; without one, the local lab ``qemu:///system`` as
host ``local``). Exit codes: 0 every VM ran with rc 0; 1 a VM failed (rc not 0, timeout, agent error, not a
PowerShell VM); 2 nothing done (bad arguments, unknown VM or host, every host unreachable, no PowerShell VM).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import libvirt

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.output import add_json_option, print_json, print_table, progress
from ATPLibrary.errors import ATPError, ConfigurationError

Out = Callable[[str], None]
DEFAULT_TIMEOUT = 60.0
PROBE_TIMEOUT = 10.0


class Inventory(Protocol):
    """One host's VMs and their guest agents (libvirt in real use; fakes in unit tests)."""

    id: str
    uri: str

    def domains(self) -> list[tuple[str, bool]]:
        """``(name, running)`` of every defined domain, sorted by name."""
        ...

    def agent(self, vm: str) -> Any:
        """The :class:`GuestAgent` of ``vm``."""
        ...


class LibvirtInventory:
    def __init__(self, host_id: str, uri: str, connect_timeout: float = 10.0) -> None:
        from ATPLibrary.hosts.connection import HostConnection

        self.id = host_id
        self.uri = uri
        self.connection = HostConnection(uri, alias=host_id, reconnect_timeout=connect_timeout)

    def domains(self) -> list[tuple[str, bool]]:
        found = self.connection.call(
            lambda c: [(d.name(), bool(d.isActive())) for d in c.listAllDomains(0)],
            what="listing domains",
            idempotent=True,
        )
        return sorted(found)

    def agent(self, vm: str) -> Any:
        from ATPLibrary.qga.agent import GuestAgent

        return GuestAgent(self.connection.domain(vm))


def configured_inventories(host_ids: Sequence[str] | None, config_path: str | None) -> list[Inventory]:
    """The hosts to look at: ``--host`` ids (or URIs) from the ``atp`` configuration, else all of them."""
    from ATPLibrary.config import load_config, resolve_hosts

    config = load_config(config_path)
    hosts = resolve_hosts(config, list(host_ids) if host_ids else None)
    timeout = config.defaults.connect_timeout
    return [LibvirtInventory(h.id, h.libvirt_uri(), timeout) for h in hosts]


@dataclass
class VmReport:
    vm: str
    host: str
    kind: str = "unknown"
    os: str = ""
    kind_detail: str = ""
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    route: str | None = None
    command_line_length: int | None = None
    stdout_encoding: str | None = None
    decoding_notes: list[str] = field(default_factory=list)
    cleanup_error: str | None = None
    duration: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.rc == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "vm": self.vm,
            "host": self.host,
            "kind": self.kind,
            "os": self.os,
            "kind_detail": self.kind_detail,
            "rc": self.rc,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "route": self.route,
            "command_line_length": self.command_line_length,
            "stdout_encoding": self.stdout_encoding,
            "decoding_notes": self.decoding_notes,
            "cleanup_error": self.cleanup_error,
            "duration": self.duration,
            "error": self.error,
            "ok": self.ok,
        }


@dataclass
class HostReport:
    id: str
    uri: str
    error: str | None = None
    vms: list[VmReport] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uri": self.uri,
            "error": self.error,
            "vms": [v.to_dict() for v in self.vms],
            "skipped": self.skipped,
        }


# ---------------------------------------------------------------- probing


def probe(inventory: Inventory, vm: str, running: bool, powershell: str, timeout: float) -> VmReport:
    """What ``vm`` is for PowerShell (see the module's doc); errors land in ``kind_detail``, never raise."""
    from ATPLibrary.powershell.standin_install import guest_kind

    report = VmReport(vm, inventory.id)
    if not running:
        report.kind, report.kind_detail = "not-running", "the domain is not running"
        return report
    try:
        kind = guest_kind(inventory.agent(vm), powershell, timeout=timeout)
    except ATPError as error:
        report.kind, report.kind_detail = "unknown", f"guest agent: {error}"
        return report
    report.kind, report.os, report.kind_detail = kind.kind, kind.os, kind.detail
    return report


def _runs_powershell(kind: str) -> bool:
    return kind in ("windows", "stand-in", "powershell-path")


# ---------------------------------------------------------------- list-vms


def _list_vms(args: argparse.Namespace, inventories: list[Inventory] | None = None, out: Out = print) -> int:
    hosts = inventories if inventories is not None else configured_inventories(args.host, args.config)
    reports: list[HostReport] = []
    for inventory in hosts:
        host = HostReport(inventory.id, inventory.uri)
        reports.append(host)
        try:
            domains = inventory.domains()
        except ATPError as error:
            host.error = str(error)
            continue
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            host.vms = list(
                pool.map(lambda d, inv=inventory: probe(inv, d[0], d[1], args.powershell, args.probe_timeout), domains)
            )
    if args.json:
        print_json({"powershell": args.powershell, "hosts": [h.to_dict() for h in reports]}, out)
    else:
        for host in reports:
            out(f"host {host.id} ({host.uri})" + (f": UNREACHABLE: {host.error}" if host.error else ""))
            rows = [
                {"vm": v.vm, "kind": v.kind, "powershell": "yes" if _runs_powershell(v.kind) else "no", "os": v.os}
                | {"detail": v.kind_detail}
                for v in host.vms
            ]
            if not host.error:
                print_table(rows, ["vm", "kind", "powershell", "os", "detail"], out=out)
    if reports and all(h.error for h in reports):
        return ExitCode.ERROR
    return ExitCode.OK


# ---------------------------------------------------------------- exec


def _read_script(args: argparse.Namespace) -> str:
    if args.command is not None:
        script = str(args.command)
    else:
        path = Path(args.script_file)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ConfigurationError(f"cannot read --script-file {path}: {error.strerror or error}") from None
        script = _decode_script_file(data, path)
    if not script.strip():
        raise ConfigurationError("the script is empty: give --command 'Write-Output hi' or a non-empty --script-file")
    return script


def _decode_script_file(data: bytes, path: Path) -> str:
    """A local script file: UTF-8 (a BOM is dropped) or UTF-16 with a BOM, as PowerShell ISE/VS Code save them."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigurationError(
            f"--script-file {path} is not UTF-8 (byte {error.start}); save it as UTF-8 or UTF-16 with a BOM"
        ) from None


def _wanted_vms(args: argparse.Namespace) -> list[str] | None:
    """The VM names asked for, or None for ``--all``."""
    if args.all:
        return None
    names = [args.vm] if args.vm else [n.strip() for n in str(args.vms).split(",")]
    names = [n for n in names if n]
    if not names:
        raise ConfigurationError("--vms needs VM names separated by commas: --vms win-01,win-02")
    return list(dict.fromkeys(names))


def _locate(
    wanted: list[str], found: dict[str, list[tuple[str, bool]]], reachable: list[str], unreachable: list[str]
) -> dict[str, tuple[str, bool]]:
    """For each wanted VM, the host that has it; unknown or ambiguous names raise ConfigurationError."""
    located: dict[str, tuple[str, bool]] = {}
    for name in wanted:
        hosts = [(host, running) for host, domains in found.items() for (vm, running) in domains if vm == name]
        if not hosts:
            where = ", ".join(reachable) or "no reachable host"
            missing = f" ({', '.join(unreachable)} unreachable)" if unreachable else ""
            raise ConfigurationError(f"VM '{name}' is not defined on {where}{missing}; see atp ps list-vms")
        if len(hosts) > 1:
            raise ConfigurationError(
                f"VM '{name}' is defined on several hosts ({', '.join(h for h, _ in hosts)}); pick one with --host ID"
            )
        located[name] = hosts[0]
    return located


def _run_one(inventory: Inventory, report: VmReport, script: str, args: argparse.Namespace) -> VmReport:
    from ATPLibrary.powershell.runner import PowerShellRunner

    if not _runs_powershell(report.kind):
        report.error = f"not a PowerShell VM ({report.kind}: {report.kind_detail})"
        return report
    runner = PowerShellRunner(inventory.agent(report.vm), powershell=args.powershell, script_dir=args.script_dir)
    try:
        result = runner.run(script, timeout=args.timeout, encoding=args.encoding)
    except ATPError as error:
        report.error = str(error)
        return report
    report.rc, report.stdout, report.stderr = result.rc, result.stdout, result.stderr
    report.route, report.command_line_length = result.route, result.command_line_length
    report.stdout_encoding, report.decoding_notes = result.stdout_encoding, list(result.decoding_notes)
    report.cleanup_error, report.duration = result.cleanup_error, round(result.duration, 3)
    if result.rc is None:
        report.error = f"killed by signal {result.signal}"
    return report


def _exec(args: argparse.Namespace, inventories: list[Inventory] | None = None, out: Out = print) -> int:
    from ATPLibrary.powershell.decoding import normalize_encoding

    script = _read_script(args)
    normalize_encoding(args.encoding)  # a bad --encoding is a usage error before anything runs
    wanted = _wanted_vms(args)
    hosts = inventories if inventories is not None else configured_inventories(args.host, args.config)
    reports = {inv.id: HostReport(inv.id, inv.uri) for inv in hosts}
    found: dict[str, list[tuple[str, bool]]] = {}
    for inventory in hosts:
        try:
            found[inventory.id] = inventory.domains()
        except ATPError as error:
            reports[inventory.id].error = str(error)
    if not found:
        for unreachable in reports.values():
            print(
                f"atp: error: host {unreachable.id} ({unreachable.uri}) unreachable: {unreachable.error}",
                file=sys.stderr,
            )
        return ExitCode.ERROR
    by_id = {inv.id: inv for inv in hosts}
    if wanted is not None:
        down = [inv.id for inv in hosts if inv.id not in found]
        targets = _locate(wanted, found, list(found), down)
        jobs = [(by_id[host], vm, running) for vm, (host, running) in targets.items()]
    else:
        jobs = [(by_id[host], vm, running) for host, domains in found.items() for vm, running in domains]

    with progress("PowerShell", total=len(jobs)) as bar:

        def work(job: tuple[Inventory, str, bool]) -> VmReport:
            inventory, vm, running = job
            try:
                report = probe(inventory, vm, running, args.powershell, min(args.probe_timeout, args.timeout))
                if wanted is not None or _runs_powershell(report.kind):  # --all skips the others
                    report = _run_one(inventory, report, script, args)
            except (libvirt.libvirtError, OSError) as error:  # one VM's failure must not lose the others'
                report = VmReport(vm, inventory.id, kind="unknown", error=f"{type(error).__name__}: {error}")
            bar.advance(f"{report.vm}: {report.kind}" + (f" rc {report.rc}" if report.rc is not None else ""))
            return report

        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            done = list(pool.map(work, jobs))
    ran = 0
    for report in done:
        host = reports[report.host]
        if wanted is None and not _runs_powershell(report.kind) and report.error is None:
            host.skipped.append({"vm": report.vm, "kind": report.kind, "reason": report.kind_detail})
        else:
            host.vms.append(report)
            ran += 1
    ordered = [reports[inv.id] for inv in hosts]
    _show_exec(args, ordered, out)
    if ran == 0:
        print(
            f"atp: error: no PowerShell VM found (Windows per qemu-ga, or a file at {args.powershell}); "
            "see atp ps list-vms",
            file=sys.stderr,
        )
        return ExitCode.ERROR
    failed = [v for h in ordered for v in h.vms if not v.ok]
    if failed or any(h.error for h in ordered):
        return ExitCode.FAILED
    return ExitCode.OK


def _show_exec(args: argparse.Namespace, hosts: list[HostReport], out: Out) -> None:
    if args.json:
        vms = [v for h in hosts for v in h.vms]
        print_json(
            {
                "powershell": args.powershell,
                "hosts": [h.to_dict() for h in hosts],
                "summary": {
                    "ok": sum(1 for v in vms if v.ok),
                    "failed": sum(1 for v in vms if not v.ok),
                    "skipped": sum(len(h.skipped) for h in hosts),
                    "unreachable_hosts": [h.id for h in hosts if h.error],
                },
            },
            out,
        )
        return
    for host in hosts:
        out(f"== host {host.id} ({host.uri})" + (f": UNREACHABLE: {host.error}" if host.error else ""))
        for vm in host.vms:
            status = f"rc {vm.rc}" if vm.error is None else f"ERROR: {vm.error}"
            route = f" via {vm.route}" if vm.route else ""
            out(f"-- {vm.vm} [{vm.kind}] {status}{route}")
            for line in vm.stdout.splitlines():
                out(f"   {line}")
            for line in vm.stderr.splitlines():
                out(f"   stderr: {line}")
            for note in vm.decoding_notes:
                out(f"   note: {note}")
            if vm.cleanup_error:
                out(f"   warning: {vm.cleanup_error}")
        if host.skipped:
            print_table(host.skipped, ["vm", "kind", "reason"], headers=["skipped", "kind", "reason"], out=out)


# ---------------------------------------------------------------- parser


def add_parser(sub: Any) -> None:
    """Register ``atp ps`` (alias ``atp powershell``)."""
    from ATPLibrary.powershell.command import DEFAULT_POWERSHELL

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--host",
        action="append",
        metavar="ID",
        help="only this host (id from the atp config, or a libvirt URI); repeat",
    )
    common.add_argument("--config", metavar="PATH", help="the atp config file (default: the usual search order)")
    common.add_argument(
        "--powershell",
        default=DEFAULT_POWERSHELL,
        metavar="PATH",
        help="guest path of powershell.exe; on a non-Windows guest a file there makes it a PowerShell VM (e.g. the "
        "ATP stand-in, /tmp/atp-ps/powershell.exe) (default: %(default)s)",
    )
    common.add_argument(
        "--parallel", type=int, default=4, metavar="N", help="VMs worked on at the same time (default: %(default)s)"
    )
    common.add_argument(
        "--probe-timeout",
        type=float,
        default=PROBE_TIMEOUT,
        metavar="SECONDS",
        help="seconds to ask each VM's guest agent what it is (default: %(default)s)",
    )
    add_json_option(common)
    ps = sub.add_parser(
        "ps",
        aliases=["powershell"],
        help="PowerShell in Windows guests through qemu-ga (-EncodedCommand UTF-16LE, long scripts as a guest file)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ps_sub = ps.add_subparsers(dest="ps_command", required=True, metavar="{list-vms,exec}")
    listing = ps_sub.add_parser(
        "list-vms", parents=[common], help="every VM per host: windows, stand-in, powershell-path or not"
    )
    listing.set_defaults(func=_list_vms)
    run = ps_sub.add_parser(
        "exec",
        parents=[common],
        help="run a PowerShell script on VMs; per-VM rc, output, route (exit 1 if any VM failed)",
    )
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--vm", help="one VM")
    which.add_argument("--vms", help="VMs separated by commas: --vms win-01,win-02")
    which.add_argument("--all", action="store_true", help="every running PowerShell VM of the hosts")
    what = run.add_mutually_exclusive_group(required=True)
    what.add_argument("--command", help="the script text, e.g. --command 'Get-Date; exit 0'")
    what.add_argument("--script-file", metavar="FILE", help="a local .ps1 file (UTF-8, or UTF-16 with a BOM)")
    run.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds per VM for upload and run (default: %(default)s)",
    )
    run.add_argument(
        "--encoding",
        default="auto",
        metavar="CP",
        help="code page of non-UTF-8 output: 936 (GBK), cp437, 1252... or auto (ask the guest) (default: auto)",
    )
    run.add_argument(
        "--script-dir", metavar="DIR", help="guest folder for long scripts (default: C:\\Windows\\Temp, /tmp)"
    )
    run.set_defaults(func=_exec)
