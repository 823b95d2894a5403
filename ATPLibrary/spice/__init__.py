"""ATPLibrary's SPICE client: link + ticket (RSA-OAEP), TLS, main and inputs channels, and the display.

- :mod:`~ATPLibrary.spice.protocol`: constants, link/header packing, typed errors
- :mod:`~ATPLibrary.spice.ticket`: password rules and the RSA-OAEP (SHA-1) ticket
- :mod:`~ATPLibrary.spice.channel`: one asyncio channel (connect, link, message loop, ACK/PING)
- :mod:`~ATPLibrary.spice.main` / :mod:`~ATPLibrary.spice.inputs`: the main and inputs channels
- :mod:`~ATPLibrary.spice.session`: :class:`SpiceSession`, the synchronous facade keywords use
- :mod:`~ATPLibrary.spice.source`: connection details from libvirt's live XML or the VDI platform
- :mod:`~ATPLibrary.spice.display`: the display channel and image decoders

No Robot Framework import anywhere below this package.  See docs/spice.md.
"""
