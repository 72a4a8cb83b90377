"""A COCO-format detection data set on disk: images + `instances_*.json`, read with pycocotools.

Category ids may be non-contiguous (real COCO uses 1..90 with gaps); they are mapped to contiguous
model labels 0..K-1 in sorted id order, and back again for evaluation. Images without annotations
are kept (DETR learns "no object" from them).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from optim.data.transforms import preprocess_image
from optim.data.validation import read_coco_json
from optim.errors import OptimError


@dataclass(frozen=True)
class CocoFolder:
    """Where a COCO split lives: the image folder and its annotation file."""

    images: Path
    annotations: Path

    @classmethod
    def from_root(cls, root: Path, split: str) -> CocoFolder:
        """`root/<split>/` with `root/annotations/instances_<split>.json` (also accepts COCO's `val2017` names)."""
        return cls(images=Path(root) / split, annotations=Path(root) / "annotations" / f"instances_{split}.json")


class CocoDetection(torch.utils.data.Dataset):
    """Items are `(pixel_values, target)`; target holds `class_labels` (K,), `boxes` (K, 4) as normalized
    (center_x, center_y, w, h), `image_id` and `orig_size` (h, w)."""

    def __init__(self, folder: CocoFolder, input_size: tuple[int, int], image_ids: list[int] | None = None,
                 hflip: bool = False):
        from pycocotools.coco import COCO

        root = folder.annotations.parent.parent
        if root.exists() and not root.is_dir():
            raise OptimError("the data root is a file, not a folder", path=root, field="data.root",
                             fix="point data.root at a COCO folder (<root>/annotations/instances_<split>.json)")
        if not folder.annotations.is_file():
            raise OptimError("annotation file not found", path=folder.annotations,
                             fix="generate the data set (python -m optim.data.synthetic) or point the spec at a COCO folder")
        data = read_coco_json(folder.annotations)  # checked: ids, boxes and categories (optim.data.validation)
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        self.folder = folder
        self.input_size = input_size
        self.hflip = hflip
        self.category_ids = sorted(self.coco.getCatIds())
        self.label_of_category = {cat: label for label, cat in enumerate(self.category_ids)}
        self.image_ids = list(image_ids) if image_ids is not None else sorted(self.coco.getImgIds())

    @property
    def label_names(self) -> list[str]:
        """Class names in model-label order."""
        return [self.coco.cats[c]["name"] for c in self.category_ids]

    def __len__(self) -> int:
        return len(self.image_ids)

    def load_image(self, image_id: int) -> Image.Image:
        """The RGB image of `image_id`, with a clear error when its file is missing."""
        path = self.folder.images / self.coco.imgs[image_id]["file_name"]
        if not path.is_file():
            raise OptimError(f"image of image id {image_id} not found", path=path,
                             fix=f"check that the images of {self.folder.annotations.name} are in {self.folder.images}")
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise OptimError(f"image of image id {image_id} cannot be decoded ({type(error).__name__}: {error})",
                             path=path, fix="replace the file with a readable image, or drop the image from the "
                                             "annotation file") from error
        info = self.coco.imgs[image_id]
        if (info.get("width"), info.get("height")) not in ((None, None), (rgb.width, rgb.height)):
            raise OptimError(f"image id {image_id} is {rgb.width}x{rgb.height} pixels but the annotation file says "
                             f"{info.get('width')}x{info.get('height')}: its boxes would be scored in the wrong frame",
                             path=path, fix=f"correct width/height of image id {image_id} in {self.folder.annotations}")
        return rgb

    def target(self, image_id: int, width: int, height: int, flip: bool = False) -> dict[str, torch.Tensor]:
        """DETR training target of one image."""
        boxes, labels = [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0):
                continue
            x, y, w, h = ann["bbox"]
            if w <= 1 or h <= 1:
                continue
            cx = (x + w / 2) / width
            boxes.append([1 - cx if flip else cx, (y + h / 2) / height, w / width, h / height])
            labels.append(self.label_of_category[ann["category_id"]])
        return {
            "class_labels": torch.tensor(labels, dtype=torch.long),
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4).clamp(0, 1),
            "image_id": torch.tensor(image_id),
            "orig_size": torch.tensor([height, width]),
        }

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.image_ids[index]
        image = self.load_image(image_id)
        flip = self.hflip and bool(torch.rand(()) < 0.5)
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return preprocess_image(image, self.input_size), self.target(image_id, image.width, image.height, flip)


def collate_detection(batch: list[tuple[torch.Tensor, dict]]) -> dict[str, object]:
    """Stack images into `pixel_values` (B, 3, H, W); keep targets as a list (`labels`) as DETR expects."""
    return {"pixel_values": torch.stack([item[0] for item in batch]), "labels": [item[1] for item in batch]}
