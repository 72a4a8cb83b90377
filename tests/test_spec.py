"""Spec validation: every example spec validates; bad specs fail at load time naming file, field and fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from optim.errors import OptimError
from optim.spec import ExperimentSpec
from optim.spec_loading import load_spec
from optim.validate import spec_files, validate_file

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("path", spec_files([EXPERIMENTS]), ids=lambda p: p.name)
def test_every_example_spec_validates(path):
    assert validate_file(path, check_paths=path.name != "finetune_continue.yaml")  # it starts from another run's model


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


BASE = "name: t\nvariants:\n  - name: a\n    engine: {kind: pytorch}\n"


@pytest.mark.parametrize("text, field, hint", [
    ("name: t\nvariants: [\n", None, "invalid YAML at line"),
    (BASE + "colour: blue\n", "colour", "unknown key"),
    ("name: t\nvariants:\n  - name: a\n    steps: [{kind: sharpen}]\n", "variants.0.steps.0", "kind"),
    ("name: t\nvariants:\n  - name: a\n    steps: [{kind: quantize, method: magic}]\n", "variants.0.steps.0.quantize.method", "ort_static"),
    ("name: t\nvariants:\n  - name: a\n    steps: [{kind: quantize, method: fp16}]\n    engine: {kind: pytorch}\n",
     "variants.0", "device: cuda"),
    ("name: t\nvariants:\n  - name: a\n    steps: [{kind: quantize, method: nncf}]\n    engine: {kind: onnxruntime}\n",
     "variants.0", "cannot run on engine 'onnxruntime'"),
    ("name: t\nvariants:\n  - name: a\n    steps: [{kind: quantize, method: torch_dynamic}, {kind: prune, method: channels}]\n",
     "variants.0", "quantize must be the last step"),
    ("name: t\nvariants:\n  - name: a\n    engine: {kind: tensorrt}\n", "variants.0.engine", "device: cuda"),
    (BASE + "data: {eval_split: val, calibration_split: val}\n", "data", "calibration_split must differ"),
    (BASE + "baseline: b\n", None, "baseline 'b' is not a variant"),
    ("name: t\nvariants:\n  - name: a\n  - name: a\n", None, "repeated"),
    (BASE + "batch_sizes: [0]\n", "batch_sizes.0", "greater than or equal to 1"),
    ("name: ../escape\n" + BASE[8:], "name", "pattern"),
])
def test_bad_specs_name_file_field_and_fix(tmp_path, text, field, hint):
    path = _write(tmp_path, text)
    with pytest.raises(OptimError) as caught:
        load_spec(path, ExperimentSpec)
    message = str(caught.value)
    assert str(path) in message and hint in message
    if field:
        assert f"field '{field}" in message


def test_matrix_expands_and_skips_impossible_cells(tmp_path):
    spec = load_spec(_write(tmp_path, "name: m\nmatrix: {engines: [pytorch, onnxruntime, openvino], "
                                      "precisions: [fp32, int8, fp16]}\n"), ExperimentSpec)
    names = [v.name for v in spec.all_variants()]
    # fp16 is a GPU precision for PyTorch/ONNX Runtime on CPU; OpenVINO runs it where the CPU has FP16 support.
    assert names == ["pytorch-fp32", "pytorch-int8", "onnxruntime-fp32", "onnxruntime-int8",
                     "openvino-fp32", "openvino-int8", "openvino-fp16"]
    methods = {v.name: v.steps[0].method for v in spec.all_variants() if v.steps}
    assert methods["onnxruntime-int8"] == "ort_static" and methods["openvino-int8"] == "nncf"


def test_cli_exits_2_without_traceback(tmp_path):
    path = _write(tmp_path, BASE + "colour: blue\n")
    for module in ("optim.run", "optim.validate"):
        result = subprocess.run([sys.executable, "-m", module, str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "colour" in result.stderr
