"""What determines a variant's figures, so that a resumed run reuses a stored record only when all of it matches.

A fingerprint is a JSON-ready dict: the model (identity and a content hash of its weights), the data (root,
splits, image counts, a hash of the annotation files and of the evaluated images' names and sizes), the
input size, batch sizes, latency and profile settings, seed, the machine, the versions of the libraries
the variant runs on, the variant's own spec and, for every variant but the baseline, the baseline's
detections (its fidelity is measured against them). `differences` says in words what changed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from optim.environment import cpu_name
from optim.spec import ExperimentSpec, VariantSpec

COMMON_LIBRARIES = ("torch", "transformers", "numpy", "pycocotools", "detr-optim-lab")
ENGINE_LIBRARIES = {"pytorch": (), "torch_compile": (), "onnxruntime": ("onnx", "onnxruntime"),
                    "openvino": ("onnx", "openvino"), "tensorrt": ("onnx", "tensorrt"),
                    "torch_tensorrt": ("torch-tensorrt",)}
STEP_LIBRARIES = {"ort_static": ("onnxruntime",), "ort_dynamic": ("onnxruntime",), "nncf": ("nncf",),
                  "inc": ("neural-compressor",), "modelopt_int8": ("nvidia-modelopt",),
                  "modelopt_fp8": ("nvidia-modelopt",), "prune": ("torch-pruning",)}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def libraries_of(variant: VariantSpec) -> dict[str, str | None]:
    """Versions of the libraries `variant` is built, quantized and run with (not imported: read from metadata)."""
    names = list(COMMON_LIBRARIES) + list(ENGINE_LIBRARIES[variant.engine.kind])
    for step in variant.steps:
        names += STEP_LIBRARIES.get(getattr(step, "method", None) or step.kind, ())
    return {name: _version(name) for name in sorted(set(names))}


def weights_sha256(model) -> str:
    """SHA-256 of every tensor of `model`'s state dict (names, dtypes, shapes and bytes)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def model_identity(model) -> str:
    """What a conversion of `model` depends on: its class, configuration and weights (hashes)."""
    config = getattr(model, "config", None)
    described = f"{type(model).__qualname__}:{config.to_json_string() if config is not None else ''}"
    return f"{hashlib.sha256(described.encode()).hexdigest()}:{weights_sha256(model)}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _split_identity(dataset) -> dict:
    """A COCO split as used: its annotation file's hash and the names and sizes of the images taken from it."""
    files = []
    for image_id in dataset.image_ids:
        name = dataset.coco.imgs[image_id]["file_name"]
        path = dataset.folder.images / name
        files.append([image_id, name, path.stat().st_size if path.is_file() else None])
    return {"annotations_sha256": file_sha256(dataset.folder.annotations), "images": len(dataset.image_ids),
            "image_files_sha256": hashlib.sha256(json.dumps(files).encode()).hexdigest()}


def run_fingerprint(spec: ExperimentSpec, loaded, data, input_size) -> dict:
    """The part every variant of this run shares; `loaded` is the zoo's LoadedModel, `data` the ExperimentData."""
    return {
        "model": {"name": spec.model, "source": loaded.source, "trained": loaded.trained,
                  "classes": int(loaded.model.config.num_labels), "weights_sha256": weights_sha256(loaded.model)},
        "data": {"dataset": spec.data.dataset, "root": str(Path(spec.data.root).resolve()),
                 "eval_split": spec.data.eval_split, "eval": _split_identity(data.eval_set),
                 "calibration_split": spec.data.calibration_split,
                 "calibration": _split_identity(data.calibration_set)},
        "input_size": list(input_size), "batch_sizes": list(spec.batch_sizes), "eval_batch_size": spec.eval_batch_size,
        "latency": spec.latency.model_dump(mode="json"), "seed": spec.seed,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
    }


def baseline_reference(record: dict) -> dict:
    """What other variants' fidelity depends on: the baseline's status and a hash of its detections."""
    detections = record.get("detections") if record.get("status") == "ok" else None
    digest = hashlib.sha256(json.dumps(detections, sort_keys=True).encode()).hexdigest() if detections else None
    return {"name": record["name"], "status": record.get("status"), "detections_sha256": digest}


def variant_fingerprint(run: dict, spec: ExperimentSpec, variant: VariantSpec, baseline: dict | None) -> dict:
    """`run` plus the variant's own spec, profile settings, libraries and (unless it is the baseline) `baseline`."""
    return {**run, "variant": variant.model_dump(mode="json"),
            "profile": spec.profile_of(variant).model_dump(mode="json"), "libraries": libraries_of(variant),
            "baseline": baseline}


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    return {prefix: value}


def differences(old: dict | None, new: dict) -> list[str]:
    """What differs between a stored fingerprint and the current one, one phrase per setting."""
    if not old:
        return ["the stored record has no fingerprint (written by an older version)"]
    before, after = _flatten(old), _flatten(new)
    changes = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            a, b = json.dumps(before.get(key)), json.dumps(after.get(key))
            changes.append(f"{key}: {a} -> {b}" if len(a) + len(b) < 80 else f"{key} changed")
    return changes
