"""Fine-tuning with PyTorch Lightning (periodic COCO mAP, checkpoints, resume, CSV/TensorBoard logs)."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import torch

from optim.errors import OptimError
from optim.evaluation.evaluate import evaluate_pytorch
from optim.finetune.common import TrainingData, collate_for_training, export_final, lr_lambda, wrap_for_training
from optim.finetune.spec import FinetuneSpec


def train_lightning(spec: FinetuneSpec, model, data: TrainingData, out_dir: Path) -> dict:
    """Train `model` with a Lightning Trainer; resumes from `out_dir/checkpoints/last.ckpt` if present."""
    import lightning as L
    from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    class DetrModule(L.LightningModule):
        """DETR with its own Hungarian loss; validation = COCO mAP on the val split."""

        def __init__(self):
            super().__init__()
            self.model = wrap_for_training(model, spec)

        def training_step(self, batch, batch_index):
            loss = self.model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
            self.log("loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
            return loss

        def validation_step(self, batch, batch_index):
            """COCO mAP over the whole val split, once per check (the val loader is a one-item stub). Here, not
            at the epoch's end: the moving average is swapped in only between the epoch's start and end hooks
            of the callbacks, and theirs run before the module's."""
            metrics = evaluate_pytorch(model, data.val)
            self.log_dict({f"eval_{k}": v for k, v in metrics.items()}, prog_bar=False, batch_size=1)

        def configure_optimizers(self):
            optimizer = torch.optim.AdamW(self.model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay,
                                          fused=True)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(spec))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    generator = torch.Generator().manual_seed(spec.seed)
    train_loader = torch.utils.data.DataLoader(data.train, batch_size=spec.batch_size, shuffle=True,
                                               collate_fn=collate_for_training, generator=generator)
    # Lightning needs a val loader to trigger validation; mAP is computed over the whole val set at epoch end.
    val_loader = torch.utils.data.DataLoader([0], batch_size=1)
    logger = (CSVLogger(out_dir, name="logs") if spec.logger == "csv" else TensorBoardLogger(out_dir, name="logs"))
    checkpoints = ModelCheckpoint(dirpath=out_dir / "checkpoints", every_n_train_steps=spec.save_every, save_last=True)
    callbacks = [checkpoints]
    if spec.ema_decay is not None:
        # Validation and the exported model use the average; checkpoints hold both, so resuming continues it.
        callbacks.append(EMAWeightAveraging(decay=spec.ema_decay))
    trainer = L.Trainer(max_steps=spec.steps, accelerator="auto", devices=1, gradient_clip_val=spec.grad_clip,
                        val_check_interval=spec.eval_every, check_val_every_n_epoch=None, logger=logger,
                        callbacks=callbacks, log_every_n_steps=50, num_sanity_val_steps=0,
                        enable_model_summary=False, deterministic=False)
    last = out_dir / "checkpoints" / "last.ckpt"
    if last.exists():
        print(f"resuming from {last}")
    start = time.perf_counter()
    # Lightning checkpoints are pickles: resume with weights_only=True, which loads tensors, numbers and
    # containers only and refuses any other object, so a planted last.ckpt cannot run code.
    try:
        trainer.fit(DetrModule(), train_loader, val_loader, ckpt_path=str(last) if last.exists() else None,
                    weights_only=True)
    except pickle.UnpicklingError as error:
        raise OptimError(f"refusing to resume from a checkpoint holding objects other than weights ({error})"[:600],
                         path=last, fix="delete the file to start over, or resume from a checkpoint this lab wrote") \
            from error
    return export_final(model, spec, data, out_dir, time.perf_counter() - start)
