"""What the commands print: one JSON document on stdout (``--json`` and machine-read answers), and messages on
stderr. Shared by the CLI, its commands and the demo, so that none of them imports another for it."""

from __future__ import annotations

import sys
from typing import Any

import orjson


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (dict keys that are not strings are written as strings)."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def fail(message: str, code: int) -> int:
    """Say ``message`` on stderr, as ``thred-bridge: …``; returns ``code``, the exit status."""
    sys.stderr.write(f"thred-bridge: {message}\n")
    return code


__all__ = ["fail", "print_json"]
