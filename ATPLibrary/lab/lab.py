"""`atp lab up | status | down`: one lab of real libvirt/QEMU guests per machine."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt

from ATPLibrary.errors import LabError, WaitTimeoutError
from ATPLibrary.lab import paths, spice_tls, system
from ATPLibrary.lab.domains import (
    TEMPLATE_KEY,
    VERIFIER_TCP_PORT,
    VERIFIER_WS_PORT,
    GuestSpec,
    domain_xml,
    lab_metadata,
    new_spice_password,
    spice_password_of,
    spice_port_of,
    spice_tls_port_of,
)
from ATPLibrary.lab.image import GuestImage, ensure_image, prune_images
from ATPLibrary.lab.progress import Progress
from ATPLibrary.lab.shell import is_root
from ATPLibrary.lab.vdi_sim import LabVdiSim
from ATPLibrary.pool.leases import LeaseStore
from ATPLibrary.vdi.sim.backend import DOMAIN_PREFIX as VDI_DOMAIN_PREFIX

LAB_URI = "qemu:///system"
READY_MARK = "ATP-CONSOLE-READY"
FAILED_MARK = "ATP-INIT-FAILED"
SHUTDOWN_MARK = "ATP-SHUTDOWN"
AGENT_MARK = "ATP-GUEST-AGENT"
#: What the console's first prompt creates, beside writing READY_MARK to the serial port (atp-console.sh).
READY_FILE = "/run/atp-console-ready"
#: Booting is CPU-bound under TCG (about 2 guests per 3.5 s on 2 cores); these bound the wait.
BOOT_TIMEOUT_BASE = 60.0
BOOT_TIMEOUT_PER_VM = 15.0
KVM_PROBE_TIMEOUT = 30.0
#: How long removing or redefining a guest waits for a test that holds its lease.
LEASE_WAIT = 300.0

Log = Callable[[str], None]


def _lab_name_re() -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(paths.VM_PREFIX)}\d{{2,}}$")


@dataclass
class LabState:
    daemons: dict[str, int] = field(default_factory=dict)
    accel: str | None = None

    @classmethod
    def load(cls) -> LabState:
        try:
            data = json.loads(paths.state_file().read_text())
        except (OSError, ValueError):
            return cls()
        return cls(daemons={k: int(v) for k, v in data.get("daemons", {}).items()}, accel=data.get("accel"))

    def save(self) -> None:
        paths.state_file().parent.mkdir(parents=True, exist_ok=True)
        paths.state_file().write_text(json.dumps({"daemons": self.daemons, "accel": self.accel}, indent=2))


def choose_accel(state: LabState) -> tuple[str, bool]:
    """("qemu", False) for TCG, ("kvm", needs_probe).  kvm_pvm (nested, no VT-x) hangs real kernels: use TCG."""
    if Path("/sys/module/kvm_pvm").exists():
        return "qemu", False
    if os.environ.get("ATP_LAB_ACCEL") in ("qemu", "tcg"):
        return "qemu", False
    if state.accel:
        return state.accel, False
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "kvm", True
    return "qemu", False


class Lab:
    """The local lab.  Every operation is idempotent and bounded by timeouts."""

    def __init__(self, log: Log = print, progress: Progress | None = None) -> None:
        self.log = log
        self.progress = progress or Progress(log)
        self.dir = paths.lab_dir()
        self.run_dir = self.dir / "run"

    @contextlib.contextmanager
    def _exclusive(self, what: str, timeout: float = 900.0) -> Iterator[None]:
        """One lab change at a time on a machine: `up`, `down` and restarts wait for each other."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / ".lock").open("a+") as lock:
            deadline = time.monotonic() + timeout
            waited = False
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited:
                        self.log(f"another `atp lab` command is changing the lab; {what} waits for it")
                        waited = True
                    if time.monotonic() > deadline:
                        raise LabError(
                            f"another `atp lab` command held {self.dir / '.lock'} for {timeout:g} s; {what} gave up"
                        ) from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------ up

    def up(self, vms: int, timeout: float | None = None) -> dict[str, Any]:
        if vms < 0 or vms > 64:
            raise LabError(f"--vms must be between 0 and 64, got {vms}")
        with self._exclusive("lab up"):
            return self._up(vms, timeout)

    def _up(self, vms: int, timeout: float | None) -> dict[str, Any]:
        started = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = LabState.load()
        system.ensure_packages(self.log)
        tls = self._spice_tls_settings()
        result = system.start_libvirtd(self.log, started_by_lab=state.daemons.get("libvirtd"), qemu_conf_extra=tls)
        state.daemons = {k: v for k, v in state.daemons.items() if system.pid_alive(v)}
        state.daemons.update(result.started)
        state.save()
        if not result.started:  # a libvirtd that already ran: it may predate the SPICE TLS settings
            state = self._apply_qemu_conf(state, tls)
        image = ensure_image(self.dir, self.log)
        accel, probe = choose_accel(state)
        with self._connect() as conn:
            self._shrink(conn, vms)
            names = [paths.vm_name(i) for i in range(1, vms + 1)]
            if probe and names:
                accel = self._probe_kvm(conn, names[0], image)
            state.accel = accel
            state.save()
            for name in names:
                self._ensure_running(conn, name, image, accel)
            deadline_s = timeout if timeout is not None else BOOT_TIMEOUT_BASE + BOOT_TIMEOUT_PER_VM * len(names)
            self._wait_ready(conn, names, deadline_s)
            self._check_tls_ports(conn, names)
            vdi = LabVdiSim(self.dir, self.log).up()
            lab_vars = self._write_vars(conn, names, accel, vdi)
        prune_images(self.dir, keep={image.directory})
        self.log(f"lab up: {len(names)} guests console-ready in {time.monotonic() - started:.1f} s ({accel})")
        return lab_vars

    def _spice_tls_settings(self) -> system.Settings:
        """Make (or reuse) the SPICE TLS CA and server certificate; the qemu.conf lines that use them."""
        files = spice_tls.ensure_spice_tls(self.dir)
        if files.created:
            self.log(f"made a SPICE TLS CA and server certificate in {files.directory}")
        return system.spice_tls_settings(files.directory)

    def _apply_qemu_conf(self, state: LabState, tls: system.Settings) -> LabState:
        """With a libvirtd that already runs: make qemu.conf carry the SPICE TLS lines and make libvirtd read
        them, restarting it only when the lab started it.  A foreign qemu.conf is never written: without the
        lines this stops naming them and the file; a foreign libvirtd that has not read them is named too."""
        conf = system.QEMU_CONF
        pid = system.running_libvirtd_pid()
        ours = pid is not None and pid == state.daemons.get("libvirtd")
        own_file = conf.exists() and system.is_lab_qemu_conf(conf)
        if own_file and is_root():
            changed = system.ensure_qemu_conf(conf, extra=tls)
        else:
            try:
                text = conf.read_text()
            except FileNotFoundError:
                text = ""
            except OSError as exc:
                raise LabError(f"cannot read {conf} ({exc}); the lab needs SPICE TLS settings in it") from exc
            missing = system.missing_qemu_conf_settings(text, tls)
            if missing and own_file:
                raise LabError(
                    f"{conf} (written by the lab) lacks these lines; run `atp lab up` as root so that the lab "
                    "writes them and restarts its libvirtd:\n  " + "\n  ".join(missing)
                )
            if missing:
                raise system.foreign_qemu_conf_error(conf, missing)
            changed = False
        if not changed and not (pid is not None and system.read_before(pid, conf)):
            return state
        if ours:
            self.log(f"restarting libvirtd (started by the lab) so that it reads the SPICE TLS settings in {conf}")
            self._restart_libvirtd(tls)
            return LabState.load()
        raise LabError(
            f"libvirtd{f' (PID {pid})' if pid else ''} was not started by the lab and has not read {conf} since "
            "it changed (it needs spice_tls = 1 for the guests' SPICE tlsPort). Restart libvirtd, then run "
            "`atp lab up` again."
        )

    def _check_tls_ports(self, conn: libvirt.virConnect, names: list[str]) -> None:
        """Every running lab guest has a SPICE tlsPort, or the lab says why not (libvirtd without spice_tls)."""
        lacking = [n for n in names if spice_tls_port_of(conn.lookupByName(n).XMLDesc(0)) is None]
        if lacking:
            raise LabError(
                f"{', '.join(lacking)} started without a SPICE tlsPort: the running libvirtd does not apply "
                f"spice_tls = 1 from {system.QEMU_CONF}. Restart libvirtd so that it reads the file, then run "
                "`atp lab up` again."
            )

    @contextlib.contextmanager
    def _connect(self) -> Iterator[libvirt.virConnect]:
        # libvirt prints every error to stderr by default; the lab reports its own, with context.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        try:
            conn = libvirt.open(LAB_URI)
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot connect to {LAB_URI}: {exc}") from exc
        try:
            yield conn
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def lab_domains(self, conn: libvirt.virConnect) -> list[libvirt.virDomain]:
        pattern = _lab_name_re()
        found = []
        for dom in conn.listAllDomains(0):
            if pattern.match(dom.name()) and lab_metadata(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)):
                found.append(dom)
        return sorted(found, key=lambda d: d.name())

    def vdi_domains(self, conn: libvirt.virConnect) -> list[libvirt.virDomain]:
        """The domains the lab's VDI simulator defined (``atp-vdi-…`` with the lab's metadata)."""
        return sorted(
            (
                d
                for d in conn.listAllDomains(0)
                if d.name().startswith(VDI_DOMAIN_PREFIX) and lab_metadata(d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            ),
            key=lambda d: d.name(),
        )

    def _remove(self, dom: libvirt.virDomain) -> None:
        """Destroy and undefine a lab guest once no test holds its lease (`Acquire VM`): waits for the
        holder up to LEASE_WAIT, then fails naming it instead of pulling the VM from under a running test."""
        name = dom.name()
        store = LeaseStore()
        lease = store.try_acquire(LAB_URI, name, "atp lab")
        if lease is None:
            self.log(f"{name} is leased by {store.holder(LAB_URI, name) or 'another process'}; waiting for it")
            try:
                lease = store.acquire(LAB_URI, [name], "atp lab", timeout=LEASE_WAIT)
            except WaitTimeoutError as exc:
                raise LabError(f"cannot remove {name}: {exc}") from exc
        try:
            self.destroy_and_undefine(dom)
        finally:
            lease.release()

    def destroy_and_undefine(self, dom: libvirt.virDomain) -> None:
        """Destroy and undefine a domain the lab made, and remove its serial log and sockets."""
        name = dom.name()
        if dom.isActive():
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM if hasattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM") else 0)
        for p in (self.serial_log(name), self._verifier_socket(name), self._qmp_socket(name)):
            p.unlink(missing_ok=True)

    def _shrink(self, conn: libvirt.virConnect, vms: int) -> None:
        keep = {paths.vm_name(i) for i in range(1, vms + 1)}
        for dom in self.lab_domains(conn):
            if dom.name() not in keep:
                self.log(f"removing {dom.name()} (lab shrinks to {vms})")
                self._remove(dom)

    def serial_log(self, name: str) -> Path:
        return self.run_dir / f"{name}.serial.log"

    def _verifier_socket(self, name: str) -> Path:
        return self.run_dir / f"{name}.verifier.sock"

    def _qmp_socket(self, name: str) -> Path:
        return self.run_dir / f"{name}.qmp.sock"

    def guest_spec(self, name: str, image: GuestImage, accel: str, password: str, uuid: str | None = None) -> GuestSpec:
        """How the lab defines a guest named ``name`` (lab guests and the VDI simulator's domains alike)."""
        return GuestSpec(
            uuid=uuid,
            name=name,
            image=image,
            accel=accel,
            spice_password=password,
            serial_log=self.serial_log(name),
            verifier_socket=self._verifier_socket(name),
            qmp_socket=self._qmp_socket(name),
        )

    def _ensure_running(self, conn: libvirt.virConnect, name: str, image: GuestImage, accel: str) -> None:
        """Define (or redefine when the image changed) and start ``name`` with an empty serial log."""
        password: str | None = None
        dom: libvirt.virDomain | None
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            meta = lab_metadata(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) or {}
            if (meta.get("image"), meta.get("accel"), meta.get("template")) != (image.key, accel, TEMPLATE_KEY):
                self.log(f"{name}: redefining (image, accelerator or domain template changed)")
                password = spice_password_of(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
                self._remove(dom)
                dom = None
            elif dom.isActive() and spice_tls_port_of(dom.XMLDesc(0)) is None:
                # started before libvirtd had spice_tls = 1: only a new start gives it a tlsPort
                self.log(f"{name}: restarting (it has no SPICE tlsPort: started before SPICE TLS was on)")
                password = spice_password_of(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))
                self._remove(dom)
                dom = None
            elif dom.isActive():
                return  # already running: its serial log holds this boot's marks
        if dom is None:
            xml = domain_xml(self.guest_spec(name, image, accel, password or new_spice_password()))
            dom = conn.defineXML(xml)
        # One boot, one log: a mark left by an earlier boot must not count as this boot's (QEMU may truncate the
        # file when it opens it, so a byte offset taken before the start is no safe bookmark either).
        self.serial_log(name).unlink(missing_ok=True)
        try:
            dom.create()
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot start {name}: {exc}") from exc

    def _probe_kvm(self, conn: libvirt.virConnect, name: str, image: GuestImage) -> str:
        """Try KVM on one guest with a short deadline; fall back to TCG when it does not boot."""
        self.log(f"trying KVM on {name} (boot deadline {KVM_PROBE_TIMEOUT:g} s)")
        try:
            self._ensure_running(conn, name, image, "kvm")
            self._wait_ready(conn, [name], KVM_PROBE_TIMEOUT)
            return "kvm"
        except LabError as exc:
            self.log(f"KVM did not boot a guest ({str(exc).splitlines()[0]}); using TCG")
            with contextlib.suppress(libvirt.libvirtError):
                self._remove(conn.lookupByName(name))
            return "qemu"

    def _agent_says_ready(self, conn: libvirt.virConnect, name: str, checked: dict[str, float] | None = None) -> bool:
        """Whether the guest agent finds READY_FILE, asked at most every 2 s per guest and only once the serial
        log shows the agent started.

        The serial mark is the fast path, but a guest restarted outside the lab (a test's `Start VM`) was seen
        twice to lose its READY_MARK line while the console was ready (the file was there): the file decides.
        """
        now = time.monotonic()
        if checked is not None:
            if now - checked.get(name, 0.0) < 2.0:
                return False
            checked[name] = now
        try:
            text = self.serial_log(name).read_text(errors="replace")
        except OSError:
            return False
        marks = [
            m for line in text.splitlines() for m in (AGENT_MARK, READY_MARK, FAILED_MARK, SHUTDOWN_MARK) if m in line
        ]
        if not marks or marks[-1] != AGENT_MARK:  # this boot's agent started, and no shutdown since
            return False
        return agent_file_exists(conn.lookupByName(name), READY_FILE)

    def _wait_ready(self, conn: libvirt.virConnect, names: list[str], timeout: float) -> None:
        pending = list(names)
        checked: dict[str, float] = {}
        start = time.monotonic()
        deadline = start + timeout
        with self.progress.task("guests console-ready", total=len(names)) as task:
            while pending:
                for name in list(pending):
                    status = console_status(self.serial_log(name))
                    if status == "booting" and self._agent_says_ready(conn, name, checked):
                        status = "ready"
                    if status == "ready":
                        pending.remove(name)
                        task.advance(f"{name} console ready after {time.monotonic() - start:.1f} s")
                    elif status == "failed":
                        raise LabError(f"{name} failed to boot: {self._serial_tail(name)}")
                    elif not conn.lookupByName(name).isActive():
                        raise LabError(f"{name} stopped while booting; serial log: {self._serial_tail(name)}")
                if pending and time.monotonic() > deadline:
                    raise LabError(
                        f"{', '.join(sorted(pending))} not console-ready within {timeout:g} s "
                        f"(no {READY_MARK} line in {self.run_dir}/<vm>.serial.log); "
                        f"last serial lines of {min(pending)}: {self._serial_tail(min(pending))}"
                    )
                time.sleep(0.05)

    def _serial_tail(self, name: str) -> str:
        try:
            lines = self.serial_log(name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no serial log)"
        return " | ".join(lines[-5:]) or "(empty)"

    def _write_vars(
        self, conn: libvirt.virConnect, names: list[str], accel: str, vdi: dict[str, Any]
    ) -> dict[str, Any]:
        guests: dict[str, Any] = {}
        for name in names:
            dom = conn.lookupByName(name)
            secure = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
            guests[name] = {
                "spice_host": "127.0.0.1",
                "spice_port": spice_port_of(secure),
                "spice_tls_port": spice_tls_port_of(secure),
                "spice_password": spice_password_of(secure),
                "serial_log": str(self.serial_log(name)),
                "verifier_socket": str(self._verifier_socket(name)),
                "qmp_socket": str(self._qmp_socket(name)),
            }
        lab_vars = {
            "uri": LAB_URI,
            "vms": names,
            "accel": accel,
            "lab_dir": str(self.dir),
            "spice_ca_file": str(spice_tls.tls_dir(self.dir) / spice_tls.CA_CERT),
            "guests": guests,
            "vdi": vdi,
            "verifier_tcp_port": VERIFIER_TCP_PORT,
            "verifier_ws_port": VERIFIER_WS_PORT,
        }
        path = paths.vars_file()
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds SPICE passwords
        with os.fdopen(fd, "w") as f:
            json.dump(lab_vars, f, indent=2)
        tmp.replace(path)
        return lab_vars

    def restart_libvirtd(self) -> int:
        """Restart libvirtd when the lab started it (guests keep running); returns the new PID."""
        with self._exclusive("libvirtd restart"):
            return self._restart_libvirtd(self._spice_tls_settings())

    def _restart_libvirtd(self, tls: system.Settings) -> int:
        state = LabState.load()
        pid = state.daemons.get("libvirtd")
        if pid is None or not system.pid_alive(pid):
            raise LabError("libvirtd was not started by the lab, so the lab does not restart it")
        system.stop_daemons({"libvirtd": pid}, self.log)
        result = system.start_libvirtd(self.log, qemu_conf_extra=tls)
        state.daemons.update(result.started)
        state.save()
        return state.daemons["libvirtd"]

    # ------------------------------------------------------------ status / down

    def status(self) -> dict[str, Any]:
        state = LabState.load()
        daemons = {name: {"pid": pid, "alive": system.pid_alive(pid)} for name, pid in state.daemons.items()}
        info: dict[str, Any] = {
            "lab_dir": str(self.dir),
            "libvirtd": "running" if system.libvirtd_answers() else "not running",
            "daemons_started_by_lab": daemons,
            "accel": state.accel,
            "guests": {},
        }
        if not system.libvirtd_answers():
            return info
        with self._connect() as conn:
            for dom in self.lab_domains(conn):
                name = dom.name()
                active = bool(dom.isActive())
                status = console_status(self.serial_log(name)) if active else "off"
                ready = status == "ready" or (status == "booting" and self._agent_says_ready(conn, name))
                info["guests"][name] = {"state": "running" if active else "shut off", "console_ready": ready}
        return info

    def down(self) -> None:
        with self._exclusive("lab down"):
            self._down()

    def _down(self) -> None:
        state = LabState.load()
        LabVdiSim(self.dir, self.log).down()
        if system.libvirtd_answers():
            with self._connect() as conn:
                for dom in self.vdi_domains(conn):
                    self.log(f"removing {dom.name()} (a VDI simulator VM)")
                    self.destroy_and_undefine(dom)
                for dom in self.lab_domains(conn):
                    self.log(f"removing {dom.name()}")
                    self._remove(dom)
        system.stop_daemons(state.daemons, self.log)
        state.daemons = {}
        state.save()
        paths.vars_file().unlink(missing_ok=True)
        self.log("lab down")


def agent_file_exists(dom: libvirt.virDomain, path: str, timeout: int = 2) -> bool:
    """Whether ``path`` exists in the guest, by opening it through qemu-ga (False when the agent does not answer)."""
    import libvirt_qemu

    try:
        reply = libvirt_qemu.qemuAgentCommand(
            dom, json.dumps({"execute": "guest-file-open", "arguments": {"path": path, "mode": "r"}}), timeout, 0
        )
        handle = json.loads(reply)["return"]
        libvirt_qemu.qemuAgentCommand(
            dom, json.dumps({"execute": "guest-file-close", "arguments": {"handle": handle}}), timeout, 0
        )
    except (libvirt.libvirtError, ValueError, KeyError):
        return False
    return True


def console_status(serial_log: Path) -> str:
    """ "ready", "failed" or "booting", from a boot's serial log (the last mark wins: a reboot starts over)."""
    try:
        text = serial_log.read_bytes().decode(errors="replace")
    except OSError:
        return "booting"
    last = None
    for line in text.splitlines():
        for mark in (READY_MARK, FAILED_MARK, SHUTDOWN_MARK):
            if mark in line:
                last = mark
    if last == READY_MARK:
        return "ready"
    if last == FAILED_MARK:
        return "failed"
    return "booting"
