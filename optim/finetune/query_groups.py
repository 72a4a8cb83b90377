"""Group DETR's extra query groups, a training-only aid that speeds up DETR's convergence.

DETR's one-to-one Hungarian matching gives each object exactly one positive query per image, so the
decoder learns from very few positives. Group DETR (Chen et al., ICCV 2023) trains K groups of object
queries that share every decoder weight; each group is matched to the ground truth on its own, and groups
never attend to each other. Here the extra groups run as extra batch entries over the same encoder output
(which keeps them apart in self-attention without a mask), so only the decoder and heads run again. At
inference only DETR's own queries (group 0) exist: the saved model is an ordinary `DetrForObjectDetection`.
"""

from __future__ import annotations

import torch
from torch import nn

from optim.finetune.dense_aux import feature_grid


class ExtraQueryGroups(nn.Module):
    """`groups - 1` extra sets of query position embeddings, each the size of DETR's own."""

    def __init__(self, detr: nn.Module, groups: int):
        super().__init__()
        own = detr.model.query_position_embeddings.weight.detach()
        # Start near DETR's own queries (so a trained model's decoder is not disrupted) but not on them.
        noise = 0.1 * own.std() * torch.randn(groups - 1, *own.shape)
        self.embeddings = nn.Parameter(own.unsqueeze(0).repeat(groups - 1, 1, 1) + noise)

    def loss(self, detr: nn.Module, encoder_states: torch.Tensor, labels: list[dict],
             image_size: tuple[int, int]) -> torch.Tensor:
        """Sum over the extra groups of DETR's own set loss (with its auxiliary decoding losses)."""
        extra, queries, d_model = self.embeddings.shape
        batch, tokens, _ = encoder_states.shape
        rows, cols = feature_grid(tokens, *image_size)
        device, dtype = encoder_states.device, encoder_states.dtype
        mask = torch.ones(batch, rows, cols, dtype=torch.bool, device=device)
        positions = detr.model.position_embedding(shape=torch.Size([batch, d_model, rows, cols]), device=device,
                                                  dtype=dtype, mask=mask).flatten(2).transpose(1, 2)
        query_positions = (self.embeddings.unsqueeze(1).expand(extra, batch, queries, d_model)
                           .reshape(-1, queries, d_model))
        decoded = detr.model.decoder(
            inputs_embeds=torch.zeros_like(query_positions),
            encoder_hidden_states=encoder_states.repeat(extra, 1, 1),
            spatial_position_embeddings=positions.repeat(extra, 1, 1),
            object_queries_position_embeddings=query_positions,
        )
        logits = detr.class_labels_classifier(decoded.last_hidden_state)
        boxes = detr.bbox_predictor(decoded.last_hidden_state).sigmoid()
        aux_logits = aux_boxes = None
        if detr.config.auxiliary_loss:
            aux_logits = detr.class_labels_classifier(decoded.intermediate_hidden_states)
            aux_boxes = detr.bbox_predictor(decoded.intermediate_hidden_states).sigmoid()
        # DETR normalizes by the number of boxes, here `extra` times the batch's: x extra makes it a sum.
        loss, _, _ = detr.loss_function(logits, labels * extra, device, boxes, detr.config, aux_logits, aux_boxes)
        return extra * loss
