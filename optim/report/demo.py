"""A realistic, made-up results dict, to preview the report without running an experiment:

    python -m optim.report.demo reports/demo      # writes reports/demo/index.html and results.csv

Also the fixture of the report tests. The figures are plausible for a small DETR on a 2-core CPU, not measured.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

# name, engine, precision, steps, mAP, p50 ms at batch 1, size MB, build s
_VARIANTS = [
    ("pytorch-fp32", "pytorch", "fp32", [], 0.412, 21.4, 166.2, 0.4),
    ("onnxruntime-fp32", "onnxruntime", "fp32", [], 0.412, 14.8, 165.9, 6.1),
    ("onnxruntime-int8", "onnxruntime", "int8", [{"kind": "quantize", "method": "ort_static"}], 0.398, 8.9, 42.3, 19.5),
    ("openvino-fp32", "openvino", "fp32", [], 0.412, 11.6, 166.0, 4.2),
    ("openvino-int8", "openvino", "int8", [{"kind": "quantize", "method": "nncf"}], 0.403, 7.4, 42.8, 31.0),
    ("pruned30-ort-int8", "onnxruntime", "int8",
     [{"kind": "prune", "method": "channels", "ratio": 0.3}, {"kind": "quantize", "method": "ort_static"}],
     0.371, 6.3, 30.1, 48.7),
]
_STAGE_SHARE = {"preprocess": 0.03, "backbone": 0.46, "encoder": 0.2, "decoder": 0.24, "heads": 0.02,
                "postprocess": 0.03, "other": 0.02}


def _latency(p50: float, batch: int, rng: random.Random) -> dict:
    # Batched runs amortize overhead: per-batch time grows sub-linearly with batch size.
    median = p50 * batch ** 0.82
    samples = sorted(median * (1 + abs(rng.gauss(0, 0.035))) - median * 0.02 for _ in range(300))
    samples += [median * 1.6, median * 2.4]  # the odd scheduler hiccup
    rng.shuffle(samples)
    ordered = sorted(samples)
    mean = sum(samples) / len(samples)
    std = (sum((s - mean) ** 2 for s in samples) / len(samples)) ** 0.5
    pick = lambda q: ordered[round(q * (len(ordered) - 1))]
    return {"p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99), "mean_ms": mean, "std_ms": std,
            "min_ms": ordered[0], "iters": len(samples), "throughput_ips": batch * 1000 / pick(0.5),
            "samples_ms": [round(s, 3) for s in samples]}


def _stages(p50: float, precision: str) -> dict:
    stages = {k: round(p50 * share * 0.97, 3) for k, share in _STAGE_SHARE.items()}
    int8 = precision == "int8"
    ops = [("/model/model/backbone/conv_encoder/model/layer4/layer4.0/conv1/Conv", "Conv", "backbone", 0.11),
           ("/model/model/encoder/layers.0/self_attn/MatMul", "MatMul", "encoder", 0.06),
           ("/model/model/decoder/layers.5/encoder_attn/MatMul_1", "MatMul", "decoder", 0.05),
           ("/model/model/backbone/conv_encoder/model/layer3/layer3.1/conv2/Conv", "Conv", "backbone", 0.045),
           ("/model/model/decoder/layers.2/fc1/MatMul", "MatMul", "decoder", 0.03)]
    return {"total_ms": round(sum(stages.values()), 3), "end_to_end_ms": round(p50, 3), "stages_ms": stages,
            "top_ops": [{"name": n, "op": o, "stage": s, "ms": round(p50 * f, 3),
                         "precision": "int8" if int8 and o in ("Conv", "MatMul") else "fp32"} for n, o, s, f in ops],
            "int8_ops": 212 if int8 else 0, "float_ops": 46 if int8 else 258,
            "fallback_warning": ("46 nodes (Softmax, LayerNormalization, Gather) stayed in float: the "
                                 "attention blocks run partly in fp32") if int8 else None}


def demo_results(trained: bool = True) -> dict:
    """A results dict with six successful variants and one failed one (a GPU engine on a CPU machine)."""
    rng = random.Random(0)
    variants = []
    for name, engine, precision, steps, mean_ap, p50, size_mb, build in _VARIANTS:
        spec = {"name": name, "steps": steps, "engine": {"kind": engine, "device": "cpu"}}
        variants.append({
            "name": name, "status": "ok", "error": None, "engine": engine, "precision": precision, "steps": steps,
            "spec": spec,
            "accuracy": {"map": mean_ap, "map_50": min(mean_ap * 1.62, 0.99), "map_75": mean_ap * 1.05,
                         "map_small": mean_ap * 0.55, "map_medium": mean_ap * 1.1, "map_large": -1,
                         "fidelity": 1.0 if precision == "fp32" else 0.9 + mean_ap / 5, "images": 200},
            "latency": {str(b): _latency(p50, b, rng) for b in (1, 8)},
            "build_seconds": build, "first_inference_ms": p50 * 3.1, "model_size_bytes": int(size_mb * 1e6),
            "peak_rss_mb": 700 + size_mb * 2, "threads": 2,
            "params": 41_300_000 if "pruned" not in name else 29_100_000,
            "flops": 2.9e9 if "pruned" not in name else 2.0e9,
            "stages": _stages(p50, precision),
            "profile_files": {"torch_profiler": f"traces/{name}.json", "pyinstrument": f"traces/{name}.html"},
            "notes": [f"built with {engine}; {len(steps)} step(s) before the engine"],
            "finished_at": "2026-11-25T19:58:00Z",
        })
    variants.append({
        "name": "tensorrt-fp16", "status": "failed", "engine": "tensorrt", "precision": "fp16",
        "error": "engine 'tensorrt' needs a CUDA GPU, and none was found (torch.cuda.is_available() is False)",
        "steps": [{"kind": "quantize", "method": "fp16"}],
        "spec": {"name": "tensorrt-fp16", "engine": {"kind": "tensorrt", "device": "cuda"}},
        "accuracy": None, "latency": {}, "stages": None, "profile_files": {}, "notes": [],
    })
    return {
        "experiment": "cpu-engines", "description": "Which CPU engine and precision gives the best latency for "
                                                    "an acceptable mAP loss?",
        "baseline": "pytorch-fp32", "generated_at": "2026-11-25T20:00:00Z",
        "spec": {"name": "cpu-engines", "model": "synth-detr", "batch_sizes": [1, 8],
                 "variants": [v["spec"] for v in variants]},
        "environment": {"python": "3.11.2", "torch": "2.13.0", "onnxruntime": "1.32.0", "openvino": "2026.4.0",
                        "cpu": "AMD EPYC 7B13", "cores": 2, "os": "Linux-6.1 x86_64", "gpu": None,
                        "machine": "x86_64"},
        "model": {"name": "synth-detr", "source": "shipped:synth-detr", "trained": trained, "input_size": [128, 128]},
        "measurement": {
            "latency": "Wall-clock time of engine.infer on preprocessed batches, after 10 warm-up runs; between "
                       "30 and 300 timed runs or 8 s, 2 intra-op threads, nothing else running.",
            "accuracy": "COCO mAP (pycocotools) on the first 200 images of the synthetic test split; fidelity = "
                        "share of baseline detections the variant reproduces (IoU >= 0.5, same class)."},
        "variants": variants,
    }


if __name__ == "__main__":
    from optim.report import write_report, write_tables

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/demo")
    results = demo_results()
    write_tables(results, out)
    print(write_report(results, out))
