"""Fixtures of the engine benchmarks (python -m pytest benchmarks): the model, its evaluation data, and
built engines. Not part of `pytest tests/`: run with `make bench`."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = "synth-detr"
EVAL_IMAGES = 50
CALIBRATION_IMAGES = 32


def pytest_addoption(parser):
    parser.addoption("--bench-model", default=DEFAULT_MODEL,
                     help=f"zoo name / folder of the model to benchmark (default {DEFAULT_MODEL})")
    parser.addoption("--bench-threads", type=int, default=None,
                     help="intra-op threads of every engine (default: all cores)")


@pytest.fixture(scope="session")
def loaded(request):
    """The benchmarked model; the shipped default is skipped, with the reason, until its weights exist."""
    from optim.models.zoo import SHIPPED, load_model

    name = request.config.getoption("--bench-model")
    if name in SHIPPED and not (SHIPPED[name] / "model.safetensors").is_file():
        pytest.skip(f"no trained weights in {SHIPPED[name]} (train them with python -m optim.finetune, "
                    "or pass --bench-model tiny-detr-arch)")
    return load_model(name)


@pytest.fixture(scope="session")
def data(loaded):
    """The first 50 synthetic test images (scored) and 32 validation images (calibration), preprocessed."""
    from optim.eval_data import ExperimentData
    from optim.spec import DataSpec

    spec = DataSpec(root=ROOT / "data" / "synthetic", eval_images=EVAL_IMAGES, calibration_images=CALIBRATION_IMAGES)
    return ExperimentData(spec, tuple(loaded.default_input_size), batch_size=8)


@pytest.fixture(scope="session")
def build_engine(request, loaded, data, tmp_path_factory):
    """Build (once per session) the engine of a variant; a missing engine or quantizer skips."""
    from optim.engines.base import BuildContext
    from optim.engines.registry import check_available, create_engine
    from optim.errors import MissingExtraError
    from optim.eval_data import torch_threads

    threads = request.config.getoption("--bench-threads")
    torch_threads(threads)
    engines = {}

    def build(variant):
        if variant.name not in engines:
            quantize = next((s for s in variant.steps if s.kind == "quantize"), None)
            try:
                check_available(variant.engine, quantize.method if quantize else None)
            except MissingExtraError as error:
                pytest.skip(str(error))
            engine = create_engine(variant.engine)
            engine.build(loaded.model, quantize, BuildContext(workdir=tmp_path_factory.mktemp(variant.name),
                                                              input_size=data.input_size, threads=threads,
                                                              calibration=data.calibration_batches))
            engines[variant.name] = engine
        return engines[variant.name]

    yield build
    for engine in engines.values():
        engine.close()
