"""Decoding PowerShell's output bytes without ever failing.

``powershell.exe`` writes to a pipe in its console output code page (``[Console]::OutputEncoding``): the OEM
code page of the machine's locale (437 in the US, 936 (GBK) in China, 850 in western Europe...), or UTF-8 when
a script or the system sets it. qemu-ga hands the bytes over unchanged. So: UTF-8 first (a UTF-8 BOM is
dropped), then the code page the caller gives or the guest reports; bytes that do not decode in it are replaced
with U+FFFD and counted, and a note says what was done.
"""

from __future__ import annotations

import codecs
import re
import threading
from dataclasses import dataclass

from ATPLibrary.errors import ConfigurationError

#: ``encoding=`` values that mean "ask the guest when the output is not UTF-8".
AUTO = "auto"
_AUTO_WORDS = frozenset({"", AUTO, "detect", "none"})
#: Windows code page numbers whose Python codec is not simply ``cp<N>``.
_CODE_PAGE_CODECS = {
    65001: "utf-8",
    1200: "utf-16-le",
    1201: "utf-16-be",
    20127: "ascii",
    28591: "latin-1",
    936: "gbk",
    54936: "gb18030",
    950: "big5",
    932: "cp932",
    949: "cp949",
}
_REPLACE_HANDLER = "atp-powershell-count-replace"
_replaced = threading.local()


def _count_and_replace(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):  # pragma: no cover - registered for decoding only
        raise error
    _replaced.count = getattr(_replaced, "count", 0) + (error.end - error.start)
    return "\ufffd", error.end


codecs.register_error(_REPLACE_HANDLER, _count_and_replace)


def normalize_encoding(value: str | int | None) -> str | None:
    """A Python codec name for a code page given as ``936``, ``cp936``, ``CP437``, ``gbk``, ``utf-8``,
    ``chcp 936`` or chcp's own ``Active code page: 936``; None for ``auto`` (and empty / None).

    Raises ConfigurationError naming the value and examples when Python has no such codec.
    """
    if value is None:
        return None
    if isinstance(value, int):
        number: int | None = value
        text = str(value)
    else:
        text = str(value).strip()
        if text.lower() in _AUTO_WORDS:
            return None
        found = re.fullmatch(r"(?:active code page:\s*|chcp\s+|cp\s*|code\s*page\s*|windows-)?(\d+)\.?", text, re.I)
        number = int(found.group(1)) if found else None
    name = _CODE_PAGE_CODECS.get(number, f"cp{number}") if number is not None else text
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise ConfigurationError(
            f"unknown output encoding '{text}': give a Windows code page (437, 850, 936, 1252, 65001), a codec "
            "name (cp437, gbk, utf-8) or 'auto' to ask the guest"
        ) from None


@dataclass(frozen=True)
class DecodedOutput:
    """Text decoded from one output stream; ``encoding`` is the codec used, ``replaced`` the bytes that did not
    decode (shown as U+FFFD), ``note`` a sentence for people when anything but plain UTF-8 happened."""

    text: str
    encoding: str
    replaced: int = 0
    note: str | None = None


def _decode_replacing(data: bytes, encoding: str) -> tuple[str, int]:
    _replaced.count = 0
    text = data.decode(encoding, errors=_REPLACE_HANDLER)
    count = int(_replaced.count)
    _replaced.count = 0
    return text, count


def decode_output(
    data: bytes, code_page: str | None, *, stream: str = "stdout", source: str = "given"
) -> DecodedOutput:
    """Decode ``data`` (UTF-8 first, then ``code_page``, a codec name from :func:`normalize_encoding`).

    Never raises for any bytes. ``source`` says where the code page came from (``given``, ``detected``) for the
    note.
    """
    if not data:
        return DecodedOutput("", "utf-8")
    if data.startswith(codecs.BOM_UTF8):
        try:
            return DecodedOutput(
                data[3:].decode("utf-8"), "utf-8", 0, f"{stream}: UTF-8 with a byte order mark (dropped)"
            )
        except UnicodeDecodeError:
            pass
    try:
        return DecodedOutput(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as err:
        first_bad = err.start
    if code_page is None or code_page == "utf-8":
        text, replaced = _decode_replacing(data, "utf-8")
        return DecodedOutput(
            text,
            "utf-8",
            replaced,
            f"{stream}: not UTF-8 (first bad byte at offset {first_bad}) and no code page "
            f"{'was detected' if source == 'detected' else 'was given'}; {replaced} byte(s) replaced with U+FFFD. "
            "Give the guest's code page (encoding=936, cp437, 1252...) or encoding=auto.",
        )
    text, replaced = _decode_replacing(data, code_page)
    note = f"{stream}: not UTF-8; decoded as {code_page} ({source} code page)"
    if replaced:
        note += f"; {replaced} byte(s) not valid in {code_page} replaced with U+FFFD"
    return DecodedOutput(text, code_page, replaced, note)


#: How Windows PowerShell marks serialized (CLIXML) records on stderr when its output is redirected.
CLIXML_HEADER = "#< CLIXML"
_CLIXML_STRING = re.compile(r'<S S="([A-Za-z]+)">(.*?)</S>', re.S)
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_XML_ENTITIES = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'", "&amp;": "&"}


def clixml_to_text(text: str) -> str | None:
    """The readable text of CLIXML that powershell.exe wrote to stderr, or None when ``text`` is not CLIXML.

    Its ``<S S="Error">`` (and warning, verbose, debug, information) strings are kept in order, with the
    ``_x000D__x000A_`` character escapes and XML entities undone; other streams' lines get their stream's name
    in front (``WARNING: ...``). Progress records (``<Obj S="progress">``) are dropped. No XML parser is used,
    so a malformed or hostile document cannot fail or expand.
    """
    stripped = text.lstrip("\ufeff")
    if not stripped.startswith(CLIXML_HEADER):
        return None
    parts: list[str] = []
    for stream, value in _CLIXML_STRING.findall(stripped):
        value = re.sub("&(?:lt|gt|quot|apos|amp);", lambda m: _XML_ENTITIES[m.group(0)], value)
        value = _CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
        parts.append(value if stream.lower() == "error" else f"{stream.upper()}: {value}")
    return "".join(parts).replace("\r\n", "\n").replace("\n", "\r\n")
