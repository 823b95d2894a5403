"""SPICE keywords: open and close a SPICE client session to a VM, and take a screenshot through it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import libvirt
from PIL import Image
from robot.api import logger
from robot.api.deco import keyword
from robot.api.types import Secret

from ATPLibrary.errors import ConfigurationError
from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.screen.image import encode_image
from ATPLibrary.spice.channel import Endpoint
from ATPLibrary.spice.session import SpiceSession
from ATPLibrary.spice.source import SpiceTarget, target_from_vdi, target_from_xml

if TYPE_CHECKING:
    from ATPLibrary.keywords.screen import ScreenKeywords
    from ATPLibrary.keywords.vdi import VdiKeywords

SECRET_HELP = (
    "The SPICE password must be a Robot Framework Secret so that it never appears in log.html or output.xml: "
    "'${SPICE_PASSWORD: Secret}    %{SPICE_PASSWORD}' in the Variables section, or pass the password of "
    "`Get SPICE Connection` (it is a Secret)."
)


class SpiceKeywords:
    """SPICE client sessions (our own client: link, ticket, TLS, inputs, display)."""

    def __init__(self, ctx: LibraryContext, vdi: VdiKeywords, screen: ScreenKeywords) -> None:
        self.ctx = ctx
        self._vdi = vdi
        self._screen = screen

    def _target_of_vm(self, vm: str) -> SpiceTarget:
        domain = self.ctx.domain(vm)
        xml = domain.run(
            lambda d: d.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE), what=f"reading the live XML of '{vm}'", idempotent=True
        )
        return target_from_xml(xml, self.ctx.host.uri, what=f"VM '{vm}'")

    @keyword("Open SPICE Session")
    def open_spice_session(
        self,
        vm: str | None = None,
        host: str | None = None,
        port: int | None = None,
        password: Secret | str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        timeout: timedelta | None = None,
        alias: str | None = None,
        vdi_vm: str | None = None,
        connection: Mapping[str, Any] | None = None,
        display: bool = True,
    ) -> str:
        """Opens a SPICE client session (main, inputs and display channels) and returns its name.

        Where the server is, one of:
        - ``vm``: a libvirt domain on the current host; host, port (``tlsPort`` with ``tls=True``) and
          password come from its live XML (a listen address ``0.0.0.0`` or ``::`` means the host of the libvirt URI).
        - ``vdi_vm``: a VDI VM of the current VDI platform (`Connect To VDI`); its ``spice-key`` is used.
        - ``connection``: the dictionary `Get SPICE Connection` returns.
        - ``host`` and ``port`` (with ``password``).

        ``password`` must be a Robot Framework ``Secret`` (it is never logged); it overrides the one the
        source gives. A plain string, or a password over 59 characters (SPICE servers keep 59), fails
        before anything is sent.
        ``tls=True`` connects with TLS, trusting ``ca_file`` (default: the system CAs; the lab's CA is
        ``${SPICE_CA_FILE}``). ``timeout`` bounds the whole opening (default: the library timeout).
        ``display=False`` skips the display channel (no `Take SPICE Screenshot`).

        The session is named ``alias``, else the VM (for ``vdi_vm``: its libvirt domain on the current host
        when found, else the VDI VM name), else ``host:port``. Input keywords with ``via=spice`` on a VM of
        that name send through it. A wrong password fails naming SPICE link error 7 (PERMISSION_DENIED); no
        source or more than one, ``ca_file`` without ``tls=True``, or a server that does not answer within
        ``timeout`` fail too. Opening a session under a name already open replaces that session only once
        the new one is open.

        | =Keyword=          | =VM=       | =Options=                         |
        | Open SPICE Session | atp-lab-01 |                                   |
        | Open SPICE Session | atp-lab-01 | tls=True    ca_file=${SPICE_CA_FILE} |
        | Type Text          | atp-lab-01 | hello\\n    via=spice    verify=True |
        | Close SPICE Session | atp-lab-01 |                                  |
        """
        if password is not None and not isinstance(password, Secret):
            raise ConfigurationError(SECRET_HELP)
        given = connection.get("password") if connection is not None else None
        if given is not None and not isinstance(given, Secret):
            raise ConfigurationError(SECRET_HELP)
        if ca_file is not None and not tls:
            raise ConfigurationError(
                "Open SPICE Session: ca_file= is only used with tls=True; add tls=True (or drop ca_file=), "
                "so that a session meant to be encrypted never opens in plain text."
            )
        sources = [x for x in (vm, vdi_vm, connection, host) if x is not None]
        if len(sources) != 1:
            raise ConfigurationError(
                "Open SPICE Session needs exactly one of vm=, vdi_vm=, connection= or host=/port= "
                f"(got {len(sources)})."
            )
        name = alias
        if vm is not None:
            target = self._target_of_vm(vm)
            name = name or vm
        elif vdi_vm is not None:
            info = self._vdi.get_spice_connection(vdi_vm)
            target = target_from_vdi(dict(info), what=f"VDI VM '{vdi_vm}'")
            if name is None:
                try:
                    name = self._vdi.get_vdi_vm_domain(vdi_vm)
                except Exception:  # the session still works by its VDI name
                    name = vdi_vm
        elif connection is not None:
            target = target_from_vdi(dict(connection), what=str(connection.get("vm") or "the SPICE connection"))
            name = name or str(connection.get("vm") or f"{target.host}:{target.port}")
        else:
            if port is None:
                raise ConfigurationError("Open SPICE Session with host= needs port= too.")
            target = SpiceTarget(host=str(host), port=int(port), tls_port=int(port), what=f"{host}:{port}")
            name = name or f"{host}:{port}"
        secret = password.value if password is not None else target.password
        endpoint = Endpoint(target.host, target.endpoint_port(tls), tls=tls, ca_file=ca_file)
        seconds = self.ctx.seconds(timeout)
        # The new session first: a reopen that fails (a wrong password in a negative test) keeps the open one.
        session = SpiceSession(endpoint, secret, timeout=seconds, name=name, display=display).open()
        old = self.ctx.spice_sessions.pop(name, None)
        if old is not None:
            old.close()
        self.ctx.spice_sessions[name] = session
        main = session.main
        assert main is not None
        logger.info(
            f"SPICE session '{name}' open to {endpoint} (password hidden): session id {main.session_id}, "
            f"{'client' if main.mouse_mode == 2 else 'server'} mouse mode, "
            f"display channel {'open' if session.display is not None else 'not opened'}."
        )
        return name

    @keyword("Close SPICE Session")
    def close_spice_session(self, name: str | None = None) -> None:
        """Closes the SPICE session ``name`` (a VM or alias), or every session when no name is given.

        Never fails: closing a session that is not open does nothing.

        | =Keyword=           | =Name=     |
        | Close SPICE Session | atp-lab-01 |
        | Close SPICE Session |            |
        """
        names = [name] if name is not None else list(self.ctx.spice_sessions)
        for key in names:
            session = self.ctx.spice_sessions.pop(key, None)
            if session is not None:
                session.close()
                logger.info(f"SPICE session '{key}' closed.")

    @keyword("Take SPICE Screenshot")
    def take_spice_screenshot(self, name: str, filename: str | None = None, timeout: timedelta | None = None) -> str:
        """Saves what the SPICE client of session ``name`` shows as a PNG, embeds it in log.html, returns its path.

        The picture is the display channel's primary surface, decoded by this library (GLZ, LZ, QUIC,
        bitmaps, MJPEG). Waits up to ``timeout`` (default: the library timeout) for the server's first full
        screen. ``filename`` as in `Take Screenshot` (relative to the output directory, ``{index}``
        numbered). Returns the PNG's path. Fails when no session ``name`` is open (listing the open ones),
        when it was opened with ``display=False``, or when no full screen arrives within ``timeout``.

        | =Keyword=             | =Name=     |
        | Take SPICE Screenshot | atp-lab-01 |
        """
        session = self.ctx.spice_session(name)
        width, height, rgb = session.screenshot(self.ctx.seconds(timeout))
        image = Image.frombytes("RGB", (width, height), rgb)
        path = self._screen._path(f"{name}-spice", filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_image(image))
        self._screen._embed_file(path, f"SPICE screenshot of '{name}' ({width}x{height})")
        return str(path)
