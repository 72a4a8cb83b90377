"""Fine-tuning with Hugging Face Transformers' Trainer (periodic COCO mAP, safetensors checkpoints, resume)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from optim.evaluation.evaluate import evaluate_pytorch
from optim.finetune.common import TrainingData, collate_for_training, export_final, lr_lambda, unwrap, wrap_for_training
from optim.finetune.spec import FinetuneSpec


def _latest_checkpoint(out_dir: Path) -> str | None:
    checkpoints = sorted(out_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return str(checkpoints[-1]) if checkpoints else None


def train_transformers(spec: FinetuneSpec, model, data: TrainingData, out_dir: Path) -> dict:
    """Train `model` with `transformers.Trainer`; resumes from the newest checkpoint in `out_dir`."""
    from transformers import Trainer, TrainingArguments

    class DetrTrainer(Trainer):
        """Trainer whose evaluation is COCO mAP on the val split (DETR has no built-in metric)."""

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in evaluate_pytorch(unwrap(self.model), data.val).items()}
            self.log(metrics)
            return metrics

        def _save(self, output_dir=None, state_dict=None):
            """Checkpoints as safetensors, which stores contiguous tensors only (the model trains channels-last)."""
            state_dict = self.model.state_dict() if state_dict is None else state_dict
            super()._save(output_dir, {name: tensor.contiguous() for name, tensor in state_dict.items()})

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
    if spec.logger == "csv":
        from optim.finetune.csv_log import CsvLogCallback

        trainer.add_callback(CsvLogCallback(out_dir / "log.csv"))
    checkpoint = _latest_checkpoint(out_dir)
    if checkpoint:
        print(f"resuming from {checkpoint}")
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=checkpoint)
    return export_final(trainer.model, spec, data, out_dir, time.perf_counter() - start)
