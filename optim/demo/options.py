"""The command-line options both demo apps take (the Streamlit app reads them after `--`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from optim.demo.detector import DEFAULT_MODEL


def demo_parser(prog: str) -> argparse.ArgumentParser:
    """--model / --report / --variant / --compare, plus --host / --port for the Gradio server."""
    parser = argparse.ArgumentParser(prog=prog, description="See the lab's models and report variants detect.")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="zoo model (default: the shipped synth-detr)")
    parser.add_argument("--report", type=Path, help="a finished report folder, e.g. reports/int8: offer its variants")
    parser.add_argument("--variant", help="the report variant shown first (default: the zoo model)")
    parser.add_argument("--compare", help="the report variant shown beside it in the side-by-side tabs")
    parser.add_argument("--threads", type=int, help="threads per engine (default: the engine's own, as the report timed "
                        "it; 1 keeps the demo steady on a busy machine)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (Gradio app; default 7860)")
    return parser
