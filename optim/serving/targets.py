"""python -m optim.serving.targets REPOSITORY — measure the serving targets of docs/serving.md on this machine.

Starts two servers of the repository on free loopback ports, one with its dynamic batching and one without,
then measures: served mAP vs in-process mAP (gRPC images to <variant>_detect, HTTP tensors to <variant>); the
server's overhead at concurrency 1 over HTTP and gRPC (served p50 minus in-process p50, alternating); and
throughput at concurrency 8 with and without batching, alternating short rounds between the two servers so
that a shared machine's drifting speed hits both alike. Prints a Markdown table; --json keeps everything."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from optim.cli import run_cli

OVERHEAD_TARGET_MS = 2.0  # gRPC, concurrency 1
BATCHING_TARGET = 1.5  # throughput ratio at concurrency 8


def measure(repository: Path, rounds: int, slice_s: float) -> dict:
    from optim.serving.accuracy import served_accuracy
    from optim.serving.engine import load_engine
    from optim.serving.launch import ServerProcess
    from optim.serving.loadgen import Target, closed_loop, paired_overhead
    from optim.serving.repository import read_manifest

    manifest = read_manifest(repository)
    models = [manifest["models"]["core"], manifest["models"]["detect"]]
    pixels = {"pixel_values": np.random.default_rng(0).normal(size=(1, 3, *manifest["input_size"])).astype(np.float32)}
    outputs = ["logits", "pred_boxes"]
    with ServerProcess(repository, models) as batching, ServerProcess(repository, models, ["--no-batching"]) as plain:
        def target(server, protocol: str) -> Target:
            url = server.http_url if protocol == "http" else server.grpc_url
            return Target(url, protocol, models[0], pixels, outputs, server.metrics_url)

        results: dict = {"variant": manifest["variant"], "serving": manifest["serving"],
                         "accuracy": [served_accuracy(batching.grpc_url, "grpc", manifest, "detect"),
                                      served_accuracy(batching.http_url, "http", manifest, "raw")]}
        engine = load_engine(repository, manifest, manifest["serving"]["threads"])
        try:
            # Many short alternating slices (0.5 s per side at the defaults): the machine's drift cancels better.
            results["overhead"] = {protocol: paired_overhead(target(batching, protocol), engine.infer,
                                                             2 * rounds * slice_s, rounds * 6)
                                   for protocol in ("http", "grpc")}
        finally:
            engine.close()
        results["concurrency_8"] = [{"batching": closed_loop(target(batching, "grpc"), 8, slice_s),
                                     "no_batching": closed_loop(target(plain, "grpc"), 8, slice_s)}
                                    for _ in range(rounds)]
    return results


def summary(results: dict) -> str:
    """Markdown: each target, the figure measured, met or not."""
    rows = ["| target | measured | met |", "|---|---|---|"]
    for acc in results["accuracy"]:
        rows.append(f"| served mAP = in-process mAP to 4 decimals ({acc['path']}, {acc['protocol']}) | "
                    f"{acc['served_map']:.4f} vs {acc['in_process_map']:.4f} on {acc['images']} images | "
                    f"{'yes' if acc['equal_to_4_decimals'] else 'NO'} |")
    ratios = [r["batching"]["throughput_ips"] / r["no_batching"]["throughput_ips"] for r in results["concurrency_8"]]
    median = statistics.median(ratios)
    on = [r["batching"] for r in results["concurrency_8"]]
    off = [r["no_batching"] for r in results["concurrency_8"]]

    def med(levels: list[dict], key: str) -> float:
        return statistics.median(level[key] for level in levels)

    rows.append(f"| dynamic batching >= {BATCHING_TARGET}x throughput at concurrency 8 (gRPC) | "
                f"{median:.2f}x (median of {len(ratios)} rounds, range {min(ratios):.2f}-{max(ratios):.2f}): "
                f"{med(on, 'throughput_ips'):.0f} vs {med(off, 'throughput_ips'):.0f} img/s, p99 "
                f"{med(on, 'p99_ms'):.1f} vs {med(off, 'p99_ms'):.1f} ms, mean batch "
                f"{med([r['server'] for r in on], 'mean_batch'):.2f} | {'yes' if median >= BATCHING_TARGET else 'NO'} |")
    for protocol, level in results["overhead"].items():
        overhead = level["overhead_p50_ms"]
        met = "-" if protocol == "http" else ("yes" if 0 <= overhead <= OVERHEAD_TARGET_MS else "NO")
        if overhead < 0:  # the in-process reference ran slower than the server: not a measurement of overhead
            met = "inconclusive (in-process slower)"
        rows.append(f"| overhead at concurrency 1 ({protocol}{', <= 2 ms' if protocol == 'grpc' else ''}) | "
                    f"{overhead:+.2f} ms: served p50 {level['p50_ms']:.2f} vs in-process "
                    f"{level['in_process']['p50_ms']:.2f} ms; server queue {level['server']['queue_ms']:.2f}, "
                    f"compute {level['server']['compute_infer_ms']:.2f} ms | {met} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m optim.serving.targets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repository", type=Path, help="a model repository written by optim.deploy")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per round and server (default 3)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    results = measure(args.repository, args.rounds, args.slice)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(summary(results))
    return 0


if __name__ == "__main__":
    run_cli(main)
