"""Writing Robot Framework data by hand: cells that Robot reads back exactly as the value that was meant."""

from __future__ import annotations

import re
import textwrap

SEP = "    "
_VARIABLE = re.compile(r"([$@&%])\{")
_NAMED = re.compile(r"^([A-Za-z_][A-Za-z0-9_ ]*)=")


def cell(value: object, *, positional: bool = True) -> str:
    """``value`` as one Robot data cell: escapes, variables, spaces, newlines and (``positional``) ``name=``."""
    text = str(value)
    if text == "":
        return "${EMPTY}"
    text = text.replace("\\", "\\\\")
    text = _VARIABLE.sub(lambda m: "\\" + m.group(1) + "{", text)
    text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    text = re.sub(r" {2,}", lambda m: " " + "${SPACE}" * (len(m.group(0)) - 1), text)
    if text.startswith(" "):
        text = "${SPACE}" + text[1:]
    if text.endswith(" "):
        text = text[:-1] + "${SPACE}"
    if text.startswith("#"):
        text = "\\" + text
    if positional and _NAMED.match(text):
        text = _NAMED.sub(lambda m: m.group(1) + "\\=", text, count=1)
    return text


def line(*cells: str, indent: int = 1, width: int = 120) -> str:
    """Cells of one keyword call; a call longer than ``width`` goes on ``...`` continuation lines."""
    head = SEP * indent
    rows = [head + cells[0]] if cells else [head]
    for value in cells[1:]:
        if len(rows[-1]) + len(SEP) + len(value) > width and len(rows[-1].strip()) > 3:
            rows.append(head + "..." + SEP + value)
        else:
            rows[-1] += SEP + value
    return "\n".join(rows)


def comment(text: str, indent: int = 1) -> str:
    """A ``#`` comment line (newlines folded into spaces)."""
    return SEP * indent + "# " + " ".join(str(text).split())


def seconds(value: float) -> str:
    """``10`` -> ``10s``, ``0.5`` -> ``0.5s``: a Robot time string."""
    return f"{int(value)}s" if float(value).is_integer() else f"{value:g}s"


def documentation(setting: str, text: str, width: int = 118) -> list[str]:
    """A ``Documentation`` setting (``setting`` is the aligned head, e.g. ``Documentation    ``), wrapped.

    Paragraphs are separated by empty lines; each line is escaped as documentation (``${`` and ``\\``).
    """
    out: list[str] = []
    indent = setting[: len(setting) - len(setting.lstrip())]
    head, cont = setting, indent + "..." + " " * (len(setting) - len(indent) - 3)
    for number, paragraph in enumerate(text.split("\n\n")):
        if number:
            out.append("...")
        words = " ".join(paragraph.split())
        wrapped = textwrap.wrap(words, width - len(setting), break_long_words=False, break_on_hyphens=False) or [""]
        for part in wrapped:
            escaped = _VARIABLE.sub(lambda m: "\\" + m.group(1) + "{", part.replace("\\", "\\\\"))
            out.append(((head if not out else cont) + escaped).rstrip())
    return out
