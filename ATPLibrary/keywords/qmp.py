"""Keywords that choose how QMP commands reach a VM's QEMU: libvirt passthrough or a direct QMP socket."""

from __future__ import annotations

from datetime import timedelta

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.keywords.context import LibraryContext
from ATPLibrary.qmp.socket_transport import SocketQmpTransport


class QmpKeywords:
    """Choose the QMP transport per VM."""

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

    @keyword("Use QMP Socket")
    def use_qmp_socket(self, vm: str, path: str, timeout: timedelta | None = None) -> None:
        """Sends the QMP commands of ``vm`` (keys, mouse, ``query-status``) to the QMP unix socket ``path``.

        By default QMP goes through libvirt, which works for every host the library can connect to, remote
        ``qemu+ssh://`` hosts included. Use a socket for QEMU that libvirt does not manage, started with
        e.g. ``-qmp unix:/run/vm1.qmp.sock,server=on,wait=off``. The socket must be on the machine that runs
        the tests. ``vm`` is the name the other keywords use for this VM; it is not looked up in libvirt.

        The connection is opened at once (bounded by ``timeout``, default: the library timeout), so a wrong
        path fails here and the VM keeps its previous transport. The connection stays open, and is opened
        again when QEMU has closed it. QEMU serves one client per QMP socket: while this library is
        connected, other clients of the same socket wait. Events that QEMU sends are collected, including
        events sent before the QMP greeting. `Use Libvirt QMP` switches back and closes the connection.

        | =Keyword=       | =VM=       | =Path=                  |
        | Use QMP Socket  | desktop-1  | /run/qemu/desktop-1.qmp |
        | Type Text       | desktop-1  | hello\\n                 |
        | Use Libvirt QMP | desktop-1  |                         |
        """
        seconds = self.ctx.seconds(timeout)
        current = self.ctx.qmp_sockets.get(vm)
        if current is not None and current.path == path:
            current.connect(seconds)  # a second connection would wait behind the first one
            logger.info(f"VM '{vm}' already uses the QMP socket {path}.")
            return
        transport = SocketQmpTransport(path, name=vm)
        try:
            transport.connect(seconds)
        except Exception:
            transport.close()
            raise
        if current is not None:
            current.close()
        self.ctx.qmp_sockets[vm] = transport
        logger.info(f"QMP commands for VM '{vm}' now go to the socket {path}.")

    @keyword("Use Libvirt QMP")
    def use_libvirt_qmp(self, vm: str) -> None:
        """Sends the QMP commands of ``vm`` through libvirt again (the default) and closes its QMP socket.

        Does nothing when ``vm`` already uses libvirt; never fails.

        | =Keyword=       | =VM=      |
        | Use Libvirt QMP | desktop-1 |
        """
        transport = self.ctx.qmp_sockets.pop(vm, None)
        if transport is None:
            logger.info(f"VM '{vm}' already uses libvirt for QMP.")
            return
        transport.close()
        logger.info(f"QMP commands for VM '{vm}' go through libvirt again (closed {transport.path}).")
