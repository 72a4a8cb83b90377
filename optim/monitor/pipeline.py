"""The detection pipeline (decode, pre-process, engine, post-process) with its monitoring: stage times, outputs
and errors into the metrics, each frame's statistics into the drift monitor. The server's `_detect` model runs
it; the replay harness runs it in-process. Bad input is counted and logged, then refused with BadInput."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from optim.data.pixels import decode_image, preprocess_array
from optim.evaluation.postprocess import Detections, postprocess
from optim.monitor.drift import DriftCheck, DriftMonitor
from optim.monitor.metrics import DetectorMetrics
from optim.monitor.stats import FrameStats, input_stats, output_stats

LOG = logging.getLogger("optim.monitor")
KEEP_ALL = -1.0  # post-processing threshold below any score: one detection per query, fixed shapes


class BadInput(ValueError):
    """An input the pipeline refused (counted in optim_errors_total{cause="decode"})."""


@dataclass
class Result:
    detections: list[Detections]
    images: list[Image.Image]
    stages: dict[str, float]
    seconds: float
    drift: DriftCheck | None


class MonitoredPipeline:
    """`run(encoded_images)` -> Result; `delay_s` slows the inference stage down (the replay's latency shift)."""

    def __init__(self, engine, input_size: tuple[int, int], metrics: DetectorMetrics | None = None,
                 drift: DriftMonitor | None = None):
        self.engine = engine
        self.input_size = input_size
        self.metrics = metrics
        self.drift = drift
        self.delay_s = 0.0

    def run(self, encoded: list[bytes]) -> Result:
        start = time.perf_counter()
        try:
            images = [decode_image(bytes(item)) for item in encoded]
        except ValueError as error:
            self._error("decode", error)
            raise BadInput(str(error)) from error
        decoded = time.perf_counter()
        pixels = np.stack([preprocess_array(image, self.input_size) for image in images])
        sizes = np.array([[image.height, image.width] for image in images], dtype=np.int64)
        preprocessed = time.perf_counter()
        try:
            logits, boxes = self.engine.infer(pixels)
        except Exception as error:  # an engine failure is counted, then re-raised to the caller
            self._error("inference", error)
            raise
        if self.delay_s:
            time.sleep(self.delay_s)
        inferred = time.perf_counter()
        detections = postprocess(logits, boxes, sizes, score_threshold=KEEP_ALL)
        done = time.perf_counter()
        stages = {"decode": decoded - start, "preprocess": preprocessed - decoded,
                  "inference": inferred - preprocessed, "postprocess": done - inferred}
        return Result(detections, images, stages, done - start, self._observe(images, detections, stages, done - start))

    def _observe(self, images, detections, stages, seconds) -> DriftCheck | None:
        if self.metrics is None and self.drift is None:
            return None
        check = None
        if self.metrics is not None:
            self.metrics.observe_request(seconds, stages, len(images))
        for image, det in zip(images, detections):
            outputs = output_stats(det, image.height, image.width)
            if self.metrics is not None:
                self.metrics.observe_outputs(outputs["confidences"], outputs["classes"], outputs["box_sizes"])
            if self.drift is not None:
                check = self.drift.offer(lambda: FrameStats(**input_stats(image), **outputs)) or check  # noqa: B023
        return check

    def _error(self, cause: str, error: Exception) -> None:
        LOG.warning("refused input (%s): %s", cause, error)
        if self.metrics is not None:
            self.metrics.count_error(cause)
