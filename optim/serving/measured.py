"""A variant as the runner measured it: its record in a report folder and the artifact it ran."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from optim.errors import OptimError
from optim.spec import EngineSpec, QuantizeStep, VariantSpec

# Engines whose artifact a Triton backend serves: engine kind -> Triton backend.
BACKENDS = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
# Artifact file names of reports written before records named their artifact (optim.engines.*).
LEGACY_ARTIFACTS = {("onnxruntime", "ort_static"): "model.int8.onnx",
                    ("onnxruntime", "ort_dynamic"): "model.int8-dynamic.onnx",
                    ("onnxruntime", "fp16"): "model.fp16.onnx", ("onnxruntime", None): "model.onnx"}


@dataclass
class MeasuredVariant:
    """One finished variant of a report: `results` is results.json, `record` its entry there."""

    report_dir: Path
    results: dict
    record: dict

    @property
    def name(self) -> str:
        return self.record["name"]

    @cached_property
    def spec(self) -> VariantSpec:
        return VariantSpec.model_validate(self.record["spec"])

    @property
    def engine(self) -> EngineSpec:
        return self.spec.engine

    @property
    def quantize(self) -> QuantizeStep | None:
        return next((s for s in self.spec.steps if isinstance(s, QuantizeStep)), None)

    @property
    def backend(self) -> str:
        return BACKENDS[self.engine.kind]

    @property
    def input_size(self) -> tuple[int, int]:
        height, width = self.results["model"]["input_size"]
        return int(height), int(width)

    @property
    def artifact(self) -> Path:
        """The file the engine ran (ONNX or OpenVINO IR .xml), as the runner left it."""
        folder = self.report_dir / "artifacts" / self.name
        name = self.record.get("artifact")
        if name is None:
            method = self.quantize.method if self.quantize else None
            name = "model.xml" if self.engine.kind == "openvino" else LEGACY_ARTIFACTS.get((self.engine.kind, method))
        path = folder / str(name)
        if name is None or not path.is_file():
            raise OptimError(f"the artifact of variant '{self.name}' is missing", path=path,
                             fix=f"re-run the experiment for it: python -m optim.run SPEC --only {self.name} --fresh")
        return path


def load_measured(report_dir: Path, variant: str) -> MeasuredVariant:
    """Variant `variant` of the report in `report_dir`; an unknown, failed or unservable one raises OptimError."""
    results_path = Path(report_dir) / "results.json"
    try:
        results = json.loads(results_path.read_text())
    except FileNotFoundError as error:
        raise OptimError("no results.json: not a report folder", path=results_path,
                         fix="give the folder optim.run wrote, e.g. reports/int8") from error
    except json.JSONDecodeError as error:
        raise OptimError(f"results.json is not valid JSON ({error})", path=results_path,
                         fix="re-run the experiment (python -m optim.run SPEC)") from error
    records = {r["name"]: r for r in results.get("variants", [])}
    if variant not in records:
        raise OptimError(f"no variant '{variant}' in this report (it has: {', '.join(records) or 'none'})",
                         path=results_path, field="--variant", fix="give one of the report's variant names")
    record = records[variant]
    if record.get("status") != "ok":
        raise OptimError(f"variant '{variant}' failed in this run ({record.get('error')}), so nothing was measured "
                         "to deploy", path=results_path, field="--variant", fix="fix the variant and re-run it")
    measured = MeasuredVariant(Path(report_dir), results, record)
    if measured.engine.kind not in BACKENDS:
        raise OptimError(f"variant '{variant}' runs on engine '{measured.engine.kind}', which keeps its model in "
                         "memory or builds it for one GPU: there is no measured file for a Triton backend to serve",
                         path=results_path, field="--variant",
                         fix="deploy an onnxruntime or openvino variant (Triton's onnxruntime/openvino backends)")
    if measured.engine.device != "cpu":
        raise OptimError(f"variant '{variant}' was measured on {measured.engine.device}; serving here is CPU only",
                         path=results_path, field="--variant", fix="deploy a CPU variant")
    return measured
