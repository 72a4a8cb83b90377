"""Dense auxiliary supervision of DETR's encoder, a training-only aid for DETRs trained from scratch.

DETR with a randomly initialised backbone is known to stall for a long time predicting the same boxes for
every image (facebookresearch/detr#169, #202): the only learning signal reaches the backbone through the
Hungarian-matched set loss. Like the encoder-side supervision of two-stage Deformable DETR and DINO, this
head asks every encoder token to classify the object whose centre falls in it (or background) and to
regress that object's box, which gives the backbone and encoder a dense, well-conditioned signal. The head
is discarded after training: the exported model is an ordinary `DetrForObjectDetection`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class DenseAuxiliaryHead(nn.Module):
    """Per-token class (K real classes + background) and box (cx, cy, w, h, normalized) predictions."""

    def __init__(self, d_model: int, num_labels: int):
        super().__init__()
        self.num_labels = num_labels
        self.classifier = nn.Linear(d_model, num_labels + 1)
        self.box = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 4))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier(tokens), self.box(tokens).sigmoid()


def feature_grid(num_tokens: int, height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of the encoder's token grid for an input of `height` x `width`."""
    rows = max(1, round(math.sqrt(num_tokens * height / width)))
    return rows, num_tokens // rows


def dense_targets(labels: list[dict], rows: int, cols: int, num_labels: int):
    """Per-token class targets (background = num_labels), box targets and the mask of object tokens.

    A token takes the object whose box centre lies in its cell; where centres collide, the smaller object
    wins (drawn last), since large objects also cover neighbouring cells' context.
    """
    batch = len(labels)
    classes = torch.full((batch, rows * cols), num_labels, dtype=torch.long)
    boxes = torch.zeros(batch, rows * cols, 4)
    for i, target in enumerate(labels):
        order = torch.argsort(target["boxes"][:, 2] * target["boxes"][:, 3], descending=True)
        for j in order.tolist():
            cx, cy = target["boxes"][j, :2].tolist()
            cell = min(int(cy * rows), rows - 1) * cols + min(int(cx * cols), cols - 1)
            classes[i, cell] = target["class_labels"][j]
            boxes[i, cell] = target["boxes"][j]
    return classes, boxes, classes != num_labels


def dense_auxiliary_loss(head: DenseAuxiliaryHead, encoder_states: torch.Tensor, labels: list[dict],
                         image_size: tuple[int, int], background_weight: float = 0.1) -> torch.Tensor:
    """Cross-entropy over token classes plus L1 on the boxes of object tokens."""
    rows, cols = feature_grid(encoder_states.shape[1], *image_size)
    classes, boxes, positive = (t.to(encoder_states.device) for t in dense_targets(labels, rows, cols, head.num_labels))
    logits, predicted = head(encoder_states)
    weight = torch.ones(head.num_labels + 1, device=logits.device)
    weight[-1] = background_weight
    loss = F.cross_entropy(logits.flatten(0, 1), classes.flatten(), weight=weight)
    if positive.any():
        loss = loss + 5.0 * F.l1_loss(predicted[positive], boxes[positive])
    return loss

