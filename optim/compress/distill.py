"""Training after compression: a short fine-tuning with DETR's own loss (`finetune_briefly`) and knowledge
distillation from a teacher DETR (`apply_distill`).

Distillation loss = DETR's supervised loss (Hungarian matching to the labels, with auxiliary decoder losses)
+ a teacher term: each image's student queries are Hungarian-matched to the teacher's queries (cost = class
probability L1 + box L1 + (1 - GIoU), weighted like DETR's matcher), then matched pairs get a KL divergence
on temperature-softened class logits and L1 + (1 - GIoU) on boxes, the box terms weighted by the teacher's
confidence that the query holds an object; optionally + MSE between encoder outputs.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from optim.compress import CompressionResult
from optim.data.coco import CocoDetection, collate_detection
from optim.errors import OptimError
from optim.spec import DistillStep

TEMPERATURE = 2.0
GRAD_CLIP = 0.1  # DETR's gradient-norm clip
SAVE_EVERY = 100
LOG_FIELDS = ["step", "loss", "supervised", "distill", "kd_class", "kd_box_l1", "kd_giou", "feature"]


def batch_indices(size: int, batch_size: int, step: int, seed: int = 0) -> list[int]:
    """Dataset indices of batch `step`: epoch `e` walks a permutation seeded with `seed + e`, so a resumed
    run sees exactly the batches it would have seen without the interruption."""
    batch_size = min(batch_size, size)
    per_epoch = size // batch_size
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed + epoch))
    return order[position * batch_size:(position + 1) * batch_size].tolist()


def load_batch(dataset: CocoDetection, indices: list[int], device: torch.device) -> dict:
    """Model keyword arguments (`pixel_values`, `labels`) for the given items, on `device`."""
    batch = collate_detection([dataset[i] for i in indices])
    return {"pixel_values": batch["pixel_values"].to(device),
            "labels": [{key: value.to(device) for key, value in target.items()} for target in batch["labels"]]}


def _require_images(dataset: CocoDetection) -> None:
    if len(dataset) == 0:
        raise OptimError("the training split has no images", path=dataset.folder.annotations,
                         fix="point the data set at a folder whose train split has images")


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _start_training(model: torch.nn.Module) -> set[str]:
    """Make every parameter trainable (Hugging Face freezes the backbone, which a pruned backbone must not
    be) and return the names of the ones that were frozen, for `_end_training`."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.train()
    return frozen


def _end_training(model: torch.nn.Module, frozen: set[str]) -> None:
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen)
    model.eval()


def zero_masks(model: torch.nn.Module) -> dict[torch.nn.Parameter, torch.Tensor]:
    """Masks of the exact-zero weights of Linear/Conv2d layers that have any (a pruned, sparse model);
    dense layers have none and get no mask."""
    return {module.weight: module.weight.detach() != 0 for module in model.modules()
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and bool((module.weight == 0).any())}


@torch.no_grad()
def _reapply(masks: dict[torch.nn.Parameter, torch.Tensor]) -> None:
    """Zero again what an optimizer step moved away from zero, so sparsity survives training."""
    for parameter, mask in masks.items():
        parameter.mul_(mask)


def finetune_briefly(model: torch.nn.Module, train_dataset: CocoDetection, steps: int, lr: float,
                     batch_size: int, seed: int = 0) -> list[float]:
    """Train `model` in place for `steps` AdamW steps on DETR's own loss (exact-zero weights of sparse layers
    stay zero); return the loss of every step."""
    from tqdm import tqdm

    _require_images(train_dataset)
    device = _device_of(model)
    masks = zero_masks(model)
    frozen = _start_training(model)
    optimizer = torch.optim.AdamW(list(model.parameters()), lr=lr, weight_decay=1e-4)
    losses = []
    for step in tqdm(range(steps), desc="fine-tune after pruning", leave=False):
        batch = load_batch(train_dataset, batch_indices(len(train_dataset), batch_size, step, seed), device)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        _reapply(masks)
        losses.append(loss.item())
    _end_training(model, frozen)
    return losses


@torch.no_grad()
def match_queries(student_probs: torch.Tensor, student_boxes: torch.Tensor, teacher_probs: torch.Tensor,
                  teacher_boxes: torch.Tensor, config) -> tuple[torch.Tensor, torch.Tensor]:
    """Hungarian matching of one image's student queries to its teacher queries; returns (student, teacher)
    index tensors of equal length min(Qs, Qt)."""
    from scipy.optimize import linear_sum_assignment
    from transformers.image_transforms import center_to_corners_format
    from transformers.loss.loss_for_object_detection import generalized_box_iou

    cost = (config.class_cost * torch.cdist(student_probs, teacher_probs, p=1)
            + config.bbox_cost * torch.cdist(student_boxes, teacher_boxes, p=1)
            - config.giou_cost * generalized_box_iou(center_to_corners_format(student_boxes),
                                                     center_to_corners_format(teacher_boxes)))
    rows, cols = linear_sum_assignment(cost.float().cpu().numpy())
    device = student_probs.device
    return torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)


