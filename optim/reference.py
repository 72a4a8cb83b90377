"""The manual's spec reference, generated from the pydantic spec models so that it cannot drift from them.

`render_reference(ExperimentSpec)` walks the model and every model it contains (data, latency, variants, steps,
...) and writes one Markdown table per model: field, type, default, bounds, description. A field's description
is its `Field(description=...)`, else its entry in FIELD_NOTES; `spec_fields` lists every field, so that a test
can check that the reference has a row for each and that each has a description.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

# Descriptions of fields whose model gives none (keyed "Model.field"; a test checks every key names a field).
FIELD_NOTES: dict[str, str] = {
    "ExperimentSpec.name": "experiment name (default: the spec file's stem); the report goes to "
                           "`<output_dir>/<name>/`",
    "ExperimentSpec.description": "shown in the report",
    "ExperimentSpec.model": "zoo name (`synth-detr`, `<arch>-arch`), hub id or local `save_pretrained` folder",
    "ExperimentSpec.trust_remote_code": "passed to `from_pretrained` only when true",
    "ExperimentSpec.batch_sizes": "latency and throughput are measured at each",
    "ExperimentSpec.eval_batch_size": "batch used to score accuracy",
    "ExperimentSpec.seed": "seeds everything (random-weight models included)",
    "ExperimentSpec.latency": "how latency is timed",
    "ExperimentSpec.profile": "profilers for every variant (a variant's own `profile` replaces it)",
    "ExperimentSpec.data": "evaluation and calibration data",
    "ExperimentSpec.variants": "the variants, in report order",
    "ExperimentSpec.matrix": "engines x precisions, expanded into variants `<engine>-<precision>`",
    "ExperimentSpec.output_dir": "parent of the report folder (variant names cannot escape it)",
    "DataSpec.dataset": "`synthetic` (generated on first use) or `coco` (any COCO folder)",
    "DataSpec.root": "folder with `<split>/` images and `annotations/instances_<split>.json`",
    "DataSpec.eval_split": "split that is scored",
    "DataSpec.calibration_split": "calibration and INC tuning images; must differ from `eval_split`",
    "DataSpec.calibration_images": "first N images of `calibration_split`",
    "LatencySpec.warmup_iters": "untimed iterations first",
    "LatencySpec.min_iters": "timed iterations, at least",
    "LatencySpec.max_iters": "timed iterations, at most",
    "LatencySpec.max_seconds": "time budget of the timed loop, per batch size",
    "ProfileSpec.torch_profiler": "Chrome/Perfetto trace (PyTorch engines)",
    "ProfileSpec.pyinstrument": "pyinstrument call tree (any engine)",
    "ProfileSpec.nvtx": "NVTX ranges around the stages, for Nsight",
    "QuantizeStep.kind": "selects the step type",
    "QuantizeStep.method": "the engine's own quantizer or cast; which engine runs which is checked at load time",
    "QuantizeStep.per_channel": "per-channel weight scales",
    "QuantizeStep.calibration": "activation range estimator",
    "PruneStep.kind": "selects the step type",
    "PruneStep.method": "what is removed (see the compression guide)",
    "PruneStep.importance": "how channels / heads are ranked",
    "DistillStep.kind": "selects the step type",
    "DistillStep.steps": "distillation steps",
    "DistillStep.lr": "learning rate",
    "DistillStep.batch_size": "training batch size",
    "EngineSpec.kind": "inference engine",
    "EngineSpec.device": "`cpu` or `cuda`",
    "EngineSpec.compile_mode": "`torch.compile` mode",
    "EngineSpec.providers": "ONNX Runtime execution providers",
    "EngineSpec.opset": "ONNX opset for export",
    "VariantSpec.name": "unique within the experiment",
    "VariantSpec.steps": "ordered chain; `quantize` at most once and last",
    "VariantSpec.engine": "the engine that runs the variant",
    "VariantSpec.profile": "this variant's profilers (default: the experiment's)",
    "MatrixSpec.engines": "engines of the matrix",
    "MatrixSpec.precisions": "precisions of the matrix (cells an engine cannot run are skipped)",
    "MatrixSpec.device": "device of every cell",
    "FinetuneSpec.name": "run name (default: the spec file's stem); output goes to `<output_dir>/<name>/`",
    "FinetuneSpec.trainer": "Transformers `Trainer` or PyTorch Lightning; both read the same spec",
    "FinetuneSpec.model": "what to start from",
    "FinetuneSpec.data": "training data (any COCO folder)",
    "FinetuneSpec.input_size": "(height, width) of the training images",
    "FinetuneSpec.steps": "optimizer steps",
    "FinetuneSpec.batch_size": "training batch size",
    "FinetuneSpec.lr": "peak learning rate (AdamW)",
    "FinetuneSpec.weight_decay": "AdamW weight decay",
    "FinetuneSpec.warmup_steps": "linear warm-up, then cosine decay to 10 % of `lr`",
    "FinetuneSpec.grad_clip": "gradient norm clipping",
    "FinetuneSpec.hflip": "random horizontal flips",
    "FinetuneSpec.loss": "Hungarian loss weights",
    "FinetuneSpec.eval_every": "COCO mAP on val every N steps",
    "FinetuneSpec.save_every": "checkpoint every N steps (a re-run resumes from the last)",
    "FinetuneSpec.logger": "CSV or TensorBoard logs",
    "FinetuneSpec.seed": "seeds weights, data order and augmentation",
    "FinetuneSpec.output_dir": "parent of the run folder",
    "FinetuneDataSpec.root": "COCO folder: `<split>/` images and `annotations/instances_<split>.json`",
    "FinetuneDataSpec.train_split": "split trained on",
    "FinetuneDataSpec.val_split": "split evaluated every `eval_every` steps",
    "FinetuneDataSpec.test_split": "split scored once at the end (`null`: none)",
    "FinetuneModelSpec.arch": "architecture with random weights",
    "FinetuneModelSpec.init": "a model to start from: zoo name, local folder or hub id",
}


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The spec models an annotation refers to (through lists, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def spec_models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """`root` and every model reachable from its fields, in first-seen order."""
    seen: list[type[BaseModel]] = []
    pending = [root]
    while pending:
        model = pending.pop(0)
        if model in seen:
            continue
        seen.append(model)
        pending += [m for field in model.model_fields.values() for m in _models_in(field.annotation)]
    return seen


def spec_fields(root: type[BaseModel]) -> list[str]:
    """Every field of `root` and the models it contains, as "Model.field"."""
    return [f"{model.__name__}.{name}" for model in spec_models(root) for name in model.model_fields]


def _bounds(metadata: list) -> list[str]:
    """Human-readable constraints: >= 1, < 1, max length 80, pattern."""
    out = []
    for item in metadata:
        for attr, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if isinstance(item, getattr(annotated_types, attr.capitalize())):
                out.append(f"{symbol} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MinLen):
            out.append(f"min length {item.min_length}")
        if isinstance(item, annotated_types.MaxLen):
            out.append(f"max length {item.max_length}")
        if getattr(item, "pattern", None):
            out.append(f"pattern `{item.pattern}`")
    return out


def type_name(annotation: object) -> str:
    """A spec type in words: `int`, `list of int (≥ 1)`, `"a" or "b"`, a link to a nested model's table."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        info = next((a for a in args[1:] if isinstance(a, FieldInfo)), None)
        inner = type_name(args[0])
        bounds = _bounds(info.metadata) if info else []
        if info is not None and info.discriminator:
            return f"{inner}, chosen by `{info.discriminator}`"
        return f"{inner} ({', '.join(bounds)})" if bounds else inner
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if annotation is type(None):
        return "`null`"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(its defaults)"
    if value is None:
        return "`null`"
    if value == "":
        return '`""`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        value = value.as_posix()
    return f"`{list(value) if isinstance(value, tuple) else value}`"


def description(model: type[BaseModel], name: str) -> str:
    """The field's own description, else its FIELD_NOTES entry, else ''."""
    return model.model_fields[name].description or FIELD_NOTES.get(f"{model.__name__}.{name}", "")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def model_table(model: type[BaseModel]) -> str:
    """One model's Markdown section: heading, docstring, table of its fields."""
    doc = " ".join((model.__doc__ or "").split())
    lines = [f"### {model.__name__}", "", doc, "", "| field | type | default | bounds | description |",
             "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        cells = [f"`{name}`", type_name(field.annotation), _default(field), ", ".join(_bounds(field.metadata)),
                 description(model, name)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_reference(root: type[BaseModel]) -> str:
    """Every table of `root`'s spec, root first."""
    return "\n".join(model_table(model) for model in spec_models(root))
