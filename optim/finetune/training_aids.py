"""The training wrapper that adds the training-only aids (dense encoder supervision, extra query groups)
to DETR's own loss. Only `.detr` is saved: the aids leave no trace in the exported model."""

from __future__ import annotations

import torch
from torch import nn

from optim.finetune.dense_aux import DenseAuxiliaryHead, dense_auxiliary_loss
from optim.finetune.query_groups import ExtraQueryGroups


class DetrWithTrainingAids(nn.Module):
    """DETR's loss + `encoder_aux_weight` x the dense encoder loss + the extra query groups' set losses."""

    def __init__(self, detr: nn.Module, encoder_aux_weight: float, query_groups: int):
        super().__init__()
        self.detr = detr
        self.encoder_aux_weight = encoder_aux_weight
        self.head = DenseAuxiliaryHead(detr.config.d_model, detr.config.num_labels) if encoder_aux_weight > 0 else None
        self.groups = ExtraQueryGroups(detr, query_groups) if query_groups > 1 else None

    def forward(self, pixel_values: torch.Tensor, labels: list[dict] | None = None):
        outputs = self.detr(pixel_values=pixel_values, labels=labels)
        if labels is None:
            return outputs
        image_size = tuple(pixel_values.shape[-2:])
        encoder_states = outputs.encoder_last_hidden_state
        if self.head is not None:
            outputs.loss = outputs.loss + self.encoder_aux_weight * dense_auxiliary_loss(
                self.head, encoder_states, labels, image_size)
        if self.groups is not None:
            outputs.loss = outputs.loss + self.groups.loss(self.detr, encoder_states, labels, image_size)
        return outputs
