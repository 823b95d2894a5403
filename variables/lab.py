"""Robot Framework variable file for the embedded lab (`atp lab up` writes what this reads).

Use it with ``--variablefile variables/lab.py``.  It defines:

- ``${LAB_URI}``: the libvirt URI of the lab host (``qemu:///system``)
- ``@{LAB_VMS}``: the lab's guests, ``atp-lab-01`` ... ``atp-lab-NN``
- ``&{LAB_GUESTS}``: per guest its SPICE host, port and tlsPort, serial log and verifier socket (never the
  SPICE password: secrets stay out of variables, which Robot may log)
- ``${SPICE_CA_FILE}``: the CA that signed the lab's SPICE TLS server certificate (``ca_file=`` of
  `Open SPICE Session` with ``tls=True``)
- the lab's VDI simulator: ``${VDI_URL}``, ``${VDI_USERNAME}``, ``${VDI_PASSWORD}`` (a Robot Framework
  ``Secret``: `Connect To VDI` takes it, and logs show ``<secret>``), ``${VDI_HOST_URI}`` (how its hosts map
  to libvirt), ``${VDI_DOMAIN_NAME}`` and ``${VDI_TEMPLATE}`` (the template that boots the lab's guest image)

When the lab is not up the lists are empty, so that IDEs can still load this file; the suites' setup
then fails saying to run ``make lab``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robot.api.types import Secret

from ATPLibrary.lab.paths import vars_file


def _vdi_password(vdi: dict[str, Any]) -> Secret:
    try:
        return Secret(Path(vdi["password_file"]).read_text().strip())
    except (KeyError, OSError):
        return Secret("")  # lab not up: `Connect To VDI` then fails saying the platform does not answer


def get_variables() -> dict[str, Any]:
    path = vars_file()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    vdi = data.get("vdi") or {}
    return {
        "VDI_URL": vdi.get("url", "http://127.0.0.1:8088"),
        "VDI_USERNAME": vdi.get("username", "admin"),
        "VDI_PASSWORD": _vdi_password(vdi),
        "VDI_HOST_URI": vdi.get("host_uri", "qemu:///system"),
        "VDI_DOMAIN_NAME": vdi.get("domain_name", "atp-vdi-{id}"),
        "VDI_TEMPLATE": vdi.get("template", "atp-lab-image"),
        "LAB_URI": data.get("uri", "qemu:///system"),
        "LAB_VMS": list(data.get("vms", [])),
        "SPICE_CA_FILE": data.get("spice_ca_file", str(path.parent / "spice-tls" / "ca-cert.pem")),
        "LAB_GUESTS": {
            name: {k: v for k, v in guest.items() if "password" not in k}
            for name, guest in data.get("guests", {}).items()
        },
        "LAB_VARS_FILE": str(path),
    }
