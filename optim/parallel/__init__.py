"""Parallel inference for video analytics: N streams through overlapping decode -> preprocess -> inference ->
postprocess stages with cross-stream batching, measured in MLPerf's scenarios (LoadGen) and tuned.

    python -m optim.parallel --engine openvino --scenario offline --scenario multistream

Threads, not processes: every stage spends its time in code that releases the GIL (PIL's JPEG decoder and
resize, numpy's vectorised arithmetic, ONNX Runtime's `run`, OpenVINO's inference, PyTorch's ATen kernels),
so threads overlap for real on the cores, and frames move between stages as shared numpy arrays with no
pickling or copies between processes. Queues are bounded, so a slow stage holds back the stages before it
instead of letting memory grow.
"""
