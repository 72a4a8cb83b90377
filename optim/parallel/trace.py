"""A Chrome trace (chrome://tracing, Perfetto) of a pipeline run: the first frames of every stream, one lane
per stage (decode lanes per stream), so that the overlap of stages and streams is visible."""

from __future__ import annotations

from optim.parallel.pipeline import STAGES, PipelineRun


def chrome_trace(run: PipelineRun, frames_per_stream: int = 4) -> dict:
    """Trace Event Format ("X" complete events, microseconds from the first frame's arrival)."""
    chosen = [f for f in run.frames if f.index < frames_per_stream]
    if not chosen:
        return {"traceEvents": [], "displayTimeUnit": "ms"}
    origin = min(f.due for f in chosen)
    lanes = {f"decode {s}": i for i, s in enumerate(sorted({f.stream for f in chosen}))}
    for stage in STAGES[1:]:
        lanes[stage] = len(lanes)
    events = [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": lane}}
              for lane, tid in lanes.items()]
    for frame in chosen:
        for stage in STAGES:
            if stage not in frame.times:
                continue
            start, end = frame.times[stage]
            lane = f"decode {frame.stream}" if stage == "decode" else stage
            events.append({"name": f"stream {frame.stream} frame {frame.index}", "cat": stage, "ph": "X", "pid": 1,
                           "tid": lanes[lane], "ts": round((start - origin) * 1e6, 1),
                           "dur": round(max(end - start, 0) * 1e6, 1),
                           "args": {"batch": frame.batch_id}})
    return {"traceEvents": events, "displayTimeUnit": "ms"}
