"""Shared fixtures: a tiny synthetic COCO data set on disk and tiny DETRs built from config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from optim.data.synthetic import SplitSpec, SyntheticSpec, ensure_dataset

TINY_SPLITS = {"train": SplitSpec(clips=4, frames_per_clip=4), "val": SplitSpec(clips=2, frames_per_clip=4),
               "test": SplitSpec(clips=2, frames_per_clip=4)}


@pytest.fixture(scope="session")
def tiny_dataset_root(tmp_path_factory) -> Path:
    """A 64x64 synthetic data set with 16 train, 8 val and 8 test frames."""
    root = tmp_path_factory.mktemp("synthetic")
    return ensure_dataset(root, spec=SyntheticSpec(image_size=64, splits=TINY_SPLITS, seed=1))


@pytest.fixture
def tiny_model():
    """A random tiny DETR (64x64 input, one layer each) in eval mode."""
    from optim.models.zoo import load_model

    torch.manual_seed(0)
    return load_model("tiny-detr-arch").model


@pytest.fixture(scope="module")
def model():
    """Engine parity tests' model: a tiny DETR with random weights; the box head's last layer is re-drawn because DETR initializes it to
    zero, which makes every box exactly (0.5, 0.5, 0.5, 0.5) and a box comparison meaningless."""
    from optim.models.zoo import load_model

    torch.manual_seed(0)
    detr = load_model("tiny-detr-arch").model
    torch.nn.init.normal_(detr.bbox_predictor.layers[-1].weight, std=10.0)
    return detr.eval()


@pytest.fixture(scope="module")
def calibration() -> list[np.ndarray]:
    """Three random (2, 3, 64, 64) calibration batches."""
    rng = np.random.default_rng(1)
    return [rng.normal(size=(2, 3, 64, 64)).astype(np.float32) for _ in range(3)]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Three random 64x64 images for parity checks."""
    return np.random.default_rng(2).normal(size=(3, 3, 64, 64)).astype(np.float32)


DEMO_SPEC = """
name: demo
model: synth-detr
data: {{dataset: synthetic, root: {root}, eval_split: test, eval_images: 8, calibration_split: val, calibration_images: 16}}
batch_sizes: [1]
eval_batch_size: 4
latency: {{warmup_iters: 1, min_iters: 3, max_iters: 10, max_seconds: 0.5, reference_seconds: 0.5}}
profile: {{stages: false}}
output_dir: reports
variants:
  - name: pytorch-fp32
    engine: {{kind: pytorch}}
  - name: pytorch-int8-dynamic
    steps: [{{kind: quantize, method: torch_dynamic}}]
    engine: {{kind: pytorch}}
  - name: onnxruntime-int8
    steps: [{{kind: quantize, method: ort_static, per_channel: true}}]
    engine: {{kind: onnxruntime}}
  - name: openvino-int8
    steps: [{{kind: quantize, method: nncf}}]
    engine: {{kind: openvino}}
"""


SERVING_SPEC = """
name: serving
model: synth-detr
data: {{dataset: synthetic, root: {root}, eval_split: test, eval_images: 24, calibration_split: val,
        calibration_images: 8}}
batch_sizes: [1]
eval_batch_size: 8
latency: {{warmup_iters: 1, min_iters: 3, max_iters: 10, max_seconds: 0.3, threads: 1,
          reference_seconds: 0.5}}
profile: {{stages: false}}
output_dir: reports
variants:
  - name: onnxruntime-fp32
    engine: {{kind: onnxruntime}}
  - name: openvino-fp32
    engine: {{kind: openvino}}
  - name: pytorch-fp32
    engine: {{kind: pytorch}}
serving: {{variants: [onnxruntime-fp32], concurrency: [2], rates: [20], duration: 1, batching: [true]}}
"""


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory) -> Path:
    """A finished report of the shipped synth-detr (8 scored test images, 4 variants) for the demo's tests;
    its data set (the real synthetic val and test splits) lies in `<report>/../../data`."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("demo-report")
    spec = tmp / "demo.yaml"
    spec.write_text(DEMO_SPEC.format(root="data"))
    run = subprocess.run([sys.executable, "-m", "optim.run", str(spec)], capture_output=True, text=True, timeout=900,
                         check=False, cwd=tmp)  # a spec's output_dir stays under the working folder
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp / "reports" / "demo"


@pytest.fixture(scope="session")
def served_report(tmp_path_factory) -> Path:
    """A report of the shipped synth-detr on 24 test images (ONNX Runtime, OpenVINO and PyTorch FP32), for the
    serving tests: what optim.deploy and optim.serve start from. Its `serving:` section serves one variant during
    the run (recorded as failed, with the reason, where the serving environment is missing)."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("serving")
    root = ensure_dataset(tmp / "data", ("test", "val"))
    spec = tmp / "serving.yaml"
    spec.write_text(SERVING_SPEC.format(root=root))
    result = subprocess.run([sys.executable, "-m", "optim.run", str(spec)], capture_output=True, text=True,
                            timeout=600, check=False, cwd=tmp)  # a spec's output_dir stays under the working folder
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "reports" / "serving"
