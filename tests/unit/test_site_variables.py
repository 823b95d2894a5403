"""variables/site_variables.py + variables/example-site.yaml: a real site's variables; passwords only from the
environment, as Secrets that never reach the YAML, output.xml or log.html (even at TRACE)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from robot.api.types import Secret

ROOT = Path(__file__).resolve().parents[2]
VARIABLE_FILE = ROOT / "variables" / "site_variables.py"
EXAMPLE = ROOT / "variables" / "example-site.yaml"
PASSWORD = "Vdi-Pa55_w0rd!-never-logged"
SPICE_PASSWORD = "Sp1ce-Pa55-never-logged"


def site_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("site_variables", VARIABLE_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_is_a_real_site_without_any_password() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    uris = list(data["hosts"].values())
    assert len(uris) >= 3
    assert any(uri.startswith("qemu+ssh://") for uri in uris)
    assert data["vdi"]["url"].startswith("https://")
    assert data["vdi"]["username"]
    assert data["vdi"]["password_env"] == "ATP_VDI_PASSWORD"

    def keys(node: object) -> list[str]:
        if isinstance(node, dict):
            return [str(k) for k in node] + [k for v in node.values() for k in keys(v)]
        if isinstance(node, list):
            return [k for v in node for k in keys(v)]
        return []

    assert not [k for k in keys(data) if k.lower().endswith(("password", "passwd", "secret", "token"))]


def test_loading_gives_the_lab_names_and_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATP_VDI_PASSWORD", PASSWORD)
    monkeypatch.setenv("ATP_SPICE_PASSWORD", SPICE_PASSWORD)
    variables = site_module().get_variables(str(EXAMPLE))
    assert variables["LAB_URI"].startswith("qemu+ssh://atp@kvm01.")
    assert variables["LAB_VMS"] == ["qa-linux-01", "qa-linux-02", "qa-linux-03"]
    assert variables["VDI_URL"] == "https://vdi.example.com:8443"
    assert isinstance(variables["VDI_PASSWORD"], Secret) and variables["VDI_PASSWORD"].value == PASSWORD
    assert isinstance(variables["SPICE_PASSWORD"], Secret) and variables["SPICE_PASSWORD"].value == SPICE_PASSWORD
    printed = repr(variables) + str(variables)
    assert PASSWORD not in printed and SPICE_PASSWORD not in printed
    assert PASSWORD not in EXAMPLE.read_text() and SPICE_PASSWORD not in EXAMPLE.read_text()


def test_an_unset_password_variable_leaves_the_password_undefined_and_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ATP_VDI_PASSWORD", raising=False)
    monkeypatch.delenv("ATP_SPICE_PASSWORD", raising=False)
    variables = site_module().get_variables(str(EXAMPLE))
    assert "VDI_PASSWORD" not in variables and "SPICE_PASSWORD" not in variables
    assert variables["VDI_PASSWORD_ENV"] == "ATP_VDI_PASSWORD"


@pytest.mark.parametrize(
    "text,message",
    [
        ("hosts: {a: 'qemu:///system'}\nvdi: {url: u, username: x, password: hunter2}\n", "vdi.password"),
        ("hosts: {a: 'qemu:///system'}\nspice: {token: abc}\n", "spice.token"),
        ("hosts: {a: 'qemu:///system'}\nvdi: {url: u, username: x}\n", "password_env"),
        ("hosts: {}\n", "'hosts' must map aliases"),
        ("hosts: {a: 'qemu:///system'}\nvm_host: b\n", "vm_host 'b' is not one of the hosts: a"),
        ("- not a mapping\n", "must be a mapping"),
    ],
)
def test_bad_site_files_fail_naming_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    module = site_module()
    with pytest.raises(module.SiteFileError, match=message) as error:
        module.get_variables(str(path))
    assert "hunter2" not in str(error.value) and "abc" not in str(error.value)


SUITE = """\
*** Test Cases ***
Site Variables Are Used And Logged
    Log Variables    level=TRACE
    Log    ${VDI_PASSWORD}
    Log Many    ${VDI_PASSWORD}    ${SPICE_PASSWORD}
    Should Be Equal    ${LAB_VMS}[0]    qa-linux-01
    Should Be True    $VDI_PASSWORD.value == os.environ['ATP_VDI_PASSWORD']
"""


def test_a_robot_run_never_writes_the_passwords(tmp_path: Path) -> None:
    suite = tmp_path / "site.robot"
    suite.write_text(SUITE)
    env = {"ATP_VDI_PASSWORD": PASSWORD, "ATP_SPICE_PASSWORD": SPICE_PASSWORD}
    proc = subprocess.run(
        [sys.executable, "-m", "robot", "--loglevel", "TRACE", "--variablefile", f"{VARIABLE_FILE}:{EXAMPLE}",
         "--outputdir", str(tmp_path / "out"), str(suite)],
        env={**__import__("os").environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    for name in ("output.xml", "log.html", "report.html"):
        text = (tmp_path / "out" / name).read_text()
        assert PASSWORD not in text and SPICE_PASSWORD not in text, name
    assert PASSWORD not in proc.stdout + proc.stderr
