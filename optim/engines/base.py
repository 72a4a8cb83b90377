"""The engine lifecycle every backend implements: build (export / compile / quantize), infer, close.

Every engine returns DETR's raw outputs, so one shared post-processing and one evaluator score all of
them identically:
    logits:     (B, Q, K+1) float32, last class = "no object"
    pred_boxes: (B, Q, 4)   float32, normalized (center_x, center_y, w, h)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optim.spec import EngineSpec, QuantizeStep


@dataclass
class BuildContext:
    """What an engine may need to build: where to write artifacts, calibration batches, input shape."""

    workdir: Path
    input_size: tuple[int, int]
    calibration: Iterable[np.ndarray] = ()  # float32 batches (B, 3, H, W), preprocessed
    batch_sizes: tuple[int, ...] = (1,)  # every batch size `infer` will see (AOT engines size shape profiles)
    threads: int | None = None
    seed: int = 0
    evaluate_torch: object = None  # callable(forward: pixel_values -> (logits, pred_boxes)) -> mAP, for INC tuning


@dataclass
class BuildInfo:
    """What building produced, for the report."""

    build_seconds: float = 0.0
    artifact: Path | None = None  # the file the engine runs (ONNX, OpenVINO IR, plan); None = in memory
    notes: list[str] = field(default_factory=list)


class Engine(ABC):
    """One inference backend. `build` once, then `infer` many times, then `close`."""

    kind: str = ""

    def __init__(self, spec: EngineSpec):
        self.spec = spec

    @abstractmethod
    def build(self, model, quantize: QuantizeStep | None, context: BuildContext) -> BuildInfo:
        """Prepare `model` (a float `DetrForObjectDetection`, eval mode) for inference, applying `quantize`."""

    @abstractmethod
    def infer(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 -> (logits, pred_boxes) as float32 numpy arrays."""

    def close(self) -> None:
        """Release sessions and memory."""

    def reload_options(self) -> dict | None:
        """After `build`: what a fresh process needs, beside the artifact, to run exactly what this engine
        runs (`load_artifact` takes it back), or None when what runs lives only in this process's memory
        (PyTorch modules), so that it is timed in-process."""
        return None

    @classmethod
    def load_artifact(cls, spec: EngineSpec, artifact: Path, options: dict) -> Engine:
        """An engine ready to `infer`, loaded from a built artifact with `reload_options()`'s options."""
        raise NotImplementedError(f"engine '{cls.kind}' runs from memory only")
