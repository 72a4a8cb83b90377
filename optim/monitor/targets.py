"""Where the replay sends frames: the pipeline in this process, or a running server's `<variant>_detect` model.
Each returns the frame's detections and the request latency it saw."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from optim.data.pixels import decode_image, preprocess_array
from optim.evaluation.postprocess import Detections
from optim.monitor.metrics import DetectorMetrics, Identity
from optim.monitor.pipeline import BadInput, MonitoredPipeline


def class_names(manifest: dict) -> dict[int, str]:
    return {int(k): v for k, v in manifest["id2label"].items()}


class InProcess:
    """The monitored pipeline on the repository's artifact (the engine the server would run)."""

    name = "in-process"
    refused = (BadInput,)

    def __init__(self, repository: Path, manifest: dict, threads: int = 0, with_metrics: bool = True):
        from optim.serving.engine import load_engine

        metrics = DetectorMetrics(Identity.of_repository(repository), class_names(manifest)) if with_metrics else None
        self.pipeline = MonitoredPipeline(load_engine(repository, manifest, threads), tuple(manifest["input_size"]),
                                          metrics)
        self.metrics = metrics
        self.last_inference_s: float | None = None  # the inference stage of the latest frame

    def detect(self, encoded: bytes) -> tuple[Detections, float]:
        result = self.pipeline.run([encoded])
        self.last_inference_s = result.stages["inference"]
        return result.detections[0], result.seconds

    def canary(self, encoded: bytes) -> float:
        """Seconds of one bare engine call on the frame's pixels: how fast this machine is right now."""
        pixels = preprocess_array(decode_image(encoded), self.pipeline.input_size)[None]
        start = time.perf_counter()
        self.pipeline.engine.infer(pixels)
        return time.perf_counter() - start

    def set_delay(self, seconds: float) -> None:
        self.pipeline.delay_s = seconds

    def close(self) -> None:
        pass


class Served:
    """A running server (optim.serve) at `url` over `protocol`: the `_detect` model, all stages on the server."""

    name = "server"

    def __init__(self, url: str, protocol: str, manifest: dict):
        from tritonclient.utils import InferenceServerException

        from optim.serving.client import TritonClient

        self.refused = (InferenceServerException,)
        self.client = TritonClient(url, protocol)
        self.model = manifest["models"]["detect"]
        self.metrics = None
        self.last_inference_s = None  # not seen from the client: the replay compares the request latency

    def detect(self, encoded: bytes) -> tuple[Detections, float]:
        start = time.perf_counter()
        out = self.client.infer(self.model, {"image": np.array([[encoded]], dtype=np.object_)},
                                ["boxes", "scores", "labels"])
        seconds = time.perf_counter() - start
        return Detections(out["boxes"][0], out["scores"][0], out["labels"][0]), seconds

    def set_delay(self, seconds: float) -> None:
        if seconds:
            raise NotImplementedError("the latency shift slows the in-process pipeline; a server cannot be slowed "
                                      "from the client")

    def close(self) -> None:
        self.client.close()
