"""Mouse keywords: absolute and relative moves, clicks, wheel, drag (QMP ``input-send-event``)."""

from __future__ import annotations

from datetime import timedelta

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.errors import ConfigurationError
from ATPLibrary.input.mouse import ABS_MAX, MouseButton, ScrollDirection, coerce_enum
from ATPLibrary.input.recording import EventSink
from ATPLibrary.input.transport import InputTransport
from ATPLibrary.keywords.context import LibraryContext, Sleep, to_seconds


class MouseKeywords:
    """Move the pointer, click, scroll and drag on a VM's screen.

    Positions are screen pixels from the top-left corner. Absolute positions are scaled to QEMU's
    0..32767 tablet range with ``round(p * 32767 / (size - 1))`` against the current screen size (read
    from a screenshot), so the last pixel is exactly 32767.
    """

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

    @keyword("Move Mouse To")
    def move_mouse_to(
        self, vm: str, x: int, y: int, via: InputTransport | None = None, verify: bool | None = None
    ) -> None:
        """Moves the pointer of ``vm`` to pixel (``x``, ``y``) of its screen (absolute tablet position).

        A position outside the screen fails before anything is sent, naming the screen size. With
        ``verify=True`` it fails unless the guest's pointer received exactly this move (see `Verification`);
        with ``via=spice`` the VM needs an open SPICE session.

        | =Keyword=     | =VM=       | =X= | =Y= |
        | Move Mouse To | atp-lab-03 | 360 | 200 |
        """
        ax, ay = self.ctx.perform_input(
            vm,
            lambda sink, sleep: self.ctx.pointer(vm, sink, sleep).move_to(x, y),
            via=via,
            verify=verify,
            what=f"Move Mouse To {x} {y}",
        )
        logger.info(f"Moved the mouse of VM '{vm}' to ({x}, {y}) px = ({ax}, {ay}) of 0..{ABS_MAX}.")

    @keyword("Move Mouse By")
    def move_mouse_by(
        self, vm: str, dx: int, dy: int, via: InputTransport | None = None, verify: bool | None = None
    ) -> None:
        """Moves the pointer of ``vm`` by (``dx``, ``dy``) relative mouse units (the guest may accelerate).

        Large moves are split into steps that add up exactly. With ``verify=True`` it fails unless the guest
        received moves adding up to exactly (``dx``, ``dy``) (see `Verification`).

        | =Keyword=     | =VM=       | =dx= | =dy= |
        | Move Mouse By | atp-lab-03 | 10   | -5   |
        """
        steps = self.ctx.perform_input(
            vm,
            lambda sink, sleep: self.ctx.pointer(vm, sink, sleep).move_by(dx, dy),
            via=via,
            verify=verify,
            what=f"Move Mouse By {dx} {dy}",
        )
        logger.info(f"Moved the mouse of VM '{vm}' by ({dx}, {dy}) in {len(steps)} step(s).")

    @keyword("Click")
    def click(
        self,
        vm: str,
        x: int | None = None,
        y: int | None = None,
        button: MouseButton = MouseButton.LEFT,
        double: bool = False,
        via: InputTransport | None = None,
        verify: bool | None = None,
    ) -> None:
        """Clicks ``button`` on ``vm``, at pixel (``x``, ``y``) when given, else where the pointer is.

        ``button`` is ``left``, ``middle``, ``right``, ``side`` or ``extra``; ``double=True`` clicks twice.
        Only one of ``x`` and ``y``, an unknown button or a position outside the screen fails before anything
        is sent. With ``verify=True`` it fails unless the guest received exactly these presses and releases.

        | =Keyword= | =VM=       | =X= | =Y= | =Button=     | =Double=    |
        | Click     | atp-lab-03 | 100 | 200 |              |             |
        | Click     | atp-lab-03 | 100 | 200 | button=right |             |
        | Click     | atp-lab-03 |     |     |              | double=True |
        """
        self.ctx.input_options(via, verify)
        if (x is None) != (y is None):
            raise ConfigurationError("Click needs both x and y, or neither (click where the pointer is)")
        chosen = coerce_enum(MouseButton, button)

        def action(sink: EventSink, sleep: Sleep) -> None:
            pointer = self.ctx.pointer(vm, sink, sleep)
            if x is not None and y is not None:
                pointer.move_to(x, y)
            pointer.click(chosen, 2 if double else 1)

        self.ctx.perform_input(vm, action, via=via, verify=verify, what=f"Click {chosen.value}")
        button = chosen
        where = f"at ({x}, {y})" if x is not None else "at the pointer"
        logger.info(f"{'Double-clicked' if double else 'Clicked'} {button.value} on VM '{vm}' {where}.")

    @keyword("Scroll")
    def scroll(
        self,
        vm: str,
        clicks: int = 1,
        direction: ScrollDirection = ScrollDirection.DOWN,
        via: InputTransport | None = None,
        verify: bool | None = None,
    ) -> None:
        """Turns the mouse wheel of ``vm`` by ``clicks`` notches ``direction`` (``up``, ``down``, ``left``, ``right``).

        An unknown direction fails before anything is sent, naming the valid ones. With ``verify=True`` it
        fails unless the guest received exactly these wheel notches (see `Verification`).

        | =Keyword= | =VM=       | =Clicks= | =Direction= |
        | Scroll    | atp-lab-03 | 3        |             |
        | Scroll    | atp-lab-03 | 1        | UP          |
        """
        direction = coerce_enum(ScrollDirection, direction)
        self.ctx.perform_input(
            vm,
            lambda sink, sleep: self.ctx.pointer(vm, sink, sleep).scroll(direction, clicks),
            via=via,
            verify=verify,
            what=f"Scroll {direction.name.lower()} {clicks}",
        )
        logger.info(f"Scrolled {direction.name.lower()} {clicks} notch(es) on VM '{vm}'.")

    @keyword("Drag From To")
    def drag_from_to(
        self,
        vm: str,
        x1: int,
        y1: int,
        x2: int,
        y2: int,
        button: MouseButton = MouseButton.LEFT,
        steps: int = 10,
        step_delay: timedelta = timedelta(milliseconds=10),
        via: InputTransport | None = None,
        verify: bool | None = None,
    ) -> None:
        """Presses ``button`` at (``x1``, ``y1``), moves in ``steps`` to (``x2``, ``y2``) and releases there.

        Both points are checked before the button goes down (a point outside the screen fails then); the
        button is released even if a move fails. ``step_delay`` is the pause after each step. With
        ``verify=True`` it fails unless the guest received exactly the press, the moves and the release.

        | =Keyword=    | =VM=       | =x1= | =y1= | =x2= | =y2= |
        | Drag From To | atp-lab-03 | 10   | 10   | 300  | 200  |
        """
        chosen = coerce_enum(MouseButton, button)
        pause = to_seconds(step_delay)
        self.ctx.perform_input(
            vm,
            lambda sink, sleep: self.ctx.pointer(vm, sink, sleep).drag(
                (x1, y1), (x2, y2), chosen, max(1, steps), pause
            ),
            via=via,
            verify=verify,
            what="Drag From To",
        )
        button = chosen
        logger.info(f"Dragged {button.value} on VM '{vm}' from ({x1}, {y1}) to ({x2}, {y2}).")
