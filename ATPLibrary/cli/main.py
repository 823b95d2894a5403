"""The `atp` command line."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import libvirt

from ATPLibrary.cli.exitcodes import ExitCode
from ATPLibrary.errors import ATPError


def _lab_up(args: argparse.Namespace) -> int:
    from ATPLibrary.lab.lab import Lab

    lab_vars = Lab().up(args.vms, timeout=args.timeout)
    from ATPLibrary.lab import paths

    print(f"lab variables: {paths.vars_file()} ({len(lab_vars['vms'])} guests: {', '.join(lab_vars['vms'])})")
    return 0


def _lab_status(args: argparse.Namespace) -> int:
    from ATPLibrary.lab.lab import Lab

    info = Lab().status()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"lab dir:   {info['lab_dir']}")
    print(f"libvirtd:  {info['libvirtd']}")
    for name, d in info["daemons_started_by_lab"].items():
        print(f"started by the lab: {name} PID {d['pid']} ({'alive' if d['alive'] else 'gone'})")
    print(f"accel:     {info['accel'] or '-'}")
    if not info["guests"]:
        print("guests:    none")
    for name, g in info["guests"].items():
        print(f"  {name}  {g['state']:<9} {'console ready' if g['console_ready'] else ''}")
    return 0


def _lab_down(args: argparse.Namespace) -> int:
    from ATPLibrary.lab.lab import Lab

    Lab().down()
    return 0


def _vdi_sim(args: argparse.Namespace) -> int:
    from ATPLibrary.vdi.sim.__main__ import main as sim_main

    return sim_main(args.sim_args)


def command_modules() -> list[ModuleType]:
    """Every module of this package with an ``add_parser(subparsers)`` function adds one ``atp`` command.

    A new command is a new module here; nothing else needs to change.  Modules keep their heavy imports inside
    their functions, so that ``atp --help`` stays fast.
    """
    package = importlib.import_module(__package__ or "ATPLibrary.cli")
    modules = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in {"main", "exitcodes", "output"}:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if callable(getattr(module, "add_parser", None)):
            modules.append(module)
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atp", description="ATPLibrary: test virtual desktops on libvirt/QEMU")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lab = sub.add_parser("lab", help="the local lab of real libvirt/QEMU guests")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True, metavar="{up,status,down}")
    up = lab_sub.add_parser(
        "up",
        help="install, start libvirtd, build the guest image, boot N guests",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    up.add_argument("--vms", type=int, default=4, help="number of guests atp-lab-01..N (grows or shrinks)")
    up.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for all guests to be console-ready (default 60 + 15 per guest)",
    )
    up.set_defaults(func=_lab_up)
    status = lab_sub.add_parser("status", help="show the lab's daemons and guests")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_lab_status)
    down = lab_sub.add_parser("down", help="remove the lab's guests, stop daemons the lab started")
    down.set_defaults(func=_lab_down)

    for module in command_modules():
        module.add_parser(sub)

    sim = sub.add_parser(
        "vdi-sim",
        help="run the OCloudView VDI platform simulator (options: atp vdi-sim --help)",
        add_help=False,
    )
    sim.set_defaults(func=_vdi_sim, sim_args=[])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["vdi-sim"]:  # its own options, parsed by the simulator
        return _vdi_sim(argparse.Namespace(sim_args=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ATPError as exc:
        print(f"atp: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    except libvirt.libvirtError as exc:
        print(f"atp: libvirt error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        print("atp: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`atp report list | head`): no traceback; stdout must not be flushed again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
