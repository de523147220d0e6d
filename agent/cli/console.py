"""Where commands write: results to stdout (`out`, `print_json`), progress, notes and errors to stderr (`err`)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

out = Console()
err = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    """`--json` output: indented, Decimals and datetimes as strings."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
