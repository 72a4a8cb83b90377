"""Fine-tuning with both trainers: a short run from the CLI writes a loadable safetensors model and metrics,
and a second run with more steps resumes from the checkpoint instead of starting over."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from optim.models.zoo import load_model

SPEC = """
name: tiny-{trainer}
trainer: {trainer}
model: {{arch: tiny-detr}}
data: {{root: {root}, generate: false}}
input_size: [64, 64]
steps: {steps}
batch_size: 4
warmup_steps: 1
eval_every: 2
save_every: {save_every}
threads: 1
output_dir: runs
"""


def _finetune(tmp_path, root, trainer: str, steps: int, extra: str = "", save_every: int = 2) -> subprocess.CompletedProcess:
    spec = tmp_path / f"{trainer}.yaml"
    spec.write_text(SPEC.format(trainer=trainer, root=root, steps=steps, save_every=save_every)
                    + extra)
    return subprocess.run([sys.executable, "-m", "optim.finetune", str(spec)], capture_output=True, text=True,
                          timeout=600, check=False, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["transformers", "lightning"])
def test_short_finetune_writes_model_and_resumes(tmp_path, tiny_dataset_root, trainer):
    first = _finetune(tmp_path, tiny_dataset_root, trainer, steps=2)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "runs" / f"tiny-{trainer}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and set(metrics["val"]) >= {"map", "map_50", "map_small"}
    assert (out / "model" / "model.safetensors").is_file()
    assert load_model(str(out / "model")).default_input_size == (64, 64)

    second = _finetune(tmp_path, tiny_dataset_root, trainer, steps=4)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from" in second.stdout, second.stdout[-2000:]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["transformers", "lightning"])
def test_moving_average_is_evaluated_exported_and_resumed(tmp_path, tiny_dataset_root, trainer):
    """With `ema_decay`, the exported model is the average of the trained weights, not the last ones; with decay
    0.5 over two steps it is exactly the mean of the weights after step 1 and after step 2. A longer run resumes
    the average from the checkpoint."""
    import torch
    from safetensors.torch import load_file

    run = _finetune(tmp_path, tiny_dataset_root, trainer, steps=2, extra="ema_decay: 0.5\n", save_every=1)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "runs" / f"tiny-{trainer}"
    exported = load_file(str(out / "model" / "model.safetensors"))
    name = "class_labels_classifier.weight"
    if trainer == "transformers":
        assert (out / "checkpoint-2" / "ema.safetensors").is_file()
        first, second = (load_file(str(out / f"checkpoint-{step}" / "model.safetensors"))[f"detr.{name}"]
                         for step in (1, 2))
        assert not torch.equal(first, second)
        assert torch.allclose(exported[name], (first + second) / 2, atol=1e-7)
    else:
        checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
        assert torch.allclose(exported[name], checkpoint["state_dict"][f"model.detr.{name}"])
        assert not torch.allclose(exported[name], checkpoint["current_model_state"][f"model.detr.{name}"])
    resumed = _finetune(tmp_path, tiny_dataset_root, trainer, steps=4, extra="ema_decay: 0.5\n", save_every=1)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr[-3000:]


def test_unknown_trainer_is_a_clear_error(tmp_path, tiny_dataset_root):
    spec = tmp_path / "bad.yaml"
    spec.write_text(SPEC.format(trainer="keras", root=tiny_dataset_root, steps=1, save_every=2))
    result = subprocess.run([sys.executable, "-m", "optim.finetune", str(spec)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 2 and "trainer" in result.stderr and "Traceback" not in result.stderr


def test_dense_targets_put_each_object_in_its_centre_cell():
    import torch

    from optim.finetune.dense_aux import dense_targets, feature_grid

    labels = [{"class_labels": torch.tensor([2, 0]),
               "boxes": torch.tensor([[0.9, 0.1, 0.1, 0.1], [0.3, 0.6, 0.5, 0.5]])}]
    assert feature_grid(64, 128, 128) == (8, 8)
    classes, boxes, positive = dense_targets(labels, 8, 8, num_labels=4)
    assert positive.sum() == 2
    assert classes[0, 0 * 8 + 7] == 2 and classes[0, 4 * 8 + 2] == 0
    assert torch.allclose(boxes[0, 4 * 8 + 2], labels[0]["boxes"][1])
    assert (classes[0][~positive[0]] == 4).all()


def test_a_query_group_equal_to_detrs_own_queries_has_detrs_own_loss(tiny_model):
    """The extra groups reuse DETR's decoder, heads and set loss: a group holding DETR's own query embeddings
    must reproduce DETR's own loss exactly, and the training wrapper adds each extra group's loss."""
    import torch

    from optim.finetune.query_groups import ExtraQueryGroups
    from optim.finetune.training_aids import DetrWithTrainingAids

    pixels = torch.randn(2, 3, 64, 64)
    labels = [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]])},
              {"class_labels": torch.tensor([0, 2]),
               "boxes": torch.tensor([[0.2, 0.3, 0.1, 0.1], [0.7, 0.6, 0.3, 0.2]])}]
    groups = ExtraQueryGroups(tiny_model, groups=2)
    with torch.no_grad():
        groups.embeddings[0] = tiny_model.model.query_position_embeddings.weight
        outputs = tiny_model(pixel_values=pixels, labels=labels)
        group_loss = groups.loss(tiny_model, outputs.encoder_last_hidden_state, labels, (64, 64))
        assert torch.allclose(group_loss, outputs.loss, rtol=1e-5)

        wrapped = DetrWithTrainingAids(tiny_model, encoder_aux_weight=0.0, query_groups=2)
        wrapped.groups = groups
        assert torch.allclose(wrapped(pixels, labels).loss, 2 * outputs.loss, rtol=1e-5)


def test_training_runs_channels_last_with_the_loss_of_nchw(tiny_model):
    """Both trainers train in channels-last memory format (with the matching batches), which gives the loss
    the NCHW model gives (saving such a model is covered by the short runs above: safetensors needs contiguous
    tensors, and their checkpoints and exports would fail without the conversion)."""
    import torch

    from optim.finetune.common import collate_for_training, unwrap, wrap_for_training
    from optim.finetune.spec import FinetuneSpec

    spec = FinetuneSpec(name="t", encoder_aux_weight=0.0)
    target = {"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]])}
    batch = collate_for_training([(torch.randn(3, 64, 64), target), (torch.randn(3, 64, 64), target)])
    assert batch["pixel_values"].is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        nchw_loss = tiny_model(pixel_values=batch["pixel_values"].contiguous(), labels=batch["labels"]).loss
        wrapped = wrap_for_training(tiny_model, spec)
        conv = next(p for p in unwrap(wrapped).parameters() if p.dim() == 4)  # the stem's convolution
        assert conv.is_contiguous(memory_format=torch.channels_last)
        assert not conv.is_contiguous()
        assert torch.allclose(wrapped(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss, nchw_loss,
                              rtol=1e-4)


def test_loss_weights_of_the_spec_reach_detrs_matcher_and_loss():
    """The spec's `loss` weights replace DETR's defaults where Hugging Face's loss reads them: the matcher's
    costs and the coefficients that weigh the reported loss terms."""
    import torch

    from optim.finetune.common import build_model
    from optim.finetune.spec import FinetuneSpec

    labels = ["car", "truck", "person", "sign"]
    default = build_model(FinetuneSpec(name="t", model={"arch": "tiny-detr"}), labels)
    heavier = build_model(FinetuneSpec(name="t", model={"arch": "tiny-detr"},
                                       loss={"giou": 4, "no_object": 0.2}), labels)
    assert (default.config.giou_cost, default.config.giou_loss_coefficient, default.config.eos_coefficient) == (2, 2, 0.1)
    assert (heavier.config.giou_cost, heavier.config.giou_loss_coefficient, heavier.config.eos_coefficient) == (4, 4, 0.2)
    assert (heavier.config.bbox_cost, heavier.config.bbox_loss_coefficient) == (5, 5)
    target = [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3]])}]
    with torch.no_grad():
        for model, giou_weight in ((default, 2), (heavier, 4)):
            out = model.eval()(pixel_values=torch.randn(1, 3, 64, 64), labels=target)
            terms = out.loss_dict
            expected = terms["loss_ce"] + 5 * terms["loss_bbox"] + giou_weight * terms["loss_giou"]
            assert terms["loss_giou"] > 0 and torch.allclose(out.loss, expected)


def test_original_detr_init_redraws_the_transformer_and_queries_but_not_the_backbone():
    """`weight_init: detr` (the default) gives the transformer Xavier-uniform matrices and the object queries
    N(0, 1), as facebookresearch/detr does; `transformers` keeps Hugging Face's N(0, 0.02). The backbone is the
    same draw either way."""
    import math

    import torch

    from optim.finetune.common import build_model, seed_everything
    from optim.finetune.spec import FinetuneSpec

    labels = ["car", "truck", "person", "sign"]
    models = {}
    for scheme in ("detr", "transformers"):
        seed_everything(0)
        models[scheme] = build_model(FinetuneSpec(name="t", model={"arch": "tiny-detr", "weight_init": scheme}), labels)
    assert FinetuneSpec(name="t").model.weight_init == "detr"
    detr, hf = models["detr"], models["transformers"]
    for (name, ours), theirs in zip(detr.model.backbone.state_dict().items(), hf.model.backbone.state_dict().values()):
        assert torch.equal(ours, theirs), name
    for stack in ("encoder", "decoder"):
        for name, weight in getattr(detr.model, stack).named_parameters():
            if weight.dim() > 1:
                fan_out, fan_in = weight.shape
                xavier_std = math.sqrt(2 / (fan_in + fan_out))
                assert abs(weight.std().item() / xavier_std - 1) < 0.2, name
                assert weight.abs().max().item() <= math.sqrt(3) * xavier_std + 1e-6, name
                assert abs(getattr(hf.model, stack).get_parameter(name).std().item() - 0.02) < 0.005, name
    assert abs(detr.model.query_position_embeddings.weight.std().item() - 1) < 0.2
    assert hf.model.query_position_embeddings.weight.std().item() < 0.05
