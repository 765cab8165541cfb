"""`python -m thred_bridge` is the `thred-bridge` command."""

from thred_bridge.entrypoints.cli import main

raise SystemExit(main())
