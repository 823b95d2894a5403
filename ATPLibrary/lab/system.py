"""Host side of the lab: Debian packages and a libvirtd that works without systemd."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ATPLibrary.errors import LabError
from ATPLibrary.lab.shell import is_root, run

HOST_PACKAGES_FILE = Path(__file__).with_name("host-packages.txt")


def _read_packages() -> tuple[str, ...]:
    lines = (line.split("#", 1)[0].strip() for line in HOST_PACKAGES_FILE.read_text().splitlines())
    return tuple(line for line in lines if line)


#: Debian packages the lab needs on the host (see host-packages.txt).
HOST_PACKAGES = _read_packages()

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
QEMU_CONF_HEADER = "# Written by ATPLibrary `atp lab` (safe to overwrite: the lab owns this file)."

#: Settings the lab needs in qemu.conf, as (name, value as written).
#: user=root is the one that matters for speed: domains start in 0.3 s instead of 4.5 s.
QEMU_CONF_SETTINGS: tuple[tuple[str, str], ...] = (
    ("user", '"root"'),
    ("group", '"root"'),
    ("dynamic_ownership", "0"),
    ("remember_owner", "0"),
    ("security_driver", '"none"'),
    ("cgroup_controllers", "[ ]"),
    ("namespaces", "[ ]"),
)

LIBVIRT_SOCKET = Path("/run/libvirt/libvirt-sock")
DAEMON_PIDFILES = {"virtlogd": Path("/run/virtlogd.pid"), "libvirtd": Path("/run/libvirtd.pid")}


def missing_packages(packages: tuple[str, ...] = HOST_PACKAGES) -> list[str]:
    """Packages from ``packages`` that dpkg does not list as installed."""
    missing = []
    for pkg in packages:
        proc = run(["dpkg-query", "-W", "-f=${Status}", pkg], timeout=30, check=False)
        if proc.returncode != 0 or "install ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


def install_command(packages: list[str]) -> str:
    return "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends " + " ".join(
        packages
    )


def ensure_packages(log: Callable[[str], None], packages: tuple[str, ...] = HOST_PACKAGES) -> None:
    """Install what is missing when root; otherwise fail with the exact command to run."""
    missing = missing_packages(packages)
    if not missing:
        return
    if not is_root():
        raise LabError(
            "The lab needs Debian packages that are not installed. Run as root:\n  " + install_command(missing)
        )
    log(f"installing {len(missing)} Debian packages: {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], timeout=300, env=env)
    run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        timeout=900,
        env=env,
    )


# ---------------------------------------------------------------- qemu.conf


def parse_qemu_conf(text: str) -> dict[str, str]:
    """``name = value`` pairs of a libvirt config file (values as written, whitespace-normalised)."""
    settings: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$", line)
        if m:
            settings[m.group(1)] = _normalise(m.group(2))
    return settings


def _normalise(value: str) -> str:
    value = value.strip()
    if value.startswith("["):
        inner = value.strip("[] ")
        return "[ ]" if not inner else "[ " + ", ".join(p.strip() for p in inner.split(",")) + " ]"
    return value


Settings = tuple[tuple[str, str], ...]


def spice_tls_settings(cert_dir: Path) -> Settings:
    """The qemu.conf lines that turn on SPICE TLS with the lab's certificates (every SPICE domain then
    gets a tlsPort; QEMU reads ca-cert.pem, server-cert.pem and server-key.pem from ``cert_dir``)."""
    return (("spice_tls", "1"), ("spice_tls_x509_cert_dir", f'"{cert_dir}"'))


def missing_qemu_conf_settings(text: str, settings: Settings | None = None) -> list[str]:
    """The ``settings`` (default: the lab's base settings) a qemu.conf lacks or sets otherwise, as lines to add."""
    have = parse_qemu_conf(text)
    wanted = QEMU_CONF_SETTINGS if settings is None else settings
    return [f"{k} = {v}" for k, v in wanted if have.get(k) != _normalise(v)]


def qemu_conf_text(extra: Settings = ()) -> str:
    lines = [QEMU_CONF_HEADER, "# Lab needs: run QEMU as root without DAC relabelling, cgroups or namespaces."]
    lines += [f"{k} = {v}" for k, v in QEMU_CONF_SETTINGS]
    if extra:
        lines.append("# SPICE over TLS with the lab's CA and server certificate (atp lab: spice-tls/).")
        lines += [f"{k} = {v}" for k, v in extra]
    return "\n".join(lines) + "\n"


def is_lab_qemu_conf(path: Path = QEMU_CONF) -> bool:
    """True when ``path`` is missing or was written by the lab (so the lab may write it)."""
    try:
        return path.read_text().startswith(QEMU_CONF_HEADER)
    except FileNotFoundError:
        return True


def foreign_qemu_conf_error(path: Path, missing: list[str]) -> LabError:
    """The error for a qemu.conf the lab may not write: it names the file and the exact lines to add."""
    lines = "\n  ".join(missing)
    if not path.exists():
        return LabError(
            f"{path} does not exist and the running libvirtd was not started by the lab, so the lab does not "
            f"write it. Create {path} with these lines and restart libvirtd:\n  {lines}"
        )
    return LabError(
        f"{path} was not written by the lab and lacks settings the lab needs. Add these lines to {path} and "
        f"restart libvirtd (or move the file away to let the lab write its own):\n  {lines}"
    )


def ensure_qemu_conf(path: Path = QEMU_CONF, extra: Settings = ()) -> bool:
    """Write the lab's qemu.conf (base settings plus ``extra``) unless a foreign one exists; returns True when
    the file changed.

    A qemu.conf without the lab's header is never overwritten: it is used when it has every setting (the base
    ones and ``extra``), otherwise this stops naming the file and the exact lines to add.
    """
    wanted = qemu_conf_text(extra)
    if path.exists():
        current = path.read_text()
        if not current.startswith(QEMU_CONF_HEADER):
            missing = missing_qemu_conf_settings(current, (*QEMU_CONF_SETTINGS, *extra))
            if missing:
                raise foreign_qemu_conf_error(path, missing)
            return False
        if current == wanted:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".atp-tmp")
    tmp.write_text(wanted)
    tmp.replace(path)
    return True


