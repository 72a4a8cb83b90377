"""A Transformers callback that appends every log record to a CSV file (survives resume)."""

from __future__ import annotations

import csv
from pathlib import Path

from transformers import TrainerCallback

FIELDS = ["step", "loss", "learning_rate", "grad_norm", "eval_map", "eval_map_50"]


class CsvLogCallback(TrainerCallback):
    """Write `step, loss, learning_rate, grad_norm, eval_map, eval_map_50` rows to `path`."""

    def __init__(self, path: Path):
        self.path = path
        self.last_row: dict | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        row = {"step": state.global_step, **{key: logs[key] for key in FIELDS[1:] if key in logs}}
        if row == self.last_row:  # the Trainer re-logs our evaluation at some save steps: keep one row
            return
        self.last_row = row
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
