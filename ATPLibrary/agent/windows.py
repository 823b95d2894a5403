"""Windows capture: low-level keyboard and mouse hooks (``WH_KEYBOARD_LL`` / ``WH_MOUSE_LL``) through ctypes.

**UNPROVEN ON WINDOWS.** This project's machines cannot run Windows: only the translation functions
(:func:`translate_keyboard`, :func:`translate_mouse`) are tested, with hand-built ``KBDLLHOOKSTRUCT`` /
``MSLLHOOKSTRUCT`` values from Microsoft's documented constants; the hook plumbing (:class:`WindowsCapture`) has
never run.

Two facts to know before relying on it:

- **Hooks see only the desktop of their own session.**  An agent started by qemu-ga (the guest agent, running as
  LocalSystem) lives in session 0 and sees *no* user input.  Start it in the logged-on user's session, e.g. a
  scheduled task triggered at logon (``schtasks /Create /SC ONLOGON /RL HIGHEST /TR "pythonw atp-agent.pyz ..."``)
  and let qemu-ga run that task.
- **Windows silently removes a low-level hook whose callback is slow** (``LowLevelHooksTimeout``, about 1 s in
  total on Windows 7 and later; the hook is gone without notice).  The callbacks here copy the struct's fields
  into a queue and return at once; translation and sending happen on another thread.

What is reported (the same ``raw_input_event`` shape as Linux, so the server matches one way):

- keys: named and numbered as the Linux kernel would (``code`` = evdev code, ``name`` = ``KEY_*``) through the one
  key map — by set-1 scan code and the extended flag first (the physical key, as QEMU sends it, independent of the
  Windows layout), by virtual-key code otherwise — plus ``vk``, ``scan_code``, ``extended`` and ``injected``.
  A key held down and reported again is value 2 (autorepeat), as on Linux.  Keys the key map does not know:
  code 0, name ``VK_0x..``;
- buttons: left/right/middle/X1/X2 as ``BTN_LEFT``/``BTN_RIGHT``/``BTN_MIDDLE``/``BTN_SIDE``/``BTN_EXTRA``;
- wheels: ``REL_WHEEL`` / ``REL_HWHEEL`` with the delta in notches (``mouseData`` high word / 120, ``WHEEL_DELTA``);
- moves: ``ABS_X`` and ``ABS_Y`` **in screen pixels** (``"units": "pixels"``; Linux tablets report 0..32767).
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from typing import Any, Protocol

from ATPLibrary.agent import names
from ATPLibrary.agent.capture import Emit
from ATPLibrary.errors import KeyMapError
from ATPLibrary.keys.keymap import DEFAULT_KEYMAP, KeyRecord
from ATPLibrary.verification import protocol

log = logging.getLogger("atp-agent.windows")

WH_KEYBOARD_LL = 13
WH_MOUSE_LL = 14
HC_ACTION = 0
WM_QUIT = 0x0012
WM_KEYDOWN = 0x0100
WM_KEYUP = 0x0101
WM_SYSKEYDOWN = 0x0104
WM_SYSKEYUP = 0x0105
WM_MOUSEMOVE = 0x0200
WM_LBUTTONDOWN = 0x0201
WM_LBUTTONUP = 0x0202
WM_RBUTTONDOWN = 0x0204
WM_RBUTTONUP = 0x0205
WM_MBUTTONDOWN = 0x0207
WM_MBUTTONUP = 0x0208
WM_MOUSEWHEEL = 0x020A
WM_XBUTTONDOWN = 0x020B
WM_XBUTTONUP = 0x020C
WM_MOUSEHWHEEL = 0x020E
LLKHF_EXTENDED = 0x01
LLKHF_INJECTED = 0x10
LLKHF_ALTDOWN = 0x20
LLKHF_UP = 0x80
LLMHF_INJECTED = 0x01
WHEEL_DELTA = 120
XBUTTON1 = 0x0001
XBUTTON2 = 0x0002
VK_PAUSE = 0x13
VK_NUMLOCK = 0x90

KEYBOARD_DEVICE = "windows:WH_KEYBOARD_LL"
MOUSE_DEVICE = "windows:WH_MOUSE_LL"


class KBDLLHOOKSTRUCT(ctypes.Structure):
    """winuser.h: DWORD vkCode, scanCode, flags, time; ULONG_PTR dwExtraInfo (24 bytes on 64-bit)."""

    _fields_ = [
        ("vkCode", ctypes.c_uint32),
        ("scanCode", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("time", ctypes.c_uint32),
        ("dwExtraInfo", ctypes.c_size_t),
    ]


class POINT(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_int32)]


class MSLLHOOKSTRUCT(ctypes.Structure):
    """winuser.h: POINT pt; DWORD mouseData, flags, time; ULONG_PTR dwExtraInfo (32 bytes on 64-bit)."""

    _fields_ = [
        ("pt", POINT),
        ("mouseData", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("time", ctypes.c_uint32),
        ("dwExtraInfo", ctypes.c_size_t),
    ]


class KeyboardFields(Protocol):
    vkCode: int
    scanCode: int
    flags: int
    time: int


class _Point(Protocol):
    x: int
    y: int


class MouseFields(Protocol):
    @property
    def pt(self) -> _Point: ...

    mouseData: int
    flags: int
    time: int


_KEY_DOWN = {WM_KEYDOWN: 1, WM_SYSKEYDOWN: 1, WM_KEYUP: 0, WM_SYSKEYUP: 0}
_BUTTONS = {
    WM_LBUTTONDOWN: (names.BTN_LEFT, 1),
    WM_LBUTTONUP: (names.BTN_LEFT, 0),
    WM_RBUTTONDOWN: (names.BTN_RIGHT, 1),
    WM_RBUTTONUP: (names.BTN_RIGHT, 0),
    WM_MBUTTONDOWN: (names.BTN_MIDDLE, 1),
    WM_MBUTTONUP: (names.BTN_MIDDLE, 0),
}


def key_record(vk: int, scan_code: int, extended: bool) -> KeyRecord | None:
    """The key map's record of a hooked key: by set-1 scan code (the physical key), else by VK.

    Pause and Num Lock are found by VK: Windows reports both with scan code 0x45 (Num Lock with the extended
    flag), which is not what the set-1 table holds for Pause.
    """
    if vk not in (VK_PAUSE, VK_NUMLOCK) and 0 < scan_code < 0x80:
        try:
            return DEFAULT_KEYMAP.by_set1(scan_code, extended)
        except KeyMapError:
            pass
    try:
        record = DEFAULT_KEYMAP.by_vk(vk)
    except KeyMapError:
        return None
    if record.name == "ENTER" and extended:
        return DEFAULT_KEYMAP.get("KP_ENTER")
    return record


def translate_keyboard(
    wparam: int, info: KeyboardFields, *, pressed: set[int] | None = None, seq: int = 0
) -> dict[str, Any] | None:
    """A ``raw_input_event`` from a ``WH_KEYBOARD_LL`` callback's wParam and ``KBDLLHOOKSTRUCT`` (None: not a key
    message).  ``pressed`` (the keys seen down, kept by the caller) turns a repeated key-down into value 2."""
    value = _KEY_DOWN.get(wparam)
    if value is None:
        return None
    if info.flags & LLKHF_UP:
        value = 0
    extended = bool(info.flags & LLKHF_EXTENDED)
    record = key_record(info.vkCode, info.scanCode, extended)
    if record is not None:
        code, name = record.evdev, record.evdev_name
    else:
        code, name = 0, f"VK_{info.vkCode:#04x}"
    if pressed is not None:
        ident = code or -info.vkCode
        if value == 1 and ident in pressed:
            value = 2
        elif value == 1:
            pressed.add(ident)
        else:
            pressed.discard(ident)
    event = protocol.raw_input_event(protocol.KIND_KEY, code, value, name, KEYBOARD_DEVICE, float(info.time), seq)
    event.update(
        vk=info.vkCode,
        scan_code=info.scanCode,
        extended=extended,
        injected=bool(info.flags & LLKHF_INJECTED),
    )
    return event


def _high_word_signed(value: int) -> int:
    word = (value >> 16) & 0xFFFF
    return word - 0x10000 if word & 0x8000 else word


def translate_mouse(wparam: int, info: MouseFields, *, seq: int = 0) -> list[dict[str, Any]]:
    """``raw_input_event`` messages from a ``WH_MOUSE_LL`` callback's wParam and ``MSLLHOOKSTRUCT``."""
    timestamp = float(info.time)
    injected = bool(info.flags & LLMHF_INJECTED)
    events: list[dict[str, Any]] = []

    def add(kind: str, code: int, value: int, name: str, **extra: Any) -> None:
        event = protocol.raw_input_event(kind, code, value, name, MOUSE_DEVICE, timestamp, seq)
        event.update(injected=injected, **extra)
        events.append(event)

    if wparam == WM_MOUSEMOVE:
        add(protocol.KIND_ABS, names.ABS_X, info.pt.x, "ABS_X", units="pixels")
        add(protocol.KIND_ABS, names.ABS_Y, info.pt.y, "ABS_Y", units="pixels")
    elif wparam in _BUTTONS:
        code, value = _BUTTONS[wparam]
        add(protocol.KIND_BUTTON, code, value, names.BUTTON_NAMES[code])
    elif wparam in (WM_XBUTTONDOWN, WM_XBUTTONUP):
        which = (info.mouseData >> 16) & 0xFFFF
        button = {XBUTTON1: names.BTN_SIDE, XBUTTON2: names.BTN_EXTRA}.get(which)
        if button is not None:
            add(protocol.KIND_BUTTON, button, int(wparam == WM_XBUTTONDOWN), names.BUTTON_NAMES[button])
    elif wparam in (WM_MOUSEWHEEL, WM_MOUSEHWHEEL):
        delta = _high_word_signed(info.mouseData)
        notches = int(delta / WHEEL_DELTA)
        if notches == 0 and delta:
            notches = 1 if delta > 0 else -1  # a smooth-scrolling device's partial notch
        code = names.REL_WHEEL if wparam == WM_MOUSEWHEEL else names.REL_HWHEEL
        add(protocol.KIND_REL, code, notches, names.rel_name(code), wheel_delta=delta)
    return events


