"""The `serving:` section of a spec, run by `optim.run` after the variants: each chosen variant is deployed
into `<report>/serving/<variant>`, served (with and/or without dynamic batching), loaded at every level, and its
accuracy scored through the server. A server that fails records its reason (with its log's last lines) and the
run goes on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from optim.spec import ServingSpec


def measure_serving(spec: ServingSpec, report_dir: Path) -> list[dict]:
    """One record per (variant, batching setting): load levels, served accuracy, or the error."""
    records = []
    for name in spec.variants:
        repository = None
        for batching in spec.batching:
            record: dict = {"variant": name, "batching": batching, "protocol": spec.protocol,
                            "instances": spec.instances}
            try:
                repository = repository or _deploy(spec, report_dir, name)
                record.update(_serve_and_load(spec, repository, batching, measure_accuracy=batching == spec.batching[0]))
                record["status"] = "ok"
            except Exception as error:  # noqa: BLE001 -- a failing server must not lose the run's results
                record.update(status="failed", error=f"{type(error).__name__}: {error}"[-3000:])
                tqdm.write(f"serving {name} (batching {'on' if batching else 'off'}): FAILED — {record['error']}")
            records.append(record)
    return records


def _deploy(spec: ServingSpec, report_dir: Path, name: str) -> Path:
    from optim.serving.options import ServingOptions
    from optim.serving.repository import deploy_variant

    repository = report_dir / "serving" / name
    deploy_variant(report_dir, name, repository, ServingOptions(instances=spec.instances))
    return repository


def _serve_and_load(spec: ServingSpec, repository: Path, batching: bool, measure_accuracy: bool) -> dict:
    from optim.serving.accuracy import served_accuracy
    from optim.serving.launch import ServerProcess
    from optim.serving.loadgen import Target, closed_loop, open_loop
    from optim.serving.repository import read_manifest

    manifest = read_manifest(repository)
    models = [manifest["models"]["core"], manifest["models"]["detect"]]
    pixels = np.random.default_rng(0).normal(size=(1, 3, *manifest["input_size"])).astype(np.float32)
    with ServerProcess(repository, models, [] if batching else ["--no-batching"],
                       timeout_s=spec.start_timeout) as server:
        url = server.grpc_url if spec.protocol == "grpc" else server.http_url
        target = Target(url, spec.protocol, models[0], {"pixel_values": pixels}, ["logits", "pred_boxes"],
                        server.metrics_url)
        levels = [closed_loop(target, c, spec.duration) for c in spec.concurrency]
        levels += [open_loop(target, rate, spec.duration) for rate in spec.rates]
        accuracy = served_accuracy(url, spec.protocol, manifest, "detect") if spec.accuracy and measure_accuracy \
            else None
    return {"levels": levels, "accuracy": accuracy, "serving_options": manifest["serving"]}
