"""The lab's VDI simulator: started by `atp lab up` (and so by `make demo`), stopped by `atp lab down`.

It runs as its own process (``python -m ATPLibrary.vdi.sim --backend lab``) so it outlives the command that
started it, keeps its state in ``<lab dir>/vdi-sim.sqlite``, logs to ``<lab dir>/vdi-sim.log`` and reads its admin
password from ``<lab dir>/vdi-sim.password`` (mode 0600, made once; never on a command line, never in the lab
variables file, which names only the file).  A simulator started from other code (another checkout, an older
commit) is restarted, so tests always talk to the code under test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ATPLibrary
from ATPLibrary.errors import LabError
from ATPLibrary.lab import system

#: The port the lab's simulator listens on (127.0.0.1); ``ATP_VDI_SIM_PORT`` changes it.
DEFAULT_PORT = 8088
#: Seconds between the simulator's own status refreshes from libvirt (the platform's schedule): long enough that a
#: VM destroyed behind the platform's back shows up as a disagreement, short enough to heal within a suite run.
REFRESH_INTERVAL = 120.0
USERNAME = "admin"
START_TIMEOUT = 20.0


def port() -> int:
    return int(os.environ.get("ATP_VDI_SIM_PORT") or DEFAULT_PORT)


def url() -> str:
    return f"http://127.0.0.1:{port()}"


def code_key() -> str:
    """Changes whenever the simulator's code (or the lab backend behind it) changes."""
    package = Path(ATPLibrary.__file__).parent
    files = sorted((package / "vdi").rglob("*.py")) + sorted((package / "lab").glob("*.py"))
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


class LabVdiSim:
    def __init__(self, lab_dir: Path, log: Callable[[str], None] = lambda _m: None) -> None:
        self.dir = lab_dir
        self.log = log
        self.db = lab_dir / "vdi-sim.sqlite"
        self.password_file = lab_dir / "vdi-sim.password"
        self.log_file = lab_dir / "vdi-sim.log"
        self.state_file = lab_dir / "vdi-sim.json"

    # ---------------------------------------------------------------- state
    def _state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _password(self) -> str:
        if not self.password_file.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(12))
        return self.password_file.read_text().strip()

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{url()}/_sim/faults", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def running_pid(self) -> int | None:
        pid = self._state().get("pid")
        if isinstance(pid, int) and system.pid_alive(pid) and "python" in system.process_name(pid):
            return pid
        return None

    # ---------------------------------------------------------------- up / down
    def up(self) -> dict[str, Any]:
        """Start the simulator unless the current code already runs; return the lab variables' ``vdi`` section."""
        state = self._state()
        pid = self.running_pid()
        if pid is not None and (state.get("code") != code_key() or state.get("port") != port()):
            self.log(f"VDI simulator (PID {pid}) runs other code; restarting it")
            self.down(keep_data=True)
            pid = None
        if pid is None:
            self._start()
        return {
            "url": url(),
            "username": USERNAME,
            "password_file": str(self.password_file),
            "host_uri": "qemu:///system",
            "domain_name": "atp-vdi-{id}",
            "template": "atp-lab-image",
            "log": str(self.log_file),
        }

    def _start(self) -> None:
        if self._answers():
            raise LabError(
                f"port {port()} already answers like a VDI simulator that the lab did not start; stop it, or set "
                "ATP_VDI_SIM_PORT to a free port"
            )
        env = dict(os.environ, ATP_VDI_SIM_PASSWORD=self._password())
        command = [
            sys.executable,
            "-m",
            "ATPLibrary.vdi.sim",
            "--port",
            str(port()),
            "--db",
            str(self.db),
            "--username",
            USERNAME,
            "--backend",
            "lab",
            "--refresh",
            f"{REFRESH_INTERVAL:g}",
        ]
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=str(Path(ATPLibrary.__file__).parent.parent),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if proc.poll() is not None:
                raise LabError(f"the VDI simulator exited with {proc.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                proc.kill()
                raise LabError(f"the VDI simulator did not answer on {url()} within {START_TIMEOUT:g} s")
            time.sleep(0.1)
        self.state_file.write_text(json.dumps({"pid": proc.pid, "code": code_key(), "port": port()}))
        self.log(f"VDI simulator on {url()} (PID {proc.pid}, backend: lab guests atp-vdi-<id>)")

    def down(self, keep_data: bool = False) -> None:
        pid = self.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while system.pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if system.pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            self.log(f"stopped the VDI simulator (PID {pid})")
        self.state_file.unlink(missing_ok=True)
        if not keep_data:
            for f in (self.db, Path(f"{self.db}-journal"), Path(f"{self.db}-wal"), Path(f"{self.db}-shm")):
                with contextlib.suppress(OSError):
                    f.unlink()
