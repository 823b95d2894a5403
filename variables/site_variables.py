"""Robot Framework variable file for a real site, described in YAML (see ``variables/example-site.yaml``).

    --variablefile variables/site_variables.py:variables/example-site.yaml     # or set $ATP_SITE_FILE

It defines the same names as ``variables/lab.py``, so every suite runs unchanged: ``${LAB_URI}`` (the URI of
``vm_host``), ``@{LAB_VMS}``, ``&{SITE_HOSTS}`` (alias -> libvirt URI), ``${SITE_NAME}``, ``${VDI_URL}``,
``${VDI_USERNAME}``, ``${VDI_PASSWORD}``, ``${VDI_HOST_URI}``, ``${VDI_DOMAIN_NAME}``, ``${VDI_TEMPLATE}``,
``${SPICE_CA_FILE}`` and, when its variable is set, ``${SPICE_PASSWORD}``.

Passwords come only from environment variables named by ``password_env`` entries, as Robot Framework
``Secret`` values (logs show ``<secret>``). A YAML key that would hold a password itself (``password``,
``passwd``, ``secret``, ``token``) is refused. When the variable a ``password_env`` names is not set, the password
variable is left undefined (suites that need it fail saying which variable to export; the others run), and
``${VDI_PASSWORD_ENV}`` / ``${SPICE_PASSWORD_ENV}`` name it.

(Not named ``site.py``: Robot imports a variable file as a module of its file name, and ``site`` is Python's own.)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from robot.api.types import Secret

ENV_SITE_FILE = "ATP_SITE_FILE"
DEFAULT_SITE_FILE = Path(__file__).with_name("example-site.yaml")
_SECRET_KEY = re.compile(r"(password|passwd|secret|token)$", re.IGNORECASE)


class SiteFileError(ValueError):
    """The site file is missing, malformed or holds a secret."""


def _refuse_literal_secrets(node: Any, path: str, where: Path) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if _SECRET_KEY.search(str(key)):
                raise SiteFileError(
                    f"{where}: '{here}' would hold a secret in the file. Put it in an environment variable and "
                    f"name that variable instead: '{key}_env: ATP_..._PASSWORD'."
                )
            _refuse_literal_secrets(value, here, where)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _refuse_literal_secrets(value, f"{path}[{index}]", where)


def _secret_from_env(section: dict[str, Any]) -> Secret | None:
    """The password of ``section`` from the environment variable its ``password_env`` names; None when unset."""
    name = section.get("password_env")
    value = os.environ.get(str(name)) if name else None
    return Secret(value) if value else None


def load_site(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The site's variables from ``path`` (else ``$ATP_SITE_FILE``, else the example site)."""
    where = Path(path or os.environ.get(ENV_SITE_FILE) or DEFAULT_SITE_FILE)
    try:
        data = yaml.safe_load(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SiteFileError(f"cannot read the site file {where}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SiteFileError(f"the site file {where} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SiteFileError(f"the site file {where} must be a mapping (site, hosts, vm_host, vms, vdi, spice)")
    _refuse_literal_secrets(data, "", where)
    hosts = data.get("hosts") or {}
    if not isinstance(hosts, dict) or not hosts:
        raise SiteFileError(f"{where}: 'hosts' must map aliases to libvirt URIs, e.g. kvm01: qemu+ssh://host/system")
    vm_host = str(data.get("vm_host") or next(iter(hosts)))
    if vm_host not in hosts:
        raise SiteFileError(f"{where}: vm_host '{vm_host}' is not one of the hosts: {', '.join(hosts)}")
    vdi = data.get("vdi") or {}
    spice = data.get("spice") or {}
    variables: dict[str, Any] = {
        "SITE_NAME": str(data.get("site", where.stem)),
        "SITE_FILE": str(where),
        "SITE_HOSTS": {str(alias): str(uri) for alias, uri in hosts.items()},
        "LAB_URI": str(hosts[vm_host]),
        "LAB_VMS": [str(vm) for vm in data.get("vms") or []],
        "SPICE_CA_FILE": str(spice.get("ca_file", "")),
    }
    if vdi:
        missing = [key for key in ("url", "username", "password_env") if not vdi.get(key)]
        if missing:
            raise SiteFileError(
                f"{where}: the vdi section needs {', '.join(missing)} (password_env: the name of "
                "the environment variable holding the password)"
            )
        variables.update(
            VDI_URL=str(vdi["url"]),
            VDI_USERNAME=str(vdi["username"]),
            VDI_PASSWORD_ENV=str(vdi.get("password_env", "")),
            VDI_HOST_URI=str(vdi.get("host_uri", hosts[vm_host])),
            VDI_DOMAIN_NAME=str(vdi.get("domain_name", "{name}")),
            VDI_TEMPLATE=str(vdi.get("template", "")),
        )
        vdi_password = _secret_from_env(vdi)
        if vdi_password is not None:
            variables["VDI_PASSWORD"] = vdi_password
    variables["SPICE_PASSWORD_ENV"] = str(spice.get("password_env", ""))
    spice_password = _secret_from_env(spice)
    if spice_password is not None:
        variables["SPICE_PASSWORD"] = spice_password
    return variables


def get_variables(path: str | None = None) -> dict[str, Any]:
    return load_site(path)
