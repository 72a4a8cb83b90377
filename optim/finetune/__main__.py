"""python -m optim.finetune SPEC.yaml — fine-tune a DETR with the spec's trainer (transformers or lightning)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from optim.atomic import write_text_atomic
from optim.cli import run_cli
from optim.finetune.spec import FinetuneSpec
from optim.preflight import check_finetune_paths
from optim.results import make_output_folder
from optim.spec_loading import load_spec


def _steps(text: str) -> int:
    """A --steps value: a whole number in the spec's own range (1 .. 10 million)."""
    if not text.isdigit() or not 1 <= int(text) <= 10_000_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of steps in 1..10000000")
    return int(text)


def main(argv: list[str] | None = None, prog: str = "python -m optim.finetune") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--steps", type=_steps, help="override the spec's step count (e.g. a smoke run)")
    parser.add_argument("--output-dir", type=Path, help="override the spec's output_dir (any folder: a spec's own "
                                                        "output_dir must stay under the working folder)")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec, FinetuneSpec, defaults={"name": args.spec.stem})
    overrides = {k: v for k, v in {"steps": args.steps, "output_dir": args.output_dir}.items() if v is not None}
    spec = spec.model_copy(update=overrides)
    check_finetune_paths(spec, args.spec)
    out_dir = spec.output_dir / spec.name
    make_output_folder(out_dir)

    import torch

    from optim.finetune.common import build_data, build_model, seed_everything

    if spec.threads:
        torch.set_num_threads(spec.threads)
    seed_everything(spec.seed)
    data = build_data(spec)
    model = build_model(spec, data.train.label_names)
    write_text_atomic(out_dir / "spec.json", spec.model_dump_json(indent=2))
    if spec.trainer == "transformers":
        from optim.finetune.trainer_hf import train_transformers

        metrics = train_transformers(spec, model, data, out_dir)
    else:
        from optim.finetune.trainer_lightning import train_lightning

        metrics = train_lightning(spec, model, data, out_dir)
    print(json.dumps(metrics, indent=2))
    print(f"model saved to {out_dir / 'model'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
