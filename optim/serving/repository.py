"""Write a Triton model repository for one measured variant of a report (`python -m optim.deploy`).

The model file is the runner's own artifact, copied byte for byte (no re-export, no re-quantization); the
manifest records what was measured about it and the sha256 of every file written."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from optim.errors import OptimError
from optim.results import write_json_atomic
from optim.serving import model_configs
from optim.serving.artifact_io import tensor_shapes
from optim.serving.measured import MeasuredVariant
from optim.serving.options import ServingOptions
from optim.serving.pbtxt import render

MANIFEST = "manifest.json"
HERE = Path(__file__).parent
OPTIM = HERE.parent
# Python-backend models: role -> (model.py template, the lab module copied beside it).
PYTHON_MODELS = {"preprocess": ("preprocess_model.py", OPTIM / "data" / "pixels.py"),
                 "postprocess": ("postprocess_model.py", OPTIM / "evaluation" / "postprocess.py")}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _prepare(out: Path) -> None:
    """`out` must be new, empty, or a repository written here before (then it is replaced)."""
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise OptimError("the output folder exists and is not a model repository written by optim.deploy",
                             path=out, field="--out", fix="give a new or empty folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _copy_artifact(artifact: Path, version_dir: Path) -> list[Path]:
    """The artifact (ONNX with any external data, or IR .xml + .bin) under Triton's default file names."""
    version_dir.mkdir(parents=True)
    if artifact.suffix == ".onnx":
        copies = {artifact: version_dir / "model.onnx"}
        copies.update({data: version_dir / data.name for data in artifact.parent.glob(artifact.name + ".data")})
    else:
        copies = {artifact: version_dir / "model.xml", artifact.with_suffix(".bin"): version_dir / "model.bin"}
    for source, target in copies.items():
        shutil.copyfile(source, target)
    return list(copies.values())


def _write_config(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.pbtxt"
    path.write_text(render(config) + "\n")
    return path


def write_repository(measured: MeasuredVariant, out: Path, options: ServingOptions,
                     id2label: dict[int, str]) -> dict:
    """Write the four models of `measured` (see `model_configs`) and manifest.json into `out`; returns the manifest."""
    artifact = measured.artifact
    shapes = tensor_shapes(artifact)
    missing = {model_configs.INPUT, *model_configs.RAW_OUTPUTS} - set(shapes)
    if missing:
        raise OptimError(f"the artifact lacks the tensors {sorted(missing)} that DETR's raw outputs need",
                         path=artifact, fix="re-run the variant so that the runner exports it again")
    _prepare(out)
    names = model_configs.model_names(measured.name)
    files = _copy_artifact(artifact, out / names["core"] / "1")
    files.append(_write_config(out / names["core"], model_configs.core_config(
        names["core"], measured.backend, shapes, options)))
    configs = {"preprocess": model_configs.preprocess_config(names["preprocess"], measured.input_size, options),
               "postprocess": model_configs.postprocess_config(names["postprocess"], shapes, options)}
    for role, (template, module) in PYTHON_MODELS.items():
        version_dir = out / names[role] / "1"
        version_dir.mkdir(parents=True)
        shutil.copyfile(HERE / "triton_models" / template, version_dir / "model.py")
        shutil.copyfile(module, version_dir / module.name)
        files += [version_dir / "model.py", version_dir / module.name, _write_config(out / names[role], configs[role])]
    (out / names["detect"] / "1").mkdir(parents=True)  # an ensemble still needs a version folder
    files.append(_write_config(out / names["detect"], model_configs.detect_config(names, shapes, options)))
    manifest = _manifest(measured, names, shapes, options, id2label, artifact, out, files)
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def _manifest(measured: MeasuredVariant, names: dict[str, str], shapes: dict[str, list[int]],
              options: ServingOptions, id2label: dict[int, str], artifact: Path, out: Path, files: list[Path]) -> dict:
    record, results = measured.record, measured.results
    return {
        "variant": measured.name, "experiment": results["experiment"], "report": str(measured.report_dir),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "spec": record["spec"], "engine": measured.engine.kind, "backend": measured.backend,
        "precision": record["precision"], "models": names, "input_size": list(measured.input_size),
        "tensors": shapes, "id2label": {str(k): v for k, v in sorted(id2label.items())},
        "serving": options.as_dict(),
        "measured": {"accuracy": record["accuracy"],
                     "latency": {bs: {k: stats[k] for k in ("p50_ms", "p99_ms", "throughput_ips")}
                                 for bs, stats in record["latency"].items()},
                     "threads": record.get("threads"), "data": results["spec"]["data"],
                     "generated_at": results.get("generated_at")},
        "source_artifact": {"path": str(artifact), "sha256": sha256(artifact)},
        "files": {str(path.relative_to(out)): sha256(path) for path in sorted(files)},
    }


def read_manifest(repository: Path) -> dict:
    """manifest.json of a repository written by optim.deploy (clear error otherwise)."""
    path = Path(repository) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise OptimError("no manifest.json: not a model repository written by optim.deploy", path=path,
                         fix="write one with: python -m optim.deploy reports/<experiment> --variant NAME --out DIR") \
            from error
    except json.JSONDecodeError as error:
        raise OptimError(f"manifest.json is not valid JSON ({error})", path=path,
                         fix="write the repository again with python -m optim.deploy") from error


def verify_files(repository: Path, manifest: dict) -> None:
    """Every file the manifest lists must still have its recorded sha256 (a changed model is refused)."""
    for name, digest in manifest["files"].items():
        path = Path(repository) / name
        if not path.is_file() or sha256(path) != digest:
            raise OptimError("file missing or changed since optim.deploy wrote it (sha256 differs)", path=path,
                             fix="write the repository again with python -m optim.deploy")


def deploy_variant(report: Path, variant: str, out: Path, options: ServingOptions) -> dict:
    """`optim.deploy`'s job: the repository of `variant` of the report in `report`, written to `out`."""
    from optim.models.zoo import load_model
    from optim.serving.measured import load_measured

    measured = load_measured(report, variant)
    model = measured.results["model"]
    classes = None if model["trained"] else model["classes"]  # architecture-only: the head the run sized
    id2label = load_model(model["name"], num_labels=classes, allow_download=False).model.config.id2label
    return write_repository(measured, out, options, id2label)
