"""The `config.pbtxt` of each model in a variant's repository, as dicts for `optim.serving.pbtxt.render`.

Four models per variant (see docs/serving.md):
  <variant>             the measured artifact on its native backend: pixel_values -> logits, pred_boxes
  <variant>_preprocess  Python backend: encoded image -> pixel_values, orig_size
  <variant>_postprocess Python backend: logits, pred_boxes, orig_size -> boxes, scores, labels
  <variant>_detect      ensemble of the three: what clients that send images call
"""

from __future__ import annotations

from optim.serving.options import ServingOptions
from optim.serving.pbtxt import Symbol

FP32, INT64, BYTES = Symbol("TYPE_FP32"), Symbol("TYPE_INT64"), Symbol("TYPE_STRING")
INPUT = "pixel_values"
RAW_OUTPUTS = ("logits", "pred_boxes")
DETECTIONS = ("boxes", "scores", "labels")


def model_names(variant: str) -> dict[str, str]:
    """Role -> Triton model name."""
    return {"core": variant, "preprocess": f"{variant}_preprocess", "postprocess": f"{variant}_postprocess",
            "detect": f"{variant}_detect"}


def _tensor(name: str, data_type: Symbol, dims: list[int]) -> dict:
    return {"name": name, "data_type": data_type, "dims": list(dims)}


def _scheduling(options: ServingOptions, instances: int) -> dict:
    config: dict = {"instance_group": [{"count": instances, "kind": Symbol("KIND_CPU")}]}
    if options.dynamic_batching:
        config["dynamic_batching"] = {"preferred_batch_size": list(options.preferred_batch_sizes),
                                      "max_queue_delay_microseconds": options.max_queue_delay_us}
    return config


def _parameters(values: dict[str, str]) -> list[dict]:
    return [{"key": key, "value": {"string_value": value}} for key, value in values.items()]


def core_config(name: str, backend: str, shapes: dict[str, list[int]], options: ServingOptions) -> dict:
    """The measured model on Triton's onnxruntime or openvino backend, with the in-process thread count."""
    config = {"name": name, "backend": backend, "max_batch_size": options.max_batch_size,
              "input": [_tensor(INPUT, FP32, shapes[INPUT])],
              "output": [_tensor(out, FP32, shapes[out]) for out in RAW_OUTPUTS],
              **_scheduling(options, options.instances)}
    threads = str(options.threads)
    if backend == "onnxruntime":
        config["default_model_filename"] = "model.onnx"
        config["parameters"] = _parameters({"intra_op_thread_count": threads, "inter_op_thread_count": "1"})
    else:
        config["default_model_filename"] = "model.xml"
        config["parameters"] = _parameters({"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": "1",
                                            "PERFORMANCE_HINT": "LATENCY"})
    return config


def preprocess_config(name: str, input_size: tuple[int, int], options: ServingOptions) -> dict:
    height, width = input_size
    return {"name": name, "backend": "python", "max_batch_size": options.max_batch_size,
            "input": [_tensor("image", BYTES, [1])],
            "output": [_tensor(INPUT, FP32, [3, height, width]), _tensor("orig_size", INT64, [2])],
            **_scheduling(options, options.instances),
            "parameters": _parameters({"input_height": str(height), "input_width": str(width)})}


def postprocess_config(name: str, shapes: dict[str, list[int]], options: ServingOptions) -> dict:
    queries = shapes["pred_boxes"][0]
    return {"name": name, "backend": "python", "max_batch_size": options.max_batch_size,
            "input": [_tensor(out, FP32, shapes[out]) for out in RAW_OUTPUTS] + [_tensor("orig_size", INT64, [2])],
            "output": [_tensor("boxes", FP32, [queries, 4]), _tensor("scores", FP32, [queries]),
                       _tensor("labels", INT64, [queries])],
            **_scheduling(options, options.instances)}


def detect_config(names: dict[str, str], shapes: dict[str, list[int]], options: ServingOptions) -> dict:
    """Ensemble: image -> preprocess -> the measured model -> postprocess -> detections."""
    queries = shapes["pred_boxes"][0]

    def step(model: str, inputs: list[str], outputs: list[str]) -> dict:
        return {"model_name": model, "model_version": -1,
                "input_map": [{"key": key, "value": key} for key in inputs],
                "output_map": [{"key": key, "value": key} for key in outputs]}

    return {"name": names["detect"], "platform": "ensemble", "max_batch_size": options.max_batch_size,
            "input": [_tensor("image", BYTES, [1])],
            "output": [_tensor("boxes", FP32, [queries, 4]), _tensor("scores", FP32, [queries]),
                       _tensor("labels", INT64, [queries])],
            "ensemble_scheduling": {"step": [
                step(names["preprocess"], ["image"], [INPUT, "orig_size"]),
                step(names["core"], [INPUT], list(RAW_OUTPUTS)),
                step(names["postprocess"], [*RAW_OUTPUTS, "orig_size"], list(DETECTIONS))]}}