class WindowsCapture:
    """The hooks on a thread with a message loop; callbacks only queue, a second thread translates and emits.

    UNPROVEN: never run on Windows (see the module docstring).
    """

    def __init__(self, *, kinds: frozenset[str] | None = None) -> None:
        self._kinds = kinds or frozenset(protocol.EVENT_TYPE_OF_KIND)
        self._queue: queue.SimpleQueue[tuple[str, int, tuple[int, ...]] | None] = queue.SimpleQueue()
        self._emit: Emit = lambda messages: None
        self._hook_thread: threading.Thread | None = None
        self._translate_thread: threading.Thread | None = None
        self._thread_id = 0
        self._started = threading.Event()
        self._error: str | None = None
        self._hooks: list[int] = []
        self._seq = 0
        self._procs: list[Any] = []

    @property
    def ready(self) -> bool:
        return self._error is None and bool(self._hooks)

    @property
    def error(self) -> str | None:
        return self._error

    def devices(self) -> list[dict[str, Any]]:
        found = []
        if protocol.KIND_KEY in self._kinds:
            found.append({"path": KEYBOARD_DEVICE, "name": "low-level keyboard hook", "classes": ["keyboard"]})
        if self._kinds - {protocol.KIND_KEY}:
            found.append({"path": MOUSE_DEVICE, "name": "low-level mouse hook", "classes": ["mouse"]})
        return found

    def start(self, emit: Emit) -> None:
        self._emit = emit
        self._translate_thread = threading.Thread(target=self._translate_loop, name="atp-agent-translate", daemon=True)
        self._translate_thread.start()
        self._hook_thread = threading.Thread(target=self._hook_loop, name="atp-agent-hooks", daemon=True)
        self._hook_thread.start()
        self._started.wait(10)
        if self._error:
            log.error("%s", self._error)

    def stop(self) -> None:
        if self._thread_id:
            user32: Any = getattr(ctypes, "windll").user32  # noqa: B009 (no windll attribute off Windows)
            user32.PostThreadMessageW(self._thread_id, WM_QUIT, 0, 0)
        self._queue.put(None)
        for thread in (self._hook_thread, self._translate_thread):
            if thread is not None:
                thread.join(timeout=5)

    def _hook_loop(self) -> None:
        try:
            from ctypes import wintypes

            windll: Any = getattr(ctypes, "windll")  # noqa: B009
            user32, kernel32 = windll.user32, windll.kernel32
            hookproc = getattr(ctypes, "WINFUNCTYPE")(  # noqa: B009
                ctypes.c_ssize_t, ctypes.c_int, wintypes.WPARAM, wintypes.LPARAM
            )
            user32.CallNextHookEx.restype = ctypes.c_ssize_t
            user32.CallNextHookEx.argtypes = [wintypes.HANDLE, ctypes.c_int, wintypes.WPARAM, wintypes.LPARAM]
            user32.SetWindowsHookExW.restype = wintypes.HANDLE
            user32.SetWindowsHookExW.argtypes = [ctypes.c_int, hookproc, wintypes.HINSTANCE, wintypes.DWORD]
            put = self._queue.put
            kbd_ptr = ctypes.POINTER(KBDLLHOOKSTRUCT)
            mouse_ptr = ctypes.POINTER(MSLLHOOKSTRUCT)

            def keyboard_proc(n_code: int, wparam: int, lparam: int) -> int:
                if n_code == HC_ACTION:  # copy the fields and return: a slow callback gets the hook removed
                    s = ctypes.cast(lparam, kbd_ptr).contents
                    put(("k", wparam, (s.vkCode, s.scanCode, s.flags, s.time)))
                return int(user32.CallNextHookEx(None, n_code, wparam, lparam))

            def mouse_proc(n_code: int, wparam: int, lparam: int) -> int:
                if n_code == HC_ACTION:
                    s = ctypes.cast(lparam, mouse_ptr).contents
                    put(("m", wparam, (s.pt.x, s.pt.y, s.mouseData, s.flags, s.time)))
                return int(user32.CallNextHookEx(None, n_code, wparam, lparam))

            self._procs = [hookproc(keyboard_proc), hookproc(mouse_proc)]  # keep references alive
            module = kernel32.GetModuleHandleW(None)
            wanted = []
            if protocol.KIND_KEY in self._kinds:
                wanted.append((WH_KEYBOARD_LL, self._procs[0]))
            if self._kinds - {protocol.KIND_KEY}:
                wanted.append((WH_MOUSE_LL, self._procs[1]))
            for hook_id, proc in wanted:
                handle = user32.SetWindowsHookExW(hook_id, proc, module, 0)
                if not handle:
                    raise OSError(f"SetWindowsHookExW({hook_id}) failed: error {kernel32.GetLastError()}")
                self._hooks.append(handle)
            self._thread_id = kernel32.GetCurrentThreadId()
        except Exception as exc:  # any failure to install hooks must be reported, not kill the agent
            self._error = f"cannot install the low-level hooks: {exc}"
            self._started.set()
            return
        self._started.set()
        msg = wintypes.MSG()
        while user32.GetMessageW(ctypes.byref(msg), None, 0, 0) > 0:
            user32.TranslateMessage(ctypes.byref(msg))
            user32.DispatchMessageW(ctypes.byref(msg))
        for handle in self._hooks:
            user32.UnhookWindowsHookEx(handle)
        self._hooks.clear()

    def _translate_loop(self) -> None:
        pressed: set[int] = set()
        kinds = self._kinds
        while True:
            item = self._queue.get()
            batch = []
            while item is not None:
                source, wparam, fields = item
                if source == "k":
                    vk, scan, flags, time_ms = fields
                    kbd = KBDLLHOOKSTRUCT(vkCode=vk, scanCode=scan, flags=flags, time=time_ms)
                    event = translate_keyboard(wparam, kbd, pressed=pressed)
                    batch.extend([event] if event is not None else [])
                else:
                    x, y, data, flags, time_ms = fields
                    mouse = MSLLHOOKSTRUCT(pt=POINT(x, y), mouseData=data, flags=flags, time=time_ms)
                    batch.extend(e for e in translate_mouse(wparam, mouse) if e["kind"] in kinds)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            for event in batch:
                self._seq += 1
                event["seq"] = self._seq
            if batch:
                self._emit(batch)
            if item is None:
                return


__all__ = [
    "KBDLLHOOKSTRUCT",
    "MSLLHOOKSTRUCT",
    "POINT",
    "WindowsCapture",
    "key_record",
    "translate_keyboard",
    "translate_mouse",
]
