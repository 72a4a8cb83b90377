"""Time a built artifact in a fresh Python process (optim.timing.worker) and collect its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from optim.errors import OptimError
from optim.machine_load import MACHINE_SPEED
from optim.spec import EngineSpec, LatencySpec, QuantizeStep

STARTUP_SECONDS = 120  # imports, artifact load and compile, speed-probe calibration: generous for a 1-s model


def timeout_for(latency: LatencySpec, batch_sizes: int) -> float:
    """The longest a worker may take: every batch size's warm-up plus its timing bound, and start-up."""
    per_batch = latency.max_seconds * (1.0 + latency.steady_wait) + 60.0  # 60 s: warm-up of a slow model
    return STARTUP_SECONDS + batch_sizes * per_batch


def measure_in_subprocess(engine: EngineSpec, artifact: Path, quantize: QuantizeStep | None,
                          inputs: dict[int, np.ndarray], latency: LatencySpec, workdir: Path) -> dict[str, dict]:
    """LatencyStats dicts per batch size, timed by a worker process that loads only `artifact`'s engine, as
    built with `quantize`, on the spec's threads.

    `inputs` are the preprocessed batches to time (saved beside the artifact so the worker times exactly
    the data the in-process run would). A worker that fails or times out raises OptimError with its
    last output lines."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for batch_size, batch in inputs.items():
        paths[str(batch_size)] = str(workdir / f"timing_input_b{batch_size}.npy")
        np.save(paths[str(batch_size)], np.ascontiguousarray(batch, dtype=np.float32))
    request = {"engine": engine.model_dump(mode="json"), "artifact": str(artifact),
               "quantize": quantize.model_dump(mode="json") if quantize else None,
               "inputs": paths, "latency": latency.model_dump(mode="json"), "threads": latency.threads,
               "fast_state_probes": MACHINE_SPEED.fastest_probes}
    request_path, result_path = workdir / "timing_request.json", workdir / "timing_result.json"
    request_path.write_text(json.dumps(request, indent=1))
    result_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "optim.timing.worker", str(request_path), str(result_path)]
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True,
                              timeout=timeout_for(latency, len(inputs)))
    except subprocess.TimeoutExpired as error:
        raise OptimError(f"the timing worker did not finish within {error.timeout:.0f} s", path=artifact,
                         fix="lower latency.max_seconds / warmup_iters, or set latency.isolate: false") from error
    if done.returncode != 0 or not result_path.exists():
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise OptimError(f"the timing worker failed (exit {done.returncode}):\n{tail}", path=artifact,
                         fix="set latency.isolate: false to time in-process, and report the error")
    return json.loads(result_path.read_text())
