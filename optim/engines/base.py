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

from optim.errors import OptimError
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

    def artifact_in(self, workdir: Path, quantize: QuantizeStep | None) -> Path | None:
        """The file `build` writes into `workdir` for this quantize step; None when it runs in memory."""
        return None

    def load(self, artifact: Path, quantize: QuantizeStep | None, threads: int | None = None) -> None:
        """Run an artifact an earlier `build` wrote, as built: no export, no quantization."""
        raise OptimError(f"engine '{self.kind}' keeps its model in memory: there is no built artifact to load",
                         path=artifact, fix="choose a variant that runs on onnxruntime or openvino")

    @abstractmethod
    def infer(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 -> (logits, pred_boxes) as float32 numpy arrays."""

    def close(self) -> None:
        """Release sessions and memory."""
