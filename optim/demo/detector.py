"""A detector for the demo: a zoo model on eager PyTorch, or a variant of a finished report run from the engine
artifact the runner built (ONNX file, OpenVINO IR) — no re-export, no re-quantization — with the variant's
measured mAP and latency from `results.json` beside it.

Images go through the lab's own pre-processing (`optim.data.transforms`) and shared post-processing
(`optim.evaluation.postprocess`), so a variant detects here exactly what the runner scored."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from optim.data.transforms import preprocess_image
from optim.engines.base import BuildContext, Engine
from optim.errors import OptimError
from optim.evaluation.postprocess import Detections, postprocess

DEFAULT_MODEL = "synth-detr"


@dataclass(frozen=True)
class Choice:
    """What to run: a zoo model (`model`), or `variant` of the report in folder `report`."""

    model: str = DEFAULT_MODEL
    report: Path | None = None
    variant: str | None = None
    threads: int | None = None  # engine threads; None = the engine's default (how the report timed it)

    @property
    def label(self) -> str:
        """How the apps list it."""
        return f"{self.report.name}: {self.variant}" if self.report else f"{self.model} (PyTorch FP32)"


@dataclass
class FrameResult:
    """Detections of one image (original pixels, above the threshold) and how long they took."""

    detections: Detections
    infer_ms: float  # the engine alone, as the report times it
    total_ms: float  # pre-processing + engine + post-processing


@dataclass
class Detector:
    """A loaded engine plus what the apps show about it; `detect` is safe to call from several threads."""

    choice: Choice
    engine: Engine
    input_size: tuple[int, int]
    labels: list[str]
    measured: dict | None = None  # engine, precision, map, p50_ms from the report; None for a zoo model
    load_seconds: float = 0.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # an OpenVINO infer request or an ORT session must not run twice at once

    def detect(self, image: Image.Image, threshold: float = 0.5) -> FrameResult:
        """Detect on an RGB image; boxes come back in its own pixel coordinates."""
        start = time.perf_counter()
        pixels = preprocess_image(image, self.input_size).numpy()[None]
        with self._lock:
            engine_start = time.perf_counter()
            logits, boxes = self.engine.infer(pixels)
            infer_ms = (time.perf_counter() - engine_start) * 1000
        detections = postprocess(logits, boxes, np.array([[image.height, image.width]]), threshold)[0]
        return FrameResult(detections, infer_ms, (time.perf_counter() - start) * 1000)

    def describe(self) -> str:
        """One Markdown line: what runs, and for a report variant its measured mAP and latency."""
        if self.measured is None:
            return f"**{self.choice.label}** — zoo model, eager PyTorch FP32 (loaded in {self.load_seconds:.1f} s)"
        m = self.measured
        return (f"**{self.choice.label}** — {m['engine']} {m['precision']}; measured by the report: mAP@[.5:.95] "
                f"{m['map']:.4f}, p50 batch 1 {m['p50_ms']:.2f} ms (loaded in {self.load_seconds:.1f} s)")


def load_detector(choice: Choice) -> Detector:
    """Load what `choice` names; user mistakes (unknown model or variant, missing artifact) raise OptimError."""
    start = time.perf_counter()
    detector = _load_variant(choice) if choice.report else _load_zoo(choice)
    # One warm-up inference (engines allocate and pick kernels on the first): the first frame a user sees is timed
    # like the others.
    detector.engine.infer(np.zeros((1, 3, *detector.input_size), np.float32))
    detector.load_seconds = time.perf_counter() - start
    return detector


def _pytorch_engine(model, input_size: tuple[int, int], threads: int | None) -> Engine:
    from optim.engines.registry import create_engine
    from optim.spec import EngineSpec

    if threads:
        import torch

        torch.set_num_threads(threads)  # process-wide, as PyTorch has it

    engine = create_engine(EngineSpec(kind="pytorch"))
    engine.build(model, None, BuildContext(workdir=Path("."), input_size=input_size))
    return engine


def _load_zoo(choice: Choice) -> Detector:
    from optim.models.zoo import load_model

    loaded = load_model(choice.model, allow_download=False)
    config = loaded.model.config
    labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    return Detector(choice, _pytorch_engine(loaded.model, loaded.default_input_size, choice.threads), loaded.default_input_size,
                    labels)


def read_results(report: Path) -> dict:
    """A report's results.json, with a clear error when it is missing or not JSON."""
    path = Path(report) / "results.json"
    if not path.is_file():
        raise OptimError("no results.json: not a finished report", path=report,
                         fix="give the folder a run wrote (python -m optim.run SPEC writes reports/<name>/)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OptimError(f"results.json is not valid JSON ({error})", path=path,
                         fix="run the experiment again to rewrite it") from error