# ---------------------------------------------------------------- daemons


def libvirtd_answers() -> bool:
    """True when something accepts connections on libvirtd's system socket."""
    if not LIBVIRT_SOCKET.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(str(LIBVIRT_SOCKET))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def ensure_system_user() -> None:
    """libvirtd resolves its compiled-in `libvirt-qemu` user before it reads qemu.conf."""
    if run(["getent", "group", "libvirt-qemu"], timeout=10, check=False).returncode != 0:
        run(["groupadd", "-r", "libvirt-qemu"], timeout=30)
    if run(["getent", "passwd", "libvirt-qemu"], timeout=10, check=False).returncode != 0:
        run(
            [
                "useradd",
                "-r",
                "-g",
                "libvirt-qemu",
                "-d",
                "/var/lib/libvirt",
                "-s",
                "/usr/sbin/nologin",
                "libvirt-qemu",
            ],
            timeout=30,
        )
    for d in ("/var/log/libvirt/qemu", "/var/lib/libvirt/qemu", "/run/libvirt", "/etc/libvirt"):
        Path(d).mkdir(parents=True, exist_ok=True)


@dataclass
class DaemonResult:
    started: dict[str, int]  # name -> PID of daemons this call started


def start_libvirtd(
    log: Callable[[str], None],
    timeout: float = 60.0,
    started_by_lab: int | None = None,
    qemu_conf_extra: Settings = (),
) -> DaemonResult:
    """Use a running libvirtd; otherwise configure (qemu.conf with ``qemu_conf_extra``) and start virtlogd +
    libvirtd and wait until they answer."""
    if libvirtd_answers():
        if started_by_lab is not None and pid_alive(started_by_lab):
            log(f"libvirtd (started by the lab, PID {started_by_lab}) is running")
        else:
            log("libvirtd is already running (not started by the lab): using it as it is")
        return DaemonResult(started={})
    if not is_root():
        raise LabError(
            "libvirtd is not running and only root can start the system daemon. "
            "Start it (e.g. `sudo libvirtd -d`) or run `atp lab up` as root."
        )
    ensure_system_user()
    ensure_qemu_conf(extra=qemu_conf_extra)
    started: dict[str, int] = {}
    for name in ("virtlogd", "libvirtd"):
        if _running_pid(name) is not None:
            continue
        exe = shutil.which(name) or f"/usr/sbin/{name}"
        pidfile = DAEMON_PIDFILES[name]
        pidfile.unlink(missing_ok=True)
        run([exe, "-d"], timeout=30)
        pid = _wait_pidfile(pidfile, name, timeout=10)
        started[name] = pid
        log(f"started {name} (PID {pid})")
    deadline = time.monotonic() + timeout
    while not libvirtd_answers():
        if time.monotonic() > deadline:
            raise LabError(
                f"libvirtd did not answer on {LIBVIRT_SOCKET} within {timeout:g} s; "
                "see /var/log/libvirt/ and run `libvirtd` in a terminal to read its errors"
            )
        libvirtd_pid = started.get("libvirtd")
        if libvirtd_pid is not None and not pid_alive(libvirtd_pid):
            raise LabError(
                "libvirtd exited right after starting; run `libvirtd` in a terminal to see why "
                "(a common cause: a broken /etc/libvirt/qemu.conf)"
            )
        time.sleep(0.05)
    return DaemonResult(started=started)


def running_libvirtd_pid() -> int | None:
    """The PID in libvirtd's pidfile when that process is a live libvirtd."""
    return _running_pid("libvirtd")


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, 10 ms resolution), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22 of stat(5); fields[0] is field 3
        btime = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return btime + started_ticks / os.sysconf("SC_CLK_TCK")


def read_before(pid: int, path: Path) -> bool:
    """True when process ``pid`` started before ``path`` was last changed (so it has not read the change).

    The process start time has a 10 ms tick and btime a 1 s resolution: a margin of 1 s keeps a daemon
    started right after the file was written from counting as stale."""
    started = process_start_time(pid)
    try:
        changed = path.stat().st_mtime
    except OSError:
        return False
    return started is not None and changed > started + 1.0


def _running_pid(name: str) -> int | None:
    pidfile = DAEMON_PIDFILES[name]
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) and process_name(pid) == name else None


def _wait_pidfile(pidfile: Path, name: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = int(pidfile.read_text().strip())
            if pid_alive(pid):
                return pid
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise LabError(f"{name} did not write {pidfile} within {timeout:g} s after `{name} -d`")


def stop_daemons(pids: dict[str, int], log: Callable[[str], None], timeout: float = 20.0) -> None:
    """Stop only the given daemons (those the lab started), by PID; libvirtd first."""
    for name in ("libvirtd", "virtlogd"):
        pid = pids.get(name)
        if pid is None or not pid_alive(pid) or process_name(pid) != name:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        log(f"stopped {name} (PID {pid})")
