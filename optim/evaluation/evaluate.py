"""Evaluate a PyTorch DETR on a COCO data set (used by fine-tuning; the runner evaluates through engines)."""

from __future__ import annotations

import numpy as np
import torch

from optim.data.coco import CocoDetection, collate_detection
from optim.evaluation.coco_eval import coco_metrics
from optim.evaluation.label_map import label_map_of
from optim.evaluation.postprocess import Detections, postprocess


@torch.no_grad()
def predict_pytorch(model, dataset: CocoDetection, batch_size: int = 32) -> dict[int, Detections]:
    """Run `model` over `dataset`; detections keyed by image id, in original-image coordinates."""
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_detection)
    detections: dict[int, Detections] = {}
    device = next(model.parameters()).device
    for batch in loader:
        outputs = model(pixel_values=batch["pixel_values"].to(device))
        sizes = np.stack([t["orig_size"].numpy() for t in batch["labels"]])
        for target, det in zip(batch["labels"], postprocess(outputs.logits.float().cpu().numpy(),
                                                            outputs.pred_boxes.float().cpu().numpy(), sizes)):
            detections[int(target["image_id"])] = det
    model.train(was_training)
    return detections


def evaluate_pytorch(model, dataset: CocoDetection, batch_size: int = 32) -> dict[str, float]:
    """COCO metrics of a PyTorch DETR on `dataset` (its labels matched to the data set's categories by name or
    position, see `optim.evaluation.label_map`)."""
    return coco_metrics(dataset.coco, predict_pytorch(model, dataset, batch_size), label_map_of(model, dataset))
