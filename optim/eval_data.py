"""The images an experiment evaluates and calibrates on, preprocessed once and shared by all variants."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from optim.data.coco import CocoDetection, CocoFolder
from optim.data.synthetic import ensure_dataset
from optim.errors import OptimError
from optim.evaluation.coco_eval import coco_metrics
from optim.evaluation.label_map import label_map_of
from optim.evaluation.postprocess import Detections, postprocess
from optim.spec import DataSpec


@dataclass
class ImageBatch:
    """Preprocessed images (B, 3, H, W) float32 with their ids and original sizes (B, 2)."""

    pixels: np.ndarray
    image_ids: list[int]
    orig_sizes: np.ndarray


def load_batches(dataset: CocoDetection, batch_size: int) -> list[ImageBatch]:
    """Preprocess a whole data set into batches of `batch_size` (the last one may be shorter)."""
    batches = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batches.append(ImageBatch(np.stack([pixels.numpy() for pixels, _ in items]),
                                  [int(t["image_id"]) for _, t in items],
                                  np.stack([t["orig_size"].numpy() for _, t in items])))
    return batches


class ExperimentData:
    """Evaluation split (scored) and calibration split (never scored), preprocessed at `input_size`."""

    def __init__(self, spec: DataSpec, input_size: tuple[int, int], batch_size: int):
        self.spec = spec
        self.input_size = input_size
        self.batch_size = batch_size
        if spec.dataset == "synthetic":
            ensure_dataset(spec.root, (spec.eval_split, spec.calibration_split))
        self.eval_set = CocoDetection(CocoFolder.from_root(spec.root, spec.eval_split), input_size)
        if spec.eval_images:
            self.eval_set.image_ids = self.eval_set.image_ids[: spec.eval_images]
        self.calibration_set = CocoDetection(CocoFolder.from_root(spec.root, spec.calibration_split), input_size)
        self.calibration_set.image_ids = self.calibration_set.image_ids[: spec.calibration_images]
        self._check_memory()
        # Data-set category id of each model label (see `use_labels_of`); by position until a model is given.
        self.label_map: list[int | None] = list(self.eval_set.category_ids)

    def _check_memory(self) -> None:
        """Refuse, before allocating, a preprocessed data set that would not fit in the memory available: the
        evaluation images are held twice (batches, and one array for latency examples), calibration once."""
        import psutil

        per_image = 3 * self.input_size[0] * self.input_size[1] * 4  # float32 (3, H, W)
        images = 2 * len(self.eval_set) + len(self.calibration_set) + self.batch_size
        need, available = images * per_image, psutil.virtual_memory().available
        if need > 0.8 * available:
            raise OptimError(f"preprocessing {len(self.eval_set)} evaluation and {len(self.calibration_set)} calibration "
                             f"images at {self.input_size[0]}x{self.input_size[1]} needs about {need / 2**30:.1f} GiB; "
                             f"this machine has {available / 2**30:.1f} GiB available", field="data.eval_images",
                             fix="evaluate on fewer images (data.eval_images, data.calibration_images) or a smaller "
                                 "input_size")

    def use_labels_of(self, model, source: str) -> None:
        """Score detections of `model` (a Hugging Face DETR) by its label names; `source` names it in errors."""
        self.label_map = label_map_of(model, self.eval_set, source)

    def preload(self) -> None:
        """Decode and preprocess the evaluation images now (they are cached): a file that cannot be read, or an
        empty split, raises its `OptimError` before any variant runs."""
        if not self.eval_batches:
            raise OptimError(f"split '{self.spec.eval_split}' has no images", path=self.eval_set.folder.annotations,
                             field="data.eval_split", fix="evaluate on a split with images")

    @cached_property
    def eval_batches(self) -> list[ImageBatch]:
        return load_batches(self.eval_set, self.batch_size)

    @cached_property
    def calibration_image_batches(self) -> list[ImageBatch]:
        """Calibration images with their ids, for scoring tuning trials on the calibration split."""
        return load_batches(self.calibration_set, self.batch_size)

    @property
    def calibration_batches(self) -> list[np.ndarray]:
        return [batch.pixels for batch in self.calibration_image_batches]

    def train_set(self, split: str = "train") -> CocoDetection:
        """Training images for distillation / fine-tuning after pruning (generated if synthetic)."""
        if self.spec.dataset == "synthetic":
            ensure_dataset(self.spec.root, (split,))
        return CocoDetection(CocoFolder.from_root(Path(self.spec.root), split), self.input_size, hflip=True)

    def example(self, batch_size: int) -> np.ndarray:
        """A fixed real batch of `batch_size` images for latency (repeats images if the split is small)."""
        pixels = np.concatenate([b.pixels for b in self.eval_batches])
        return np.ascontiguousarray(np.resize(pixels, (batch_size, *pixels.shape[1:])))

    def score(self, detections: dict[int, Detections]) -> dict[str, float]:
        """COCO metrics of detections on the evaluation split."""
        return coco_metrics(self.eval_set.coco, detections, self.label_map)


def predict(infer, batches: list[ImageBatch], batch_size: int, progress=None) -> dict[int, Detections]:
    """Run an engine's `infer` over batches; a short last batch is zero-padded to `batch_size` so that
    engines compiled for a static shape see one shape only."""
    detections: dict[int, Detections] = {}
    for batch in batches:
        n = len(batch.image_ids)
        pixels = batch.pixels
        if n < batch_size:
            pixels = np.concatenate([pixels, np.zeros((batch_size - n, *pixels.shape[1:]), np.float32)])
        logits, boxes = infer(pixels)
        for image_id, det in zip(batch.image_ids, postprocess(logits[:n], boxes[:n], batch.orig_sizes)):
            detections[image_id] = det
        if progress is not None:
            progress.update(n)
    return detections


def detections_to_json(detections: dict[int, Detections]) -> dict:
    """Serializable form of detections (kept so a resumed run can still compute fidelity)."""
    return {str(k): {"boxes": d.boxes.round(3).tolist(), "scores": d.scores.round(5).tolist(),
                     "labels": d.labels.tolist()} for k, d in detections.items()}


def detections_from_json(data: dict) -> dict[int, Detections]:
    return {int(k): Detections(np.asarray(v["boxes"], np.float32).reshape(-1, 4), np.asarray(v["scores"], np.float32),
                               np.asarray(v["labels"], np.int64)) for k, v in data.items()}


def torch_threads(threads: int | None) -> None:
    """Apply the spec's thread count to PyTorch (other engines read it from BuildContext)."""
    if threads:
        torch.set_num_threads(threads)
