"""Verification agent packaging: the zip runs on a bare python3 (``-I -S``: no site-packages, no Robot) and the
agent imports only the standard library and the few stdlib-only ATPLibrary modules."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ATPLibrary._version import __version__
from ATPLibrary.agent.package import ZIP_NAME, build_zip

pytestmark = pytest.mark.timeout(60)

AGENT_DIR = Path(__file__).resolve().parents[2] / "ATPLibrary" / "agent"
ALLOWED_ATP = (
    "ATPLibrary.agent",
    "ATPLibrary.verification.protocol",
    "ATPLibrary.keys",
    "ATPLibrary.errors",
    "ATPLibrary._version",
    "ATPLibrary.verification",
)


def bare_python() -> str:
    """A python3 outside the venv when there is one (the guest has no venv either)."""
    for candidate in ("/usr/bin/python3", shutil.which("python3") or "", sys.executable):
        if candidate and Path(candidate).exists():
            return candidate
    return sys.executable


def test_zip_contents_are_small_and_complete(tmp_path: Path) -> None:
    path = build_zip(tmp_path)
    assert path == tmp_path / ZIP_NAME
    assert path.stat().st_size < 200_000
    names = set(zipfile.ZipFile(path).namelist())
    assert {
        "__main__.py",
        "ATPLibrary/__init__.py",
        "ATPLibrary/_version.py",
        "ATPLibrary/errors.py",
        "ATPLibrary/verification/__init__.py",
        "ATPLibrary/verification/protocol.py",
        "ATPLibrary/keys/keymap.py",
        "ATPLibrary/agent/linux.py",
        "ATPLibrary/agent/windows.py",
    } <= names
    assert not any(n.startswith(("ATPLibrary/keywords", "ATPLibrary/qmp", "ATPLibrary/screen")) for n in names)
    assert "robot" not in zipfile.ZipFile(path).read("ATPLibrary/__init__.py").decode()
    assert build_zip(tmp_path / "again.pyz").read_bytes() == path.read_bytes()  # reproducible


def test_zip_runs_isolated_from_a_temp_dir_and_prints_the_version(tmp_path: Path) -> None:
    path = build_zip(tmp_path / "out")
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = subprocess.run(
        [bare_python(), "-I", "-S", str(path), "--version"], cwd=work, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == __version__
    check = subprocess.run(
        [
            bare_python(),
            "-I",
            "-S",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import ATPLibrary.agent.cli, ATPLibrary.agent.linux, "
            "ATPLibrary.agent.windows, ATPLibrary.agent.runner, ATPLibrary.agent.transports; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('robot', 'websockets', 'libvirt')))",
            str(path),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "[]"


def test_python_m_agent_works_on_the_host() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ATPLibrary.agent", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == __version__


def test_agent_modules_import_only_the_stdlib_and_the_allowed_modules() -> None:
    stdlib = sys.stdlib_module_names
    for source in AGENT_DIR.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top == "ATPLibrary":
                    assert module != "ATPLibrary" and module.startswith(ALLOWED_ATP), (source.name, module)
                else:
                    assert top in stdlib or top == "__future__", (source.name, module)
