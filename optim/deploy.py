"""python -m optim.deploy REPORT --variant NAME --out DIR — a Triton model repository for a measured variant.

Copies the file the runner built and measured (ONNX for Triton's onnxruntime backend, OpenVINO IR for its
openvino backend), writes config.pbtxt files (dynamic batching, KIND_CPU instances), Python-backend pre- and
post-processing with an ensemble that takes encoded images, and manifest.json (spec, measured mAP and latency,
sha256 of every file). Serve it with `python -m optim.serve DIR` (docs/serving.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from optim.cli import run_cli
from optim.serving.options import ServingOptions


def add_serving_arguments(parser: argparse.ArgumentParser) -> None:
    """Batching and instance options shared with optim.serve."""
    defaults = ServingOptions()
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument("--preferred-batch-sizes", type=int, nargs="+", default=list(defaults.preferred_batch_sizes))
    parser.add_argument("--queue-delay-us", type=int, default=defaults.max_queue_delay_us,
                        help="dynamic batching: longest wait to fill a preferred batch (microseconds)")
    parser.add_argument("--instances", type=int, default=defaults.instances, help="model instances (KIND_CPU)")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="intra-op threads per instance")
    parser.add_argument("--no-batching", action="store_true", help="no dynamic batching: one request per execution")


def serving_options(args: argparse.Namespace) -> ServingOptions:
    return ServingOptions(max_batch_size=args.max_batch_size, preferred_batch_sizes=tuple(args.preferred_batch_sizes),
                          max_queue_delay_us=args.queue_delay_us, instances=args.instances, threads=args.threads,
                          dynamic_batching=not args.no_batching)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m optim.deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="a report folder written by optim.run (holds results.json)")
    parser.add_argument("--variant", required=True, help="the variant to deploy (onnxruntime or openvino engine)")
    parser.add_argument("--out", type=Path, required=True, help="the model repository to write")
    add_serving_arguments(parser)
    args = parser.parse_args()

    from optim.serving.repository import deploy_variant

    manifest = deploy_variant(args.report, args.variant, args.out, serving_options(args))
    accuracy = manifest["measured"]["accuracy"]
    print(f"{args.out}: {manifest['backend']} model '{manifest['models']['core']}' (measured mAP {accuracy['map']:.4f}), "
          f"ensemble '{manifest['models']['detect']}' for encoded images; {len(manifest['files'])} files, "
          f"sha256 in {args.out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
