"""The lab's OpenVINO INT8 against the recipe OpenVINO's documentation gives a user, on the same model and data.

    python benchmarks/openvino_recipe.py reports/int8 --variant openvino-int8-nncf [--pairs 3] [--seconds 10]

The hand-made model follows the docs literally: `ov.convert_model` straight from the Hugging Face model, then
`nncf.quantize(..., model_type=TRANSFORMER, subset_size=64)` on the run's calibration images. Both IRs are
scored with the lab's evaluator on the run's evaluation images, described (runtime layers, fused attention
ops, compute layers left in FP32) and timed by OpenVINO's own benchmark_app in alternating pairs (A B A B),
so that the comparison holds while the machine drifts. Prints one table; writes nothing but a scratch folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np


def describe(compiled) -> dict:
    """Runtime layers, fused attention ops and compute layers by precision of a compiled model."""
    from optim.engines.openvino_engine import executed_precisions

    types = Counter(op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ops())
    layers = sum(n for t, n in types.items() if t not in ("Const", "Input", "Output"))
    return {"runtime_layers": layers, "fused_attention": types.get("ScaledDotProductAttention", 0),
            "compute_precisions": executed_precisions(compiled)}


def hand_made_ir(model, images: list[np.ndarray], input_size: tuple[int, int], path: Path) -> Path:
    """OpenVINO's documented recipe: convert from PyTorch, NNCF INT8 for transformers on `images`."""
    import nncf
    import openvino as ov
    import torch

    example = torch.zeros(1, 3, *input_size)
    with torch.no_grad():
        ov_model = ov.convert_model(model, example_input={"pixel_values": example})
    quantized = nncf.quantize(ov_model, nncf.Dataset(images, lambda image: {"pixel_values": image}),
                              model_type=nncf.ModelType.TRANSFORMER, subset_size=len(images))
    ov.save_model(quantized, str(path))
    return path


def score(xml: Path, data) -> tuple[float, dict]:
    """mAP of an IR with the lab's shared post-processing and evaluator (outputs taken by name)."""
    import openvino as ov

    from optim.eval_data import predict

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    names = {name: output for output in compiled.outputs for name in output.get_names()}

    def infer(pixels: np.ndarray):
        result = compiled(pixels)
        return np.asarray(result[names["logits"]]), np.asarray(result[names["pred_boxes"]])

    return data.score(predict(infer, data.eval_batches, data.batch_size))["map"], describe(compiled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="a finished run's folder (results.json, artifacts/)")
    parser.add_argument("--variant", default="openvino-int8-nncf")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    from optim.eval_data import ExperimentData
    from optim.models.zoo import load_model
    from optim.quantize.nncf_quant import single_images
    from optim.spec import ExperimentSpec
    from optim.timing.reference import benchmark_app_median_ms

    results = json.loads((args.report / "results.json").read_text())
    spec = ExperimentSpec.model_validate(results["spec"])
    input_size = tuple(results["model"]["input_size"])
    model = load_model(spec.model).model
    data = ExperimentData(spec.data, input_size, spec.eval_batch_size)
    lab_xml = args.report / "artifacts" / args.variant / "model.xml"
    with tempfile.TemporaryDirectory() as scratch:
        hand_xml = hand_made_ir(model, single_images(data.calibration_batches), input_size, Path(scratch) / "hand.xml")
        rows = {"lab": (lab_xml, *score(lab_xml, data)), "hand-made": (hand_xml, *score(hand_xml, data))}
        times: dict[str, list[float]] = {name: [] for name in rows}
        for _ in range(args.pairs):
            for name, (xml, _, _) in rows.items():
                times[name].append(benchmark_app_median_ms(xml, "f32", spec.latency.threads, (1, 3, *input_size),
                                                             args.seconds)[0])
    print(f"{'IR':<10} {'mAP':>7} {'layers':>7} {'SDPA':>5}  compute precisions  benchmark_app median ms (pairs)")
    for name, (_, map_, info) in rows.items():
        print(f"{name:<10} {map_:7.4f} {info['runtime_layers']:7d} {info['fused_attention']:5d}  "
              f"{json.dumps(info['compute_precisions']):<19} {' '.join(f'{t:.2f}' for t in times[name])}")
    ratios = [hand / lab for hand, lab in zip(times["hand-made"], times["lab"])]
    print(f"speed of the lab's IR relative to the hand-made one (hand-made ms / lab ms per pair): "
          f"{' '.join(f'{r:.2f}' for r in ratios)}; median {float(np.median(ratios)):.2f}x")


if __name__ == "__main__":
    main()
