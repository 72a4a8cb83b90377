"""The model zoo: the shipped default model by short name, architecture-only entries with random
weights, and any Hugging Face DETR id or local `save_pretrained` folder."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from optim.errors import OptimError

WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED = {"synth-detr": WEIGHTS_DIR / "synth-detr"}
# Architectures (optim.models.architectures, imported only to build one: it imports transformers) and sizes.
DEFAULT_INPUT_SIZE = {"synth-detr": (128, 128), "tiny-detr": (64, 64), "detr-r50": (800, 1066)}


@dataclass
class LoadedModel:
    """A DETR ready for inference plus what a report needs to know about it."""

    model: object  # transformers.DetrForObjectDetection, in eval mode
    source: str
    trained: bool  # False for random weights: accuracy figures are not meaningful
    default_input_size: tuple[int, int]


def describe_zoo() -> list[str]:
    """One line per zoo entry, for --help texts and error messages."""

    lines = [f"{name} (shipped, trained)" for name in SHIPPED]
    lines += [f"{name}-arch (architecture only, random weights)" for name in DEFAULT_INPUT_SIZE]
    return lines + ["any Hugging Face DETR id, e.g. facebook/detr-resnet-50", "a local save_pretrained folder"]


def load_model(name: str, num_labels: int | None = None, allow_download: bool = True,
               trust_remote_code: bool = False, allow_missing_weights: bool = False) -> LoadedModel:
    """Resolve `name` (zoo name, `<arch>-arch`, local folder or hub id) to a DETR in eval mode.

    A checkpoint that lacks tensors the architecture needs is an error unless `allow_missing_weights` (then
    they keep their random initial values and a warning names how many)."""
    from transformers import DetrForObjectDetection

    from optim.models.architectures import ARCHITECTURES

    if name in SHIPPED:
        return LoadedModel(_from_folder(SHIPPED[name], allow_missing_weights), f"shipped:{name}", True,
                           DEFAULT_INPUT_SIZE[name])
    if name.endswith("-arch") and name[: -len("-arch")] in DEFAULT_INPUT_SIZE:
        from optim.models.architectures import ARCHITECTURES

        arch = name[: -len("-arch")]
        config = ARCHITECTURES[arch](**({"num_labels": num_labels} if num_labels else {}))
        return LoadedModel(DetrForObjectDetection(config).eval(), f"random:{arch}", False, DEFAULT_INPUT_SIZE[arch])
    path = Path(name)
    if path.exists():
        if not path.is_dir():
            raise OptimError("the model path is a file; a model is a save_pretrained folder", path=path, field="model",
                             fix="point at the folder holding config.json and model.safetensors")
        return LoadedModel(_from_folder(path, allow_missing_weights), f"local:{path}", True, input_size_of(path))
    if name.count("/") == 1 and not name.startswith((".", "/")):
        model = _from_hub(name, allow_download, trust_remote_code)
        return LoadedModel(model, f"hub:{name}", True, (800, 1066))
    raise OptimError(f"unknown model '{name}'", field="model",
                     fix="use one of: " + "; ".join(describe_zoo()))


def input_size_of(folder: Path) -> tuple[int, int]:
    """A folder may record the input size it was trained at in `optim.json`; DETR's COCO size otherwise."""
    meta = folder / "optim.json"
    if not meta.is_file():
        return (800, 1066)
    try:
        size = json.loads(meta.read_text(encoding="utf-8"))["input_size"]
        if not (isinstance(size, list) and len(size) == 2
                and all(type(v) is int and 16 <= v <= 4096 for v in size)):  # type(): a bool is not a size
            raise ValueError(f"input_size is {size!r}, not [height, width]")
        return (size[0], size[1])
    except (ValueError, KeyError, TypeError) as error:  # not UTF-8 / not JSON / not a mapping with the key
        raise OptimError(f"malformed optim.json ({type(error).__name__}: {error})", path=meta, field="input_size",
                         fix='write {"input_size": [height, width]} with whole numbers in 16..4096, or delete the file '
                             "and give input_size in the spec") from error


def _from_folder(folder: Path, allow_missing_weights: bool = False):
    """Load a `save_pretrained` folder (safetensors only: no pickle is ever unpickled); every tensor the
    architecture needs must be in the file unless `allow_missing_weights`."""
    from transformers import DetrForObjectDetection

    if not (folder / "config.json").is_file():
        raise OptimError("no config.json: not a save_pretrained folder", path=folder,
                         fix="point at a folder written by save_pretrained (config.json + model.safetensors)")
    if not (folder / "model.safetensors").is_file():
        raise OptimError("checkpoint model.safetensors is missing", path=folder,
                         fix="re-run fine-tuning or restore the file (git checkout / git lfs pull)")
    try:
        model, info = DetrForObjectDetection.from_pretrained(folder, use_safetensors=True, output_loading_info=True)
    except Exception as error:  # transformers raises many types for a corrupt file
        raise OptimError(f"cannot load the checkpoint ({type(error).__name__}: {error})",
                         path=folder / "model.safetensors",
                         fix="the file is corrupt or from another architecture: re-run fine-tuning") from error
    _check_complete(info, folder / "model.safetensors", allow_missing_weights)
    return model.eval()


def _check_complete(info: dict, path: Path, allow_missing_weights: bool) -> None:
    """A checkpoint missing tensors would run with random values in their place: an error, or a loud warning."""
    missing = sorted(info.get("missing_keys") or []) + sorted(f"{k} (shape)" for k, *_ in info.get("mismatched_keys") or [])
    if not missing:
        return
    listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    if allow_missing_weights:
        print(f"warning: {path}: {len(missing)} tensors missing, left at random values: {listed}", file=sys.stderr)
        return
    raise OptimError(f"the checkpoint lacks {len(missing)} tensors the architecture needs ({listed}); they would "
                     "run with random values", path=path, field="allow_missing_weights",
                     fix="restore the complete file (re-run fine-tuning, git checkout / git lfs pull), or set "
                         "allow_missing_weights: true in the spec to run it anyway")


def _from_hub(model_id: str, allow_download: bool, trust_remote_code: bool):
    from transformers import DetrForObjectDetection

    try:
        return DetrForObjectDetection.from_pretrained(model_id, local_files_only=not allow_download,
                                                      trust_remote_code=trust_remote_code).eval()
    except OSError as error:
        raise OptimError(f"cannot fetch '{model_id}' from the Hugging Face hub ({error})", field="model",
                         fix="check the network, or download it elsewhere with save_pretrained and give the folder") from error
