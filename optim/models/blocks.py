"""DETR's blocks (backbone, encoder, decoder, heads), their finer units, and how module, ONNX-node and
OpenVINO-layer names map to them. Used to keep blocks or units in float when quantizing, to measure each
unit's sensitivity, and to attribute profiled time to stages.

Units partition each block, so that a block is exactly the union of its units:

- `backbone.stem`: the conv stem and max-pool, plus the backbone's pixel-mask resize;
  `backbone.stage1..N`: the ResNet stages (Hugging Face's 1-based stage names; module `...encoder.stages.{N-1}`);
  `backbone.projection`: the 1x1 input projection to d_model and the sine position embedding (the step from
  the last feature map to the encoder's input sequence).
- `encoder.layer0..`: the encoder layers; the encoder's shared attention-mask preparation counts as layer 0.
- `decoder.layer0..`: the decoder layers; the shared mask preparation and the query position embeddings count
  as layer 0, the decoder's final LayerNorm (whose output the heads read) as the last layer.
- `heads.class` (class_labels_classifier) and `heads.box` (bbox_predictor, the box MLP).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from optim.errors import OptimError

if TYPE_CHECKING:  # names only: reports import this module without torch
    import torch

# Module-path prefixes of Hugging Face's DetrForObjectDetection, per block.
BLOCK_PREFIXES: dict[str, tuple[str, ...]] = {
    "backbone": ("model.backbone", "model.input_projection"),
    "encoder": ("model.encoder",),
    "decoder": ("model.decoder", "model.query_position_embeddings"),
    "heads": ("class_labels_classifier", "bbox_predictor"),
}
BLOCKS = tuple(BLOCK_PREFIXES)

# Unit of a module path inside a block, first match wins; `{}` takes the pattern's number. The decoder's
# final LayerNorm is first marked `decoder.norm` and then given to the last decoder layer (see `units_of`).
_UNIT_PATTERNS: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(pattern), unit) for pattern, unit in (
    (r"model\.backbone\.(?:conv_encoder\.)?model\.encoder\.stages\.(\d+)(?:\.|$)", "backbone.stage{}"),
    (r"model\.(?:input_projection|position_embedding|backbone\.position_embedding)(?:\.|$)", "backbone.projection"),
    (r"model\.backbone(?:\.|$)", "backbone.stem"),
    (r"model\.encoder\.layers\.(\d+)(?:\.|$)", "encoder.layer{}"),
    (r"model\.encoder(?:\.|$)", "encoder.layer0"),
    (r"model\.decoder\.layers\.(\d+)(?:\.|$)", "decoder.layer{}"),
    (r"model\.decoder\.layernorm(?:_\d+)?(?:\.|$)", "decoder.norm"),
    (r"model\.(?:decoder|query_position_embeddings)(?:\.|$)", "decoder.layer0"),
    (r"class_labels_classifier(?:\.|$)", "heads.class"),
    (r"bbox_predictor(?:\.|$)", "heads.box"),
))
_STAGE_OFFSET = {"backbone.stage{}": 1}  # stages.0 is Hugging Face's "stage1"
_UNIT_KINDS = ("stem", "stage", "projection", "layer", "class", "box")


def block_of_path(path: str) -> str | None:
    """The block of a module path (`model.encoder.layers.0.fc1`), or None."""
    for block, prefixes in BLOCK_PREFIXES.items():
        if any(path == p or path.startswith(p + ".") for p in prefixes):
            return block
    if path == "model.position_embedding" or path.startswith("model.position_embedding."):
        return "backbone"
    return None


def unit_of_path(path: str) -> str | None:
    """The unit of a module path inside a block (`decoder.norm` for the decoder's final LayerNorm), or None."""
    if block_of_path(path) is None:
        return None
    for pattern, unit in _UNIT_PATTERNS:
        match = pattern.match(path)
        if match:
            return unit.format(int(match[1]) + _STAGE_OFFSET.get(unit, 0)) if "{}" in unit else unit
    return None


def block_of_module(name: str) -> str | None:
    """The block a module path (`model.encoder.layers.0.fc1`) belongs to, or None."""
    return block_of_path(name)


_SEPARATORS = re.compile(r"[/.:]+")


def node_path(node_name: str) -> str:
    """The module path an exporter put in a node's name (ONNX: `/model/model/encoder/layers.0/fc1/MatMul`;
    OpenVINO keeps the same names; OpenVINO straight from PyTorch:
    `__module.model.model.encoder.layers.0.fc1/aten::linear/MatMul`), without the export wrapper's prefix."""
    path = ".".join(part for part in _SEPARATORS.split(node_name) if part)
    path = re.sub(r"^__module\.", "", path)  # OpenVINO's PyTorch frontend: `__module.model.model.encoder...`
    return re.sub(r"^(model\.)?(?=model\.|class_labels_classifier|bbox_predictor)", "", path)


def block_of_node(node_name: str) -> str | None:
    """The block of an exported graph node, from the module path in its name (see `node_path`). Positional
    encodings and the backbone's mask interpolation count as backbone; anything else is None."""
    return block_of_path(node_path(node_name))


def units_of(paths: dict[str, str]) -> dict[str, str | None]:
    """name -> unit for names whose module paths are given (`paths`: name -> module path); the decoder's
    final LayerNorm goes to the last decoder layer among these names."""
    units = {name: unit_of_path(path) for name, path in paths.items()}
    layers = [int(unit.removeprefix("decoder.layer")) for unit in units.values()
              if unit and unit.startswith("decoder.layer")]
    last = f"decoder.layer{max(layers, default=0)}"
    return {name: last if unit == "decoder.norm" else unit for name, unit in units.items()}


def module_units(model: torch.nn.Module) -> dict[str, str | None]:
    """Unit of every named module of `model` (None outside the blocks)."""
    return units_of({name: name for name, _ in model.named_modules() if name})


def node_units(node_names: Iterable[str]) -> dict[str, str | None]:
    """Unit of every exported graph node, from the module path in its name (None outside the blocks)."""
    return units_of({name: node_path(name) for name in node_names})


def unit_order(unit: str) -> tuple:
    """Sort key of units and blocks: blocks in data-flow order, a block before its units; in the backbone
    stem, stages, projection; then by number."""
    block, _, rest = unit.partition(".")
    kind = re.sub(r"\d+$", "", rest)
    number = rest[len(kind):]
    return BLOCKS.index(block), _UNIT_KINDS.index(kind) + 1 if kind else 0, int(number) if number else 0


def sorted_units(units: Iterable[str | None]) -> list[str]:
    """The distinct units among `units` (None dropped), in `unit_order`."""
    return sorted({unit for unit in units if unit}, key=unit_order)


def resolve_keep_float(keep_float: Iterable[str], available: Iterable[str | None],
                       field: str = "steps.quantize.keep_float") -> set[str]:
    """The units to keep in float: a block name stands for all its units present, a unit for itself. A unit
    the model lacks is an error listing the model's units (a block it lacks is not: a pruned model may have
    none left)."""
    units = sorted_units(available)
    kept: set[str] = set()
    for name in keep_float:
        if name in BLOCKS:
            kept.update(unit for unit in units if unit.split(".")[0] == name)
        elif name in units:
            kept.add(name)
        else:
            raise OptimError(f"'{name}' is not a block or unit of this model", field=field,
                             fix=f"use one of: {', '.join([*BLOCKS, *units])}")
    return kept


def pruned_units(units: list[str], steps: Iterable) -> list[str]:
    """`units` less the encoder/decoder layers that a variant's layer-pruning steps remove (they keep the first
    `keep`); `steps`: the variant's steps (spec objects)."""
    keep = {step.method.split("_")[0]: step.keep for step in steps if getattr(step, "kind", None) == "prune"
            and step.method in ("encoder_layers", "decoder_layers") and step.keep}
    return [unit for unit in units if not (unit.split(".")[0] in keep and unit.split(".")[1].startswith("layer")
                                           and int(unit.removeprefix(unit.split(".")[0] + ".layer"))
                                           >= keep[unit.split(".")[0]])]


def check_keep_float(variants: Iterable, model: torch.nn.Module) -> None:
    """Every unit that a variant's keep_float names exists in `model` (less the layers the variant's pruning
    removes), so that a typo or a layer the model lacks fails before anything is measured instead of keeping
    nothing in float. `variants`: VariantSpec objects."""
    units = sorted_units(module_units(model).values())
    for variant in variants:
        for step in variant.steps:
            if getattr(step, "kind", None) == "quantize":
                resolve_keep_float(step.keep_float, pruned_units(units, variant.steps),
                                   field=f"variants[{variant.name}].steps.quantize.keep_float")


def modules_in_blocks(model: torch.nn.Module, blocks: list[str]) -> set[str]:
    """Names of all modules of `model` inside the given blocks or units (see `resolve_keep_float`)."""
    units = module_units(model)
    kept = resolve_keep_float(blocks, units.values())
    return {name for name, unit in units.items() if unit in kept}
