"""python -m optim.serve (REPOSITORY | REPORT --variant NAME) — serve a measured variant with PyTriton.

REPOSITORY is a folder written by `python -m optim.deploy` (its files are checked against manifest.json's
sha256 first); with a report folder and --variant, the repository is written first (to --repository, or a
temporary folder). Listens on 127.0.0.1 unless --host says otherwise; HTTP/gRPC per KServe v2, Prometheus
metrics at /metrics; Ctrl-C or SIGTERM stops Triton cleanly. Runs in .venv-serve (make serve-setup),
re-executing itself there when started from another environment (docs/serving.md)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from optim.cli import run_cli

OPTION_FLAGS = {"max_batch_size": "--max-batch-size", "preferred_batch_sizes": "--preferred-batch-sizes",
                "max_queue_delay_us": "--queue-delay-us", "instances": "--instances", "threads": "--threads"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m optim.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a model repository (optim.deploy) or a report folder")
    parser.add_argument("--variant", help="with a report folder: the variant to serve")
    parser.add_argument("--repository", type=Path, help="with a report folder: where to write the repository")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002, help="Triton's own Prometheus metrics")
    parser.add_argument("--monitor-port", type=int, default=8003, help="the detector's metrics (optim.monitor)")
    group = parser.add_argument_group("scheduling (default: the repository's config)")
    group.add_argument("--max-batch-size", type=int)
    group.add_argument("--preferred-batch-sizes", type=int, nargs="+")
    group.add_argument("--queue-delay-us", type=int, dest="max_queue_delay_us")
    group.add_argument("--instances", type=int)
    group.add_argument("--threads", type=int)
    group.add_argument("--no-batching", action="store_true", help="serve without dynamic batching")
    return parser.parse_args(argv)


def main() -> int:
    from optim.serving.environment import reexec_for_serving

    reexec_for_serving("optim.serve", sys.argv[1:])
    args = parse_args(sys.argv[1:])

    from optim.errors import OptimError
    from optim.serving.options import ServingOptions
    from optim.serving.repository import read_manifest, verify_files
    from optim.serving.server import Endpoints, serve

    repository = args.source
    if (args.source / "results.json").is_file():
        if not args.variant:
            raise OptimError("a report folder needs --variant", path=args.source, field="--variant",
                             fix="give the variant to serve, or a model repository written by optim.deploy")
        repository = args.repository or Path(tempfile.mkdtemp(prefix=f"optim-serve-{args.variant}-"))
        _deploy(args.source, args.variant, repository)
    manifest = read_manifest(repository)
    verify_files(repository, manifest)
    given = {key: getattr(args, key) for key in OPTION_FLAGS if getattr(args, key) is not None}
    if "preferred_batch_sizes" in given:
        given["preferred_batch_sizes"] = tuple(given["preferred_batch_sizes"])
    options = ServingOptions(**{**ServingOptions.from_dict(manifest["serving"]).__dict__, **given,
                                **({"dynamic_batching": False} if args.no_batching else {})})
    serve(repository, manifest, options, Endpoints(args.host, args.http_port, args.grpc_port, args.metrics_port,
                                                           args.monitor_port))
    return 0


def _deploy(report: Path, variant: str, repository: Path) -> None:
    from optim.serving.options import ServingOptions
    from optim.serving.repository import deploy_variant

    deploy_variant(report, variant, repository, ServingOptions())
    print(f"model repository for '{variant}': {repository}", flush=True)

if __name__ == "__main__":
    run_cli(main)
