"""Keyword documentation: every keyword documented the same way, and the committed ``make docs`` output current.

Two kinds of checks:

- quality, on the library as libdoc loads it: each keyword has a one-sentence summary, an example table that
  uses it, typed (or defaulted) arguments, documented return values and failure behaviour, and links that
  resolve; the intro has its sections and table of contents;
- drift: docs/ATPLibrary.json, docs/ATPLibrary.libspec and docs/ATPLibrary.html are regenerated in a
  temporary folder with robot.libdoc and compared with the committed files, ignoring what differs per run or
  per checkout (see :func:`_normalise_source` and :data:`PER_RUN`).
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from robot.libdoc import LibraryDocumentation, libdoc
from robot.libdocpkg.model import KeywordDoc, LibraryDoc

from ATPLibrary._intro import SECTIONS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REGENERATE = "run `make docs` and commit docs/ATPLibrary.*"

#: Top-level spec fields that change on every run: the generation time.
PER_RUN = ("generated",)

#: Arguments that may stay untyped, by keyword. Empty: every argument has a type or a default.
UNTYPED_ALLOWED: dict[str, set[str]] = {}

#: Abbreviations whose full stop does not end a sentence.
ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.")


@cache
def library() -> LibraryDoc:
    """The library as libdoc sees it, docs still in Robot Framework's format."""
    return LibraryDocumentation("ATPLibrary")


@cache
def library_html() -> LibraryDoc:
    """The library with its docs converted to HTML, as the HTML and the specs show them."""
    lib = LibraryDocumentation("ATPLibrary")
    lib.convert_docs_to_html()
    return lib


def keyword_names() -> list[str]:
    return [kw.name for kw in library().keywords]


def _keyword(name: str) -> KeywordDoc:
    return next(kw for kw in library().keywords if kw.name == name)


def _keyword_html(name: str) -> KeywordDoc:
    return next(kw for kw in library_html().keywords if kw.name == name)


def _table_rows(doc: str) -> list[list[str]]:
    """The cells of every table row (``| a | b |``) in a Robot Framework format doc."""
    rows = []
    for line in doc.splitlines():
        text = line.strip()
        if text.startswith("| ") and text.endswith(" |"):
            rows.append([cell.strip() for cell in text[1:-1].split(" | ")])
    return rows


def _sentences(text: str) -> int:
    """How many sentences ``text`` has (a full stop, ``!`` or ``?`` followed by a space and more text)."""
    plain = text
    for abbreviation in ABBREVIATIONS:
        plain = plain.replace(abbreviation, abbreviation.replace(".", ""))
    return len(re.findall(r"[.!?](?:\s+|$)", plain.strip())) or 1


# --------------------------------------------------------------------------------------------- quality


def test_library_has_keywords() -> None:
    assert len(library().keywords) >= 80, keyword_names()


@pytest.mark.parametrize("name", keyword_names())
def test_keyword_summary_is_one_sentence(name: str) -> None:
    kw = _keyword(name)
    short = kw.short_doc.strip()
    assert short, f"Keyword '{name}' has no documentation: start its docstring with a one-sentence summary."
    assert short.endswith("."), f"Summary of '{name}' must be a sentence ending with a full stop: {short!r}"
    assert _sentences(short) == 1, (
        f"Summary of '{name}' must be one sentence (IDEs and the keyword list show only it), "
        f"put the rest in a paragraph after an empty line: {short!r}"
    )


@pytest.mark.parametrize("name", keyword_names())
def test_keyword_has_example_table_using_it(name: str) -> None:
    rows = _table_rows(_keyword(name).doc)
    assert rows, f"Keyword '{name}' has no example table (| =Keyword= | =Argument= | rows)."
    assert rows[0][0].startswith("="), f"The first table of '{name}' needs a =Header= row: {rows[0]}"
    assert any(name.lower() in (cell.lower() for cell in row) for row in rows), (
        f"No example row of '{name}' calls it: {rows}"
    )


