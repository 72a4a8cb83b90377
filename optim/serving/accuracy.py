"""Accuracy through the server: the evaluation split the runner scored, sent through the server, scored with
the runner's evaluator, and compared with the in-process mAP the manifest recorded (to 4 decimals).

Two paths: `detect` sends each image file's encoded bytes to `<variant>_detect` (decode, pre-processing,
model and post-processing all on the server); `raw` sends the runner's pre-processed tensors to `<variant>`
and post-processes here, as the runner does."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from optim.data.coco import CocoDetection, CocoFolder
from optim.evaluation.coco_eval import coco_metrics
from optim.evaluation.label_map import category_of_label
from optim.evaluation.postprocess import Detections, postprocess
from optim.serving.client import TritonClient

PATHS = ("detect", "raw")
DECIMALS = 4


def eval_dataset(manifest: dict, root: Path | None = None) -> CocoDetection:
    """The evaluation split the runner scored (the manifest's data spec; `root` overrides its folder)."""
    data = manifest["measured"]["data"]
    folder = CocoFolder.from_root(Path(root or data["root"]), data["eval_split"])
    dataset = CocoDetection(folder, tuple(manifest["input_size"]))
    if data.get("eval_images"):
        dataset.image_ids = dataset.image_ids[: data["eval_images"]]
    return dataset


def _served_detections(client_of, manifest: dict, dataset: CocoDetection, path: str, image_id: int) -> Detections:
    client = client_of()
    if path == "detect":
        file = dataset.folder.images / dataset.coco.imgs[image_id]["file_name"]
        image = np.array([[file.read_bytes()]], dtype=np.object_)
        out = client.infer(manifest["models"]["detect"], {"image": image}, ["boxes", "scores", "labels"])
        boxes, scores, labels = out["boxes"][0], out["scores"][0], out["labels"][0]
    else:
        pixels, target = dataset[dataset.image_ids.index(image_id)]
        out = client.infer(manifest["models"]["core"], {"pixel_values": pixels.numpy()[None]},
                           ["logits", "pred_boxes"])
        det = postprocess(out["logits"], out["pred_boxes"], target["orig_size"].numpy()[None])[0]
        boxes, scores, labels = det.boxes, det.scores, det.labels
    keep = scores > 0.0  # the runner's post-processing threshold
    return Detections(boxes[keep], scores[keep], labels[keep])


def served_accuracy(url: str, protocol: str, manifest: dict, path: str = "detect", concurrency: int = 4,
                    root: Path | None = None) -> dict:
    """COCO metrics of the served variant on the evaluation split, beside the in-process figure."""
    import threading

    dataset = eval_dataset(manifest, root)
    id2label = {int(k): v for k, v in manifest["id2label"].items()}
    label_map = category_of_label(id2label, dataset.category_ids, dataset.label_names, manifest["variant"])
    local = threading.local()

    def client_of() -> TritonClient:
        if not hasattr(local, "client"):
            local.client = TritonClient(url, protocol)
        return local.client

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        served = list(pool.map(lambda i: _served_detections(client_of, manifest, dataset, path, i), dataset.image_ids))
    metrics = coco_metrics(dataset.coco, dict(zip(dataset.image_ids, served)), label_map)
    measured = manifest["measured"]["accuracy"]["map"]
    return {"path": path, "protocol": protocol, "images": len(served), "served_map": metrics["map"],
            "served_map_50": metrics["map_50"], "in_process_map": measured,
            "difference": metrics["map"] - measured,
            "equal_to_4_decimals": round(metrics["map"], DECIMALS) == round(measured, DECIMALS)}
