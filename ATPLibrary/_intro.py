# ruff: noqa: E501  (documentation tables and quoted error messages are kept on one line each)
"""The library introduction that libdoc shows above the keywords (``make docs``, IDEs' hover help).

Kept apart from ``ATPLibrary/__init__.py`` so that the code stays readable; :func:`library_doc` adds the key
name table, which is generated from the one key map.  The text is in Robot Framework's documentation
format: ``= Section =`` headings (linked as `Section`), backticks link keywords and sections, ``%TOC%``
becomes the table of contents.  tests/unit/test_docs.py checks that the sections named in
:data:`SECTIONS` are present.
"""

from __future__ import annotations

from ATPLibrary.keys import key_names_doc

#: The intro's section headings, in order (the test checks each one is present and linked from the TOC).
SECTIONS: tuple[str, ...] = (
    "Importing the library",
    "Hosts and connections",
    "VMs",
    "The lab",
    "Timeouts",
    "Input",
    "Mouse",
    "QMP",
    "Verification",
    "VM pool",
    "Screens",
    "Guest agent, files and channels",
    "SPICE",
    "VDI platform",
    "Secrets",
    "Failures",
    "Example",
    "Key names",
)

INTRO = """\
ATPLibrary drives virtual machines on libvirt/QEMU hosts for end-to-end tests of virtual desktops (VDI):
it starts and stops VMs, types and presses keys exactly as written, moves and clicks the mouse, runs
commands and copies files through the QEMU guest agent, matches screens against needles, takes
screenshots into log.html, talks SPICE like a VDI client and drives the OCloudView VDI platform. With
``verify=True`` an input keyword fails unless the guest really received exactly what was sent.

This page is ``docs/ATPLibrary.html`` (``make docs``); ``docs/ATPLibrary.json`` and
``docs/ATPLibrary.libspec`` hold the same for IDEs.

%TOC%

= Importing the library =

| =Setting= | =Value=    | =Value=     | =Value=            | =Value=         |
| Library   | ATPLibrary | timeout=30s | uri=qemu:///system | timeout_scale=2 |

Every import argument is optional (see `Importing` for the types):

| =Argument=       | =Default=         | =Meaning= |
| timeout          | 30 seconds        | default of every keyword that waits (see `Timeouts`) |
| uri              | ``qemu:///system`` | libvirt URI used until `Connect To Host` is called |
| timeout_scale    | 1.0               | multiplies every timeout, given or default (``2.5`` on a slow host) |
| via              | qmp               | default input transport of every input keyword: ``qmp`` or ``spice`` (see `Input`) |
| verify           | False             | default closed-loop verification of every input keyword (see `Verification`) |
| run_on_failure   | Take Screenshot   | keyword run with the VM when an ATPLibrary keyword fails; ``NONE`` runs nothing (see `Failures`) |
| layout           | us                | keyboard layout of the guests for `Type Text`: ``us`` or ``de`` |

Importing opens nothing: hosts are connected on first use, so IDEs (RobotCode, RIDE) can list the
keywords anywhere. The library has global scope: one instance, with its hosts and sessions, for the whole run (for each
process under pabot).

= Hosts and connections =

Keywords act on the *current host*. Without any `Connect To Host`, the ``uri`` import argument is used,
opened by the first keyword that needs it. `Connect To Host` opens a connection at once (a wrong URI fails
there, naming it) and makes it current:

- local: ``qemu:///system`` (the lab), ``qemu:///session``;
- remote: ``qemu+ssh://root@10.0.0.5/system`` (input, screenshots, guest agent, files and channels all go
  through libvirt, so a remote host works like a local one);
- tests: ``test:///default`` (libvirt's mock driver).

Each connection has an ``alias`` (default: the URI); `Switch Host` makes another one current, and
`Disconnect From Host` / `Disconnect All Hosts` close them. An unknown alias fails listing the known
ones. A connection that breaks (libvirtd restarted, ssh dropped) is re-opened with exponential backoff
(0.5 s doubling up to 8 s, for at most 30 s), and a read (a lookup, a state, a guest agent or monitor
read) is repeated once; a change (start, type, click) is never repeated, so it is never sent twice.

| =Keyword=       | =Argument=                      | =Argument=   |
| Connect To Host | qemu:///system                  | alias=local  |
| Connect To Host | qemu+ssh://root@10.0.0.5/system | alias=remote |
| Switch Host     | local                           |              |

= VMs =

VMs are named by their libvirt domain name (``atp-lab-01``). A name that is not defined fails with the
list of defined domains, close matches first. `Start VM`, `Shutdown VM`, `Reboot VM`, `Destroy VM`,
`Get VM State` and `Wait Until VM State` manage power state; `Guest Agent Should Respond` waits for a boot.

= The lab =

The project ships a local lab of real QEMU guests so that suites run anywhere with one command:
``make lab`` (``VMS=4`` by default) or ``atp lab up --vms 4`` defines and boots ``atp-lab-01`` ...
``atp-lab-NN`` on ``qemu:///system``; ``atp lab status`` shows them. Guests have a 720x400 VGA text
console with a root shell (typed text runs as commands), qemu-ga, python3, the verification agent on a
virtio-serial port, and SPICE with a per-guest password.

The variable file ``variables/lab.py`` gives suites the lab: ``${LAB_URI}``, ``@{LAB_VMS}``,
``&{LAB_GUESTS}`` (SPICE ports, never passwords), ``${SPICE_CA_FILE}`` and the VDI simulator's
``${VDI_URL}``, ``${VDI_USERNAME}`` and ``${VDI_PASSWORD}`` (a ``Secret``). ``resources/lab.resource``
has ``Use A Lab VM For This Suite`` (connects and leases a guest as ``${VM}``, see `VM pool`) and
``VM Should Be Ready For Typing``.

| robot --variablefile variables/lab.py suites/
| pabot --processes 4 --variablefile variables/lab.py suites/

= Timeouts =

Every keyword that waits has a ``timeout`` argument, typed ``timedelta``: give it in Robot Framework's
time format (``10s``, ``1 minute 30 seconds``, ``1:30``) or as a number of seconds. When it is not given,
the library default is used: the ``timeout`` import argument (30 seconds), changed during a run with
`Set ATP Timeout` (which returns the previous value, to restore it). Every timeout, given or default, is
multiplied by ``timeout_scale``. File transfers have their own default (`Upload File To Guest`,
`Download File From Guest`: 5 minutes, also scaled).

A timeout error names what was awaited, the VM, the host and the timeout, and what was last seen:

| VM 'atp-lab-03' on 'qemu:///system' did not reach state 'shut off' within 30 seconds; last seen state 'running'.

Waits poll until their condition holds or the timeout passes. For a condition without a keyword of its
own, use ``Wait Until Keyword Succeeds`` around a check rather than ``Sleep``.

= Input =

Every keyboard and mouse keyword takes ``via`` and ``verify``:

- ``via=qmp`` (default): QEMU's ``input-send-event`` through libvirt's monitor passthrough, so remote
  hosts work;
- ``via=spice``: the SPICE inputs channel, as a VDI client sends it, through the session `Open SPICE
  Session` opened for that VM (keys as PC/AT scan codes, the mouse in client or server mode);
- ``verify=True``: closed-loop check that the guest received exactly what was sent (see `Verification`).

Both default to the import arguments, so a suite chooses once. `Type Text` uses the guests' keyboard
layout (``layout`` import argument, `Set Keyboard Layout`; US by default) and sends each character as
modifier down, key down, key up, modifier up, so repeated and shifted characters are kept; a character
the layout cannot type fails before anything is sent. `Press Keys` takes combinations such as
``ctrl+alt+delete`` (names in `Key names`). Keys held with `Hold Key` are released at the end of each
test. `Type Secret` types a password without logging it.

| =Keyword=  | =VM=       | =Argument=          | =Argument=  | =Argument=  |
| Type Text  | atp-lab-01 | echo hello\\n        |             |             |
| Type Text  | atp-lab-01 | echo hello\\n        | verify=True |             |
| Press Keys | atp-lab-01 | ctrl+c              | via=spice   | verify=True |

= Mouse =

Positions are screen pixels from the top-left corner. `Move Mouse To` scales them to QEMU's absolute
range 0..32767 with ``round(p * 32767 / (size - 1))`` against the current screen size, so the first pixel
is 0 and the last is 32767; a position outside the screen fails before anything is sent. `Move Mouse By`
sends relative moves (the guest may accelerate them); `Click`, `Scroll` and `Drag From To` use the
mouse buttons and the wheel.

= QMP =

Input and monitor commands go through libvirt's QEMU monitor passthrough. For QEMU that libvirt does not
manage, `Use QMP Socket` sends a VM's QMP to a unix socket instead; `Use Libvirt QMP` switches back.

= Verification =

Two agents run in a lab guest and must not be confused:

- the *guest agent* is QEMU's ``qemu-ga``: the library uses it (through libvirt) to run commands
  (`Execute Command In Guest`), copy files and deploy the verification agent;
- the *verification agent* is this project's agent: it reports what the guest's kernel received
  (every key and mouse event) to the library's verification server, over the VM's virtio-serial port
  ``com.atp.verifier.0`` (no guest network needed), TCP or WebSocket.

With ``verify=True`` (per keyword, or for all with the ``verify`` import argument) an input keyword
fails unless the agent reports exactly what was sent: every key event in order, none missing, none extra,
mouse buttons and movements. `Input Should Be Received` checks input sent without ``verify``.
`Verification Agent Should Be Connected` waits for the agent; `Deploy Verification Agent` installs this
library's version through qemu-ga; `Get Verification Latencies` reports how long confirmations took. A
failure names the keyword, the VM, the first differing position and both texts:

| Input verification for Type Text on VM 'atp-lab-01' failed: the guest did not receive exactly what was sent (timeout 5 seconds).
| Position 4: expected 'd', received 'X'.
| Sent:     'abcdef' (12 key events)
| Received: 'abcXef' (14 key events)

For `Type Secret` the message gives positions and counts only, never characters.

= VM pool =

Parallel processes (pabot) must never drive the same VM. `Acquire VM` leases the first free VM of a list
for this process and returns its name; `Release VM` ends the lease, and so does the end of the test (or
suite, when taken in a suite setup) that took it, or the death of the process, so a killed run never
strands a VM. When every VM is leased elsewhere, `Acquire VM` waits up to its ``timeout`` and then fails
naming each VM's holder. ``${PABOTEXECUTIONPOOLID}`` only chooses which VM is tried first (``prefer``):
pabot hands ids out round-robin, so it is not safe alone.

`Configure VM Pool` (or the ``ATP_POOL`` environment variable) chooses the backend:

- ``local``: a kernel file lock under ``/tmp/atp-leases`` (``ATP_LEASE_DIR``); every process that
  shares the VMs runs on this machine;
- ``pabotlib``: that lock plus an expiring record in pabot's PabotLib server, renewed while held, so
  runners on several machines share the VMs; a lease that was lost fails the next pool keyword;
- ``auto`` (default): ``pabotlib`` when a PabotLib server answers, else ``local``.

Leases protect cooperating suites only: input keywords do not check them. `Take Guest Lease` and
`Release Guest Lease` add a lease file inside the guest (``/run/atp-lease``), which proves exclusive use
independently of the pool. See docs/pool.md.

| =Assignment= | =Keyword=  | =Argument=  | =Argument=                  | =Argument=     |
| ${vm} =      | Acquire VM | @{LAB_VMS}  | prefer=${PABOTEXECUTIONPOOLID} | timeout=10 min |

= Screens =

`Take Screenshot` saves a PNG (through libvirt, so remote hosts work) and embeds it in log.html.
Needles are openQA-style: a PNG with a JSON file of ``match`` and ``exclude`` areas, a similarity per
area (default 96 percent) and an optional click point; a PNG alone is one area. `Screen Should Match`,
`Wait Until Screen Matches` and `Click On Match` use them; relative needle names are looked up in
``${EXECDIR}`` and ``${EXECDIR}/needles``. On a mismatch the screen and the needle are shown side by
side in the log. `Wait Until Screen Changes`, `Wait Until Screen Is Still` and `Screen Should Not Be
Blank` watch the screen, or a region of it, with exclude areas.

= Guest agent, files and channels =

`Guest Agent Should Respond` and `Execute Command In Guest` use qemu-ga through libvirt, so they also work
on remote hosts; a command's unexpected exit code fails with its stderr. `Execute PowerShell In Guest`
runs PowerShell in Windows guests (``-EncodedCommand``, or a script file for long scripts) and decodes
its output's code page; `Set PowerShell Path` and `Install PowerShell Stand-In` serve labs without
Windows (see docs/powershell.md).

`Upload File To Guest` and `Download File From Guest` move files through qemu-ga in chunks (large files
work); `Guest File Should Exist` and `Guest File Should Not Exist` check paths. `Open Channel`, `Write To
Channel`, `Read From Channel` and `Read Bytes From Channel` talk to a VM's virtio-serial ports (raw, line
or JSON framing).

= SPICE =

`Open SPICE Session` connects this library's own SPICE client to a VM (from its live libvirt XML), a VDI
VM (the platform's ``spice-key``), the dictionary `Get SPICE Connection` returns, or a host and port,
over TCP or TLS (``tls=True``, ``ca_file=${SPICE_CA_FILE}`` on the lab). Input keywords with
``via=spice`` then send through it, with ``verify=True`` as well. `Take SPICE Screenshot` shows what the
SPICE client sees; `Close SPICE Session` ends it. A wrong password fails naming SPICE link error 7.

= VDI platform =

`Connect To VDI` logs in to an OCloudView VDI platform (the lab runs a simulator of it at ``${VDI_URL}``).
VDI keywords say VDI: `Create Desk Pool`, `Start VDI VMs`, `Wait Until VDI VM Status`, `Get SPICE
Connection`, ... They name *VDI VMs* by their VDI name or id, go through the platform (never straight to
libvirt), and fail with the platform's code and message. `VDI And Libvirt Should Agree` checks that each
VM's platform status matches its libvirt domain on its host.

= Secrets =

The VDI password, SPICE passwords and verification agent tokens never reach log.html, output.xml or the
console:

- `Connect To VDI` and `Open SPICE Session` take passwords only as Robot Framework ``Secret`` values
  (Robot Framework 7.4 or newer) and refuse a plain string, before anything is sent;
- `Get SPICE Connection` returns the password as a ``Secret``; ``variables/lab.py`` gives
  ``${VDI_PASSWORD}`` as one and leaves SPICE passwords out of ``&{LAB_GUESTS}``;
- `Type Secret` logs the number of characters only, and its errors name positions, not characters;
- agent tokens are made per VM by `Deploy Verification Agent` and written to a guest file that only root
  can read (Linux guests).

| =Variables=             | =Value=         |
| ${VDI_PASSWORD: Secret} | %{VDI_PASSWORD} |

= Failures =

Every error is an ATPLibrary error whose message says what failed, on which VM and host, within which
timeout, and what to do; bad input (an unknown key name, VM, alias or option) fails before anything is
sent, naming the valid choices or the close matches.

When an ATPLibrary keyword fails, `Take Screenshot` of the VM it acted on is embedded in the log, once
per test, VM and error; change it with the ``run_on_failure`` import argument or `Register Keyword To Run
On Failure` (``NONE`` turns it off).

= Example =

A suite ``suites/example.robot`` on a leased lab guest, run with ``robot --variablefile variables/lab.py
suites/example.robot``:

| =Setting=   | =Value=                     | =Value=     |
| Library     | ATPLibrary                  | timeout=30s |
| Resource    | ../resources/lab.resource   |             |
| Suite Setup | Use A Lab VM For This Suite |             |

| =Test Case=                       | =Keyword=                     | =Argument= | =Argument=                   | =Argument=               | =Argument= | =Argument=            |
| Typed Command Runs On The Console | VM Should Be Ready For Typing |            |                              |                          |            |                       |
|                                   | Type Text                     | ${VM}      | echo hello > /tmp/hello\\n | verify=True              |            |                       |
|                                   | Wait Until Keyword Succeeds   | 10s        | 0.2s                         | Execute Command In Guest | ${VM}      | grep -x hello /tmp/hello |
"""


def library_doc() -> str:
    """The whole introduction: :data:`INTRO` and the generated table of key names."""
    return INTRO + "\n= Key names =\n\n" + key_names_doc() + "\n"
