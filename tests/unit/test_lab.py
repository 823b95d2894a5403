"""The lab's pure parts: qemu.conf handling, domain XML, console readiness, accelerator choice."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from robot.api.types import Secret

from ATPLibrary.errors import LabError
from ATPLibrary.lab import domains, lab, paths, system
from ATPLibrary.lab.image import GuestImage

# ---------------------------------------------------------------- qemu.conf


def test_lab_writes_its_qemu_conf_when_there_is_none(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    assert system.ensure_qemu_conf(conf) is True
    text = conf.read_text()
    assert text.startswith(system.QEMU_CONF_HEADER)
    assert system.missing_qemu_conf_settings(text) == []
    assert 'user = "root"' in text and "cgroup_controllers = [ ]" in text
    assert system.ensure_qemu_conf(conf) is False  # unchanged the second time


def test_lab_rewrites_its_own_qemu_conf(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    conf.write_text(system.QEMU_CONF_HEADER + '\nuser = "nobody"\n')
    assert system.ensure_qemu_conf(conf) is True
    assert system.missing_qemu_conf_settings(conf.read_text()) == []


def test_foreign_qemu_conf_is_never_overwritten_and_missing_settings_are_named(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    foreign = '# site config\nuser = "root"\ngroup = "root"\nsecurity_driver = "selinux"\n'
    conf.write_text(foreign)
    with pytest.raises(LabError) as info:
        system.ensure_qemu_conf(conf)
    message = str(info.value)
    assert 'security_driver = "none"' in message
    assert "dynamic_ownership = 0" in message and "namespaces = [ ]" in message
    assert 'user = "root"' not in message  # present settings are not listed
    assert conf.read_text() == foreign


def test_foreign_qemu_conf_with_every_setting_is_used(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    foreign = (
        'user="root"\ngroup = "root"  # ours\ndynamic_ownership = 0\nremember_owner = 0\n'
        'security_driver = "none"\ncgroup_controllers = []\nnamespaces = [ ]\nspice_tls = 1\n'
    )
    conf.write_text(foreign)
    assert system.ensure_qemu_conf(conf) is False
    assert conf.read_text() == foreign


def test_lab_qemu_conf_carries_the_spice_tls_lines(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    tls = system.spice_tls_settings(tmp_path / "lab" / "spice-tls")
    assert system.ensure_qemu_conf(conf) is True
    assert system.ensure_qemu_conf(conf, extra=tls) is True  # the lab's own file gains the lines
    text = conf.read_text()
    assert "spice_tls = 1\n" in text
    assert f'spice_tls_x509_cert_dir = "{tmp_path}/lab/spice-tls"\n' in text
    assert system.missing_qemu_conf_settings(text, tls) == [] and system.missing_qemu_conf_settings(text) == []
    assert system.ensure_qemu_conf(conf, extra=tls) is False  # idempotent


def test_foreign_qemu_conf_without_spice_tls_names_the_exact_lines_and_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    foreign = "".join(f"{k} = {v}\n" for k, v in system.QEMU_CONF_SETTINGS) + 'spice_tls_x509_cert_dir = "/etc/pki"\n'
    conf.write_text(foreign)
    tls = system.spice_tls_settings(Path("/lab/spice-tls"))
    with pytest.raises(LabError) as info:
        system.ensure_qemu_conf(conf, extra=tls)
    message = str(info.value)
    assert str(conf) in message
    assert "\n  spice_tls = 1\n" in message and message.endswith('\n  spice_tls_x509_cert_dir = "/lab/spice-tls"')
    assert "user =" not in message  # settings it has are not listed
    assert conf.read_text() == foreign  # never written
    # with the lines (any spacing and comments) it is used as it is
    conf.write_text(foreign + 'spice_tls=1 # on\nspice_tls_x509_cert_dir = "/lab/spice-tls"\n')
    assert system.ensure_qemu_conf(conf, extra=tls) is False


def test_missing_qemu_conf_beside_a_foreign_libvirtd_is_named_not_written(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    error = system.foreign_qemu_conf_error(conf, ["spice_tls = 1"])
    assert f"Create {conf} with these lines" in str(error) and str(error).endswith("spice_tls = 1")
    assert not conf.exists()


def test_daemon_that_started_before_the_conf_changed_is_stale(tmp_path: Path) -> None:
    import os
    import time

    conf = tmp_path / "qemu.conf"
    conf.write_text("x = 1\n")
    me = os.getpid()
    started = system.process_start_time(me)
    assert started is not None and started <= time.time()
    os.utime(conf, (started - 60, started - 60))
    assert system.read_before(me, conf) is False
    os.utime(conf, (time.time(), time.time()))
    assert system.read_before(me, conf) is (time.time() > started + 1.0)


# ---------------------------------------------------------------- SPICE TLS files


def test_spice_tls_files_are_made_once_and_reused(tmp_path: Path) -> None:
    import ssl

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from ATPLibrary.lab import spice_tls

    first = spice_tls.ensure_spice_tls(tmp_path)
    assert first.created and first.directory == tmp_path / "spice-tls"
    assert {p.name for p in first.directory.iterdir()} == {"ca-cert.pem", "server-cert.pem", "server-key.pem"}
    assert first.server_key.stat().st_mode & 0o777 == 0o600
    server = x509.load_pem_x509_certificate(first.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(first.ca_cert.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert server.issuer == ca.subject
    # what a client does: trust the CA, check the name 127.0.0.1 (ssl loads and chains it)
    context = ssl.create_default_context(cafile=str(first.ca_cert))
    context.load_cert_chain(first.server_cert, first.server_key)  # the key matches the certificate
    before = first.server_cert.read_bytes()
    again = spice_tls.ensure_spice_tls(tmp_path)
    assert not again.created and again.server_cert.read_bytes() == before  # valid files are reused


@pytest.mark.parametrize("damage", ["missing key", "other CA", "open key", "expiring"])
def test_spice_tls_files_that_are_not_valid_are_made_again(tmp_path: Path, damage: str) -> None:
    import datetime as dt

    from ATPLibrary.lab import spice_tls

    files = spice_tls.ensure_spice_tls(tmp_path)
    now = None
    if damage == "missing key":
        files.server_key.unlink()
    elif damage == "other CA":
        spice_tls.write_ca_file(files.ca_cert)
    elif damage == "open key":
        files.server_key.chmod(0o644)
    else:
        now = dt.datetime.now(dt.UTC) + dt.timedelta(days=spice_tls.VALID_DAYS - 10)
    assert spice_tls.problem(files, now) is not None
    again = spice_tls.ensure_spice_tls(tmp_path, now)
    assert again.created and spice_tls.problem(again, now) is None
    assert again.server_key.stat().st_mode & 0o777 == 0o600


def test_host_packages_come_from_one_list() -> None:
    assert "libvirt-dev" in system.HOST_PACKAGES
    assert "libvirt-daemon-system" not in system.HOST_PACKAGES
    assert system.install_command(["a", "b"]).endswith("--no-install-recommends a b")


# ---------------------------------------------------------------- domain XML


def _image(tmp_path: Path) -> GuestImage:
    return GuestImage(
        tmp_path, tmp_path / "vmlinuz", tmp_path / "initrd.cpio.gz", tmp_path / "rootfs.ext4", "abc123", {}
    )


def _spec(tmp_path: Path, accel: str = "qemu", password: str = "pw<&'\"") -> domains.GuestSpec:
    return domains.GuestSpec(
        name="atp-lab-07",
        image=_image(tmp_path),
        accel=accel,
        spice_password=password,
        serial_log=tmp_path / "s.log",
        verifier_socket=tmp_path / "v.sock",
        qmp_socket=tmp_path / "q.sock",
    )


def test_domain_xml_has_what_the_lab_needs(tmp_path: Path) -> None:
    xml = domains.domain_xml(_spec(tmp_path))
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "atp-lab-07"
    assert root.findtext("memory") == "128" and root.findtext("vcpu") == "1"
    assert root.find("features/tcg/tb-cache").text == "32"  # type: ignore[union-attr]
    assert root.findtext("sysinfo/system/entry[@name='serial']") == "atp-lab-07"
    assert root.find("os/smbios").get("mode") == "sysinfo"  # type: ignore[union-attr]
    cmdline = root.findtext("os/cmdline") or ""
    assert cmdline.index("console=tty0") < cmdline.index("console=ttyS0")  # /dev/console = serial
    channels = {c.find("target").get("name"): c for c in root.findall("devices/channel")}  # type: ignore[union-attr]
    assert set(channels) == {
        "org.qemu.guest_agent.0",
        "com.atp.verifier.0",
        "com.atp.verifier.tcp.0",
        "com.atp.verifier.ws.0",
        "com.atp.test.0",
    }
    tcp = channels["com.atp.verifier.tcp.0"]
    assert tcp.get("type") == "tcp" and tcp.find("source").get("mode") == "connect"  # type: ignore[union-attr]
    assert tcp.find("source/reconnect").get("enabled") == "yes"  # type: ignore[union-attr]
    verifier = channels["com.atp.verifier.0"].find("source")
    assert verifier is not None and verifier.get("mode") == "bind" and verifier.get("path") == str(tmp_path / "v.sock")
    inputs = {(i.get("type"), i.get("bus")) for i in root.findall("devices/input")}
    assert inputs == {("tablet", "virtio"), ("keyboard", "virtio"), ("mouse", "virtio")}
    graphics = root.find("devices/graphics")
    assert graphics is not None and graphics.get("type") == "spice"
    assert graphics.get("passwd") == "pw<&'\""  # escaped in XML, intact when parsed
    assert graphics.find("listen").get("address") == "127.0.0.1"  # type: ignore[union-attr]
    assert root.find("devices/interface") is None  # no network card
    assert root.find("devices/disk/readonly") is not None
    assert root.find("devices/video/model").get("type") == "vga"  # type: ignore[union-attr]
    meta = domains.lab_metadata(xml) or {}
    assert (meta.get("image"), meta.get("accel"), meta.get("template")) == ("abc123", "qemu", domains.TEMPLATE_KEY)
    qemu_ns = "{http://libvirt.org/schemas/domain/qemu/1.0}"
    args = [a.get("value") for a in root.iter(f"{qemu_ns}arg")]
    assert args == ["-qmp", f"unix:{tmp_path / 'q.sock'},server=on,wait=off"]


def test_kvm_domain_has_no_tcg_cache(tmp_path: Path) -> None:
    root = ET.fromstring(domains.domain_xml(_spec(tmp_path, accel="kvm")))
    assert root.get("type") == "kvm" and root.find("features/tcg") is None


def test_too_long_socket_path_is_refused(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    long = domains.GuestSpec(**{**spec.__dict__, "verifier_socket": tmp_path / ("x" * 120)})
    with pytest.raises(ValueError, match="ATP_LAB_DIR"):
        domains.domain_xml(long)


def test_spice_password_and_port_are_read_from_xml() -> None:
    live = "<domain><devices><graphics type='spice' port='5903' autoport='yes' passwd='s3cret'/></devices></domain>"
    assert domains.spice_password_of(live) == "s3cret"
    assert domains.spice_port_of(live) == 5903
    inactive = "<graphics type='spice' port='-1' autoport='yes'/>"
    assert domains.spice_port_of(inactive) is None  # -1 means not assigned yet
    assert domains.spice_password_of("<graphics type='vnc' passwd='x'/>") is None
    assert domains.spice_tls_port_of(live) is None  # started before spice_tls = 1
    tls = "<graphics type='spice' port='5900' tlsPort='5901' autoport='yes'/>"
    assert (domains.spice_port_of(tls), domains.spice_tls_port_of(tls)) == (5900, 5901)
    assert domains.spice_tls_port_of("<graphics type='spice' port='-1' tlsPort='-1'/>") is None


def test_spice_passwords_are_random_and_within_spice_limits() -> None:
    a, b = domains.new_spice_password(), domains.new_spice_password()
    assert a != b and 8 <= len(a) <= 59 and a.isalnum()


def test_metadata_of_a_foreign_domain_is_none() -> None:
    assert domains.lab_metadata("<domain><name>atp-lab-01</name></domain>") is None


# ---------------------------------------------------------------- readiness, paths, accel


@pytest.mark.parametrize(
    ("log", "status"),
    [
        ("", "booting"),
        ("ATP-GUEST-AGENT 3.1\n", "booting"),
        ("ATP-GUEST-AGENT 3.1\nATP-CONSOLE-READY 4.2 atp-lab-01\n", "ready"),
        ("ATP-INIT-FAILED no /dev/vda\n", "failed"),
        ("ATP-CONSOLE-READY 4.2\nATP-SHUTDOWN 9.0 -r\n", "booting"),  # rebooting
        ("ATP-CONSOLE-READY 4.2\nATP-SHUTDOWN 9.0 -r\nATP-CONSOLE-READY 5.0\n", "ready"),
    ],
)
def test_console_status(tmp_path: Path, log: str, status: str) -> None:
    f = tmp_path / "serial.log"
    f.write_text(log)
    assert lab.console_status(f) == status


def test_console_status_of_a_missing_log_is_booting(tmp_path: Path) -> None:
    assert lab.console_status(tmp_path / "missing.log") == "booting"


def test_lab_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATP_LAB_DIR", str(tmp_path / "lab"))
    assert paths.lab_dir() == tmp_path / "lab"
    assert paths.vars_file() == tmp_path / "lab" / "lab-vars.json"
    monkeypatch.delenv("ATP_LAB_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert paths.lab_dir() == tmp_path / "cache" / "atp" / "lab"
    assert paths.vm_name(3) == "atp-lab-03"


def test_accel_prefers_tcg_under_kvm_pvm_and_remembers_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda p: True if str(p) == "/sys/module/kvm_pvm" else real_exists(p))
    assert lab.choose_accel(lab.LabState()) == ("qemu", False)
    monkeypatch.setattr(Path, "exists", lambda p: False if str(p) == "/sys/module/kvm_pvm" else real_exists(p))
    monkeypatch.delenv("ATP_LAB_ACCEL", raising=False)
    assert lab.choose_accel(lab.LabState(accel="qemu")) == ("qemu", False)  # decided before: no new probe


def test_lab_up_rejects_a_silly_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATP_LAB_DIR", str(tmp_path))
    with pytest.raises(LabError, match="--vms"):
        lab.Lab(log=lambda _m: None).up(-1)


def test_variable_file_reads_lab_vars_and_hides_passwords(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    monkeypatch.setenv("ATP_LAB_DIR", str(tmp_path))
    get_variables = runpy.run_path(str(Path(__file__).parents[2] / "variables" / "lab.py"))["get_variables"]
    assert get_variables()["LAB_VMS"] == []  # no lab: empty, so IDEs can still load the file
    (tmp_path / "lab-vars.json").write_text(
        json.dumps(
            {
                "uri": "qemu:///system",
                "vms": ["atp-lab-01"],
                "guests": {"atp-lab-01": {"spice_port": 5900, "spice_password": "s3cret"}},
                "vdi": {"url": "http://127.0.0.1:8088", "password_file": str(tmp_path / "vdi-sim.password")},
            }
        )
    )
    (tmp_path / "vdi-sim.password").write_text("vdi-s3cret\n")
    variables = get_variables()
    assert variables["LAB_VMS"] == ["atp-lab-01"]
    assert variables["LAB_GUESTS"] == {"atp-lab-01": {"spice_port": 5900}}
    assert variables["SPICE_CA_FILE"] == str(tmp_path / "spice-tls" / "ca-cert.pem")
    assert variables["VDI_URL"] == "http://127.0.0.1:8088"
    assert isinstance(variables["VDI_PASSWORD"], Secret) and variables["VDI_PASSWORD"].value == "vdi-s3cret"
    shown = json.dumps(variables, default=str)  # what a log of these variables could show
    assert "s3cret" not in shown and "<secret>" in shown


class _FakeDom:
    def __init__(self, name: str) -> None:
        self._name = name
        self.calls: list[str] = []

    def name(self) -> str:
        return self._name

    def isActive(self) -> bool:
        return True

    def destroy(self) -> None:
        self.calls.append("destroy")

    def undefineFlags(self, flags: int) -> None:
        self.calls.append("undefine")


def test_lab_never_removes_a_vm_that_a_test_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ATPLibrary.pool.leases import LeaseStore

    monkeypatch.setenv("ATP_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setenv("ATP_LEASE_DIR", str(tmp_path / "leases"))
    monkeypatch.setattr(lab, "LEASE_WAIT", 0.3)
    held = LeaseStore().acquire(lab.LAB_URI, ["atp-lab-09"], "suite 'Keyboard'", timeout=1)
    dom = _FakeDom("atp-lab-09")
    with pytest.raises(LabError, match=r"(?s)atp-lab-09.*Keyboard"):
        lab.Lab(log=lambda _m: None)._remove(dom)  # type: ignore[arg-type]
    assert dom.calls == []
    held.release()
    lab.Lab(log=lambda _m: None)._remove(dom)  # type: ignore[arg-type]
    assert dom.calls == ["destroy", "undefine"]


def test_atp_cli_lists_its_commands_and_starts_the_vdi_simulator() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "ATPLibrary.cli.main", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "lab" in out and "vdi-sim" in out
    proc = subprocess.Popen(
        [sys.executable, "-m", "ATPLibrary.cli.main", "vdi-sim", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("VDI simulator on http://127.0.0.1:")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _conf_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pid: int | None) -> tuple[lab.Lab, Path, list[str]]:
    conf = tmp_path / "qemu.conf"
    monkeypatch.setenv("ATP_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setattr(system, "QEMU_CONF", conf)
    monkeypatch.setattr(system, "running_libvirtd_pid", lambda: pid)
    monkeypatch.setattr(lab, "is_root", lambda: True)
    restarts: list[str] = []
    the_lab = lab.Lab(log=lambda _m: None)
    monkeypatch.setattr(the_lab, "_restart_libvirtd", lambda tls: restarts.append(tls[1][1]) or 1)
    return the_lab, conf, restarts


def test_lab_up_restarts_only_its_own_libvirtd_for_spice_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    the_lab, conf, restarts = _conf_lab(tmp_path, monkeypatch, pid=4242)
    tls = system.spice_tls_settings(tmp_path / "lab" / "spice-tls")
    conf.write_text(system.qemu_conf_text())  # the lab's file from before SPICE TLS
    the_lab._apply_qemu_conf(lab.LabState(daemons={"libvirtd": 4242}), tls)
    assert restarts == [f'"{tmp_path}/lab/spice-tls"'] and "spice_tls = 1" in conf.read_text()
    monkeypatch.setattr(system, "read_before", lambda _pid, _path: False)
    the_lab._apply_qemu_conf(lab.LabState(daemons={"libvirtd": 4242}), tls)
    assert len(restarts) == 1  # second run: nothing changed, no restart
    conf.write_text(system.qemu_conf_text())
    with pytest.raises(LabError, match=r"\(PID 4242\) was not started by the lab .* Restart libvirtd"):
        the_lab._apply_qemu_conf(lab.LabState(daemons={"libvirtd": 1}), tls)  # someone else's libvirtd
    assert len(restarts) == 1


def test_lab_up_with_a_foreign_qemu_conf_names_the_missing_tls_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    the_lab, conf, restarts = _conf_lab(tmp_path, monkeypatch, pid=4242)
    tls = system.spice_tls_settings(tmp_path / "lab" / "spice-tls")
    conf.write_text("# the site's own\nspice_tls = 1\n")
    with pytest.raises(LabError) as info:
        the_lab._apply_qemu_conf(lab.LabState(daemons={"libvirtd": 4242}), tls)
    assert str(conf) in str(info.value)
    lines = str(info.value).split(":\n", 1)[1]
    assert lines == f'  spice_tls_x509_cert_dir = "{tmp_path}/lab/spice-tls"'  # only the line it lacks
    assert conf.read_text() == "# the site's own\nspice_tls = 1\n" and restarts == []


def test_vdi_backend_reopens_a_connection_that_died_with_libvirtd(monkeypatch: pytest.MonkeyPatch) -> None:
    """After `atp lab up` restarts libvirtd, the simulator's old connection still says isAlive() but its first
    call fails with 'Cannot write data: Broken pipe': the backend re-opens it once instead of failing."""
    import libvirt

    from ATPLibrary.lab import vdi_backend
    from ATPLibrary.vdi.sim.backend import SimVm
    from tests.unit.fakes import libvirt_error

    class Conn:
        def __init__(self, fail: libvirt.libvirtError | None) -> None:
            self.fail, self.closed = fail, False

        def isAlive(self) -> bool:
            return True

        def lookupByName(self, name: str) -> str:
            if self.fail is not None:
                raise self.fail
            return f"dom {name}"

        def close(self) -> None:
            self.closed = True

    broken = libvirt_error(libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot write data: Broken pipe", libvirt.VIR_FROM_RPC)
    stale, fresh = Conn(broken), Conn(None)
    opened: list[Conn] = []
    monkeypatch.setattr(vdi_backend.libvirt, "open", lambda _uri: opened.append(fresh) or fresh)
    backend = vdi_backend.LabBackend(lab.Lab(log=lambda _m: None))
    backend._conn = stale  # type: ignore[assignment]
    vm = SimVm(id="1", name="pool-1")
    assert backend._lookup(vm) == "dom atp-vdi-1"
    assert stale.closed and opened == [fresh]
    # an error that is not about the connection is not retried
    fresh.fail = libvirt_error(libvirt.VIR_ERR_OPERATION_INVALID, "nope", libvirt.VIR_FROM_QEMU)
    with pytest.raises(vdi_backend.BackendError, match="atp-vdi-1: nope"):
        backend._lookup(vm)
    assert opened == [fresh]


def test_lab_up_restarts_a_running_guest_that_has_no_tls_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A guest started before libvirtd had spice_tls = 1 keeps running without a tlsPort: `lab up` restarts it
    (through the lease-respecting removal) with the same SPICE password; a guest with a tlsPort is left alone."""
    import libvirt

    monkeypatch.setenv("ATP_LAB_DIR", str(tmp_path / "lab"))
    image = _image(tmp_path)
    defined = domains.domain_xml(_spec(tmp_path, password="keep-me"))
    live_plain = defined.replace("<graphics type='spice' autoport='yes'", "<graphics type='spice' port='5900'")
    live_tls = live_plain.replace("port='5900'", "port='5900' tlsPort='5901'")

    class Dom:
        def __init__(self, live: str) -> None:
            self.live, self.calls = live, []

        def XMLDesc(self, flags: int) -> str:
            return defined if flags & libvirt.VIR_DOMAIN_XML_INACTIVE else self.live

        def isActive(self) -> bool:
            return True

        def create(self) -> None:
            self.calls.append("create")

    class Conn:
        def __init__(self, dom: Dom) -> None:
            self.dom, self.defined_xml = dom, ""

        def lookupByName(self, _name: str) -> Dom:
            return self.dom

        def defineXML(self, xml: str) -> Dom:
            self.defined_xml = xml
            return self.dom

    the_lab = lab.Lab(log=lambda _m: None)
    removed: list[object] = []
    monkeypatch.setattr(the_lab, "_remove", removed.append)
    with_tls = Conn(Dom(live_tls))
    the_lab._ensure_running(with_tls, "atp-lab-07", image, "qemu")  # type: ignore[arg-type]
    assert removed == [] and with_tls.dom.calls == [] and with_tls.defined_xml == ""
    without = Conn(Dom(live_plain))
    the_lab._ensure_running(without, "atp-lab-07", image, "qemu")  # type: ignore[arg-type]
    assert removed == [without.dom] and without.dom.calls == ["create"]
    assert domains.spice_password_of(without.defined_xml) == "keep-me"
