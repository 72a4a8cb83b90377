"""How a DETR trained from random weights starts: Hugging Face's initialisation or the original DETR's.

Hugging Face's `DetrPreTrainedModel` draws every transformer weight and the object queries from N(0, 0.02). The
original DETR (facebookresearch/detr) draws the transformer's matrices from Xavier-uniform (std ~0.09 for the
128x128 projections here), the object queries from N(0, 1) and the input projection and heads from PyTorch's
defaults. With the 0.02 draw, attention logits start near zero and the 20 queries start near-identical, so
every query attends alike and predicts the same box: the initial plateau DETR is known for.
"""

from __future__ import annotations

from torch import nn


def init_like_original_detr(detr: nn.Module) -> None:
    """Re-draw the transformer, object queries, input projection and heads of a `DetrForObjectDetection` as the
    original DETR does; the backbone keeps its own (Kaiming) initialisation."""
    inner = detr.model
    for stack in (inner.encoder, inner.decoder):
        for parameter in stack.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
    nn.init.normal_(inner.query_position_embeddings.weight)
    for head in (inner.input_projection, detr.class_labels_classifier, detr.bbox_predictor):
        for module in head.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.reset_parameters()