def distillation_terms(student_out, teacher_out, config) -> dict[str, torch.Tensor]:
    """KL on matched class logits (temperature 2, scaled by T^2) and teacher-confidence-weighted L1 and
    1 - GIoU on matched boxes, averaged over the batch's matched pairs."""
    from transformers.image_transforms import center_to_corners_format
    from transformers.loss.loss_for_object_detection import generalized_box_iou

    s_logits, t_logits = student_out.logits, teacher_out.logits.detach()
    s_boxes, t_boxes = student_out.pred_boxes, teacher_out.pred_boxes.detach()
    pairs = [match_queries(s_logits[i].softmax(-1), s_boxes[i], t_logits[i].softmax(-1), t_boxes[i], config)
             for i in range(s_logits.shape[0])]
    s_logits = torch.cat([s_logits[i, rows] for i, (rows, _) in enumerate(pairs)])
    t_logits = torch.cat([t_logits[i, cols] for i, (_, cols) in enumerate(pairs)])
    # GIoU of each matched pair: the diagonal of each image's pairwise matrix (Q x Q, small).
    giou = torch.cat([torch.diag(generalized_box_iou(center_to_corners_format(s_boxes[i, rows]),
                                                     center_to_corners_format(t_boxes[i, cols])))
                      for i, (rows, cols) in enumerate(pairs)])
    s_boxes = torch.cat([s_boxes[i, rows] for i, (rows, _) in enumerate(pairs)])
    t_boxes = torch.cat([t_boxes[i, cols] for i, (_, cols) in enumerate(pairs)])
    kd_class = F.kl_div(F.log_softmax(s_logits / TEMPERATURE, -1), F.log_softmax(t_logits / TEMPERATURE, -1),
                        log_target=True, reduction="batchmean") * TEMPERATURE ** 2
    # Boxes of queries the teacher calls "no object" are arbitrary: weight by the teacher's object probability.
    weight = 1 - t_logits.softmax(-1)[:, -1]
    weight = weight / weight.sum().clamp(min=1e-6)
    l1 = (s_boxes - t_boxes).abs().sum(-1)
    return {"kd_class": kd_class, "kd_box_l1": (weight * l1).sum(), "kd_giou": (weight * (1 - giou)).sum()}


