"""Input and output shapes of an ONNX or OpenVINO IR file, read from the file (pruning may change them)."""

from __future__ import annotations

from pathlib import Path

from optim.errors import MissingExtraError, OptimError


def tensor_shapes(artifact: Path) -> dict[str, list[int]]:
    """{tensor name: dims without the batch dimension} for every input and output of `artifact`."""
    shapes = _onnx_shapes(artifact) if artifact.suffix == ".onnx" else _ir_shapes(artifact)
    for name, dims in shapes.items():
        if any(d <= 0 for d in dims):
            raise OptimError(f"tensor '{name}' has a dynamic non-batch dimension ({dims}); Triton configs here need "
                             "fixed shapes", path=artifact, fix="export the model with a fixed input size")
    return shapes


def _onnx_shapes(path: Path) -> dict[str, list[int]]:
    """Shapes from the graph; output dimensions the exporter left symbolic (DETR's query count) are read from
    one ONNX Runtime inference on zeros."""
    try:
        import numpy as np
        import onnx
        import onnxruntime
    except ImportError as error:
        raise MissingExtraError("onnxruntime", "onnxruntime", "Reading an ONNX model's shapes") from error
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    tensors = [t for t in graph.input if t.name not in initializers] + list(graph.output)
    shapes = {t.name: [d.dim_value for d in t.type.tensor_type.shape.dim][1:] for t in tensors}
    if all(d > 0 for dims in shapes.values() for d in dims):
        return shapes
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: np.zeros((1, *shapes[i.name]), np.float32) for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    shapes.update({name: list(out.shape[1:]) for name, out in zip(names, session.run(names, feed))})
    return shapes


def _ir_shapes(path: Path) -> dict[str, list[int]]:
    try:
        import openvino
    except ImportError as error:
        raise MissingExtraError("openvino", "openvino", "Reading an OpenVINO IR's shapes") from error
    model = openvino.Core().read_model(str(path))
    ports = list(model.inputs) + list(model.outputs)
    return {port.get_any_name(): [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()][1:]
            for port in ports}
