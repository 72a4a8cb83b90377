"""Latency you can trust: each variant timed in a clean process of its own, and cross-checked against its
engine's own benchmark tool (OpenVINO benchmark_app, ONNX Runtime's test tool, torch.utils.benchmark)."""
