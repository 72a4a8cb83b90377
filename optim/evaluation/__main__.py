"""python -m optim.evaluation MODEL [--root data/synthetic] [--split test] — COCO mAP of a zoo model or folder
with PyTorch, the way the model card's figures were measured."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from optim.cli import run_cli


def main(argv: list[str] | None = None, prog: str = "python -m optim.evaluation") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("model", help="zoo name, local save_pretrained folder or hub id")
    parser.add_argument("--root", type=Path, default=Path("data/synthetic"), help="COCO folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--generate", action="store_true", help="generate the synthetic split at --root if missing")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="default: the model's own")
    args = parser.parse_args(argv)

    from optim.data.coco import CocoDetection, CocoFolder
    from optim.data.synthetic import ensure_dataset
    from optim.evaluation.evaluate import evaluate_pytorch
    from optim.models.zoo import load_model

    loaded = load_model(args.model)
    if args.generate:
        ensure_dataset(args.root, (args.split,))
    size = tuple(args.input_size or loaded.default_input_size)
    metrics = evaluate_pytorch(loaded.model, CocoDetection(CocoFolder.from_root(args.root, args.split), size))
    print(json.dumps({"model": args.model, "split": args.split, "input_size": list(size), **metrics}, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
