"""The model zoo: the shipped default model by short name, architecture-only entries with random
weights, and any Hugging Face DETR id or local `save_pretrained` folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from optim.errors import OptimError

WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED = {"synth-detr": WEIGHTS_DIR / "synth-detr"}
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
    from optim.models.architectures import ARCHITECTURES  # transformers: imported only when needed

    lines = [f"{name} (shipped, trained)" for name in SHIPPED]
    lines += [f"{name}-arch (architecture only, random weights)" for name in ARCHITECTURES]
    return lines + ["any Hugging Face DETR id, e.g. facebook/detr-resnet-50", "a local save_pretrained folder"]


def load_model(name: str, num_labels: int | None = None, allow_download: bool = True,
               trust_remote_code: bool = False) -> LoadedModel:
    """Resolve `name` (zoo name, `<arch>-arch`, local folder or hub id) to a DETR in eval mode."""
    from transformers import DetrForObjectDetection

    from optim.models.architectures import ARCHITECTURES

    if name in SHIPPED:
        return LoadedModel(_from_folder(SHIPPED[name]), f"shipped:{name}", True, DEFAULT_INPUT_SIZE[name])
    if name.endswith("-arch") and name[: -len("-arch")] in ARCHITECTURES:
        arch = name[: -len("-arch")]
        config = ARCHITECTURES[arch](**({"num_labels": num_labels} if num_labels else {}))
        return LoadedModel(DetrForObjectDetection(config).eval(), f"random:{arch}", False, DEFAULT_INPUT_SIZE[arch])
    path = Path(name)
    if path.exists():
        return LoadedModel(_from_folder(path), f"local:{path}", True, _input_size_of(path))
    if name.count("/") == 1 and not name.startswith((".", "/")):
        model = _from_hub(name, allow_download, trust_remote_code)
        return LoadedModel(model, f"hub:{name}", True, (800, 1066))
    raise OptimError(f"unknown model '{name}'", field="model",
                     fix="use one of: " + "; ".join(describe_zoo()))


def _input_size_of(folder: Path) -> tuple[int, int]:
    """A folder may record the input size it was trained at in `optim.json`; DETR's COCO size otherwise."""
    meta = folder / "optim.json"
    if meta.is_file():
        return tuple(json.loads(meta.read_text())["input_size"])  # type: ignore[return-value]
    return (800, 1066)


def _from_folder(folder: Path):
    """Load a `save_pretrained` folder (safetensors only: no pickle is ever unpickled)."""
    from transformers import DetrForObjectDetection

    if not (folder / "config.json").is_file():
        raise OptimError("no config.json: not a save_pretrained folder", path=folder,
                         fix="point at a folder written by save_pretrained (config.json + model.safetensors)")
    if not (folder / "model.safetensors").is_file():
        raise OptimError("checkpoint model.safetensors is missing", path=folder,
                         fix="re-run fine-tuning or restore the file (git checkout / git lfs pull)")
    try:
        return DetrForObjectDetection.from_pretrained(folder, use_safetensors=True).eval()
    except Exception as error:  # transformers raises many types for a corrupt file
        raise OptimError(f"cannot load the checkpoint ({type(error).__name__}: {error})",
                         path=folder / "model.safetensors",
                         fix="the file is corrupt or from another architecture: re-run fine-tuning") from error


def _from_hub(model_id: str, allow_download: bool, trust_remote_code: bool):
    from transformers import DetrForObjectDetection

    try:
        return DetrForObjectDetection.from_pretrained(model_id, local_files_only=not allow_download,
                                                      trust_remote_code=trust_remote_code).eval()
    except OSError as error:
        raise OptimError(f"cannot fetch '{model_id}' from the Hugging Face hub ({error})", field="model",
                         fix="check the network, or download it elsewhere with save_pretrained and give the folder") from error
