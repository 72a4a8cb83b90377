"""Shared CLI plumbing: user errors print one clear message and exit 2, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from optim.errors import OptimError


def run_cli(main: Callable[[], int]) -> None:
    """Call `main`, turning an `OptimError` into a message on stderr and its exit code."""
    try:
        code = main()
    except OptimError as error:
        print(f"error: {error}", file=sys.stderr)
        code = error.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished results are kept; run the same command again to resume", file=sys.stderr)
        code = 130
    sys.exit(code)
