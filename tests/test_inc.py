"""Intel Neural Compressor 3.x accuracy-aware INT8 (PT2E) on the tiny random DETR (64x64).

A random DETR scores mAP 0 against real annotations, so the tuning metric here is COCO mAP (pycocotools,
the project's post-processing) of a candidate against the FP32 model's own confident detections on the
tiny data set's val images: FP32 scores exactly 1.0 and quantization error lowers it. The two tuning tests
take ~10 s each on one core (torch.export of the DETR, then one calibrate + convert + evaluate per trial)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from optim.data.coco import CocoDetection, CocoFolder
from optim.engines.base import BuildContext
from optim.engines.pytorch_engine import PyTorchEngine
from optim.errors import OptimError
from optim.evaluation.coco_eval import coco_metrics
from optim.evaluation.postprocess import postprocess
from optim.models.zoo import load_model
from optim.quantize.inc_quant import QuantizedDetr, fallback_plans, quantize_inc_torch
from optim.spec import EngineSpec, QuantizeStep, VariantSpec

needs_inc = pytest.mark.skipif(any(importlib.util.find_spec(p) is None for p in ("neural_compressor", "torchao")),
                               reason="Neural Compressor 3.x / torchao are not installed (extra 'inc')")

SIZE = (64, 64)
# Mean |INT8 - FP32| allowed on raw outputs of the tuned model (observed ~1e-4 on logits, ~1e-5 on boxes).
MEAN_ATOL = {"logits": 0.01, "pred_boxes": 0.001}
OUTLIER_SCALE = 30.0
GT_SCORE_QUANTILE = 0.75  # the FP32 detections above this score quantile are the reference "ground truth"


@pytest.fixture(scope="module")
def model():
    """Tiny random DETR with two edits. DETR initializes the box head's last layer to zero (every box
    identical), so it is re-drawn. And one channel of the decoder's output is scaled up: an activation
    outlier, the classic reason for INT8 fallback. Per-tensor INT8 of the heads' input then rounds every
    other channel away (full INT8 scores mAP ~0.67 here), while the decoder itself quantizes well."""
    torch.manual_seed(0)
    detr = load_model("tiny-detr-arch").model
    torch.nn.init.normal_(detr.bbox_predictor.layers[-1].weight, std=1.0)
    with torch.no_grad():
        detr.model.decoder.layernorm.weight[0] = OUTLIER_SCALE
    return detr.eval()


@pytest.fixture(scope="module")
def val_batches(tiny_dataset_root) -> list[np.ndarray]:
    """The 8 val images, preprocessed, in batches of 4 (calibration and tuning images)."""
    dataset = CocoDetection(CocoFolder.from_root(tiny_dataset_root, "val"), SIZE)
    pixels = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
    return [pixels[:4], pixels[4:]]


def float_forward(model):
    """The float DETR as evaluate_torch's `forward`: pixel_values -> (logits, pred_boxes)."""

    def forward(pixel_values: torch.Tensor):
        outputs = model(pixel_values=pixel_values)
        return outputs.logits, outputs.pred_boxes

    return forward


def detections_of(forward, batches: list[np.ndarray]) -> dict:
    detections = {}
    with torch.no_grad():
        for batch in batches:
            logits, boxes = forward(torch.from_numpy(batch))
            for det in postprocess(logits.numpy(), boxes.numpy(), np.tile(SIZE, (len(batch), 1))):
                detections[len(detections)] = det
    return detections


def self_consistency_map(model, batches: list[np.ndarray]):
    """evaluate_torch for the tests: mAP of a candidate against the FP32 model's confident detections."""
    from pycocotools.coco import COCO

    reference = detections_of(float_forward(model), batches)
    threshold = np.quantile(np.concatenate([d.scores for d in reference.values()]), GT_SCORE_QUANTILE)
    annotations = []
    for image_id, det in reference.items():
        for box, score, label in zip(det.boxes, det.scores, det.labels):
            if score > threshold:
                x0, y0, x1, y1 = (float(v) for v in box)
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    classes = model.config.num_labels
    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in reference], "annotations": annotations,
                  "categories": [{"id": c + 1} for c in range(classes)]}
    gt.createIndex()
    return lambda forward: coco_metrics(gt, detections_of(forward, batches), list(range(1, classes + 1)))["map"]


def test_fallback_plans_go_from_full_int8_to_more_fp32_work():
    macs = {"backbone": 100, "encoder": 40, "decoder": 30, "heads": 1}
    plans = fallback_plans(macs, keep_float=[])
    assert plans[:4] == [(), ("heads",), ("decoder",), ("decoder", "heads")]
    assert len(plans) == 15 and ("backbone", "decoder", "encoder", "heads") not in plans  # all-FP32 never tried
    assert [sum(macs[b] for b in p) for p in plans] == sorted(sum(macs[b] for b in p) for p in plans)
    assert all("backbone" not in plan for plan in fallback_plans(macs, keep_float=["backbone"]))
    assert fallback_plans(macs, keep_float=["backbone", "encoder", "decoder", "heads"]) == []


