"""DETR units (a backbone stage, an encoder or decoder layer, a head) on the shipped synth-detr's real names:
PyTorch modules, ONNX nodes, OpenVINO ops from that ONNX and straight from PyTorch. Each unit matches nodes with
compute, units never overlap, a block is exactly its units; a fine keep_float keeps exactly its unit's nodes in
float with ONNX Runtime static INT8; a unit the model lacks is an error naming keep_float."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from spec_helpers import tiny_spec

from optim.engines.onnx_export import RawOutputs, export_onnx
from optim.errors import OptimError
from optim.models.blocks import (
    BLOCKS,
    block_of_module,
    block_of_node,
    check_keep_float,
    module_units,
    modules_in_blocks,
    node_units,
    pruned_units,
    resolve_keep_float,
    sorted_units,
)
from optim.models.zoo import load_model
from optim.quantize import ort_quant
from optim.spec import QuantizeStep, VariantSpec

SIZE = (128, 128)
SYNTH_UNITS = ["backbone.stem", "backbone.stage1", "backbone.stage2", "backbone.stage3", "backbone.projection",
               "encoder.layer0", "encoder.layer1", "decoder.layer0", "decoder.layer1", "decoder.layer2",
               "heads.class", "heads.box"]
ONNX_COMPUTE = {"Conv", "MatMul", "Gemm"}
OV_COMPUTE = {"Convolution", "MatMul"}


@pytest.fixture(scope="module")
def synth():
    return load_model("synth-detr").model


@pytest.fixture(scope="module")
def onnx_path(synth, tmp_path_factory):
    return export_onnx(synth, tmp_path_factory.mktemp("units") / "model.onnx", SIZE)


@pytest.fixture(scope="module")
def ov_models(synth, onnx_path):
    ov = pytest.importorskip("openvino")
    with torch.no_grad():
        from_pytorch = ov.convert_model(RawOutputs(synth), example_input=torch.zeros(1, 3, *SIZE),
                                        input=[ov.PartialShape([-1, 3, *SIZE])])
    return {"onnx": ov.convert_model(str(onnx_path)), "pytorch": from_pytorch}


def _check_partition(units: dict[str, str | None], blocks: dict[str, str | None], compute: set[str]) -> None:
    """Every unit of synth-detr is found and holds a compute node; each name has one unit, inside its block;
    the names of a block are exactly the union of its units' names."""
    assert sorted_units(units.values()) == SYNTH_UNITS
    for unit in SYNTH_UNITS:
        assert {name for name in compute if units[name] == unit}, f"{unit} has no compute node"
    for block in BLOCKS:
        in_block = {name for name, found in blocks.items() if found == block}
        union = set().union(*({n for n, u in units.items() if u == unit} for unit in SYNTH_UNITS
                              if unit.startswith(block + ".")))
        assert union == in_block, block


def test_module_units(synth):
    units = module_units(synth)
    linear = {name for name, module in synth.named_modules() if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))}
    _check_partition(units, {name: block_of_module(name) for name in units}, linear)
    assert units["model.backbone.model.encoder.stages.0.layers.0.layer.0.convolution"] == "backbone.stage1"
    assert units["model.input_projection"] == "backbone.projection"
    assert units["model.decoder.layernorm"] == "decoder.layer2"  # the final LayerNorm: the last layer's
    assert units["bbox_predictor.layers.2"] == "heads.box" and units["class_labels_classifier"] == "heads.class"
    kept = modules_in_blocks(synth, ["encoder.layer1", "heads.box"])
    assert "model.encoder.layers.1.fc1" in kept or "model.encoder.layers.1.mlp.fc1" in kept
    assert not any(name.startswith(("model.encoder.layers.0", "class_labels")) for name in kept)


def test_onnx_node_units(onnx_path):
    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    units = node_units(node.name for node in nodes)
    _check_partition(units, {node.name: block_of_node(node.name) for node in nodes},
                     {node.name for node in nodes if node.op_type in ONNX_COMPUTE})
    assert units["/model/model/backbone/model/encoder/stages.2/layers.0/shortcut/convolution/Conv"] == "backbone.stage3"
    assert units["/model/model/input_projection/Conv"] == "backbone.projection"


