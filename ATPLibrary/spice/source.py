"""Where SPICE connections come from: a domain's live XML, or the VDI platform's spice-key.

Live XML only: libvirt writes ``port='-1'`` (or no port) until a running domain has one assigned, so an
inactive XML never gives a port (failure kind 8: reading it as port -1 made tools try port -1).
``autoport`` is parsed strictly as ``yes``/``no`` (libvirt stores any other value, e.g. ``true``, as ``no``,
so no port is ever assigned).  A listen address of ``0.0.0.0`` or ``::`` means "every address of the
libvirt host": the client connects to the host of the libvirt URI (``localhost`` for local URIs).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from xml.etree import ElementTree

from ATPLibrary.errors import ConfigurationError, SpiceError

WILDCARD_LISTEN = {"0.0.0.0", "::", "[::]", ""}


class SpiceSourceError(SpiceError):
    """The VM's SPICE details could not be found (no SPICE graphics, port not assigned, bad autoport...)."""


@dataclass(frozen=True)
class SpiceTarget:
    """How to reach one SPICE server.  ``password`` is never shown in ``repr``."""

    host: str
    port: int | None
    tls_port: int | None = None
    password: str | None = field(default=None, repr=False)
    autoport: bool | None = None
    what: str = ""

    def endpoint_port(self, tls: bool) -> int:
        port = self.tls_port if tls else self.port
        if port is None:
            kind = "tlsPort" if tls else "port"
            other = " (it has a plain port: use tls=False)" if tls and self.port else ""
            other = other or (" (it has a tlsPort: use tls=True)" if not tls and self.tls_port else "")
            raise SpiceSourceError(f"{self.what or 'the SPICE server'} has no SPICE {kind}{other}")
        return port


def parse_autoport(value: str | None, what: str = "the domain") -> bool | None:
    """``yes`` → True, ``no`` → False, absent → None; anything else is an error (libvirt takes only these)."""
    if value is None:
        return None
    if value == "yes":
        return True
    if value == "no":
        return False
    raise SpiceSourceError(
        f"{what}: <graphics type='spice' autoport='{value}'> is not valid: autoport takes only 'yes' or 'no' "
        "(libvirt stores other values as 'no', so no port would be assigned). Write autoport='yes'."
    )


def _port(value: str | None, what: str, attr: str) -> int | None:
    """A port attribute: None when missing or -1 (not assigned yet)."""
    if value is None:
        return None
    try:
        port = int(value)
    except ValueError:
        raise SpiceSourceError(f"{what}: SPICE {attr}='{value}' is not a number") from None
    if port == -1:
        return None
    if not 0 < port < 65536:
        raise SpiceSourceError(f"{what}: SPICE {attr}='{value}' is not a TCP port")
    return port


def libvirt_host(uri: str) -> str:
    """The host a libvirt URI reaches (``localhost`` for local URIs such as ``qemu:///system``)."""
    return urlsplit(uri).hostname or "localhost"


def target_from_xml(xml: str, uri: str = "qemu:///system", what: str = "the domain") -> SpiceTarget:
    """The SPICE target of a domain's **live** XML (read with VIR_DOMAIN_XML_SECURE for the password).

    Raises SpiceSourceError when the domain has no SPICE graphics, when neither port nor tlsPort is
    assigned (port -1 or missing: the domain is not running), or when autoport is not yes/no.
    """
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise SpiceSourceError(f"{what}: the domain XML does not parse ({exc})") from None
    graphics = next((g for g in root.iter("graphics") if g.get("type") == "spice"), None)
    if graphics is None:
        raise SpiceSourceError(f"{what} has no <graphics type='spice'>: it has no SPICE server to connect to")
    autoport = parse_autoport(graphics.get("autoport"), what)
    port = _port(graphics.get("port"), what, "port")
    tls_port = _port(graphics.get("tlsPort"), what, "tlsPort")
    if port is None and tls_port is None:
        raise SpiceSourceError(
            f"{what}: the SPICE port is not assigned yet (port -1 or missing: the domain is not running, or "
            "this is the inactive XML). Start the VM and read its live XML."
        )
    listen = graphics.get("listen")
    for node in graphics.iter("listen"):
        if node.get("type") == "address" and node.get("address") is not None:
            listen = node.get("address")
            break
    host = listen or ""
    if host in WILDCARD_LISTEN:
        host = libvirt_host(uri)
    return SpiceTarget(
        host=host.strip("[]"),
        port=port,
        tls_port=tls_port,
        password=graphics.get("passwd"),
        autoport=autoport,
        what=what,
    )


def target_from_vdi(connection: dict[str, object], what: str = "the VDI VM") -> SpiceTarget:
    """A target from the VDI platform: the ``Get SPICE Connection`` dict (host, port, password as a
    Robot ``Secret`` or text) or the raw ``spice-key`` reply (``host``, ``port``, base64 ``password``
    under ``passwd``/``password`` with ``base64: True``)."""
    host = connection.get("host")
    port = connection.get("port")
    if not host or port in (None, "", -1, "-1"):
        raise SpiceSourceError(f"{what}: the platform gave no SPICE host and port (is the VM running?)")
    try:
        port_number = int(str(port))
    except ValueError:
        raise SpiceSourceError(f"{what}: SPICE port '{port}' from the platform is not a number") from None
    secret = connection.get("password")
    password: str | None
    if secret is None:
        password = None
    elif hasattr(secret, "value"):
        password = str(secret.value)
    else:
        password = str(secret)
    if password is not None and connection.get("base64"):
        password = decode_spice_key_password(password)
    return SpiceTarget(host=str(host), port=port_number, password=password, what=what)


def decode_spice_key_password(encoded: str) -> str:
    """The platform's base64 spice-key password as text (errors never show the value)."""
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ConfigurationError("the SPICE password from the platform is not base64 of UTF-8 text") from None
