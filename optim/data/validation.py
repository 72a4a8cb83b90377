"""Checks of a COCO instances file before anything is scored: a malformed file would otherwise be evaluated
to a silent mAP of 0 (or crash deep inside pycocotools). Pure Python, no heavy imports."""

from __future__ import annotations

import json
import math
from pathlib import Path

from optim.errors import OptimError

EDGE_TOLERANCE = 1.0  # pixels a box may reach past the image border (rounding in real annotation tools)
LISTED = 5  # problems quoted in one error message


def read_coco_json(path: Path) -> dict:
    """The parsed instances file at `path`, checked with `check_coco`."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = json.load(handle)
    except OSError as error:
        raise OptimError(f"cannot read the annotation file ({error.strerror})", path=path,
                         fix="check the path and its permissions") from error
    except ValueError as error:  # JSONDecodeError, or bytes that are not UTF-8 text
        raise OptimError(f"not a JSON file ({error})"[:300], path=path,
                         fix="give a COCO instances file (JSON with images, annotations and categories)") from error
    check_coco(data, path)
    return data


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_images(images: list, problems: list[str]) -> dict[int, dict]:
    by_id: dict[int, dict] = {}
    for index, image in enumerate(images):
        if not isinstance(image, dict) or not _is_id(image.get("id")):
            problems.append(f"images[{index}]: needs an integer 'id'")
            continue
        where = f"image id {image['id']}"
        if image["id"] in by_id:
            problems.append(f"{where}: the id is used by two images")
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            problems.append(f"{where}: needs a 'file_name'")
        for key in ("width", "height"):
            if key in image and not (_is_number(image[key]) and image[key] > 0):
                problems.append(f"{where}: '{key}' is {image[key]!r}, not a positive number")
        by_id[image["id"]] = image
    return by_id


def _check_box(bbox: object, image: dict, where: str, problems: list[str]) -> None:
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        count = len(bbox) if isinstance(bbox, list) else "no"
        problems.append(f"{where}: bbox is {bbox!r} ({count} values); it needs 4 finite numbers [x, y, width, height]")
        return
    x, y, w, h = bbox
    if w < 0 or h < 0:
        problems.append(f"{where}: bbox {bbox} has a negative width or height")
    width, height = image.get("width"), image.get("height")
    outside = x < -EDGE_TOLERANCE or y < -EDGE_TOLERANCE
    if _is_number(width) and _is_number(height):
        outside = outside or x + w > width + EDGE_TOLERANCE or y + h > height + EDGE_TOLERANCE
    if outside:
        problems.append(f"{where}: bbox {bbox} lies outside the {width}x{height} image "
                        "(COCO boxes are [x, y, width, height] in pixels)")


def check_coco(data: object, path: Path) -> None:
    """Raise `OptimError` naming the file, the image / annotation ids and the fix if `data` is not a usable COCO
    instances file: images with unique ids and file names, categories with unique ids, annotations whose image and
    category exist and whose box has four numbers inside its image."""
    if not isinstance(data, dict):
        raise OptimError(f"not a COCO instances file: the JSON is a {type(data).__name__}, not an object", path=path,
                         fix="give a COCO instances file (JSON with images, annotations and categories)")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise OptimError(f"not a COCO instances file: '{key}' is missing or not a list", path=path, field=key,
                             fix="give a COCO instances file (JSON with images, annotations and categories)")
    if not isinstance(data.get("annotations", []), list):
        raise OptimError("'annotations' is not a list", path=path, field="annotations", fix="make it a list")
    problems: list[str] = []
    images = _check_images(data["images"], problems)
    categories = {c.get("id") for c in data["categories"] if isinstance(c, dict) and _is_id(c.get("id"))}
    if len(categories) != len(data["categories"]):
        problems.append("categories: every category needs a unique integer 'id'")
    seen: set[int] = set()
    for index, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            problems.append(f"annotations[{index}]: not an object")
            continue
        where = f"annotation {ann.get('id', f'[{index}]')} (image id {ann.get('image_id')})"
        if _is_id(ann.get("id")):
            if ann["id"] in seen:
                problems.append(f"{where}: the annotation id is used twice")
            seen.add(ann["id"])
        image = images.get(ann.get("image_id")) if _is_id(ann.get("image_id")) else None
        if image is None:
            problems.append(f"{where}: no image has this image id")
            continue
        if ann.get("category_id") not in categories:
            problems.append(f"{where}: category id {ann.get('category_id')!r} is not in 'categories'")
        _check_box(ann.get("bbox"), image, where, problems)
    if problems:
        more = f"; and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
        raise OptimError(f"{len(problems)} problem(s) in the annotations: " + "; ".join(problems[:LISTED]) + more,
                         path=path, fix="correct these entries (or drop them) in the annotation file")
