"""`python -m optim.timing.worker REQUEST.json RESULT.json`: time one built artifact in this clean process.

The process loads only the engine that runs the artifact, so no other runtime's thread pool (ONNX Runtime
sessions of the parity check, PyTorch's pool after evaluation, an earlier variant's OpenVINO streams) shares
the cores while it is timed. The request names the engine spec, the artifact and the quantize step it was
built with (`Engine.load` runs it as built), the latency settings and one preprocessed input batch (.npy)
per batch size; the result is one LatencyStats dict per batch size (see optim.latency). The fastest speed probes
the parent has seen, when given, start the worker's fast state (it still probes 0.3 s itself).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def time_artifact(request: dict) -> dict[str, dict]:
    """LatencyStats (as dicts) per batch size for the artifact described by `request`."""
    import torch

    from optim.engines.registry import create_engine
    from optim.latency import measure
    from optim.machine_load import MACHINE_SPEED
    from optim.spec import EngineSpec, LatencySpec, QuantizeStep

    if request["threads"]:
        torch.set_num_threads(request["threads"])  # the speed probe's pool; the engine gets them from load()
    engine = create_engine(EngineSpec.model_validate(request["engine"]))
    quantize = QuantizeStep.model_validate(request["quantize"]) if request["quantize"] else None
    engine.load(Path(request["artifact"]), quantize, request["threads"])
    latency = LatencySpec.model_validate(request["latency"])
    for probe_ms in request.get("fast_state_probes") or ():  # the fast state the run's process has seen
        MACHINE_SPEED.observe(probe_ms)
    MACHINE_SPEED.calibrate(seconds=0.3 if request.get("fast_state_probes") else 1.0)
    results = {}
    try:
        for batch_size, path in request["inputs"].items():
            batch = np.load(path)
            results[batch_size] = measure(lambda batch=batch: engine.infer(batch), latency, int(batch_size)).as_dict()
    finally:
        engine.close()
    return results


def main(argv: list[str] | None = None) -> int:
    request_path, result_path = argv or sys.argv[1:]
    request = json.loads(Path(request_path).read_text())
    Path(result_path).write_text(json.dumps(time_artifact(request)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
