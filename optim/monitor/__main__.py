"""python -m optim.monitor {reference,replay,overhead} REPOSITORY ... — monitor a deployed variant.

  reference  statistics of the data the variant was measured on (the synthetic generator), through the variant:
             the drift tests' reference window (written to REPOSITORY/monitor_reference.json unless --out)
  replay     stream synthetic clips with scheduled shifts through the pipeline in this process, or through a
             running server (--server HOST:PORT), and write replay.html and replay.json (docs/monitoring.md)
  overhead   what metrics and drift statistics cost per request at batch 1, interleaved with and without

REPOSITORY is a model repository written by `python -m optim.deploy`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from optim.cli import run_cli

REFERENCE_FILE = "monitor_reference.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m optim.monitor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("reference", "replay", "overhead"):
        sub = commands.add_parser(name)
        sub.add_argument("repository", type=Path, help="a model repository written by optim.deploy")
        sub.add_argument("--threads", type=int, default=0, help="engine threads in this process (0: its default)")
        sub.add_argument("--reference", type=Path, help=f"the drift reference (default: REPOSITORY/{REFERENCE_FILE})")
        sub.add_argument("--samples", type=int, default=400, help="sampled frames in a reference built here")
    commands.choices["reference"].add_argument("--out", type=Path, help="where to write the reference")
    replay = commands.choices["replay"]
    replay.add_argument("--server", help="HOST:PORT of a running optim.serve (default: the pipeline in-process)")
    replay.add_argument("--protocol", choices=("http", "grpc"), default="http")
    replay.add_argument("--frames", type=int, default=2000)
    replay.add_argument("--seed", type=int, default=1)
    replay.add_argument("--shifts", default="", help="KIND:START-END,... kinds: dark noise blur shake small_objects "
                                                     "class_mix latency")
    replay.add_argument("--label-every", type=int, default=2, help="labels come back for one frame in N")
    replay.add_argument("--label-delay", type=int, default=40, help="... this many frames late")
    replay.add_argument("--accuracy-window", type=int, default=200, help="labelled frames in the rolling mAP")
    replay.add_argument("--accuracy-tolerance", type=float, default=0.05,
                        help="alert when the rolling mAP's 95%% CI lies below the measured mAP minus this")
    replay.add_argument("--boot", type=int, default=200, help="bootstrap resamples of the rolling mAP's CI")
    replay.add_argument("--alpha", type=float, default=1e-4, help="family-wise false-alarm rate of a drift check")
    replay.add_argument("--inject-bad", action="store_true", help="also send a non-image and two bad labels")
    replay.add_argument("--metrics-port", type=int, help="in-process: serve the metrics at 127.0.0.1:PORT/metrics")
    replay.add_argument("--out", type=Path, default=Path("reports/monitor"), help="folder for replay.html/json")
    commands.choices["overhead"].add_argument("--rounds", type=int, default=1000)
    return parser.parse_args(argv)


def _reference(args, target, config):
    from optim.monitor.drift import Reference
    from optim.monitor.replay import build_reference

    path = args.reference or args.repository / REFERENCE_FILE
    if path.is_file():
        return Reference.load(path)
    print(f"building the drift reference ({args.samples} sampled frames) ...", flush=True)
    reference = build_reference(target, args.samples, config)
    reference.save(path)
    print(f"drift reference: {path}", flush=True)
    return reference


def main() -> int:
    args = parse_args(sys.argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from optim.monitor.replay import ReplayConfig
    from optim.monitor.targets import InProcess
    from optim.serving.repository import read_manifest, verify_files

    manifest = read_manifest(args.repository)
    verify_files(args.repository, manifest)
    if args.command == "reference":
        args.reference = args.out
        _reference(args, InProcess(args.repository, manifest, args.threads, with_metrics=False), ReplayConfig())
        return 0
    if args.command == "overhead":
        from optim.monitor.overhead import measure_overhead

        reference = _reference(args, InProcess(args.repository, manifest, args.threads, False), ReplayConfig())
        print(json.dumps(measure_overhead(args.repository, manifest, reference, args.rounds, args.threads), indent=1))
        return 0
    return _replay(args, manifest)


def _replay(args: argparse.Namespace, manifest: dict) -> int:
    from optim.errors import OptimError
    from optim.monitor.drift import DriftConfig
    from optim.monitor.metrics import start_metrics_server
    from optim.monitor.replay import ReplayConfig, replay
    from optim.monitor.report import write_report
    from optim.monitor.stream import parse_schedule
    from optim.monitor.targets import InProcess, Served

    schedule = parse_schedule(args.shifts)
    if args.server and any(w.kind == "latency" for w in schedule):
        raise OptimError("the latency shift slows the pipeline in this process; a server cannot be slowed from "
                         "the client", field="--shifts", fix="drop the latency window, or replay in-process")
    config = ReplayConfig(frames=args.frames, seed=args.seed, label_every=args.label_every,
                           label_delay=args.label_delay, boot=args.boot,
                          accuracy_window=args.accuracy_window, accuracy_tolerance=args.accuracy_tolerance, drift=DriftConfig(alpha=args.alpha))
    local = InProcess(args.repository, manifest, args.threads)
    target = Served(args.server, args.protocol, manifest) if args.server else local
    reference = _reference(args, local, config)
    server = start_metrics_server(target.metrics, args.metrics_port) if args.metrics_port and target.metrics else None
    try:
        log = replay(target, manifest, reference, schedule, config, local.canary, inject_bad=args.inject_bad)
    finally:
        target.close()
        if server is not None:
            server.shutdown()
    path = write_report(log, args.out)
    for row in log.detection:
        print(f"{row['kind']} {row['start']}-{row['end']}: first {row['alert_kind']} alert "
              f"{'at frame ' + str(row['first_alert']) if row['first_alert'] is not None else 'none'}", flush=True)
    print(f"{len(log.alerts)} alerts over {args.frames} frames in {log.seconds:.0f} s; report: {path}", flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
