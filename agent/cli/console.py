"""Where commands write: results to stdout (`out`, `print_json`), progress, notes and errors to stderr (`err`).

Also the process-wide `--debug` flag (set by the app callback through `set_debug`): with it, an error the
CLI would report as one line also shows its traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

out = Console()
err = Console(stderr=True, soft_wrap=True)

debug: bool = False
"""`--debug`: show the traceback of errors that are otherwise one line on stderr."""


def set_debug(on: bool) -> None:
    """Called by the app callback for `--debug`."""
    global debug
    debug = on


def print_json(data: Any) -> None:
    """`--json` output: indented, Decimals and datetimes as strings."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
