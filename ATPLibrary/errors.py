"""One error tree for the whole library.

Every error ATPLibrary raises derives from :class:`ATPError`.  The classes set
``ROBOT_SUPPRESS_NAME`` so that log.html shows the message alone (it already says
what failed and what to do) instead of a Python class name.  Protocol clients use
these classes too; they never import Robot Framework.
"""

from __future__ import annotations

from typing import Any


class ATPError(Exception):
    """Base of every error raised by ATPLibrary."""

    ROBOT_SUPPRESS_NAME = True


class ConfigurationError(ATPError):
    """Bad input from the user: an unknown name, a malformed value, a missing setting."""


class HostError(ATPError):
    """A libvirt host could not be reached or answered with an error."""


class HostConnectionError(HostError):
    """Opening (or re-opening) a libvirt connection failed."""


class VMNotFoundError(HostError):
    """The named domain does not exist on the host."""


class VMStateError(HostError):
    """The domain is not in the state the operation needs, or did not reach it in time."""


class WaitTimeoutError(ATPError, TimeoutError):
    """A wait ran out of time.  The message names what was awaited and the timeout."""


class GuestAgentError(ATPError):
    """The QEMU guest agent (qemu-ga) returned an error or could not be reached."""


class GuestAgentNotResponding(GuestAgentError):
    """qemu-ga did not answer within the deadline."""


class GuestCommandError(GuestAgentError):
    """A command run in the guest exited with an unexpected code, or did not finish in time."""


class QMPError(ATPError):
    """QEMU's monitor rejected a command."""


class KeyMapError(ConfigurationError):
    """A key name or character is not known to the key map / layout."""


class LabError(ATPError):
    """The local lab could not be set up, started or stopped."""


class VMStateTimeout(VMStateError, WaitTimeoutError):
    """A domain did not reach the wanted state in time (names VM, wanted/seen state, timeout)."""


class ScreenshotError(ATPError):
    """A screenshot could not be taken or decoded."""


class QMPCommandError(QMPError):
    """QEMU answered a QMP command with an error reply; ``error_class`` and ``desc`` are QEMU's."""

    def __init__(self, message: str, error_class: str = "GenericError", desc: str = "") -> None:
        super().__init__(message)
        self.error_class = error_class
        self.desc = desc


class NeedleError(ConfigurationError):
    """A needle file is missing or malformed; the message names the file, the field and the fix."""


class ScreenMismatchError(ATPError):
    """`Screen Should Match` found the screen different from the needle (``match``: the per-area result)."""

    def __init__(self, message: str, match: Any = None) -> None:
        super().__init__(message)
        self.match = match


class ScreenWaitTimeout(WaitTimeoutError):
    """A screen wait ran out of time. ``image`` is the last frame, ``match`` the last needle result."""

    def __init__(self, message: str, image: Any = None, match: Any = None) -> None:
        super().__init__(message)
        self.image = image
        self.match = match


class GuestFileError(GuestAgentError):
    """A guest file could not be opened, read, written or verified (names the VM, the guest path, the fix)."""


class GuestFileNotFoundError(GuestFileError):
    """The guest path (or its directory) does not exist."""


class GuestFilePermissionError(GuestFileError):
    """The guest agent may not open the guest path (permissions, read-only file system)."""


class GuestFileTransferTimeout(GuestFileError, WaitTimeoutError):
    """A whole file transfer did not finish within its timeout (names bytes done and total)."""


class ChannelError(ATPError):
    """A virtio-serial channel could not be opened, read or written."""


class ChannelBusyError(ChannelError):
    """Another client already has the channel open (libvirt allows one stream per channel)."""


class ChannelClosedError(ChannelError):
    """The channel's stream ended (guest or host closed it, the VM stopped) or was closed by the test."""


class ChannelTimeout(ChannelError, WaitTimeoutError):
    """A read from a channel got no (complete) answer in time. ``partial`` holds the bytes buffered so far."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


class ChannelProtocolError(ChannelError):
    """A message on a channel did not have the expected framing (bad JSON, missing field, line too long)."""


class VerificationError(ATPError):
    """The verification server or a verification agent (the in-guest input reporter) failed."""


class VerificationConnectError(VerificationError):
    """No verification agent session could be set up (names the VM, the channel path or peer, and why)."""


class VerificationAgentNotConnected(VerificationError):
    """A VM has no connected verification agent (names the VM and what was last seen)."""


class VerificationFailed(VerificationError):
    """What the guest received differs from what was sent. ``result`` is the matcher's ``MatchResult``."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class VerificationTimeout(VerificationFailed, WaitTimeoutError):
    """Not everything that was sent arrived in the guest within the timeout."""


class VerificationDroppedEvents(VerificationFailed):
    """The verification agent fell behind and the guest kernel dropped events during a check."""


class VerificationAgentLost(VerificationFailed):
    """The verification agent's session ended while a check was waiting."""


class VdiError(ATPError):
    """The VDI platform answered with an error envelope (``status != 0``). ``code`` and ``msg`` are the platform's."""

    def __init__(self, message: str, code: int = -1, msg: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.msg = msg


class VdiBatchError(VdiError):
    """A batch operation partly failed: ``errors`` lists ``(domain_id, domain_name, error_msg)`` per failed VM."""

    def __init__(self, message: str, errors: Any = None, result: Any = None) -> None:
        super().__init__(message, code=0, msg="")
        self.errors = errors or []
        self.result = result


class VdiConnectionError(VdiError):
    """The VDI platform could not be reached (after the retries allowed for the request)."""


class SpiceError(ATPError):
    """Base of every SPICE client error (link, ticket, TLS, channels, display).

    Added by the SPICE display work; the SPICE core (link/ticket/TLS, main/inputs channels, session)
    derives its own errors from this class too.
    """


class SpiceProtocolError(SpiceError):
    """A SPICE server message or image was malformed or truncated (names the message/codec and the
    offending field). Every parser and decoder in ``ATPLibrary.spice`` raises only this on bad input."""


class SpiceUnsupportedError(SpiceProtocolError):
    """The server used a feature this client does not implement (e.g. a video codec), named in the message."""
