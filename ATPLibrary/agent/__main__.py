"""``python3 -m ATPLibrary.agent`` (on the host) and the zip's entry point."""

from ATPLibrary.agent.cli import main

raise SystemExit(main())
