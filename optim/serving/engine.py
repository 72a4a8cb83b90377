"""The lab's engine on a repository's copy of the measured artifact: what each server instance runs, and the
in-process reference the server's overhead is measured against."""

from __future__ import annotations

from pathlib import Path

from optim.engines.registry import create_engine
from optim.spec import QuantizeStep, VariantSpec


def load_engine(repository: Path, manifest: dict, threads: int):
    """One engine instance running the repository's copy of the measured artifact (`Engine.load`);
    `threads` 0 = the engine's default."""
    spec = VariantSpec.model_validate(manifest["spec"])
    quantize = next((s for s in spec.steps if isinstance(s, QuantizeStep)), None)
    filename = "model.onnx" if manifest["backend"] == "onnxruntime" else "model.xml"
    engine = create_engine(spec.engine)
    engine.load(Path(repository) / manifest["models"]["core"] / "1" / filename, quantize, threads or None)
    return engine
