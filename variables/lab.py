"""Robot Framework variable file for the embedded lab (`atp lab up` writes what this reads).

Use it with ``--variablefile variables/lab.py``.  It defines:

- ``${LAB_URI}``: the libvirt URI of the lab host (``qemu:///system``)
- ``@{LAB_VMS}``: the lab's guests, ``atp-lab-01`` ... ``atp-lab-NN``
- ``&{LAB_GUESTS}``: per guest its SPICE host and port, serial log and verifier socket (never the SPICE
  password: secrets stay out of variables, which Robot may log)

When the lab is not up the lists are empty, so that IDEs can still load this file; the suites' setup
then fails saying to run ``make lab``.
"""

from __future__ import annotations

import json
from typing import Any

from ATPLibrary.lab.paths import vars_file


def get_variables() -> dict[str, Any]:
    path = vars_file()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    return {
        "LAB_URI": data.get("uri", "qemu:///system"),
        "LAB_VMS": list(data.get("vms", [])),
        "LAB_GUESTS": {
            name: {k: v for k, v in guest.items() if "password" not in k}
            for name, guest in data.get("guests", {}).items()
        },
        "LAB_VARS_FILE": str(path),
    }
