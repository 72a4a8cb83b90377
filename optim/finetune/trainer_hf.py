"""Fine-tuning with Hugging Face Transformers' Trainer (periodic COCO mAP, safetensors checkpoints, resume)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from optim.errors import OptimError
from optim.evaluation.evaluate import evaluate_pytorch
from optim.finetune.common import TrainingData, collate_for_training, export_final, lr_lambda, unwrap, wrap_for_training
from optim.finetune.spec import FinetuneSpec


def _latest_checkpoint(out_dir: Path) -> str | None:
    checkpoints = sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return str(checkpoints[-1]) if checkpoints else None


def _contiguous(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors stores contiguous tensors only (the model trains channels-last)."""
    return {name: tensor.contiguous() for name, tensor in state_dict.items()}


class MovingAverage:
    """An exponential moving average of a model's parameters and buffers (batch-norm statistics), updated after
    every optimizer step; saved beside each checkpoint as `ema.safetensors` so that a resumed run continues it."""

    FILE = "ema.safetensors"

    def __init__(self, model: torch.nn.Module, decay: float):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current weights into the average."""
        self.average.update_parameters(model)

    @property
    def model(self) -> torch.nn.Module:
        """The averaged copy of the model."""
        return self.average.module

    def save(self, checkpoint_dir: Path) -> None:
        from safetensors.torch import save_file

        save_file(_contiguous(self.average.state_dict()), str(checkpoint_dir / self.FILE))

    def load(self, checkpoint_dir: Path) -> None:
        from safetensors.torch import load_file

        path = checkpoint_dir / self.FILE
        if not path.is_file():
            raise OptimError("this checkpoint was written without a moving average, so `ema_decay` cannot resume it",
                             path=checkpoint_dir, field="ema_decay",
                             fix="resume with the spec it was started with, or start afresh in another output_dir")
        self.average.load_state_dict(load_file(str(path)))


def train_transformers(spec: FinetuneSpec, model, data: TrainingData, out_dir: Path) -> dict:
    """Train `model` with `transformers.Trainer`; resumes from the newest checkpoint in `out_dir`."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class UpdateAverage(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            average.update(kwargs["model"])

    class DetrTrainer(Trainer):
        """Trainer whose evaluation is COCO mAP on the val split (DETR has no built-in metric), of the moving
        average when the spec keeps one."""

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            evaluated = unwrap(average.model if average else self.model)
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in evaluate_pytorch(evaluated, data.val).items()}
            self.log(metrics)
            return metrics

        def _save(self, output_dir=None, state_dict=None):
            state_dict = self.model.state_dict() if state_dict is None else state_dict
            super()._save(output_dir, _contiguous(state_dict))
            if average is not None:
                average.save(Path(output_dir or self.args.output_dir))

        def create_scheduler(self, num_training_steps, optimizer=None):
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, lr_lambda(spec))
            return self.lr_scheduler

    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=spec.steps, per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.lr, weight_decay=spec.weight_decay, max_grad_norm=spec.grad_clip, optim="adamw_torch_fused",
        eval_strategy="steps", eval_steps=spec.eval_every, save_strategy="steps", save_steps=spec.save_every,
        save_total_limit=2, logging_steps=50, seed=spec.seed, data_seed=spec.seed, remove_unused_columns=False,
        dataloader_num_workers=0, report_to=["tensorboard"] if spec.logger == "tensorboard" else [],
        use_cpu=not torch.cuda.is_available(), disable_tqdm=False,
    )
    trainer = DetrTrainer(model=wrap_for_training(model, spec), args=args, train_dataset=data.train, eval_dataset=data.val,
                          data_collator=collate_for_training)
    # Built after the Trainer has placed the model on its device, so that the average lives there too.
    average = MovingAverage(trainer.model, spec.ema_decay) if spec.ema_decay is not None else None
    if average is not None:
        trainer.add_callback(UpdateAverage())
    if spec.logger == "csv":
        from optim.finetune.csv_log import CsvLogCallback

        trainer.add_callback(CsvLogCallback(out_dir / "log.csv"))
    checkpoint = _latest_checkpoint(out_dir)
    if checkpoint:
        print(f"resuming from {checkpoint}")
        if average is not None:
            average.load(Path(checkpoint))
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    return export_final(average.model if average else trainer.model, spec, data, out_dir, time.perf_counter() - start)
