"""Screenshots through libvirt (``virDomainScreenshot`` over a stream, so remote URIs work)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import libvirt
from PIL import Image

from ATPLibrary.errors import ScreenshotError, VMStateError
from ATPLibrary.hosts.connection import DomainTarget, error_code
from ATPLibrary.screen.image import is_blank, load_image, png_size, to_png

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Screenshot:
    """A PNG screenshot of one VM screen."""

    vm: str
    png: bytes
    source_mime: str
    width: int
    height: int

    @property
    def blank(self) -> bool:
        return is_blank(self.png)

    def image(self) -> Image.Image:
        """The screenshot as an RGB Pillow image."""
        return load_image(self.png, f"screenshot of VM '{self.vm}'")


def _grab(dom: libvirt.virDomain, screen: int) -> tuple[str, bytes]:
    stream = dom.connect().newStream(0)
    try:
        mime = dom.screenshot(stream, screen, 0)
        parts: list[bytes] = []
        while True:
            chunk = stream.recv(CHUNK)
            if chunk in (-2, None):  # would block: not for a blocking stream, but be safe
                continue
            if not chunk:
                break
            parts.append(bytes(chunk))
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise
    return str(mime or ""), b"".join(parts)


def take_screenshot(target: DomainTarget, screen: int = 0) -> Screenshot:
    """Capture screen ``screen`` of the VM and return it as PNG (a PPM from QEMU is converted)."""
    try:
        mime, data = target.run(lambda dom: _grab(dom, screen), what=f"screenshot of '{target.name}'", idempotent=True)
    except libvirt.libvirtError as err:
        cls = VMStateError if error_code(err) == libvirt.VIR_ERR_OPERATION_INVALID else ScreenshotError
        raise cls(f"Cannot take a screenshot of VM '{target.name}' ({target.uri}): {err}") from err
    if not data:
        raise ScreenshotError(f"Screenshot of VM '{target.name}' ({target.uri}) came back empty ({mime}).")
    png = to_png(data, mime)
    width, height = png_size(png)
    return Screenshot(target.name, png, mime, width, height)
