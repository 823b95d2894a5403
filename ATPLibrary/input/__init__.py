"""Input that does not depend on the transport: transports, mouse events and their scaling."""

from ATPLibrary.input.mouse import ABS_MAX, MouseButton, pixel_to_abs
from ATPLibrary.input.transport import InputTransport

__all__ = ["ABS_MAX", "InputTransport", "MouseButton", "pixel_to_abs"]
