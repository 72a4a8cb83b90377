"""DETR's blocks (backbone, encoder, decoder, heads) and how module, ONNX-node and OpenVINO-layer names map
to them. Used to keep blocks in float when quantizing and to attribute profiled time to stages."""

from __future__ import annotations

import re

import torch

# Module-path prefixes of Hugging Face's DetrForObjectDetection, per block.
BLOCK_PREFIXES: dict[str, tuple[str, ...]] = {
    "backbone": ("model.backbone", "model.input_projection"),
    "encoder": ("model.encoder",),
    "decoder": ("model.decoder", "model.query_position_embeddings"),
    "heads": ("class_labels_classifier", "bbox_predictor"),
}
BLOCKS = tuple(BLOCK_PREFIXES)


def block_of_module(name: str) -> str | None:
    """The block a module path (`model.encoder.layers.0.fc1`) belongs to, or None."""
    for block, prefixes in BLOCK_PREFIXES.items():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return block
    return None


def modules_in_blocks(model: torch.nn.Module, blocks: list[str]) -> set[str]:
    """Names of all modules of `model` inside the given blocks."""
    return {name for name, _ in model.named_modules() if name and block_of_module(name) in blocks}


_SEPARATORS = re.compile(r"[/.:]+")


def block_of_node(node_name: str) -> str | None:
    """The block of an exported graph node, from the module path the exporter put in its name
    (ONNX: `/model/model/encoder/layers.0/fc1/MatMul`; OpenVINO keeps the same names; OpenVINO straight
    from PyTorch: `__module.model.model.encoder.layers.0.fc1/aten::linear/MatMul`). Positional
    encodings and the backbone's mask interpolation count as backbone; anything else is None."""
    path = ".".join(part for part in _SEPARATORS.split(node_name) if part)
    path = re.sub(r"^__module\.", "", path)  # OpenVINO's PyTorch frontend: `__module.model.model.encoder...`
    path = re.sub(r"^(model\.)?(?=model\.|class_labels_classifier|bbox_predictor)", "", path)
    for block, prefixes in BLOCK_PREFIXES.items():
        if any(path == p or path.startswith(p + ".") for p in prefixes):
            return block
    if path.startswith("model.position_embedding"):
        return "backbone"
    return None
