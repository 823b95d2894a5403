"""Keyboard keywords (QMP ``input-send-event`` with qcodes)."""

from __future__ import annotations

from datetime import timedelta

from robot.api import logger
from robot.api.deco import keyword

from ATPLibrary.keywords.context import LibraryContext


class KeyboardKeywords:
    """Press key combinations and type text on a VM's keyboard."""

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

    @keyword("Press Keys")
    def press_keys(self, vm: str, *keys: str) -> None:
        """Presses each key combination in ``keys`` on ``vm``, in order.

        A combination is key names joined with ``+``: all keys go down in order, then up in reverse order.
        Names are case-insensitive: letters, digits, ``ENTER``/``RETURN``, ``ESC``, ``SPACE``, ``TAB``,
        ``BACKSPACE``, ``DELETE``/``DEL``, ``CTRL``, ``ALT``, ``SHIFT``, ``SUPER``/``WIN``, arrows ``UP`` ...,
        ``HOME``, ``END``, ``PGUP``, ``PGDN``, ``INSERT``, ``F1``-``F12``, ``MINUS`` (also ``-``), ``EQUAL``,
        ``GRAVE_ACCENT`` and QEMU qcode names. Every combination is checked before anything is sent; an
        unknown name fails with close matches.

        | =Keyword=  | =VM=       | =Keys=          | =Keys= |
        | Press Keys | atp-lab-03 | ctrl+alt+delete |        |
        | Press Keys | atp-lab-03 | shift+a         | ENTER  |
        """
        if not keys:
            logger.info("No keys given; nothing pressed.")
            return
        parsed = self.ctx.keyboard(vm).press_combos(keys)
        shown = ", ".join("+".join(k.name for k in combo) for combo in parsed)
        logger.info(f"Pressed on VM '{vm}': {shown}")

    @keyword("Type Text")
    def type_text(self, vm: str, text: str, delay: timedelta = timedelta(0)) -> None:
        """Types ``text`` on the keyboard of ``vm`` exactly, with the US layout.

        Every printable ASCII character, newline (``\\n`` = Enter) and tab can be typed; shifted characters
        get an explicit Shift. Each character is its own press and release, so repeated letters are kept.
        Without a ``delay`` up to 15 characters go into one QMP command (QEMU drops commands with more than 63
        events); with a ``delay`` each character is sent alone, followed by the delay. A character the layout
        cannot type fails before anything is sent.

        | =Keyword= | =VM=       | =Text=                   | =Delay=      |
        | Type Text | atp-lab-03 | echo hello > /tmp/x\\n   |              |
        | Type Text | atp-lab-03 | slow typing              | delay=50ms   |
        """
        self._type(vm, text, delay, secret=False)

    def _type(self, vm: str, text: str, delay: timedelta, *, secret: bool) -> None:
        seconds = delay.total_seconds()
        commands = self.ctx.keyboard(vm).type_text(text, delay=seconds, secret=secret)
        shown = f"{len(text)} secret characters" if secret else repr(text)
        logger.info(f"Typed on VM '{vm}': {shown} ({commands} QMP command(s)).")
