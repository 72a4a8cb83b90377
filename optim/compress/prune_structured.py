"""Structured channel pruning of DETR with Torch-Pruning: ResNet backbone conv channels and the hidden width
of every transformer FFN (fc1 outputs / fc2 inputs). The transformer width d_model, attention projections,
layer norms, queries and heads are never touched, so output shapes stay those of the original model."""

from __future__ import annotations

import torch

from optim.errors import MissingExtraError

ROUND_TO = 8


def _frozen_batch_norm_pruner():
    """A Torch-Pruning handler for Hugging Face's `DetrFrozenBatchNorm2d`, whose statistics and affine terms
    are buffers that the built-in BatchNorm pruner does not know about."""
    import torch_pruning as tp

    class FrozenBatchNormPruner(tp.pruner.function.BasePruningFunc):
        def prune_out_channels(self, layer: torch.nn.Module, idxs: list[int]) -> torch.nn.Module:
            keep = sorted(set(range(layer.weight.numel())) - set(idxs))
            for name in ("weight", "bias", "running_mean", "running_var"):
                # Assigning a tensor to a registered buffer name replaces the buffer.
                setattr(layer, name, getattr(layer, name).detach()[keep].clone())
            return layer

        prune_in_channels = prune_out_channels  # a per-channel op: inputs and outputs are the same channels

        def get_out_channels(self, layer: torch.nn.Module) -> int:
            return layer.weight.numel()

        get_in_channels = get_out_channels

    return FrozenBatchNormPruner()


def prunable_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The layers whose output channels may be removed: backbone convolutions and FFN `fc1`s."""
    return [module for name, module in model.named_modules()
            if (name.startswith("model.backbone.") and isinstance(module, torch.nn.Conv2d))
            or (name.endswith(".mlp.fc1") and isinstance(module, torch.nn.Linear))]


def drop_unused_backbone_stages(model: torch.nn.Module) -> list[str]:
    """Remove trailing ResNet stages whose feature maps DETR never reads (Hugging Face's backbone runs every
    stage, then keeps `out_features`; e.g. synth-detr uses stage3 of 4). They are dead compute, and channel
    pruning must drop them first: graph tracing cannot see them, so their inputs would not be pruned."""
    backbone = model.model.backbone.model
    stages = getattr(getattr(backbone, "encoder", None), "stages", None)
    if stages is None or not hasattr(backbone, "out_indices"):
        return []
    needed = max(backbone.out_indices)  # stage_names[0] is the stem, so stage i is stages[i - 1]
    if needed >= len(stages):
        return []
    dropped = backbone.stage_names[needed + 1:]
    backbone.encoder.stages = torch.nn.ModuleList(list(stages)[:needed])
    return [f"removed unused backbone stage(s) {', '.join(dropped)}: their output was computed but never used"]


def _raw_loss(outputs) -> torch.Tensor:
    """A scalar of the detection outputs, for graph tracing and as Taylor's label-free proxy loss."""
    return outputs.logits.norm() + outputs.pred_boxes.norm()


def prune_channels(model: torch.nn.Module, ratio: float, importance: str, example: torch.Tensor,
                   taylor_batches: list[dict] | None = None) -> list[str]:
    """Remove `ratio` of the channels of every backbone conv group and FFN hidden layer, in place.

    `example` is one input batch for tracing. `importance="taylor"` ranks channels by |w * dL/dw| with the
    gradients of `taylor_batches` (model keyword arguments): DETR's own loss where a batch has `labels`,
    else the label-free proxy ||logits|| + ||pred_boxes||.
    """
    try:
        import torch_pruning as tp
    except ImportError as error:
        raise MissingExtraError("torch-pruning", "prune", "channel pruning") from error
    from transformers.models.detr.modeling_detr import DetrFrozenBatchNorm2d

    notes = drop_unused_backbone_stages(model)
    # Tracing follows autograd: Hugging Face freezes the backbone, so make every parameter require grad
    # while pruning (new pruned parameters are created by name) and restore the flags afterwards.
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    was_training = model.training
    model.eval()
    targets = prunable_layers(model)
    target_ids = {id(m) for m in targets}
    # Every other Conv/Linear is ignored: a group that would change an ignored layer's outputs (d_model,
    # attention widths, heads) is skipped whole, so only backbone-internal and FFN-hidden channels go.
    ignored = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and id(m) not in target_ids]
    if importance == "taylor":
        scorer = tp.importance.GroupTaylorImportance()
    else:
        scorer = tp.importance.GroupMagnitudeImportance(p=2)
    # Widths that are multiples of 8 suit CPU (oneDNN) and tensor-core kernels; tiny layers are left unrounded
    # because Torch-Pruning rounds the kept count down (to zero when fewer than 8 would remain).
    round_to = ROUND_TO if min(_width(m) for m in targets) * (1 - ratio) >= ROUND_TO else None
    if round_to:
        notes.append(f"kept channel counts rounded down to multiples of {round_to}")
    pruner = tp.pruner.BasePruner(model, example, importance=scorer, pruning_ratio=ratio, ignored_layers=ignored,
                                  round_to=round_to, output_transform=_raw_loss,
                                  customized_pruners={DetrFrozenBatchNorm2d: _frozen_batch_norm_pruner()})
    if importance == "taylor":
        if not taylor_batches:
            raise ValueError("taylor importance needs at least one batch for its gradients")
        model.zero_grad()
        for batch in taylor_batches:
            outputs = model(**batch)
            (outputs.loss if outputs.loss is not None else _raw_loss(outputs)).backward()
    before = {id(m): _width(m) for m in targets}
    pruner.step()
    model.zero_grad(set_to_none=True)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen)
    model.train(was_training)
    return notes + _describe(model, before)


def _width(module: torch.nn.Module) -> int:
    return module.out_channels if isinstance(module, torch.nn.Conv2d) else module.out_features


def _describe(model: torch.nn.Module, before: dict[int, int]) -> list[str]:
    """Channel counts before/after, and the config fields that now describe the FFN width."""
    convs = [(before[id(m)], _width(m)) for m in prunable_layers(model) if isinstance(m, torch.nn.Conv2d)]
    notes = [(f"backbone conv channels {sum(b for b, _ in convs)} -> {sum(a for _, a in convs)} "
             f"over {len(convs)} convolutions (dependency groups incl. residual adds and frozen batch norms)")]
    config = model.config
    for part, field in (("encoder", "encoder_ffn_dim"), ("decoder", "decoder_ffn_dim")):
        widths = {m.mlp.fc1.out_features for m in getattr(model.model, part).layers}
        if len(widths) == 1:
            width = widths.pop()
            notes.append(f"{part} FFN hidden width {getattr(config, field)} -> {width}")
            setattr(config, field, width)
    notes.append("the pruned backbone's channel counts are not expressible in the config: reload the weights "
                 "into this in-memory model (load_state_dict), not with from_pretrained")
    return notes