def learning_rate(step: DistillStep, index: int) -> float:
    """The learning rate of step `index` (0-based): constant, or cosine from `lr` down to 10 % of it."""
    if step.schedule == "constant":
        return step.lr
    progress = index / max(1, step.steps - 1)
    return step.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def run_fingerprint(student: torch.nn.Module, teacher: torch.nn.Module, step: DistillStep,
                    train_data: CocoDetection, seed: int) -> str:
    """What a checkpoint was trained from (both models' weights, the settings except the step budget, the
    data): a checkpoint with another fingerprint belongs to another run."""
    digest = hashlib.sha256(json.dumps({"lr": step.lr, "schedule": step.schedule, "batch_size": step.batch_size,
                                        "seed": seed,
                                        "feature_weight": step.feature_weight, "images": len(train_data),
                                        "data": str(train_data.folder.annotations)}).encode())
    for model in (student, teacher):
        for name, tensor in model.state_dict().items():
            digest.update(f"{name}{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class _Checkpoint:
    """`out_dir/student`: the student as `save_pretrained` writes it (safetensors, with the checkpoint key names
    Transformers uses on disk), plus `resume.safetensors` (this module's own state-dict keys), the optimizer,
    the step reached and the run's fingerprint. Written to a temporary folder and swapped in, so an
    interrupted save never leaves a broken checkpoint."""

    def __init__(self, out_dir: Path, fingerprint: str):
        self.folder = out_dir / "student"
        self.fingerprint = fingerprint

    def save(self, student: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
        from safetensors.torch import save_file

        temporary = self.folder.with_name("student.tmp")
        shutil.rmtree(temporary, ignore_errors=True)
        student.save_pretrained(temporary, safe_serialization=True)
        save_file({key: value.contiguous() for key, value in student.state_dict().items()},
                  str(temporary / "resume.safetensors"))
        torch.save(optimizer.state_dict(), temporary / "optimizer.pt")
        (temporary / "distill_state.json").write_text(json.dumps({"step": step, "fingerprint": self.fingerprint}))
        old = self.folder.with_name("student.old")
        if self.folder.exists():
            self.folder.rename(old)
        temporary.rename(self.folder)
        shutil.rmtree(old, ignore_errors=True)

    def step_saved(self, max_step: int) -> int:
        """The step of a checkpoint this run can resume (same fingerprint, not past `max_step`), else 0."""
        state = self.folder / "distill_state.json"
        if not state.is_file():
            return 0
        saved = json.loads(state.read_text())
        if saved.get("fingerprint") != self.fingerprint or saved["step"] > max_step:
            return 0
        return int(saved["step"])

    def load(self, student: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Restore weights and optimizer into the in-memory student (whose pruned shapes `from_pretrained`
        could not rebuild)."""
        from safetensors.torch import load_file

        try:
            student.load_state_dict(load_file(self.folder / "resume.safetensors"), strict=True)
            # The optimizer state holds only tensors and numbers: safe to load with weights_only.
            optimizer.load_state_dict(torch.load(self.folder / "optimizer.pt", weights_only=True))
        except (RuntimeError, OSError, ValueError, KeyError) as error:
            raise OptimError(f"cannot resume distillation from this checkpoint ({type(error).__name__}: {error})",
                             path=self.folder, fix="delete the folder to start the distillation over") from error


def _log(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({key: (round(value, 6) if isinstance(value, float) else value) for key, value in row.items()})


def _trim_log(path: Path, last_step: int) -> None:
    """Drop logged steps after `last_step` (run again after a resume), or the whole log of a fresh run."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= last_step]
    path.unlink()
    for row in rows:
        _log(path, row)


def apply_distill(student: torch.nn.Module, teacher: torch.nn.Module, step: DistillStep, train_data: CocoDetection,
                  out_dir: Path, save_every: int = SAVE_EVERY, seed: int = 0) -> CompressionResult:
    """Distill `teacher` into a copy of `student` for `step.steps` AdamW steps on `train_data`.

    Saves `out_dir/student` every `save_every` steps and at the end, and resumes from it when it comes from
    the same run (same student, teacher, data and settings; a larger `steps` budget continues it); a
    checkpoint of another run is overwritten. Every step's losses go to `out_dir/distill_log.csv`. The
    student is left untouched; the teacher is only moved to the student's device.
    """
    from tqdm import tqdm

    _require_images(train_data)
    if teacher.config.num_labels != student.config.num_labels:
        raise OptimError(f"the teacher predicts {teacher.config.num_labels} classes, the student "
                         f"{student.config.num_labels}", field="steps[].teacher",
                         fix="distill from a teacher trained on the same classes (e.g. teacher: baseline)")
    out_dir.mkdir(parents=True, exist_ok=True)
    student = copy.deepcopy(student)
    device = _device_of(student)
    teacher = teacher.to(device).eval()
    checkpoint = _Checkpoint(out_dir, run_fingerprint(student, teacher, step, train_data, seed))
    masks = zero_masks(student)
    frozen = _start_training(student)
    optimizer = torch.optim.AdamW(list(student.parameters()), lr=step.lr, weight_decay=1e-4)
    start = checkpoint.step_saved(step.steps)
    if start:
        checkpoint.load(student, optimizer)
    config = student.config
    log_path = out_dir / "distill_log.csv"
    _trim_log(log_path, start)
    losses = []
    for index in tqdm(range(start, step.steps), initial=start, total=step.steps, desc="distill"):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, index)
        batch = load_batch(train_data, batch_indices(len(train_data), step.batch_size, index, seed), device)
        with torch.no_grad():
            teacher_out = teacher(pixel_values=batch["pixel_values"])
        student_out = student(**batch)
        terms = distillation_terms(student_out, teacher_out, config)
        distill = terms["kd_class"] + config.bbox_loss_coefficient * terms["kd_box_l1"] \
            + config.giou_loss_coefficient * terms["kd_giou"]
        feature = torch.zeros((), device=device)
        feature_skipped = student_out.encoder_last_hidden_state.shape != teacher_out.encoder_last_hidden_state.shape
        if step.feature_weight > 0 and not feature_skipped:
            feature = F.mse_loss(student_out.encoder_last_hidden_state, teacher_out.encoder_last_hidden_state)
            distill = distill + step.feature_weight * feature
        loss = student_out.loss + distill
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), GRAD_CLIP)
        optimizer.step()
        _reapply(masks)
        row = {"step": index + 1, "loss": loss.item(), "supervised": student_out.loss.item(), "distill": distill.item(),
               **{key: value.item() for key, value in terms.items()}, "feature": feature.item()}
        _log(log_path, row)
        losses.append(row["distill"])
        if (index + 1) % save_every == 0 and index + 1 < step.steps:
            checkpoint.save(student, optimizer, index + 1)
    _end_training(student, frozen)
    if start < step.steps:
        checkpoint.save(student, optimizer, step.steps)
    notes = [f"distilled from teacher '{step.teacher}' for {step.steps} steps (batch {step.batch_size}, lr {step.lr:g}"
             f"{', cosine' if step.schedule == 'cosine' else ''})"
             + (f", resumed at step {start}" if start else "")]
    if len(losses) >= 2:
        k = min(10, len(losses) // 2)
        notes.append(f"distillation loss {sum(losses[:k]) / k:.4f} (mean of the first {k} steps run) -> "
                     f"{sum(losses[-k:]) / k:.4f} (last {k})")
    if step.feature_weight > 0 and losses and feature_skipped:
        notes.append("feature MSE skipped: student and teacher encoder outputs differ in shape")
    if masks:
        notes.append(f"zero weights of {len(masks)} sparse layers were kept at zero")
    return CompressionResult(student, notes)