@pytest.mark.parametrize("source", ["onnx", "pytorch"])
def test_openvino_op_units(ov_models, source):
    from optim.quantize.nncf_quant import node_blocks, node_units_of

    model = ov_models[source]
    units = node_units_of(model)
    _check_partition(units, node_blocks(model),
                     {op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in OV_COMPUTE})


def test_keep_float_names_resolve():
    units = SYNTH_UNITS
    assert resolve_keep_float(["encoder"], units) == {"encoder.layer0", "encoder.layer1"}
    assert resolve_keep_float(["heads", "backbone.stage2"], units) == {"heads.class", "heads.box", "backbone.stage2"}
    with pytest.raises(OptimError, match=r"keep_float.*'decoder.layer3'.*\n.*decoder.layer2, heads.class"):
        resolve_keep_float(["decoder.layer3"], units)
    pruned = VariantSpec.model_validate({"name": "p", "steps": [{"kind": "prune", "method": "decoder_layers",
                                                                 "keep": 2}], "engine": {"kind": "pytorch"}})
    assert "decoder.layer2" not in pruned_units(units, pruned.steps) and "decoder.layer1" in pruned_units(units, pruned.steps)


def test_unit_the_model_lacks_is_refused_before_running(synth):
    variant = VariantSpec.model_validate({"name": "q", "steps": [
        {"kind": "prune", "method": "encoder_layers", "keep": 1},
        {"kind": "quantize", "method": "ort_static", "keep_float": ["encoder.layer1"]}], "engine": {"kind": "onnxruntime"}})
    with pytest.raises(OptimError, match=r"variants\[q\].steps.quantize.keep_float.*'encoder.layer1'"):
        check_keep_float([variant], synth)
    with pytest.raises(ValueError, match="whole blocks"):
        QuantizeStep(kind="quantize", method="inc", keep_float=["encoder.layer0"])


def test_fine_keep_float_with_ort_static(onnx_path, tmp_path):
    """ONNX Runtime static INT8 with keep_float [encoder.layer1]: exactly that unit's nodes are excluded, its
    compute stays float, every other unit's compute is quantized."""
    step = QuantizeStep(kind="quantize", method="ort_static", keep_float=["encoder.layer1"])
    batches = [np.random.default_rng(3).normal(size=(2, 3, *SIZE)).astype(np.float32)]
    output = tmp_path / "model.int8.onnx"
    notes = ort_quant.quantize_static_int8(onnx_path, output, step, batches)
    prepared = onnx.load(str(tmp_path / "model.int8.prep.onnx"), load_external_data=False).graph.node
    excluded = ort_quant.nodes_in_blocks(tmp_path / "model.int8.prep.onnx", step.keep_float)
    unit_nodes = [node.name for node in prepared if node_units([node.name])[node.name] == "encoder.layer1"]
    assert excluded == unit_nodes and len(unit_nodes) > 20
    assert f"{len(unit_nodes)} node(s) kept float" in notes[-1]
    quantized = onnx.load(str(output))
    units = node_units(node.name for node in quantized.graph.node)
    assert "encoder.layer1" not in {units[node.name] for node in ort_quant.quantized_nodes(quantized)}
    float_units = {units[node.name] for node in ort_quant.float_compute_nodes(quantized)}
    assert "encoder.layer1" in float_units and not float_units & {"encoder.layer0", "backbone.stage2", "heads.box"}


BODY = """
variants:
  - name: fp32
    engine: {kind: onnxruntime}
  - name: int8
    steps: [{kind: quantize, method: ort_static, keep_float: [KEEP]}]
    engine: {kind: onnxruntime}
"""


@pytest.mark.parametrize("keep,message", [
    ("encoder.layer5", "field 'variants[int8].steps.quantize.keep_float': 'encoder.layer5' is not a block or unit"),
    ("encodr", "keep_float.0': Value error, 'encodr' is not a DETR block or unit"),
])
def test_bad_keep_float_exits_2(tmp_path, tiny_dataset_root, keep, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(tiny_spec("badunit", "synth-detr", tiny_dataset_root, BODY.replace("KEEP", keep)))
    result = subprocess.run([sys.executable, "-m", "optim.run", str(spec)], capture_output=True, text=True,
                            timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "reports" / "badunit" / "results.json").exists()
