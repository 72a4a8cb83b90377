"""Batch-1 latency of each CPU engine, FP32 and INT8, with pytest-benchmark; mAP on the first 50 test
images goes into each result's extra_info. `make bench` saves them (--benchmark-autosave), so that runs can
be compared with `pytest-benchmark compare`."""

from __future__ import annotations

import pytest

from optim.eval_data import predict
from optim.spec import MatrixSpec

ROUNDS = 50
WARMUP_ROUNDS = 5
VARIANTS = MatrixSpec(engines=["pytorch", "onnxruntime", "openvino"], precisions=["fp32", "int8"]).expand()


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_engine_latency(benchmark, variant, build_engine, data, loaded):
    engine = build_engine(variant)
    detections = predict(engine.infer, data.eval_batches, data.batch_size)
    accuracy = data.score(detections)
    benchmark.group = f"{loaded.source} batch 1"
    benchmark.extra_info.update({"engine": variant.engine.kind, "precision": variant.precision,
                                 "map": round(accuracy["map"], 4), "map_50": round(accuracy["map_50"], 4),
                                 "eval_images": len(detections), "trained": loaded.trained})
    batch = data.example(1)
    logits, boxes = benchmark.pedantic(engine.infer, args=(batch,), rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS,
                                       iterations=1)
    assert logits.shape[:2] == boxes.shape[:2] and logits.shape[0] == 1
    if loaded.trained:
        # A trained detector scores well above zero on its own test split; 0 means a broken engine.
        assert accuracy["map"] > 0.05, accuracy