def loadable_variants(report: Path) -> list[str]:
    """The report's variants the demo can run: finished, with a built artifact on disk (or plain PyTorch FP32)."""
    results = read_results(report)
    names = []
    for record in results.get("variants", []):
        try:
            _plan(Path(report), results, record)
        except OptimError:
            continue
        names.append(record["name"])
    return names


def _plan(report: Path, results: dict, record: dict):
    """(engine, artifact or None, quantize step) for a variant record; OptimError when it cannot run here."""
    from optim.engines.registry import check_available, create_engine
    from optim.results import safe_child
    from optim.spec import QuantizeStep, VariantSpec

    if record.get("status") != "ok":
        raise OptimError(f"variant '{record.get('name')}' did not finish ({record.get('error')})", path=report,
                         fix="choose a variant that finished")
    variant = VariantSpec.model_validate(record["spec"])
    quantize = next((s for s in variant.steps if isinstance(s, QuantizeStep)), None)
    check_available(variant.engine, quantize.method if quantize else None)
    engine = create_engine(variant.engine)
    artifact = engine.artifact_in(safe_child(report / "artifacts", variant.name), quantize)
    if artifact is None and (variant.steps or not results["model"].get("trained", False)):
        raise OptimError(f"variant '{variant.name}' ran on engine '{variant.engine.kind}' in memory: there is no "
                         "built artifact to load", path=report, fix="choose an onnxruntime or openvino variant")
    if artifact is not None and not artifact.is_file():
        raise OptimError(f"variant '{variant.name}': its built artifact is missing", path=artifact,
                         fix="run the experiment again to rebuild it")
    return engine, artifact, quantize


def _load_variant(choice: Choice) -> Detector:
    report = Path(choice.report)
    results = read_results(report)
    records = {r.get("name"): r for r in results.get("variants", [])}
    if choice.variant not in records:
        raise OptimError(f"the report has no variant '{choice.variant}'", path=report, field="--variant",
                         fix="choose one of: " + ", ".join(loadable_variants(report)))
    record = records[choice.variant]
    engine, artifact, quantize = _plan(report, results, record)
    input_size = tuple(results["model"]["input_size"])
    if artifact is None:  # plain PyTorch FP32: the report's model itself is what that variant ran
        from optim.models.zoo import load_model

        engine = _pytorch_engine(load_model(results["model"]["name"], allow_download=False).model, input_size,
                                 choice.threads)
    else:
        engine.load(artifact, quantize, choice.threads)
    latency = record.get("latency", {})
    single = latency.get("1") or next(iter(latency.values()))
    measured = {"engine": record["engine"], "precision": record["precision"], "map": record["accuracy"]["map"],
                "p50_ms": single["p50_ms"]}
    return Detector(choice, engine, input_size, label_names(results), measured)


def label_names(results: dict) -> list[str]:
    """Class names of a report's model: its config's id2label (zoo or local folder), else the synthetic
    data set's categories when the counts match, else 'class <i>'."""
    from optim.data.synthetic import CATEGORIES
    from optim.models.zoo import SHIPPED

    name, classes = results["model"]["name"], int(results["model"]["classes"])
    folder = SHIPPED.get(name, Path(name))
    config = folder / "config.json"
    if config.is_file():
        id2label = json.loads(config.read_text()).get("id2label", {})
        if len(id2label) == classes:
            return [str(id2label[str(i)]) for i in range(classes)]
    if results.get("spec", {}).get("data", {}).get("dataset") == "synthetic" and classes == len(CATEGORIES):
        return [c["name"] for c in CATEGORIES]
    return [f"class {i}" for i in range(classes)]
