"""python -m optim.load HOST:PORT --model NAME [--concurrency 1 8] [--rate 50] — load a Triton server and
measure it; or python -m optim.load HOST:PORT --accuracy REPOSITORY — served mAP vs in-process mAP.

Load: closed loop (each of N clients sends its next request when the last one answered) and open loop
(Poisson arrivals at a rate); per level p50/p90/p99 latency, throughput, errors, and, with --metrics-url,
Triton's queue/compute split. Accuracy: the evaluation split through the server, scored with the runner's
evaluator; exit 1, loudly, when the served mAP differs from the in-process one at 4 decimals."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from optim.cli import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m optim.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the server's HTTP or gRPC address, host:port (e.g. 127.0.0.1:8000)")
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--model", help="the model to load (the variant's name, or <variant>_detect with --image)")
    parser.add_argument("--concurrency", type=int, nargs="*", default=[], help="closed-loop levels")
    parser.add_argument("--rate", type=float, nargs="*", default=[], help="open-loop levels (requests/s)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="closed loop: untimed seconds first")
    parser.add_argument("--batch", type=int, default=1, help="images per request (default 1)")
    parser.add_argument("--image", type=Path, help="an encoded image to send to a _detect model")
    parser.add_argument("--metrics-url", help="Triton's Prometheus endpoint, e.g. http://127.0.0.1:8002/metrics")
    parser.add_argument("--accuracy", type=Path, metavar="REPOSITORY",
                        help="measure served accuracy for the repository optim.deploy wrote")
    parser.add_argument("--path", choices=("detect", "raw", "both"), default="both",
                        help="accuracy: images to <variant>_detect, tensors to <variant>, or both")
    parser.add_argument("--data-root", type=Path, help="accuracy: the data set folder, if not where the run had it")
    parser.add_argument("--in-process", type=Path, metavar="REPOSITORY",
                        help="first measure the server's overhead at concurrency 1: served p50 - p50 of the "
                             "repository's model run in this process on the same input, alternating the two")
    parser.add_argument("--threads", type=int, help="--in-process: intra-op threads, 0 = all (default: the "
                                                     "repository's; give the server's --threads if overridden)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser.parse_args()


def request_inputs(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """One request: a random normal tensor of the model's input shape (DETR's compute does not depend on pixel
    values), or --image's bytes for a model that takes encoded images."""
    from optim.errors import OptimError
    from optim.serving.client import TritonClient

    client = TritonClient(args.url, args.protocol)
    try:
        name, data_type, dims = client.first_input(args.model)
    finally:
        client.close()
    if data_type in ("TYPE_STRING", "BYTES"):
        if args.image is None or not args.image.is_file():
            raise OptimError(f"model '{args.model}' takes encoded images", field="--image",
                             fix="give --image FILE (a JPEG or PNG)")
        return {name: np.array([[args.image.read_bytes()]] * args.batch, dtype=np.object_)}
    return {name: np.random.default_rng(0).normal(size=(args.batch, *dims)).astype(np.float32)}


def run_load(args: argparse.Namespace) -> list[dict]:
    from optim.errors import OptimError
    from optim.serving.loadgen import Target, closed_loop, open_loop

    if not args.model or not (args.concurrency or args.rate or args.in_process):
        raise OptimError("nothing to measure", field="--model/--concurrency/--rate",
                         fix="give --model and --concurrency, --rate or --in-process (or --accuracy REPOSITORY)")
    outputs = ["boxes", "scores", "labels"] if args.image else ["logits", "pred_boxes"]
    target = Target(args.url, args.protocol, args.model, request_inputs(args), outputs, args.metrics_url)
    levels = []
    if args.in_process:
        from optim.serving.engine import load_engine
        from optim.serving.loadgen import paired_overhead
        from optim.serving.repository import read_manifest

        manifest = read_manifest(args.in_process)
        threads = manifest["serving"]["threads"] if args.threads is None else args.threads
        engine = load_engine(args.in_process, manifest, threads)
        try:
            levels.append(paired_overhead(target, engine.infer, args.duration))
        finally:
            engine.close()
        levels[-1]["in_process"]["threads"] = threads
    levels += [closed_loop(target, c, args.duration, args.warmup) for c in args.concurrency]
    levels += [open_loop(target, rate, args.duration) for rate in args.rate]
    for level in levels:
        print(_describe(args, level))
    return levels


def _describe(args: argparse.Namespace, level: dict) -> str:
    """One line per load level."""
    where = {"closed": f"concurrency {level.get('concurrency')}", "open": f"rate {level.get('rate', 0):g}/s",
             "paired": "concurrency 1 alternating with in-process"}[level["mode"]]
    server = level.get("server") or {}
    text = (f"{args.protocol} {args.model} {where}: {level['throughput_ips']:.1f} img/s, p50 {level.get('p50_ms')} "
            f"p90 {level.get('p90_ms')} p99 {level.get('p99_ms')} ms, {level['errors']} errors")
    if server:
        text += (f"; server queue {server.get('queue_ms')} ms, compute {server.get('compute_infer_ms')} ms, "
                 f"batch {server.get('mean_batch')}")
    if "in_process" in level:
        text += (f"; in-process p50 {level['in_process']['p50_ms']} ms ({level['in_process']['iters']} calls): "
                 f"overhead {level.get('overhead_p50_ms', float('nan')):+.3f} ms")
    return text


def run_accuracy(args: argparse.Namespace) -> tuple[list[dict], bool]:
    from optim.serving.accuracy import served_accuracy
    from optim.serving.repository import read_manifest

    manifest = read_manifest(args.accuracy)
    results = [served_accuracy(args.url, args.protocol, manifest, path, root=args.data_root)
               for path in (("detect", "raw") if args.path == "both" else (args.path,))]
    for result in results:
        verdict = "equal" if result["equal_to_4_decimals"] else "MISMATCH"
        print(f"{manifest['variant']} via {result['path']} ({result['protocol']}): served mAP {result['served_map']:.4f} "
              f"vs in-process {result['in_process_map']:.4f} on {result['images']} images: {verdict}")
    return results, all(r["equal_to_4_decimals"] for r in results)


def main() -> int:
    args = parse_args()
    if args.accuracy:
        results, equal = run_accuracy(args)
    else:
        results, equal = run_load(args), True
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if not equal:
        print("error: the served mAP differs from the in-process mAP of the same variant (see above): the served "
              "model or its pre/post-processing is not what was measured", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
