"""NNCF post-training INT8 quantization of an OpenVINO model, with DETR blocks kept in float."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from optim.errors import MissingExtraError, OptimError
from optim.models.blocks import node_units, resolve_keep_float, unit_order
from optim.spec import QuantizeStep

_UNNAMED_SKIP = {"Parameter", "Constant", "Result"}
# Ops the frontend renames after a model output: on DETR-R50 the classifier's MatMul becomes `logits`.
_OUTPUT_UNITS = {"logits": "heads.class"}


def node_units_of(ov_model) -> dict[str, str | None]:
    """The DETR unit (`optim.models.blocks`) of every op of an OpenVINO model, from our ONNX export or
    straight from PyTorch.

    Ops keep the module path in their names (`/model/model/decoder/layers.0/fc1/MatMul`), except those the
    frontend creates while fusing (`MVN_960` from a LayerNorm, `Transpose_5323`) or renames after an output
    (`logits`, the classifier's); any other such op takes the unit of its named inputs when they lie in one
    block (the latest unit when several, so a fused LayerNorm belongs to the layer that feeds it)."""
    ops = ov_model.get_ordered_ops()
    units = node_units(op.get_friendly_name() for op in ops)
    for op in ops:
        name = op.get_friendly_name()
        if op.get_type_name() != "Result" and name in _OUTPUT_UNITS:
            units[name] = _OUTPUT_UNITS[name]
        if units[name] is None and op.get_type_name() not in _UNNAMED_SKIP:
            parents = {units.get(port.get_source_output().get_node().get_friendly_name()) for port in op.inputs()}
            parents.discard(None)
            if len({unit.split(".")[0] for unit in parents}) == 1:
                units[name] = max(parents, key=unit_order)
    return units


def node_blocks(ov_model) -> dict[str, str | None]:
    """The DETR block of every op of an OpenVINO model (see `node_units_of`)."""
    return {name: unit.split(".")[0] if unit else None for name, unit in node_units_of(ov_model).items()}


def block_node_names(ov_model, keep_float: Iterable[str]) -> list[str]:
    """Names of the ops of `ov_model` in the given DETR blocks or units (see `resolve_keep_float`)."""
    units = node_units_of(ov_model)
    kept = resolve_keep_float(keep_float, units.values())
    return sorted(name for name, unit in units.items() if unit in kept)


def fake_quantize_consumers(ov_model) -> dict[str, list[str]]:
    """Every FakeQuantize op of a quantized model -> the names of the ops that read its output."""
    return {op.get_friendly_name(): [port.get_node().get_friendly_name()
                                     for output in op.outputs() for port in output.get_target_inputs()]
            for op in ov_model.get_ops() if op.get_type_name() == "FakeQuantize"}


def single_images(batches: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Split calibration batches into (1, 3, H, W) items, so that NNCF's subset_size counts images."""
    return [np.ascontiguousarray(batch[i: i + 1], dtype=np.float32) for batch in batches for i in range(len(batch))]


def quantize_nncf(ov_model, step: QuantizeStep, calibration: Iterable[np.ndarray]):
    """INT8 post-training quantization of `ov_model` (weights and activations) with NNCF.

    `step.keep_float` blocks and the `step.ignored_scope` regex patterns are left in float.
    Returns the quantized `openvino.Model` (FakeQuantize on activations, INT8 weight constants)."""
    try:
        import nncf
    except ImportError as error:
        raise MissingExtraError("nncf", "openvino", "NNCF INT8 quantization") from error

    images = single_images(calibration)
    if not images:
        raise OptimError("NNCF INT8 needs calibration images, but none were given", field="data.calibration_images",
                         fix="set data.calibration_images >= 1 and check data.calibration_split has images")
    # Exact names of the kept blocks' ops; validate=False because a user pattern or a block may match
    # nothing in a pruned model, which is not an error.
    ignored = nncf.IgnoredScope(names=block_node_names(ov_model, step.keep_float),
                                patterns=list(step.ignored_scope), validate=False)
    # MIXED: symmetric weights, asymmetric activations. DETR's activations after LayerNorm, ReLU and the
    # positional-embedding adds are far from zero-centred, so an asymmetric range wastes fewer of the 256
    # levels; on CPU the zero point folds into the bias, so it costs no speed. PERFORMANCE (symmetric
    # everywhere) would trade accuracy for nothing here.
    return nncf.quantize(ov_model, nncf.Dataset(images, _as_input), model_type=nncf.ModelType.TRANSFORMER,
                         preset=nncf.QuantizationPreset.MIXED, target_device=nncf.TargetDevice.CPU,
                         subset_size=len(images), ignored_scope=ignored)


def _as_input(image: np.ndarray) -> dict[str, np.ndarray]:
    return {"pixel_values": image}
