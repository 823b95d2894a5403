"""ATPLibrary: a Robot Framework library for testing virtual desktops on libvirt/QEMU."""

from __future__ import annotations

from datetime import timedelta

from robotlibcore import DynamicCore

from ATPLibrary.keywords import GuestKeywords, HostKeywords, KeyboardKeywords, LibraryContext, ScreenKeywords

__version__ = "0.1.0"


class ATPLibrary(DynamicCore):  # type: ignore[misc]
    """ATPLibrary drives virtual machines on libvirt/QEMU hosts for end-to-end tests of virtual desktops.

    = Hosts =

    Keywords act on the *current host*. `Connect To Host` opens a libvirt connection (any URI:
    ``qemu:///system``, ``qemu+ssh://root@10.0.0.5/system``, ``test:///default``) and makes it current;
    `Switch Host` changes the current host. Without any `Connect To Host`, the ``uri`` given at import is
    used, opened on first use. Broken connections are re-opened with exponential backoff and read
    operations are retried once.

    = VMs =

    VMs are named by their libvirt domain name. A wrong name fails with the list of defined domains, close
    matches first.

    = Keyboard =

    `Press Keys` and `Type Text` inject keys through QEMU (``input-send-event`` with QEMU key codes), so they
    work before any agent runs in the guest. `Type Text` uses the US layout, adds Shift explicitly and keeps
    repeated characters.

    = Guest agent =

    `Guest Agent Should Respond` and `Execute Command In Guest` use the QEMU guest agent (qemu-ga) through
    libvirt, so they also work on remote hosts.

    = Timeouts =

    Keywords that wait take a ``timeout`` in Robot's time format (``10s``, ``1 minute 30 seconds``). When it
    is not given, the library's ``timeout`` import argument is used (default 30 seconds). Errors name the VM,
    the host and the timeout.

    = Example =

    | =Setting= | =Value=    | =Value=     | =Value=    |
    | Library   | ATPLibrary | timeout=60s | uri=qemu:///system |

    | =Keyword=                  | =Argument= | =Argument=          |
    | Connect To Host            | qemu:///system | alias=local     |
    | Start VM                   | atp-lab-03 |                     |
    | Guest Agent Should Respond | atp-lab-03 |                     |
    | Type Text                  | atp-lab-03 | echo hello > /tmp/x\\n |
    | ${result} =                | Execute Command In Guest | atp-lab-03 | cat /tmp/x |
    | Should Be Equal            | ${result.stdout} | hello\\n     |
    | Take Screenshot            | atp-lab-03 |                     |
    """

    ROBOT_LIBRARY_SCOPE = "GLOBAL"
    ROBOT_LIBRARY_VERSION = __version__
    ROBOT_LIBRARY_DOC_FORMAT = "ROBOT"

    def __init__(self, timeout: timedelta = timedelta(seconds=30), uri: str = "qemu:///system") -> None:
        """Imports the library; nothing is opened until a keyword needs a host.

        - ``timeout``: default for every keyword that waits (``30s``, ``1 minute``).
        - ``uri``: libvirt URI used when no `Connect To Host` was called.

        | =Setting= | =Value=    | =Value=     |
        | Library   | ATPLibrary | timeout=60s |
        """
        self.ctx = LibraryContext(timeout=timeout, uri=uri)
        DynamicCore.__init__(
            self,
            [
                HostKeywords(self.ctx),
                GuestKeywords(self.ctx),
                KeyboardKeywords(self.ctx),
                ScreenKeywords(self.ctx),
            ],
        )


__all__ = ["ATPLibrary", "__version__"]
