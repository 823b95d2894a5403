"""``atp vm``: one-shot commands on a VM of a configured host (list, keys, type, click, exec, screenshot).

They use the library's clients directly (``hosts``, ``qmp``, ``input``, ``qga``, ``screen``, the one key map and
keyboard layouts), the same code the keywords call.  The host is ``--host``, else the config's ``[defaults] host``,
else the only host (the implicit ``local`` = ``qemu:///system`` when none is configured); several hosts and no
choice is exit 2 listing them.  Every command is bounded by ``--timeout``.

Exit codes: 0 done; 1 the target failed (``exec``: the guest command exited non-zero, was killed or did not finish
in time; ``list``: some hosts unreachable); 2 nothing done (bad arguments, unknown host or VM, key name or character
that cannot be typed, VM not running, host or guest agent unreachable, timeout); 130 interrupted.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.cli.host import (
    IMPLICIT_NOTE,
    HostUnreachable,
    add_config_option,
    add_timeout_option,
    bounded,
    command_config,
    error_line,
    open_host,
    timeout_of,
)
from ATPLibrary.cli.output import Out, add_json_option, print_json, print_table, progress
from ATPLibrary.config import AtpConfig, HostConfig, pick_host, resolve_hosts
from ATPLibrary.errors import ATPError, ConfigurationError, GuestAgentNotResponding, GuestCommandError
from ATPLibrary.hosts.connection import DomainHandle, HostConnection
from ATPLibrary.hosts.state import VMState

EXEC_MARGIN = 15.0  # seconds beyond --timeout for killing and reaping a guest command that ran too long


def _target(args: argparse.Namespace) -> tuple[AtpConfig, HostConfig, float]:
    config = command_config(args)
    return config, pick_host(config, args.host), timeout_of(args, config)


def _domain(connection: HostConnection, vm: str, timeout: float) -> DomainHandle:
    """The running domain ``vm`` (unknown: VMNotFoundError listing the names; not running: a clear error)."""
    state = bounded(lambda: connection.state(vm), timeout, f"reading the state of VM '{vm}'")
    if state is not VMState.RUNNING:
        raise ConfigurationError(
            f"VM '{vm}' on '{connection.alias}' ({connection.uri}) is {state}, not running; start it first"
        )
    return connection.domain(vm)


def _with_domain(args: argparse.Namespace, action: Callable[[DomainHandle, float], Any], what: str) -> Any:
    _config, host, timeout = _target(args)
    connection = open_host(host, timeout)
    try:
        domain = _domain(connection, args.vm, timeout)
        return bounded(lambda: action(domain, timeout), timeout, f"{what} on VM '{args.vm}'")
    finally:
        connection.close()


# ---------------------------------------------------------------- list


def cmd_list(args: argparse.Namespace, out: Out) -> int:
    config = command_config(args)
    timeout = timeout_of(args, config)
    hosts = resolve_hosts(config, [args.host] if args.host else None)
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    with progress("listing VMs", len(hosts)) as bar:
        for host in hosts:
            try:
                connection = open_host(host, timeout)
                try:
                    domains = bounded(partial(_domains, connection), timeout, f"listing VMs of '{host.id}'")
                finally:
                    connection.close()
                rows += [
                    {"name": name, "state": str(state), "host": host.id, "uri": host.uri} for name, state in domains
                ]
            except ATPError as exc:
                errors.append(str(exc).splitlines()[0])
            bar.advance(host.id)
    if args.json:
        print_json(rows, out)
    else:
        print_table(rows, ["name", "state", "host"])
    for error in errors:
        print(f"atp vm list: error: {error}", file=sys.stderr)
    if not errors:
        return ExitCode.OK
    return ExitCode.ERROR if len(errors) == len(hosts) else ExitCode.FAILED


def _domains(connection: HostConnection) -> list[tuple[str, VMState]]:
    def read(conn: Any) -> list[tuple[str, VMState]]:
        found = []
        for dom in conn.listAllDomains(0):
            found.append((str(dom.name()), VMState.from_libvirt(int(dom.state(0)[0]))))
        return sorted(found)

    return connection.call(read, what="listing domains", idempotent=True)


# ---------------------------------------------------------------- input


def cmd_keys(args: argparse.Namespace, out: Out) -> int:
    from ATPLibrary.keys.keymap import DEFAULT_KEYMAP
    from ATPLibrary.qmp.keyboard import QmpKeyboard
    from ATPLibrary.qmp.monitor import MonitorClient

    parsed = [DEFAULT_KEYMAP.parse_combo(c) for c in args.combos]  # every name checked before connecting
    shown = ", ".join("+".join(k.name for k in combo) for combo in parsed)

    def press(domain: DomainHandle, timeout: float) -> None:
        QmpKeyboard(MonitorClient(domain, timeout=timeout)).press_combos(args.combos)

    _with_domain(args, press, "pressing keys")
    out(f"pressed on VM '{args.vm}': {shown}")
    return ExitCode.OK


def cmd_type(args: argparse.Namespace, out: Out) -> int:
    from ATPLibrary.keys.layout import get_layout
    from ATPLibrary.qmp.keyboard import QmpKeyboard
    from ATPLibrary.qmp.monitor import MonitorClient

    layout = get_layout(args.layout)
    text = args.text + ("\n" if args.enter else "")
    layout.strokes(text)  # a character the layout cannot type fails before connecting

    def type_text(domain: DomainHandle, timeout: float) -> int:
        keyboard = QmpKeyboard(MonitorClient(domain, timeout=timeout), layout=layout)
        return keyboard.type_text(text, delay=args.delay)

    commands = _with_domain(args, type_text, "typing")
    out(f"typed {len(text)} characters on VM '{args.vm}' ({commands} QMP commands, layout {layout.name})")
    return ExitCode.OK


def cmd_click(args: argparse.Namespace, out: Out) -> int:
    from ATPLibrary.input.mouse import MouseButton, coerce_enum
    from ATPLibrary.input.pointer import QmpPointer
    from ATPLibrary.qmp.monitor import MonitorClient
    from ATPLibrary.screen.capture import take_screenshot

    button = coerce_enum(MouseButton, args.button)

    def click(domain: DomainHandle, timeout: float) -> tuple[int, int]:
        def screen_size() -> tuple[int, int]:
            shot = take_screenshot(domain)
            return shot.width, shot.height

        pointer = QmpPointer(MonitorClient(domain, timeout=timeout), screen_size)
        moved = pointer.move_to(args.x, args.y)
        pointer.click(button, 2 if args.double else 1)
        return moved

    ax, ay = _with_domain(args, click, "clicking")
    kind = "double-clicked" if args.double else "clicked"
    out(f"{kind} {button.value} on VM '{args.vm}' at ({args.x}, {args.y}) px = ({ax}, {ay}) of 0..32767")
    return ExitCode.OK


# ---------------------------------------------------------------- exec


def cmd_exec(args: argparse.Namespace, out: Out) -> int:
    from ATPLibrary.qga.agent import ExecResult, GuestAgent

    argv = _exec_argv(args)
    if not argv:
        raise ConfigurationError("no command given: atp vm exec VM -- COMMAND [ARG...]")
    _config, host, timeout = _target(args)
    connection = open_host(host, timeout)
    try:
        domain = _domain(connection, args.vm, timeout)
        agent = GuestAgent(domain)
        started = time.monotonic()
        if args.shell:
            line = shlex.join(argv) if len(argv) > 1 else argv[0]
            run: Callable[[], ExecResult] = lambda: agent.run_shell(line, timeout=timeout)  # noqa: E731
        else:
            run = lambda: agent.exec(argv[0], argv[1:], timeout=timeout)  # noqa: E731
        try:
            result = bounded(run, timeout + EXEC_MARGIN, f"running a command in VM '{args.vm}'")
        except GuestAgentNotResponding:
            raise
        except GuestCommandError as exc:
            # started but did not finish in time (killed), or the guest could not start it (no such file)
            record = {"vm": args.vm, "host": host.id, "command": argv, "rc": None, "signal": None, "ok": False}
            record |= {"stdout": "", "stderr": "", "error": str(exc), "duration": round(time.monotonic() - started, 3)}
            if args.json:
                print_json(record, out)
            error_line("vm exec", exc)
            return ExitCode.FAILED
    finally:
        connection.close()
    ok = result.rc == 0
    if args.json:
        print_json(
            {
                "vm": args.vm,
                "host": host.id,
                "command": argv,
                "rc": result.rc,
                "signal": result.signal,
                "ok": ok,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "stdout_truncated": result.stdout_truncated,
                "stderr_truncated": result.stderr_truncated,
                "duration": round(result.duration, 3),
                "error": None,
            },
            out,
        )
    else:
        sys.stdout.write(result.stdout)
        sys.stdout.flush()
        sys.stderr.write(result.stderr)
        if not ok:
            status = f"exited with rc {result.rc}" if result.rc is not None else f"was killed by signal {result.signal}"
            print(f"atp vm exec: the command in VM '{args.vm}' {status} (atp exits with 1)", file=sys.stderr)
    return ExitCode.OK if ok else ExitCode.FAILED


def _exec_argv(args: argparse.Namespace) -> list[str]:
    """The guest command: what follows ``--``; atp options between the VM and ``--`` are applied to ``args``.

    (argparse hands everything after the VM to the command, so ``atp vm exec VM --shell -- cmd`` needs this.)
    """
    argv = list(args.command)
    if argv[:1] == ["--"]:
        return argv[1:]
    if argv[:1] and argv[0].startswith("-") and "--" in argv:
        split = argv.index("--")
        options, argv = argv[:split], argv[split + 1 :]
        args.exec_parser.parse_args([*options, args.vm], namespace=args)
    return argv


# ---------------------------------------------------------------- screenshot


def cmd_screenshot(args: argparse.Namespace, out: Out) -> int:
    from ATPLibrary.screen.capture import Screenshot, take_screenshot

    target = Path(args.output).expanduser()
    if target.is_dir():
        target = target / f"{args.vm}.png"
    if not target.parent.is_dir():
        raise ConfigurationError(f"folder {target.parent} does not exist; create it or give another -o path")

    def grab(domain: DomainHandle, _timeout: float) -> Screenshot:
        return take_screenshot(domain)

    shot: Screenshot = _with_domain(args, grab, "taking a screenshot")
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_bytes(shot.png)
    tmp.replace(target)
    if args.json:
        print_json({"vm": args.vm, "path": str(target), "width": shot.width, "height": shot.height}, out)
    else:
        out(f"{target}: {shot.width}x{shot.height} PNG of VM '{args.vm}' ({len(shot.png)} bytes)")
    return ExitCode.OK


# ---------------------------------------------------------------- parser


EPILOG = f"""{IMPLICIT_NOTE}
Host: --host ID, else [defaults] host of the config file, else the only host; with several hosts and no choice
the command stops with exit 2 and lists them.
Exit codes: 0 done; 1 the target failed (exec: the guest command exited non-zero, was killed or ran out of time;
list: some hosts unreachable); 2 nothing done (bad arguments, unknown host or VM, VM not running, unknown key or
a character that cannot be typed, host or guest agent unreachable, timeout); 130 interrupted."""


def add_parser(sub: Any) -> None:
    """Register ``atp vm ...`` on the top-level subparsers."""
    vm = sub.add_parser(
        "vm",
        help="one-shot VM commands: list, keys, type, click, exec, screenshot",
        description="One-shot commands on a VM of a configured libvirt host (QMP input, guest agent, screenshots).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    vm_sub = vm.add_subparsers(dest="vm_command", required=True, metavar="{list,keys,type,click,exec,screenshot}")

    def command(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = vm_sub.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parser

    def common(parser: argparse.ArgumentParser, with_vm: bool = True) -> None:
        if with_vm:
            parser.add_argument("vm", help="libvirt domain name, e.g. atp-lab-01")
        parser.add_argument("--host", metavar="ID", help="host id from the config file, or a libvirt URI")
        add_timeout_option(parser, what=" (connect, and the whole operation)")
        add_config_option(parser)

    lst = command("list", "the VMs of every host (or of --host): name, state, host")
    common(lst, with_vm=False)
    add_json_option(lst)
    lst.set_defaults(func=_run(cmd_list))

    keys = command(
        "keys",
        "press key combinations, e.g. ctrl+alt+delete (the names of the Press Keys keyword)",
        "Press each combination in order: keys joined with '+' go down in order and up in reverse. Key names are "
        "the library's (case-insensitive; see 'Key names' in the keyword documentation): ctrl, alt, shift, "
        "delete, ret/enter, f1, a, ...",
    )
    common(keys)
    keys.add_argument("combos", nargs="+", metavar="COMBO", help="e.g. ctrl+alt+delete, shift+a, enter")
    keys.set_defaults(func=_run(cmd_keys))

    typ = command(
        "type",
        "type text exactly (Shift for capitals and symbols like '<', in order)",
        "Type TEXT exactly, one press and release per character with its modifiers. Quote it for the shell; "
        "use --enter to press Enter after it (or $'...\\n' in bash).",
    )
    common(typ)
    typ.add_argument("text", help="the text to type")
    typ.add_argument("--enter", action="store_true", help="press Enter after the text")
    typ.add_argument("--layout", default="us", help="the guest's keyboard layout: us (default) or de")
    typ.add_argument("--delay", type=float, default=0.0, metavar="SECONDS", help="pause between characters (0)")
    typ.set_defaults(func=_run(cmd_type))

    click = command(
        "click",
        "click at pixel X Y of the VM's screen",
        "Move the pointer to pixel (X, Y) from the top-left of the screen (absolute tablet) and click.",
    )
    common(click)
    click.add_argument("x", type=int, help="pixel column")
    click.add_argument("y", type=int, help="pixel row")
    click.add_argument(
        "--button", default="left", choices=["left", "middle", "right", "side", "extra"], help="button (left)"
    )
    click.add_argument("--double", action="store_true", help="double-click")
    click.set_defaults(func=_run(cmd_click))

    exe = command(
        "exec",
        "run a command in the guest through qemu-ga; print its stdout/stderr",
        "Run COMMAND in the guest with the QEMU guest agent (path searched in the guest's PATH; no shell unless "
        "--shell) and print its stdout and stderr. atp exits with 0 when the command exits with 0, with 1 when it "
        "exits non-zero, is killed, or runs longer than --timeout (then it is killed); --json gives the exact rc. "
        "Put -- before the command so that its options are not read as atp's.",
    )
    common(exe)
    exe.add_argument("--shell", action="store_true", help="run the command with /bin/sh -c (Linux guests)")
    add_json_option(exe)
    exe.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]", help="the guest command and its arguments"
    )
    exe.set_defaults(exec_parser=exe)
    exe.set_defaults(func=_run(cmd_exec))

    shot = command("screenshot", "save a PNG screenshot of the VM's screen")
    common(shot)
    shot.add_argument("-o", "--output", required=True, metavar="FILE", help="PNG file (a folder: FOLDER/VM.png)")
    add_json_option(shot)
    shot.set_defaults(func=_run(cmd_screenshot))


def _run(fn: Callable[[argparse.Namespace, Out], int]) -> Callable[[argparse.Namespace], int]:
    """Errors become one line on stderr and exit code 2 (nothing done)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args, print))
        except (ATPError, HostUnreachable) as exc:
            error_line(f"vm {args.vm_command}", exc)
            return ExitCode.ERROR

    return run
