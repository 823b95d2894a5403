"""Build ``atp-agent.pyz``: the verification agent as one file for a guest's own ``python3``.

The zip holds only standard-library code: :mod:`ATPLibrary.agent`, :mod:`ATPLibrary.verification.protocol`,
:mod:`ATPLibrary.keys`, :mod:`ATPLibrary.errors` and :mod:`ATPLibrary._version`, with *empty* stand-ins for
``ATPLibrary/__init__.py`` and ``ATPLibrary/verification/__init__.py`` (the real ones import Robot Framework and
the server), and a ``__main__.py``: ``python3 atp-agent.pyz --help``.  Sources only (no bytecode: any python3 >= 3.11
runs it); entries carry a fixed date, so the same sources give the same bytes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

ZIP_NAME = "atp-agent.pyz"
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # .../ATPLibrary
_FIXED_DATE = (2024, 1, 1, 0, 0, 0)
_STUBS = {
    "ATPLibrary/__init__.py": '"""Stand-in for the agent zip: the real package imports Robot Framework."""\n',
    "ATPLibrary/verification/__init__.py": '"""Stand-in for the agent zip: only the protocol is packed."""\n',
}
_MAIN = "from ATPLibrary.agent.cli import main\n\nraise SystemExit(main())\n"


def agent_sources() -> dict[str, Path]:
    """Archive name → source file of every module the agent needs."""
    files: dict[str, Path] = {}
    for source in sorted((_PACKAGE_ROOT / "agent").glob("*.py")):
        files[f"ATPLibrary/agent/{source.name}"] = source
    for source in sorted((_PACKAGE_ROOT / "keys").glob("*.py")):
        files[f"ATPLibrary/keys/{source.name}"] = source
    for name in ("errors.py", "_version.py", "verification/protocol.py"):
        files[f"ATPLibrary/{name}"] = _PACKAGE_ROOT / name
    return files


def build_zip(dest: Path) -> Path:
    """Write the agent zip to ``dest`` (a directory: ``dest/atp-agent.pyz``; or a file name) and return its path."""
    dest = Path(dest)
    target = dest / ZIP_NAME if dest.is_dir() or not dest.suffix else dest
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(b"#!/usr/bin/env python3\n")
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:

            def add(name: str, text: str) -> None:
                info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, text)

            add("__main__.py", _MAIN)
            for name, text in _STUBS.items():
                add(name, text)
            for name, source in agent_sources().items():
                add(name, source.read_text(encoding="utf-8"))
    tmp.chmod(0o755)
    tmp.replace(target)
    return target


if __name__ == "__main__":
    import sys

    print(build_zip(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
