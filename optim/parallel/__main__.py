"""python -m optim.parallel: measure one engine on the shipped model in MLPerf's scenarios, standalone.

    python -m optim.parallel --engine openvino --scenario offline --scenario multistream --seconds 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optim.errors import OptimError
from optim.parallel.loadgen_run import SCENARIOS


def build_engine(kind: str, workdir: Path, model_name: str = "synth-detr"):
    """The FP32 `kind` engine of a zoo model, built into `workdir`: (engine, artifact, input size)."""
    from optim.engines.base import BuildContext
    from optim.engines.registry import check_available, create_engine
    from optim.models.zoo import load_model
    from optim.spec import EngineSpec

    spec = EngineSpec(kind=kind)
    check_available(spec)
    loaded = load_model(model_name)
    workdir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(spec)
    info = engine.build(loaded.model, None, BuildContext(workdir=workdir, input_size=loaded.default_input_size))
    return engine, info.artifact, tuple(loaded.default_input_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optim.parallel", description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="openvino", choices=["openvino", "onnxruntime", "pytorch"])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="repeat for several (default: all)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each timed run")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--max-streams", type=int, default=8)
    parser.add_argument("--video", action="append", type=Path, default=[],
                        help="a video file Pillow reads (GIF/WebP/APNG/TIFF) or a folder of images, played by the "
                             "streams (repeat for several; default: synthetic clips)")
    parser.add_argument("--out", type=Path, default=Path("reports/parallel"))
    args = parser.parse_args(argv)
    try:
        from optim.parallel.measure import Measurement, ScenarioSettings

        settings = ScenarioSettings(scenarios=tuple(args.scenario or SCENARIOS), seconds=args.seconds, fps=args.fps,
                                    max_streams=args.max_streams)
        engine, artifact, input_size = build_engine(args.engine, args.out / "artifacts" / args.engine)
        results = Measurement(engine, artifact, input_size, settings, args.video).run()
    except OptimError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    trace = results.get("multistream", {}).pop("trace", None)
    args.out.mkdir(parents=True, exist_ok=True)
    if trace:
        (args.out / f"trace-{args.engine}.json").write_text(json.dumps(trace))
    (args.out / f"parallel-{args.engine}.json").write_text(json.dumps(results, indent=1))
    print(summary_text(args.engine, results))
    return 0


def summary_text(engine: str, results: dict) -> str:
    """The headline figures, one line per scenario."""
    lines = [f"{engine}: best setting {results['tuning']['best']}"]
    if "offline" in results:
        r = results["offline"]
        lines.append(f"  offline: {r['throughput_sps']:.1f} frames/s vs sequential batch-1 {r['sequential_fps']:.1f} "
                     f"= {r['speedup']:.2f}x; vs one batch-1 request at a time through the runner "
                     f"{r['single_request_fps'] or 0:.1f} = {r['speedup_vs_single_request'] or 0:.2f}x "
                     f"(LoadGen VALID: {r['loadgen_valid']}, advisory)")
    if "singlestream" in results:
        r = results["singlestream"]
        lines.append(f"  singlestream: p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms")
    if "multistream" in results:
        r = results["multistream"]
        lines.append(f"  multistream @ {r['fps']:g} fps: {r['streams_sustained']} streams with >= 99 % on time "
                     f"(deadline {r['deadline_ms']:.1f} ms); pipeline {r['pipeline_fps']:.1f} frames/s = "
                     f"{r['pipeline_vs_inference']:.2f}x inference alone; faults {r['faults']}")
    if "server" in results:
        r = results["server"]
        lines.append(f"  server: highest Poisson rate with p99 < {r['bound_ms']:g} ms: {r['highest_rate']:.1f}/s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