@pytest.mark.parametrize("name", keyword_names())
def test_keyword_arguments_are_typed_or_defaulted(name: str) -> None:
    untyped = [
        arg.name
        for arg in _keyword(name).args
        if arg.kind not in (arg.POSITIONAL_ONLY_MARKER, arg.NAMED_ONLY_MARKER)
        and arg.type is None
        and (arg.required or arg.kind in (arg.VAR_POSITIONAL, arg.VAR_NAMED))
        and arg.name not in UNTYPED_ALLOWED.get(name, set())
    ]
    assert not untyped, f"Arguments of '{name}' without a type hint or a default: {untyped}"


@pytest.mark.parametrize("name", keyword_names())
def test_keyword_documents_return_value(name: str) -> None:
    kw = _keyword(name)
    returns = kw.args.return_type
    if returns is None or returns.type is type(None):
        return
    assert re.search(r"\breturn", kw.doc, re.IGNORECASE), (
        f"'{name}' returns {returns} but its documentation does not say what it returns."
    )


@pytest.mark.parametrize("name", keyword_names())
def test_keyword_documents_failure(name: str) -> None:
    kw = _keyword(name)
    assert re.search(r"\bfail", kw.doc, re.IGNORECASE), (
        f"The documentation of '{name}' does not say when it fails (or that it never does)."
    )
    if any(arg.name == "timeout" for arg in kw.args):
        assert "timeout" in kw.doc, f"'{name}' takes a timeout but its documentation does not explain it."


@pytest.mark.parametrize("name", keyword_names())
def test_keyword_links_resolve(name: str) -> None:
    """A backticked name that is neither a keyword nor a section renders as plain text, not a link."""
    broken = re.findall(r'<span class="name">(.*?)</span>', _keyword_html(name).doc)
    assert not broken, f"'{name}' links to unknown keywords or sections: {broken}"


def _example_calls(doc: str) -> list[tuple[KeywordDoc, list[str]]]:
    """Each example row that calls a library keyword: the keyword and the cells after it (``a    b`` split)."""
    keywords = {kw.name.lower(): kw for kw in library().keywords}
    calls = []
    for row in _table_rows(doc):
        for index, cell in enumerate(row):
            kw = keywords.get(cell.lower())
            if kw is not None:
                cells = [part for value in row[index + 1 :] for part in re.split(r"\s{2,}", value) if part]
                calls.append((kw, cells))
                break
    return calls


def _example_problems(doc: str, where: str) -> list[str]:
    """Example rows that would not run after an argument was renamed or removed: unknown named arguments,
    more positional arguments than the keyword takes, required ones missing."""
    problems = []
    for kw, cells in _example_calls(doc):
        names = {arg.name for arg in kw.args}
        named = [cell for cell in cells if re.match(r"^\w+=", cell) and cell.split("=", 1)[0] in names]
        unknown = [cell for cell in cells if re.match(r"^[a-z_][a-z0-9_]*=", cell) and cell not in named]
        if unknown and not any(arg.kind == arg.VAR_NAMED for arg in kw.args):
            problems.append(f"{where}: '{kw.name}' has no arguments {unknown}")
        positional = [cell for cell in cells if cell not in named and cell not in unknown]
        slots = [arg for arg in kw.args if arg.kind in (arg.POSITIONAL_ONLY, arg.POSITIONAL_OR_NAMED)]
        given = {cell.split("=", 1)[0] for cell in named}
        required = [arg.name for arg in slots if arg.required and arg.name not in given]
        if len(positional) > len(slots) and not any(arg.kind == arg.VAR_POSITIONAL for arg in kw.args):
            problems.append(f"{where}: '{kw.name}' takes {len(slots)} positional arguments, given {positional}")
        if len(positional) < len(required):
            problems.append(f"{where}: '{kw.name}' misses its required arguments {required[len(positional) :]}")
    return problems


@pytest.mark.parametrize("name", ["(intro)", *keyword_names()])
def test_examples_call_keywords_with_their_arguments(name: str) -> None:
    doc = library().doc if name == "(intro)" else _keyword(name).doc
    problems = _example_problems(doc, f"example in '{name}'")
    assert not problems, "\n".join(problems)


