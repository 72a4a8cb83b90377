"""Where the time goes: per-stage latency breakdowns and profiler traces of a built engine.

- `profiling.run.profile_variant` — what the runner calls after timing a variant.
- `profiling.nvtx_ranges` — `stage(name)` ranges (torch.profiler labels + NVTX), `instrument_detr(model)` hooks.
- `profiling.stages` — the breakdown's shape; `torch_stages`, `ort_stages`, `openvino_stages` fill it per engine.
"""
