"""Synthetic video-analytics data set in COCO layout, deterministic from a seed.

Each clip is a short sequence of frames: a textured "street" background over which a few objects
(cars, trucks, people, signs) move in straight lines, entering and leaving the frame. Boxes are exact
(the drawn extent, clipped to the image). Splits are made by clip, so no frame of a val/test clip is
ever seen in training.

    python -m optim.data.synthetic --out data/synthetic
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from optim.atomic import write_text_atomic
from optim.errors import OptimError

CATEGORIES = [
    {"id": 1, "name": "car", "supercategory": "vehicle"},
    {"id": 2, "name": "truck", "supercategory": "vehicle"},
    {"id": 3, "name": "person", "supercategory": "person"},
    {"id": 4, "name": "sign", "supercategory": "outdoor"},
]
DESCRIPTION = "optim synthetic video-analytics data set"
# Written into every folder the generator creates or adopts: it writes (and deletes its old frames) only there.
MARKER = ".optim-synthetic"


@dataclass(frozen=True)
class SplitSpec:
    """How many clips a split has, how many frames each clip holds and how many objects a clip may hold
    (0 to `max_objects`, drawn uniformly)."""

    clips: int
    frames_per_clip: int
    max_objects: int = 6


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the generated data set; the defaults are the shipped model's data.

    Version 2 (2026-11-26): 4 000 train clips x 6 frames instead of 400 x 12. With 400 scenes the shipped
    model fitted the train split (mAP 0.67) far better than val (0.22): the frames of one clip repeat the
    same background and objects, so the clip count, not the frame count, is what the model learns from.
    Val and test are unchanged (each split has its own random stream; a split's `max_objects` changes only
    that split)."""

    version: ClassVar[int] = 2

    image_size: int = 128
    seed: int = 0
    splits: dict[str, SplitSpec] = field(
        default_factory=lambda: {
            "train": SplitSpec(clips=4000, frames_per_clip=6),
            "val": SplitSpec(clips=25, frames_per_clip=8),
            "test": SplitSpec(clips=25, frames_per_clip=8),
        }
    )


@dataclass(frozen=True)
class Scene:
    """How a clip's objects are drawn: `object_scale` multiplies every object's size; `class_weights` (one per
    category, summing to 1) replaces the uniform class draw. The defaults are the data set's own (the replay
    harness of `optim.monitor` shifts them)."""

    object_scale: float = 1.0
    class_weights: tuple[float, ...] | None = None


