"""The small experiment specs the end-to-end tests run: 8 test images of the tiny synthetic data set, a few timed
iterations on one thread, no cross-check; each test adds its variants (and sections) below this header."""

from __future__ import annotations

from pathlib import Path

HEADER = """name: {name}
model: {model}
data: {{dataset: synthetic, root: {root}, eval_split: test, eval_images: 8, calibration_split: val, calibration_images: 4}}
batch_sizes: [1]
eval_batch_size: 4
latency: {{warmup_iters: 1, min_iters: 3, max_iters: 10, max_seconds: 0.3, threads: 1, reference: false}}
output_dir: reports
"""


def tiny_spec(name: str, model: str, root: Path, body: str) -> str:
    """A spec named `name` on `model` over the tiny data set at `root`, followed by `body` (YAML)."""
    return HEADER.format(name=name, model=model, root=root) + body.lstrip("\n")
