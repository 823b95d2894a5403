"""Keyboard keywords.  Every one takes ``via=`` and ``verify=``; library-wide defaults come from the import."""

from __future__ import annotations

from datetime import timedelta

from robot.api import logger
from robot.api.deco import keyword
from robot.api.types import Secret

from ATPLibrary.input.transport import InputTransport
from ATPLibrary.keys.keymap import KeyRecord
from ATPLibrary.keys.layout import KeyAction, get_layout
from ATPLibrary.keywords.context import LibraryContext, to_seconds
from ATPLibrary.qmp.keyboard import CHARS_PER_COMMAND, key_event

#: Characters per QMP command when typing is verified (16 events: the agent drains them between commands).
VERIFIED_CHARS_PER_COMMAND = 4


class KeyboardKeywords:
    """Press key combinations, type text and hold keys on a VM's keyboard."""

    def __init__(self, ctx: LibraryContext) -> None:
        self.ctx = ctx

    @keyword("Press Keys")
    def press_keys(self, vm: str, *keys: str, via: InputTransport | None = None, verify: bool | None = None) -> None:
        """Presses each key combination in ``keys`` on ``vm``, in order.

        A combination is key names joined with ``+``: all keys go down in order, then up in reverse order.
        Names are case-insensitive; see `Key names` for the full list (``ENTER``, ``ret`` and ``Return``
        are one key). Every combination is checked before anything is sent; an unknown name fails with
        close matches.

        ``via`` and ``verify`` choose the transport and closed-loop verification (default: the library's,
        see `Input`). With ``verify=True`` it fails unless the guest received exactly these keys (see
        `Verification`); with ``via=spice`` it fails before sending anything when the VM has no open SPICE
        session.

        | =Keyword=  | =VM=       | =Keys=          | =Keys= |
        | Press Keys | atp-lab-03 | ctrl+alt+delete |        |
        | Press Keys | atp-lab-03 | shift+a         | ENTER  |
        """
        self.ctx.input_options(via, verify)
        if not keys:
            logger.info("No keys given; nothing pressed.")
            return
        parsed = [self.ctx.keymap.parse_combo(k) for k in keys]  # every name checked before anything is sent
        shown = ", ".join("+".join(k.name for k in combo) for combo in parsed)
        self.ctx.perform_input(
            vm,
            lambda sink, sleep: self.ctx.keyboard(vm, sink, sleep).press_combos(keys),
            via=via,
            verify=verify,
            what=f"Press Keys {shown}",
        )
        logger.info(f"Pressed on VM '{vm}': {shown}")

    @keyword("Type Text")
    def type_text(
        self,
        vm: str,
        text: str,
        delay: timedelta = timedelta(0),
        hold: timedelta = timedelta(0),
        via: InputTransport | None = None,
        verify: bool | None = None,
    ) -> None:
        """Types ``text`` on the keyboard of ``vm`` exactly, with the library's keyboard layout (US by default).

        With the US layout every printable ASCII character, newline (``\\n`` = Enter) and tab can be typed.
        Each character is its own press and release, in order: modifier down, key down, key up, modifier up
        (so repeated letters are kept and Shift is never released early). Without a ``delay`` up to 12
        characters (48 events) go into one QMP command: QEMU silently drops a command of 64 or more events,
        and a guest loses bursts of about 60 for its input readers; with a ``delay`` each
        character is sent alone, followed by the delay. ``hold`` keeps each key down that long (below 200 ms,
        so that it never auto-repeats). A character the layout cannot type fails before anything is sent.

        Keys typed while a program is still starting are handled with the terminal settings in force when
        they arrive: wait until the program runs before typing into it.

        With ``verify=True`` the keyword fails unless the guest received exactly ``text``, naming the first
        differing position (see `Verification`); ``via`` is as in `Press Keys`. Returns nothing.

        | =Keyword= | =VM=       | =Text=                   | =Delay=      |
        | Type Text | atp-lab-03 | echo hello > /tmp/x\\n   |              |
        | Type Text | atp-lab-03 | slow typing              | delay=50ms   |
        | Type Text | atp-lab-03 | held keys                | hold=30ms    |
        """
        self._type(vm, text, delay, secret=False, hold=hold, via=via, verify=verify)

    @keyword("Type Secret")
    def type_secret(
        self,
        vm: str,
        secret: Secret | str,
        delay: timedelta = timedelta(0),
        hold: timedelta = timedelta(0),
        via: InputTransport | None = None,
        verify: bool | None = None,
    ) -> None:
        """Types ``secret`` like `Type Text`, but never writes it to the log.

        Pass a Robot Framework ``Secret`` (for example ``%{VDI_PASSWORD}`` converted with ``${pw: Secret}``,
        or a variable created with ``VAR ${pw: Secret} ...``): Robot then hides it from every log level. A
        plain string works too, but Robot itself may show keyword arguments at ``TRACE`` level. It fails
        like `Type Text`, but the messages name the position of a character that cannot be typed or was not
        received, never the character.

        | =Keyword=   | =VM=       | =Secret=       |
        | Type Secret | atp-lab-03 | ${PASSWORD}    |
        """
        value = secret.value if isinstance(secret, Secret) else str(secret)
        self._type(vm, value, delay, secret=True, hold=hold, via=via, verify=verify)

    @keyword("Hold Key")
    def hold_key(self, vm: str, key: str, via: InputTransport | None = None, verify: bool | None = None) -> None:
        """Presses ``key`` down on ``vm`` and keeps it down until `Release Key` (or the end of the test).

        Keys still held when a test ends are released then, so one test never leaves Shift down for the
        next. The guest may auto-repeat a held key after its repeat delay. An unknown key name fails before
        anything is sent, with close matches; ``via`` and ``verify`` are as in `Press Keys`.

        | =Keyword=   | =VM=       | =Key= |
        | Hold Key    | atp-lab-03 | shift |
        | Type Text   | atp-lab-03 | abc   |
        | Release Key | atp-lab-03 | shift |
        """
        record = self._key_action(vm, key, True, via, verify)
        held = self.ctx.held_keys.setdefault(vm, [])
        if record not in held:
            held.append(record)
        logger.info(f"Holding {record.name} down on VM '{vm}'.")

    @keyword("Release Key")
    def release_key(self, vm: str, key: str, via: InputTransport | None = None, verify: bool | None = None) -> None:
        """Releases ``key`` on ``vm`` that `Hold Key` pressed down.

        Releasing a key that is not held just sends its key-up. An unknown key name fails before anything
        is sent, with close matches; ``via`` and ``verify`` are as in `Press Keys`.

        | =Keyword=   | =VM=       | =Key= |
        | Release Key | atp-lab-03 | shift |
        """
        record = self._key_action(vm, key, False, via, verify)
        held = self.ctx.held_keys.get(vm, [])
        if record in held:
            held.remove(record)
        logger.info(f"Released {record.name} on VM '{vm}'.")

    @keyword("Set Keyboard Layout")
    def set_keyboard_layout(self, layout: str) -> str:
        """Sets the guests' keyboard layout used by `Type Text` and `Type Secret`; returns the previous one.

        The layout must match the one configured in the guest, or characters come out wrong. Known layouts:
        ``us`` (default) and ``de`` (German; it cannot type the dead keys ``^`` and the backtick). An unknown
        layout fails listing the known ones and keeps the current layout.

        | =Assignment= | =Keyword=           | =Layout= |
        | ${old} =     | Set Keyboard Layout | de       |
        """
        previous = self.ctx.layout.name
        self.ctx.layout = get_layout(layout)
        logger.info(f"Keyboard layout is now '{self.ctx.layout.name}' (was '{previous}').")
        return previous

    def _key_action(self, vm: str, key: str, down: bool, via: InputTransport | None, verify: bool | None) -> KeyRecord:
        """One key going down or up on ``vm`` (through the library's input path, so ``verify`` applies)."""
        record = self.ctx.keymap.get(key)
        self.ctx.perform_input(
            vm,
            lambda sink, _sleep: sink.send_input_events([key_event(KeyAction(record, down))]),
            via=via,
            verify=verify,
            what=f"{'Hold' if down else 'Release'} Key {record.name}",
        )
        return record

    def release_held_keys(self) -> None:
        """Release every key still held (called at the end of each test); never raises."""
        for vm, keys in list(self.ctx.held_keys.items()):
            for record in reversed(keys):
                try:
                    self.ctx.keyboard(vm).monitor.send_input_events([key_event(KeyAction(record, False))])
                    logger.info(f"Released {record.name} on VM '{vm}' (still held at the end of the test).")
                except Exception as exc:
                    logger.warn(f"Could not release {record.name} on VM '{vm}' at the end of the test: {exc}")
        self.ctx.held_keys.clear()

    def _type(
        self,
        vm: str,
        text: str,
        delay: timedelta | float | str,
        *,
        secret: bool,
        hold: timedelta | float | str = 0.0,
        via: InputTransport | str | None = None,
        verify: bool | None = None,
    ) -> None:
        _via, verified = self.ctx.input_options(via, verify)
        # Verified typing sends fewer characters per command, so the agent in the guest keeps up with the
        # kernel's per-reader event buffer (a Python reader under software emulation falls behind 60-event bursts).
        per_command = VERIFIED_CHARS_PER_COMMAND if verified else CHARS_PER_COMMAND
        seconds, held = to_seconds(delay), to_seconds(hold)
        commands = self.ctx.perform_input(
            vm,
            lambda sink, sleep: self.ctx.keyboard(vm, sink, sleep).type_text(
                text, delay=seconds, hold=held, secret=secret, chars_per_command=per_command
            ),
            via=via,
            verify=verified,
            text=text,
            secret=secret,
            what="Type Secret" if secret else "Type Text",
        )
        shown = f"{len(text)} secret characters" if secret else repr(text)
        logger.info(f"Typed on VM '{vm}': {shown} ({commands} QMP command(s)).")