@dataclass
class _Track:
    """One object moving through a clip in a straight line."""

    category_id: int
    width: float
    height: float
    x: float
    y: float
    vx: float
    vy: float
    colour: tuple[int, int, int]
    depth: float
    variant: int


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth random texture with a road band and lane marks."""
    coarse = rng.uniform(0, 1, size=(8, 8, 3))
    base = np.array(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC))
    tint = rng.uniform(60, 160, size=3)
    noise = rng.normal(0, 12, size=(size, size, 3))
    pixels = np.clip(0.35 * base + 0.65 * tint + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    top = int(rng.uniform(0.3, 0.6) * size)
    band = int(rng.uniform(0.2, 0.35) * size)
    grey = int(rng.uniform(70, 110))
    draw.rectangle([0, top, size, top + band], fill=(grey, grey, grey))
    dash = max(4, size // 16)
    for x0 in range(0, size, 2 * dash):
        draw.rectangle([x0, top + band // 2 - 1, x0 + dash, top + band // 2 + 1], fill=(230, 230, 200))
    return image.filter(ImageFilter.GaussianBlur(0.6))


def _new_track(rng: np.random.Generator, size: int, frames: int, scene: Scene = Scene()) -> _Track:
    """Draw a random object with a size range that includes small (< 32^2 scaled) objects."""
    if scene.class_weights is None:
        category_id = int(rng.integers(1, len(CATEGORIES) + 1))
    else:
        category_id = int(rng.choice(len(CATEGORIES), p=scene.class_weights)) + 1
    scale = size * float(rng.choice([rng.uniform(0.06, 0.14), rng.uniform(0.14, 0.45)], p=[0.3, 0.7]))
    scale *= scene.object_scale
    aspect = {1: rng.uniform(1.4, 2.0), 2: rng.uniform(2.0, 2.8), 3: rng.uniform(0.35, 0.5), 4: rng.uniform(0.8, 1.2)}
    ratio = float(aspect[category_id])
    width = scale * math.sqrt(ratio)
    height = scale / math.sqrt(ratio)
    speed = rng.uniform(0.5, 3.0) * size / 128
    angle = rng.uniform(0, 2 * math.pi)
    # Start positions are spread so that some objects enter or leave the frame during the clip.
    x = rng.uniform(-0.2 * size, 1.2 * size) - math.cos(angle) * speed * frames / 2
    y = rng.uniform(0.0, 1.0 * size) - math.sin(angle) * speed * frames / 2
    colour = tuple(int(c) for c in rng.integers(20, 236, size=3))
    return _Track(category_id, width, height, x, y, speed * math.cos(angle), speed * math.sin(angle),
                  colour, float(rng.uniform()), int(rng.integers(0, 2)))


def _draw_object(draw: ImageDraw.ImageDraw, track: _Track, box: tuple[float, float, float, float]) -> None:
    """Draw one object filling exactly `box` (x0, y0, x1, y1) so that its box is exact."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    dark = tuple(max(0, c - 70) for c in track.colour)
    if track.category_id == 1:  # car: rounded body with a darker cabin
        draw.rounded_rectangle(box, radius=max(1, h * 0.3), fill=track.colour)
        draw.rectangle([x0 + w * 0.25, y0 + h * 0.15, x0 + w * 0.7, y0 + h * 0.5], fill=dark)
    elif track.category_id == 2:  # truck: box trailer and a cab
        draw.rectangle([x0, y0, x0 + w * 0.72, y1], fill=track.colour)
        draw.rectangle([x0 + w * 0.74, y0 + h * 0.3, x1, y1], fill=dark)
    elif track.category_id == 3:  # person: head over a body
        draw.ellipse([x0 + w * 0.2, y0, x1 - w * 0.2, y0 + h * 0.25], fill=dark)
        draw.rectangle([x0, y0 + h * 0.25, x1, y1], fill=track.colour)
    else:  # sign: triangle or diamond
        if track.variant == 0:
            draw.polygon([(x0 + w / 2, y0), (x1, y1), (x0, y1)], fill=track.colour)
        else:
            draw.polygon([(x0 + w / 2, y0), (x1, y0 + h / 2), (x0 + w / 2, y1), (x0, y0 + h / 2)], fill=track.colour)


def render_clip(rng: np.random.Generator, size: int, split_spec: SplitSpec, scene: Scene = Scene()):
    """Yield (image, annotations) per frame of one clip; annotations are (category_id, [x, y, w, h])."""
    frames = split_spec.frames_per_clip
    background = _background(rng, size)
    # About one clip in eight is empty for a while: no object enters before the clip is half over.
    n_objects = int(rng.integers(0, split_spec.max_objects + 1))
    tracks = sorted((_new_track(rng, size, frames, scene) for _ in range(n_objects)), key=lambda t: t.depth)
    for frame_index in range(frames):
        image = background.copy()
        draw = ImageDraw.Draw(image)
        annotations = []
        for track in tracks:  # far to near: later objects occlude earlier ones
            cx = track.x + track.vx * frame_index
            cy = track.y + track.vy * frame_index
            box = (cx - track.width / 2, cy - track.height / 2, cx + track.width / 2, cy + track.height / 2)
            clipped = (max(0.0, box[0]), max(0.0, box[1]), min(size, box[2]), min(size, box[3]))
            visible_w, visible_h = clipped[2] - clipped[0], clipped[3] - clipped[1]
            if visible_w < 3 or visible_h < 3:
                continue
            _draw_object(draw, track, box)
            # An object less than a third inside the frame is drawn but not labelled (like a crowd edge).
            if visible_w * visible_h < (track.width * track.height) / 3:
                continue
            annotations.append((track.category_id, [round(clipped[0], 2), round(clipped[1], 2),
                                                    round(visible_w, 2), round(visible_h, 2)]))
        yield image, annotations


