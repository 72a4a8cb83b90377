"""Which data-set category each output label of a model stands for.

By class name where every category of the data set is among the model's labels: a COCO-trained hub DETR
(`facebook/detr-resnet-50`, whose label index is the COCO category id, with gaps) on COCO val2017, or a model
fine-tuned here (labels named after the categories). Else by position when the counts match (architecture-only
entries sized to the data set, generic `LABEL_i` names). Anything else cannot be scored and is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from optim.errors import OptimError


def _preview(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def category_of_label(id2label: Mapping[int, str], category_ids: Sequence[int], category_names: Sequence[str],
                      source: str = "the model") -> list[int | None]:
    """For each model label (index), the data-set category id it predicts, or None for a class the data set
    does not have (its detections are not scored). `source` names the model and data set in the error."""
    num_labels = len(id2label)
    by_name = {str(name).strip().lower(): int(label) for label, name in id2label.items()}
    wanted = [str(name).strip().lower() for name in category_names]
    if all(name in by_name for name in wanted):
        mapping: list[int | None] = [None] * num_labels
        for category, name in zip(category_ids, wanted):
            mapping[by_name[name]] = int(category)
        return mapping
    if num_labels == len(category_ids):
        return [int(category) for category in category_ids]
    model_names = [str(id2label[label]) for label in sorted(id2label)]
    raise OptimError(f"{source}: the model's {num_labels} classes ({_preview(model_names)}) match the data set's "
                     f"{len(category_ids)} categories ({_preview(list(category_names))}) neither by name nor by count",
                     field="model",
                     fix="evaluate the model on the data it was trained for, or fine-tune it on this data set "
                         "(python -m optim.finetune, model: {init: <this model>})")


def label_map_of(model, dataset, source: str = "the model") -> list[int | None]:
    """`category_of_label` for a Hugging Face DETR and a `CocoDetection` data set."""
    return category_of_label(model.config.id2label, dataset.category_ids, dataset.label_names,
                             f"{source} on {dataset.folder.annotations}")