def test_spec_allows_inc_on_pytorch_engines_only():
    step = {"kind": "quantize", "method": "inc"}
    for kind in ("pytorch", "torch_compile"):
        VariantSpec(name="v", steps=[step], engine={"kind": kind})
    with pytest.raises(ValueError, match="cannot run on engine 'onnxruntime'"):
        VariantSpec(name="v", steps=[step], engine={"kind": "onnxruntime"})


def test_input_errors_are_clear(model, val_batches):
    step = QuantizeStep(kind="quantize", method="inc")
    with pytest.raises(OptimError, match="no evaluation function"):
        quantize_inc_torch(model, step, val_batches, None, val_batches[0])
    with pytest.raises(OptimError, match="calibration 'percentile'"):
        quantize_inc_torch(model, step.model_copy(update={"calibration": "percentile"}), val_batches,
                           lambda forward: 1.0, val_batches[0])
    with pytest.raises(OptimError, match="nothing is left"):
        quantize_inc_torch(model, step.model_copy(update={"keep_float": ["backbone", "encoder", "decoder", "heads"]}),
                           val_batches, lambda forward: 1.0, val_batches[0])


@pytest.mark.slow
@needs_inc
def test_engine_falls_back_to_fp32_heads_within_tolerance(model, val_batches, tmp_path):
    """Trial 1 (full INT8) loses ~33% mAP; trial 2 keeps the cheapest block, the heads, in FP32 and passes."""
    evaluate = self_consistency_map(model, val_batches)
    assert evaluate(float_forward(model)) == pytest.approx(1.0)  # FP32 vs itself
    step = QuantizeStep(kind="quantize", method="inc", accuracy_tolerance=0.1, max_trials=3)
    engine = PyTorchEngine(EngineSpec(kind="pytorch"))
    info = engine.build(model, step, BuildContext(workdir=tmp_path, input_size=SIZE, calibration=val_batches,
                                                  evaluate_torch=evaluate))
    assert isinstance(engine.model, QuantizedDetr)
    assert info.notes[0].startswith("INC ") and "trial 2 of at most 3 passed" in info.notes[0], info.notes
    # the heads are 4 Linear layers (class head + 3-layer box MLP); everything else runs INT8
    assert info.notes[1] == "kept in FP32: heads (fallback); Conv/Linear INT8: 23, FP32: 4 (heads 4)", info.notes
    images = np.concatenate(val_batches)
    with torch.no_grad():
        reference = model(pixel_values=torch.from_numpy(images))
    for batch in (images[:1], images[:3]):  # the batch dimension is dynamic
        logits, boxes = engine.infer(batch)
        assert logits.shape == (len(batch), 8, 5) and boxes.shape == (len(batch), 8, 4)
        for name, value in (("logits", logits), ("pred_boxes", boxes)):
            expected = getattr(reference, name)[: len(batch)].numpy()
            assert np.abs(value - expected).mean() < MEAN_ATOL[name], name
            assert not np.array_equal(value, expected), f"{name} unchanged: nothing was quantized"
    engine.close()


@pytest.mark.slow
@needs_inc
def test_impossible_target_raises(model, val_batches):
    """Tolerance 0 against a metric that any INT8 error lowers: no trial can pass. INC alone would hand back
    its best failing trial once max_trials is spent; quantize_inc_torch refuses it with a clear error."""
    images = torch.from_numpy(np.concatenate(val_batches))
    with torch.no_grad():
        reference = model(pixel_values=images).logits

    def exact_agreement(forward) -> float:
        return 1.0 / (1.0 + float((forward(images)[0] - reference).abs().mean()))

    step = QuantizeStep(kind="quantize", method="inc", accuracy_tolerance=0.0, max_trials=2)
    with pytest.raises(OptimError, match=r"no INT8 configuration within 0\.0% .* in 2 trial\(s\): trial 1 "
                                         r"\(FP32: none\).*trial 2 \(FP32: heads\)"):
        quantize_inc_torch(model, step, val_batches, exact_agreement, val_batches[0])


def test_compile_engine_closes_cleanly_when_build_fails_before_compiling():
    """A failed INC build must surface its own error, not one from close()."""
    from optim.engines.pytorch_engine import TorchCompileEngine
    from optim.spec import EngineSpec

    engine = TorchCompileEngine(EngineSpec(kind="torch_compile"))
    engine.freezing = True  # as set by the INC branch before tuning runs
    engine.close()
    assert engine.freezing is False