def clip_frames(seed: int, frames: int, size: int = 128, max_objects: int = 6) -> list[Image.Image]:
    """The frames of one synthetic clip, deterministic from `seed` (annotations dropped): a built-in video."""
    rng = np.random.default_rng(seed)
    return [image for image, _ in render_clip(rng, size, SplitSpec(1, frames, max_objects))]


def generate_split(out_dir: Path, split: str, spec: SyntheticSpec) -> Path:
    """Write `out_dir/<split>/*.jpg` and `out_dir/annotations/instances_<split>.json`; return the json path."""
    claim_folder(out_dir)
    split_spec = spec.splits[split]
    split_seed = spec.seed * 1000 + sorted(spec.splits).index(split)
    rng = np.random.default_rng(split_seed)
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    for stale in image_dir.glob("clip*_frame*.jpg"):  # frames of an earlier generation that this one may not overwrite
        stale.unlink()
    images, annotations = [], []
    for clip in range(split_spec.clips):
        for frame, (image, objects) in enumerate(render_clip(rng, spec.image_size, split_spec)):
            image_id = len(images) + 1
            file_name = f"clip{clip:04d}_frame{frame:03d}.jpg"
            image.save(image_dir / file_name, quality=92)
            images.append({"id": image_id, "file_name": file_name, "width": spec.image_size,
                           "height": spec.image_size, "video_id": clip, "frame_id": frame})
            for category_id, bbox in objects:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                    "bbox": bbox, "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0})
    ann_dir = out_dir / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    ann_file = ann_dir / f"instances_{split}.json"
    info = {"description": DESCRIPTION, **_split_identity(spec, split)}
    write_text_atomic(ann_file, json.dumps({"info": info, "images": images, "annotations": annotations,
                                    "categories": CATEGORIES}))
    return ann_file


def _split_identity(spec: SyntheticSpec, split: str) -> dict:
    """What determines a split's content; stored in its annotation file's `info`."""
    return {"version": spec.version, "seed": spec.seed, "image_size": spec.image_size,
            **asdict(spec.splits[split])}


def _info_of(ann_file: Path) -> dict | None:
    """The `info` of an annotation file, or None when it is missing or not a JSON object."""
    try:
        with ann_file.open("rb") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    info = data.get("info") if isinstance(data, dict) else None
    return info if isinstance(info, dict) else None


def _is_legacy_folder(root: Path) -> bool:
    """Whether `root` holds exactly what a generator without markers wrote: `annotations/instances_<split>.json`
    made by it, and split folders of its `clip*_frame*.jpg` frames, nothing else."""
    splits = {"train", "val", "test"}
    entries = {entry.name: entry for entry in root.iterdir()}
    annotations = entries.get("annotations")
    if annotations is None or not set(entries) <= splits | {"annotations"} or not annotations.is_dir():
        return False
    for ann_file in annotations.iterdir():
        name = ann_file.name
        if not (name.startswith("instances_") and name.endswith(".json") and name[10:-5] in splits):
            return False
        if (_info_of(ann_file) or {}).get("description") != DESCRIPTION:
            return False
    return all(entries[split].is_dir() and all(f.match("clip*_frame*.jpg") for f in entries[split].iterdir())
               for split in splits & set(entries))


