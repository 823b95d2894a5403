"""The lab's domain XML: one place for how a lab guest is defined."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from ATPLibrary.lab.image import GuestImage

#: Changes whenever this file (the domain template) changes, so that `atp lab up` redefines lab guests.
TEMPLATE_KEY = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]

LAB_NS = "urn:atplibrary:lab"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
VERIFIER_CHANNEL = "com.atp.verifier.0"
#: Virtio ports whose host side is a TCP client (QEMU connects to a verification server on 127.0.0.1 and
#: reconnects every second while none listens): the agent speaks TCP frames or WebSocket over them.
VERIFIER_TCP_CHANNEL = "com.atp.verifier.tcp.0"
VERIFIER_WS_CHANNEL = "com.atp.verifier.ws.0"
#: A spare unix channel without a source path (libvirt picks it), for channel keywords and their tests.
TEST_CHANNEL = "com.atp.test.0"
#: The ports those TCP channels connect to, on 127.0.0.1 (the same for every lab guest).
VERIFIER_TCP_PORT = 18766
VERIFIER_WS_PORT = 18765
#: Kernel command line: the LAST console= is /dev/console, so PID 1 and early messages go to the serial log
#: and the VGA console (tty1, where the shell runs) stays clean.
KERNEL_CMDLINE = "console=tty0 console=ttyS0 quiet loglevel=1 panic=-1"
#: A unix socket path must fit in sun_path (108 bytes including the NUL).
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class GuestSpec:
    name: str
    image: GuestImage
    accel: str  # "kvm" or "qemu" (TCG)
    spice_password: str
    serial_log: Path
    verifier_socket: Path
    qmp_socket: Path
    memory_mib: int = 128
    vcpus: int = 1
    #: libvirt's UUID for the domain (any form libvirt takes, e.g. 32 hex digits); None lets libvirt choose.
    uuid: str | None = None


def new_spice_password(length: int = 16) -> str:
    """A random SPICE password; SPICE servers keep at most 59 characters, so keep it short."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _tcp_channel(port: int, name: str) -> str:
    """A virtio port whose host side is a TCP client of 127.0.0.1:``port``, reconnecting every second."""
    return f"""    <channel type='tcp'>
      <source mode='connect' host='127.0.0.1' service='{port}'>
        <reconnect enabled='yes' timeout='1'/>
      </source>
      <protocol type='raw'/>
      <target type='virtio' name='{name}'/>
    </channel>"""


def domain_xml(spec: GuestSpec) -> str:
    for sock in (spec.verifier_socket, spec.qmp_socket):
        if len(str(sock)) > MAX_SOCKET_PATH:
            raise ValueError(
                f"unix socket path {sock} is longer than {MAX_SOCKET_PATH} bytes; set ATP_LAB_DIR to a shorter folder"
            )
    q = quoteattr
    # SPICE: a plain port and, because the lab's qemu.conf sets spice_tls = 1, a tlsPort (libvirt adds it to
    # every SPICE domain it starts; the certificates are the lab's spice-tls/ folder).
    tcg = "<tcg><tb-cache unit='MiB'>32</tb-cache></tcg>" if spec.accel == "qemu" else ""
    # A second QMP monitor on a unix socket, beside libvirt's own, for the direct QMP transport (QEMU that
    # libvirt does not manage is reached this way); libvirt marks such a domain "tainted: custom-argv".
    qmp_arg = f"unix:{spec.qmp_socket},server=on,wait=off"
    return f"""<domain type={q(spec.accel)} xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{spec.name}</name>{f"{chr(10)}  <uuid>{spec.uuid}</uuid>" if spec.uuid else ""}
  <description>ATPLibrary lab guest (managed by `atp lab`; removed by `atp lab down`)</description>
  <metadata>
    <atp:lab xmlns:atp={q(LAB_NS)} image={q(spec.image.key)} accel={q(spec.accel)} template={q(TEMPLATE_KEY)}/>
  </metadata>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>{spec.vcpus}</vcpu>
  <sysinfo type='smbios'><system><entry name='serial'>{spec.name}</entry></system></sysinfo>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{spec.image.kernel}</kernel>
    <initrd>{spec.image.initrd}</initrd>
    <cmdline>{KERNEL_CMDLINE}</cmdline>
    <smbios mode='sysinfo'/>
  </os>
  <features><acpi/>{tcg}</features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file={q(str(spec.image.rootfs))}/>
      <target dev='vda' bus='virtio'/>
      <readonly/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='file'><source path={q(str(spec.serial_log))}/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='{GUEST_AGENT_CHANNEL}'/></channel>
    <channel type='unix'>
      <source mode='bind' path={q(str(spec.verifier_socket))}/>
      <target type='virtio' name='{VERIFIER_CHANNEL}'/>
    </channel>
{_tcp_channel(VERIFIER_TCP_PORT, VERIFIER_TCP_CHANNEL)}
{_tcp_channel(VERIFIER_WS_PORT, VERIFIER_WS_CHANNEL)}
    <channel type='unix'><target type='virtio' name='{TEST_CHANNEL}'/></channel>
    <input type='tablet' bus='virtio'/>
    <input type='keyboard' bus='virtio'/>
    <input type='mouse' bus='virtio'/>
    <graphics type='spice' autoport='yes' passwd={q(spec.spice_password)}>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video><model type='vga'/></video>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-qmp'/>
    <qemu:arg value={q(qmp_arg)}/>
  </qemu:commandline>
</domain>
"""


def lab_metadata(xml: str) -> dict[str, str] | None:
    """The lab's metadata attributes of a domain XML, or None when the domain is not the lab's."""
    m = re.search(r"<atp:lab\b([^>]*)/?>", xml)
    if not m or LAB_NS not in m.group(1):
        return None
    return dict(re.findall(r"(\w+)='([^']*)'", m.group(1)) + re.findall(r'(\w+)="([^"]*)"', m.group(1)))


def spice_password_of(xml: str) -> str | None:
    """The SPICE passwd of a domain XML read with VIR_DOMAIN_XML_SECURE."""
    m = re.search(r"<graphics\b[^>]*\btype=['\"]spice['\"][^>]*>", xml)
    if not m:
        return None
    pw = re.search(r"\bpasswd=(['\"])(.*?)\1", m.group(0))
    return pw.group(2) if pw else None


def spice_port_of(xml: str) -> int | None:
    """The SPICE port of a running domain's live XML; None while it is not assigned (-1)."""
    return _spice_port_attr(xml, "port")


def spice_tls_port_of(xml: str) -> int | None:
    """The SPICE tlsPort of a running domain's live XML; None when it has none (libvirt gives every SPICE
    domain one when qemu.conf sets ``spice_tls = 1``; a domain started before that has none until restarted)."""
    return _spice_port_attr(xml, "tlsPort")


def _spice_port_attr(xml: str, attr: str) -> int | None:
    m = re.search(r"<graphics\b[^>]*\btype=['\"]spice['\"][^>]*>", xml)
    if not m:
        return None
    port = re.search(rf"\b{attr}=['\"](-?\d+)['\"]", m.group(0))
    if not port or int(port.group(1)) <= 0:
        return None
    return int(port.group(1))
