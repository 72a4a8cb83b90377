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


def quiet_libraries() -> None:
    """Silence the export-time warnings and INFO logs of the libraries we drive; our own progress bars and
    per-variant summaries say what is happening."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*TracerWarning.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        from torch.jit import TracerWarning

        warnings.filterwarnings("ignore", category=TracerWarning)
    except ImportError:
        pass
    for name in ("nncf", "neural_compressor", "openvino"):
        logging.getLogger(name).setLevel(logging.WARNING)
