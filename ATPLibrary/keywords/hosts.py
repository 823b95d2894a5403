"""Keywords for libvirt hosts and VM power state."""

from __future__ import annotations

from datetime import timedelta

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.hosts.state import VMState
from ATPLibrary.hosts.timing import format_seconds
from ATPLibrary.keywords.context import LibraryContext


class HostKeywords:
    """Connect to libvirt hosts; read and change VM state."""

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

    @keyword("Connect To Host")
    def connect_to_host(self, uri: str = "qemu:///system", alias: str | None = None) -> str:
        """Connects to the libvirt host ``uri`` now and makes it the current host.

        Arguments:
        - ``uri``: any libvirt URI, e.g. ``qemu:///system``, ``qemu+ssh://root@10.0.0.5/system``,
          ``test:///default``.
        - ``alias``: name to use with `Switch Host` (default: the URI).

        The connection is opened at once, so a wrong URI fails here with a message naming it. If the
        connection breaks later it is re-opened with exponential backoff, and reads are retried once.
        Connecting with an alias that is already connected closes that connection and replaces it; when the
        new connection fails, the host that was current before stays current (unless the failed one replaced
        it). Returns the alias.

        | =Keyword=       | =URI=                             | =Alias=      |
        | Connect To Host | qemu:///system                    | alias=local  |
        | Connect To Host | qemu+ssh://root@10.0.0.5/system   | alias=remote |
        """
        registry = self.ctx.registry
        previous = registry.current
        host = registry.add(uri, alias)
        try:
            host.open()
        except Exception:
            # A failed connect leaves the host that was current before it current.
            registry.remove(host.alias)
            if previous is not None and previous.alias in registry:
                registry.switch(previous.alias)
            raise
        logger.info(f"Connected to libvirt host '{uri}' as '{host.alias}'.")
        return host.alias

    @keyword("Switch Host")
    def switch_host(self, alias: str) -> None:
        """Makes the host connected as ``alias`` the current host for the following keywords.

        Fails when no host is connected as ``alias``, listing the aliases that are.

        | =Keyword=   | =Alias= |
        | Switch Host | remote  |
        """
        host = self.ctx.registry.switch(alias)
        logger.info(f"Current host is now '{alias}' ({host.uri}).")

    @keyword("Disconnect From Host")
    def disconnect_from_host(self, alias: str | None = None) -> None:
        """Closes the connection ``alias`` (default: the current host) and forgets it.

        The host connected last among the remaining ones becomes current. Never fails: an alias that is not
        connected only logs that there was nothing to disconnect.

        | =Keyword=            | =Alias= |
        | Disconnect From Host | remote  |
        | Disconnect From Host |         |
        """
        host = self.ctx.registry.remove(alias)
        if host is None:
            logger.info("No such host connected; nothing to disconnect.")
        else:
            logger.info(f"Disconnected from '{host.alias}' ({host.uri}).")

    @keyword("Disconnect All Hosts")
    def disconnect_all_hosts(self) -> None:
        """Closes every host connection (use in suite teardown).

        Never fails; afterwards keywords use the ``uri`` import argument again, opened on first use.

        | =Keyword=            |
        | Disconnect All Hosts |
        """
        count = len(self.ctx.registry)
        self.ctx.registry.close_all()
        logger.info(f"Disconnected from {count} host(s).")

    @keyword("Get VM State")
    def get_vm_state(self, vm: str) -> str:
        """Returns the state of ``vm`` on the current host as virsh prints it.

        Possible values: ``running``, ``idle``, ``paused``, ``in shutdown``, ``shut off``, ``crashed``,
        ``pmsuspended``, ``no state``. Fails when ``vm`` is not defined on the current host, listing the
        defined domains (close matches first).

        | =Keyword / Assignment= | =Argument=   | =Argument= |
        | ${state} =             | Get VM State | atp-lab-03 |
        | Should Be Equal        | ${state}     | running    |
        """
        state = self.ctx.host.state(vm)
        logger.info(f"VM '{vm}' is {state}.")
        return str(state)

    @keyword("Start VM")
    def start_vm(self, vm: str) -> None:
        """Starts ``vm``, or resumes it when it is paused, without waiting for the guest to boot.

        A VM that is already running passes, with a log line. To wait for the boot use `Guest Agent Should
        Respond` (or, on the lab, wait for the console as ``VM Should Be Ready For Typing`` does). Fails when
        ``vm`` is not defined on the current host (listing the defined domains) or libvirt cannot start it,
        with libvirt's error, the VM and the host.

        | =Keyword= | =VM=       |
        | Start VM  | atp-lab-03 |
        | Guest Agent Should Respond | atp-lab-03 |
        """
        if self.ctx.host.start(vm):
            logger.info(f"Started VM '{vm}' on '{self.ctx.host.uri}'.")
        else:
            logger.info(f"VM '{vm}' is already running; nothing to do.")

    @keyword("Shutdown VM")
    def shutdown_vm(self, vm: str, timeout: timedelta | None = None) -> None:
        """Shuts ``vm`` down gracefully and waits until it is ``shut off``.

        Uses libvirt's default shutdown mode (guest agent when connected, else ACPI) and repeats the request
        every few seconds while the guest keeps running. Fails after ``timeout`` (default: the library
        timeout) naming the VM and the last seen state. A VM that is already shut off passes.

        | =Keyword=   | =VM=       | =Timeout=   |
        | Shutdown VM | atp-lab-03 | timeout=60s |
        """
        seconds = self.ctx.seconds(timeout)
        if self.ctx.host.shutdown(vm, seconds):
            logger.info(f"VM '{vm}' shut off (waited at most {format_seconds(seconds)}).")
        else:
            logger.info(f"VM '{vm}' was already shut off.")

    @keyword("Reboot VM")
    def reboot_vm(self, vm: str) -> None:
        """Asks the guest of ``vm`` to reboot (libvirt default mode) and returns at once.

        The guest agent may still answer for a moment before the guest goes down; to wait for the new boot,
        check something that only the new boot has. Fails when ``vm`` is not defined or not running, with
        libvirt's error.

        | =Keyword= | =VM=       |
        | Reboot VM | atp-lab-03 |
        """
        self.ctx.host.reboot(vm)
        logger.info(f"Reboot of VM '{vm}' requested.")

    @keyword("Destroy VM")
    def destroy_vm(self, vm: str) -> None:
        """Powers ``vm`` off at once, like pulling the plug, without asking the guest.

        A VM that is already shut off passes. Fails when ``vm`` is not defined on the current host or libvirt
        refuses, with libvirt's error.

        | =Keyword=  | =VM=       |
        | Destroy VM | atp-lab-03 |
        """
        if self.ctx.host.destroy(vm):
            logger.info(f"Destroyed VM '{vm}'.")
        else:
            logger.info(f"VM '{vm}' was already shut off.")

    @keyword("Wait Until VM State")
    def wait_until_vm_state(self, vm: str, state: str, timeout: timedelta | None = None) -> None:
        """Waits until ``vm`` is in ``state`` (e.g. ``running``, ``shut off``, ``paused``).

        ``state`` is case-insensitive (``shut off``, ``SHUTOFF`` and ``stopped`` are one state); an unknown
        one fails at once listing the known states. Fails after ``timeout`` (default: the library timeout)
        with a message naming the VM, the host, the wanted state, the last seen state and the timeout.

        | =Keyword=           | =VM=       | =State=  | =Timeout=   |
        | Wait Until VM State | atp-lab-03 | shut off | timeout=30s |
        """
        seconds = self.ctx.seconds(timeout)
        wanted = VMState.parse(state)
        self.ctx.host.wait_for_state(vm, wanted, seconds)
        logger.info(f"VM '{vm}' is {wanted}.")