def _refusal(root: Path) -> OptimError | None:
    """Why the generator may not write into `root`, or None when it may: `root` is new, empty, marked as the
    generator's (`MARKER`), or holds only an unmarked earlier generation of this data set. Any other folder
    holds someone's own files (e.g. a COCO data set), which generating would replace or delete."""
    if (root / MARKER).is_file():
        return None
    if root.exists() and not root.is_dir():
        return OptimError("the data root is a file, not a folder", path=root, field="data.root",
                          fix="point data.root at a folder (a new one for the synthetic data set)")
    if root.is_dir() and any(root.iterdir()) and not _is_legacy_folder(root):
        return OptimError(f"refusing to generate the synthetic data set here: the folder holds files the generator "
                          f"did not write (it has no {MARKER} marker), and generating would replace or delete them",
                          path=root, field="data.root",
                          fix="point data.root (or --out) at a new or empty folder; to use the data already in this "
                              "folder as it is, set data.dataset: coco (experiments) or data.generate: false "
                              "(fine-tuning)")
    return None


def claim_folder(root: Path) -> None:
    """Make sure the generator may write into `root` (see `_refusal`) and mark it as the generator's, else raise
    `OptimError` and change nothing."""
    root = Path(root)
    refusal = _refusal(root)
    if refusal is not None:
        raise refusal
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / MARKER, "Written by optim.data.synthetic: this folder holds a generated data set, "
                                     "which the generator may replace.\n")


def _is_current(ann_file: Path, spec: SyntheticSpec, split: str) -> bool:
    """Whether `ann_file` exists and was generated with `spec` (an older version or other parameters: no)."""
    info = _info_of(ann_file)
    return info is not None and all(info.get(key) == value for key, value in _split_identity(spec, split).items())


def _check_splits(out_dir: Path, splits: tuple[str, ...], spec: SyntheticSpec) -> None:
    unknown = [split for split in splits if split not in spec.splits]
    if unknown:
        raise OptimError(f"split(s) {unknown} are not splits of the synthetic data set", path=out_dir,
                         fix=f"choose from {sorted(spec.splits)}, or use dataset: coco for your own splits")


def check_writable(out_dir: Path, splits: tuple[str, ...] = ("train", "val", "test"),
                   spec: SyntheticSpec | None = None, new_folder_anywhere: bool = True) -> None:
    """Raise the `OptimError` that `ensure_dataset` would, without writing anything. Without
    `new_folder_anywhere` (a path from a spec, not the command line), a folder that does not exist yet (or is
    empty) must also lie under the working folder: a spec may not make the generator write just anywhere."""
    spec = spec or SyntheticSpec()
    out_dir = Path(out_dir)
    _check_splits(out_dir, splits, spec)
    if all(_is_current(out_dir / "annotations" / f"instances_{split}.json", spec, split) for split in splits):
        return
    refusal = _refusal(out_dir)
    if refusal is not None:
        raise refusal
    is_new = not out_dir.is_dir() or not any(out_dir.iterdir())
    if is_new and not new_folder_anywhere and (out_dir.is_absolute() or ".." in out_dir.parts):
        raise OptimError("the synthetic data set would be generated in a new folder outside the working folder",
                         path=out_dir, field="data.root",
                         fix=f"use a relative data.root without '..', or generate it there explicitly first: "
                             f"python -m optim.data.synthetic --out {out_dir}")


def ensure_dataset(out_dir: Path, splits: tuple[str, ...] = ("train", "val", "test"),
                   spec: SyntheticSpec | None = None) -> Path:
    """Generate the splits under `out_dir` that are missing or were generated with other parameters (an older
    version of this generator, another seed or size) and return `out_dir`."""
    spec = spec or SyntheticSpec()
    _check_splits(Path(out_dir), splits, spec)
    for split in splits:
        if not _is_current(out_dir / "annotations" / f"instances_{split}.json", spec, split):
            generate_split(out_dir, split, spec)
    return out_dir


def main(argv: list[str] | None = None, prog: str = "python -m optim.data.synthetic") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"), help="output folder")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    spec = SyntheticSpec(seed=args.seed)
    for split in args.splits:
        if split not in spec.splits:
            parser.error(f"unknown split {split!r}; choose from {sorted(spec.splits)}")
    for split in args.splits:
        start = time.perf_counter()
        ann_file = generate_split(args.out, split, spec)
        print(f"{split}: wrote {ann_file} in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    from optim.cli import run_cli

    run_cli(main)
