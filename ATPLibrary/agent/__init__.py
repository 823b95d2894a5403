"""The verification agent (``atp-agent``): runs inside a guest and reports what the guest's kernel received.

Called the *verification agent* everywhere, to keep it apart from qemu-ga (the *guest agent*).

Standard library only: this package is packed with :mod:`ATPLibrary.verification.protocol`, :mod:`ATPLibrary.keys`,
:mod:`ATPLibrary.errors` and :mod:`ATPLibrary._version` into one zip (:func:`ATPLibrary.agent.package.build_zip`)
and run with the guest's own ``python3 atp-agent.pyz ...``; on the host, ``python3 -m ATPLibrary.agent ...``.
Nothing here may import :mod:`ATPLibrary` itself (its ``__init__`` imports Robot Framework).

Modules:

- :mod:`.cli` — the command line and :func:`~ATPLibrary.agent.cli.main`;
- :mod:`.runner` — :class:`~ATPLibrary.agent.runner.Agent`: the session (sync/hello/welcome, heartbeats, reconnect
  with backoff) over one transport, fed by a capture;
- :mod:`.transports` — virtio-serial (lines), TCP (length frames) and a stdlib WebSocket client;
- :mod:`.linux` — evdev capture from every ``/dev/input/event*``;
- :mod:`.windows` — low-level keyboard and mouse hooks (unproven on Windows here);
- :mod:`.names` — names of evdev keys, buttons and axes;
- :mod:`.identity` — the VM id (``--vm-id``, SMBIOS serial, product UUID, hostname);
- :mod:`.commands` — command verification (``verify_command`` → ``command_result``);
- :mod:`.package` — builds ``atp-agent.pyz``.

See docs/verification-agent.md.
"""