def test_example_checker_finds_wrong_calls() -> None:
    """The example check itself: a renamed argument, one argument too many and a missing one are found."""
    doc = "\n".join(
        [
            "| =Keyword= | =Arg= | =Arg= |",
            "| Type Text | vm-1 | hello | delay_ms=5 |",
            "| Start VM | vm-1 | vm-2 |",
            "| Get VM State |",
            "| Type Text | vm-1 | hello | delay=5ms |",
        ]
    )
    problems = _example_problems(doc, "x")
    assert len(problems) == 3, problems
    assert "delay_ms=5" in problems[0] and "vm-2" in problems[1] and "vm" in problems[2]


def test_intro_has_every_section_and_a_table_of_contents() -> None:
    doc = library().doc
    headings = re.findall(r"^= (.+?) =$", doc, re.MULTILINE)
    assert headings == list(SECTIONS)
    assert "%TOC%" in doc
    converted = library_html().doc
    for section in SECTIONS:
        anchor = html.escape(section.replace(" ", "%20").replace(",", "%2C"))
        assert f'<a href="#{anchor}">' in converted, f"section '{section}' is not in the table of contents"


def test_intro_links_resolve() -> None:
    broken = re.findall(r'<span class="name">(.*?)</span>', library_html().doc)
    assert not broken, f"the intro links to unknown keywords or sections: {broken}"


def test_intro_documents_every_import_argument() -> None:
    (init,) = library().inits
    names = [arg.name for arg in init.args]
    assert names, "the library takes import arguments"
    rows = _table_rows(library().doc)
    documented = {row[0] for row in rows}
    assert set(names) <= documented, f"import arguments missing from the intro's table: {set(names) - documented}"
    assert all(arg.type is not None for arg in init.args), [(arg.name, arg.type) for arg in init.args]


def test_sentence_counter() -> None:
    """The one-sentence rule itself: abbreviations and code do not count, a second sentence does."""
    assert _sentences("Waits until ``vm`` is in ``state`` (e.g. ``running``).") == 1
    assert _sentences("Starts ``vm``. A VM that is already running passes.") == 2


# --------------------------------------------------------------------------------------------- drift


def _normalise_source(value: Any) -> Any:
    """A source path as it is inside the package (``ATPLibrary/keywords/vdi.py``), whatever the checkout.

    libdoc writes absolute paths (``/work/main/ATPLibrary/...``, or a site-packages path); a clone elsewhere
    must still compare equal, so everything before the last ``/ATPLibrary/`` is dropped. A spec whose
    paths are already relative (``ATPLibrary/...``) is left as it is.
    """
    if not isinstance(value, str) or not value:
        return value
    posix = value.replace("\\", "/")
    index = posix.rfind("/ATPLibrary/")
    return posix[index + 1 :] if index >= 0 else posix


def _normalise_json(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: _normalise_source(value) if key == "source" else _normalise_json(value)
            for key, value in data.items()
            if key not in PER_RUN
        }
    if isinstance(data, list):
        return [_normalise_json(item) for item in data]
    return data


