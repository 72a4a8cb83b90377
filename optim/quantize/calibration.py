"""Calibration batches for post-training quantization, shared by every quantizer.

`BuildContext.calibration` may be a one-shot generator, while calibrators often read the data more than
once (ONNX Runtime's entropy/percentile histograms, each of Neural Compressor's tuning trials), so the batches are
materialized once and validated here. No quantization library is imported: ONNX Runtime accepts any object
with `get_next()` as a `CalibrationDataReader` (its base class checks by duck typing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from optim.errors import OptimError

INPUT_NAME = "pixel_values"


def calibration_batches(batches: Iterable[np.ndarray], input_size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """The batches as a list of float32 (B, 3, H, W) arrays; a wrong shape raises OptimError."""
    result = []
    for index, batch in enumerate(batches):
        array = np.ascontiguousarray(batch, dtype=np.float32)
        if array.ndim != 4 or array.shape[1] != 3 or (input_size and tuple(array.shape[2:]) != tuple(input_size)):
            raise OptimError(f"calibration batch {index} has shape {array.shape}; expected (B, 3, "
                             f"{'H, W' if input_size is None else ', '.join(map(str, input_size))})",
                             field="data.calibration_images",
                             fix="calibration images must be preprocessed like evaluation images (same input_size)")
        result.append(array)
    return result


def require_batches(batches: list[np.ndarray], method: str) -> None:
    """Raise OptimError when a method that calibrates got no batches."""
    if not batches:
        raise OptimError(f"quantize method '{method}' needs calibration images, and none were given",
                         field="data.calibration_images",
                         fix="set data.calibration_images >= 1 and make sure data.calibration_split has images")


class PixelValuesReader:
    """An ONNX Runtime `CalibrationDataReader` over in-memory batches: {input_name: batch} per call."""

    def __init__(self, batches: list[np.ndarray], input_name: str = INPUT_NAME):
        self.batches = batches
        self.input_name = input_name
        self._iterator: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next feed dict, or None when the batches are exhausted."""
        batch = next(self._iterator, None)
        return None if batch is None else {self.input_name: batch}

    def __len__(self) -> int:
        return len(self.batches)