def _html_spec(path: Path) -> dict[str, Any]:
    """The library model libdoc embeds in its HTML (``libdoc = {...};``)."""
    match = re.search(r"^libdoc = (\{.*\});?$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path} has no embedded libdoc model: {REGENERATE}"
    return dict(json.loads(match.group(1)))


def _xml_tree(path: Path) -> str:
    root = ET.parse(path).getroot()
    for element in root.iter():
        for attribute in PER_RUN:
            element.attrib.pop(attribute, None)
        if "source" in element.attrib:
            element.set("source", str(_normalise_source(element.get("source"))))
    return ET.tostring(root, encoding="unicode")


def _differences(committed: dict[str, Any], current: dict[str, Any]) -> str:
    """What changed, in words: keywords added or removed, keywords whose documentation or lines changed."""
    old = {kw["name"]: kw for kw in committed.get("keywords", [])}
    new = {kw["name"]: kw for kw in current.get("keywords", [])}
    lines = []
    if added := sorted(set(new) - set(old)):
        lines.append(f"keywords missing from the committed docs: {added}")
    if removed := sorted(set(old) - set(new)):
        lines.append(f"keywords in the committed docs that the library no longer has: {removed}")
    for name in sorted(set(old) & set(new)):
        changed = sorted(key for key in set(old[name]) | set(new[name]) if old[name].get(key) != new[name].get(key))
        if changed:
            lines.append(f"'{name}' differs in: {', '.join(changed)}")
    for key in sorted(set(committed) | set(current)):
        if key != "keywords" and committed.get(key) != current.get(key):
            lines.append(f"library field '{key}' differs")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three files as ``make docs`` writes them, written now into a temporary folder."""
    out = tmp_path_factory.mktemp("libdoc")
    libdoc("ATPLibrary", str(out / "ATPLibrary.html"), name="ATPLibrary", quiet=True)
    libdoc("ATPLibrary", str(out / "ATPLibrary.json"), format="JSON", specdocformat="HTML", quiet=True)
    libdoc("ATPLibrary", str(out / "ATPLibrary.libspec"), format="LIBSPEC", specdocformat="HTML", quiet=True)
    return out


@pytest.mark.parametrize("suffix", ["json", "libspec", "html"])
def test_committed_docs_exist(suffix: str) -> None:
    assert (DOCS / f"ATPLibrary.{suffix}").is_file(), f"docs/ATPLibrary.{suffix} is missing: {REGENERATE}"


def test_committed_json_spec_is_current(regenerated: Path) -> None:
    committed = _normalise_json(json.loads((DOCS / "ATPLibrary.json").read_text(encoding="utf-8")))
    current = _normalise_json(json.loads((regenerated / "ATPLibrary.json").read_text(encoding="utf-8")))
    assert committed == current, (
        f"docs/ATPLibrary.json is not what the library documents now; {REGENERATE}.\n"
        + _differences(committed, current)
    )


def test_committed_libspec_is_current(regenerated: Path) -> None:
    committed = _xml_tree(DOCS / "ATPLibrary.libspec")
    current = _xml_tree(regenerated / "ATPLibrary.libspec")
    if committed != current:
        old = {kw.get("name", ""): ET.tostring(kw) for kw in ET.fromstring(committed).iter("kw")}
        new = {kw.get("name", ""): ET.tostring(kw) for kw in ET.fromstring(current).iter("kw")}
        changed = sorted(name for name in set(old) & set(new) if old[name] != new[name])
        pytest.fail(
            f"docs/ATPLibrary.libspec is not what the library documents now; {REGENERATE}. "
            f"Keywords missing: {sorted(set(new) - set(old))}; extra: {sorted(set(old) - set(new))}; "
            f"changed: {changed or 'none (the library part differs)'}."
        )


def test_committed_html_is_current(regenerated: Path) -> None:
    committed = _normalise_json(_html_spec(DOCS / "ATPLibrary.html"))
    current = _normalise_json(_html_spec(regenerated / "ATPLibrary.html"))
    assert committed == current, (
        f"docs/ATPLibrary.html is not what the library documents now; {REGENERATE}.\n"
        + _differences(committed, current)
    )


def test_committed_docs_list_the_same_keywords() -> None:
    """The three committed files are from one run: the same keywords, which are the library's."""
    spec = [kw["name"] for kw in json.loads((DOCS / "ATPLibrary.json").read_text(encoding="utf-8"))["keywords"]]
    libspec = [kw.get("name") for kw in ET.parse(DOCS / "ATPLibrary.libspec").getroot().iter("kw")]
    in_html = [kw["name"] for kw in _html_spec(DOCS / "ATPLibrary.html")["keywords"]]
    assert spec == libspec == in_html, REGENERATE
    assert spec == keyword_names(), f"the committed keywords are not the library's; {REGENERATE}"


def test_committed_source_paths_point_into_the_package() -> None:
    """Source paths are compared inside the package; this proves the normalisation handles the committed ones."""
    spec = json.loads((DOCS / "ATPLibrary.json").read_text(encoding="utf-8"))
    sources = {_normalise_source(spec["source"])} | {_normalise_source(kw["source"]) for kw in spec["keywords"]}
    assert sources and all(str(source).startswith("ATPLibrary/") for source in sources), sources
