"""DETR-specific structured pruning: drop trailing encoder/decoder layers, drop rarely used object queries,
and drop attention heads. Each function edits the model in place, keeps its config consistent where the
config can describe the result, and returns notes for the report."""

from __future__ import annotations

import torch

from optim.errors import OptimError


def keep_first_layers(model: torch.nn.Module, part: str, keep: int) -> list[str]:
    """Keep the first `keep` layers of `part` ("encoder" or "decoder") and update the config.

    A truncated decoder is valid: DETR trains the shared heads on every decoder layer (auxiliary losses)
    and Hugging Face applies the shared final layer norm to whichever layer is last. A truncated encoder
    has no such training signal: expect an accuracy drop unless the model is fine-tuned afterwards.
    """
    layers = getattr(model.model, part).layers
    if keep >= len(layers):
        raise OptimError(f"keep={keep} does not remove any of the model's {len(layers)} {part} layers",
                         field="steps[].keep", fix=f"use keep between 1 and {len(layers) - 1}")
    getattr(model.model, part).layers = torch.nn.ModuleList(list(layers)[:keep])
    setattr(model.config, f"{part}_layers", keep)
    notes = [f"{part} layers {len(layers)} -> {keep} (kept the first {keep})"]
    if part == "decoder" and not model.config.auxiliary_loss:
        notes.append("the model was not trained with auxiliary decoding losses: an earlier decoder layer's "
                     "output was never supervised, expect an accuracy drop")
    if part == "encoder":
        notes.append("intermediate encoder layers are not trained to feed the decoder: fine-tune after this")
    return notes


@torch.no_grad()
def query_usage(model: torch.nn.Module, calibration: list[torch.Tensor], threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query: how many calibration images it detects an object in (best non-"no object" probability
    above `threshold`), and its mean best probability."""
    hits = torch.zeros(model.config.num_queries)
    score_sum = torch.zeros(model.config.num_queries)
    images = 0
    was_training = model.training
    model.eval()
    for pixel_values in calibration:
        logits = model(pixel_values=pixel_values).logits.float().cpu()
        best = logits.softmax(-1)[..., :-1].max(-1).values  # (batch, queries); the last class is "no object"
        hits += (best > threshold).sum(0)
        score_sum += best.sum(0)
        images += best.shape[0]
    model.train(was_training)
    return hits, score_sum / max(images, 1)


def keep_used_queries(model: torch.nn.Module, keep: int, calibration: list[torch.Tensor]) -> list[str]:
    """Keep the `keep` object queries that detect objects most often on `calibration` (ties broken by mean
    best score), in their original order; the other query embeddings are deleted."""
    total = model.config.num_queries
    if keep >= total:
        raise OptimError(f"keep={keep} does not remove any of the model's {total} object queries",
                         field="steps[].keep", fix=f"use keep between 1 and {total - 1}")
    if not calibration:
        raise OptimError("query pruning needs calibration images to count which queries are used",
                         field="data.calibration_images", fix="set calibration_images >= 1")
    hits, mean_score = query_usage(model, calibration)
    # Sort by hits, then by mean score: the score is < 1, so adding it never overtakes one more hit.
    order = torch.argsort(hits + mean_score.clamp(max=0.999), descending=True)
    kept = order[:keep].sort().values
    embedding = model.model.query_position_embeddings
    new = torch.nn.Embedding(keep, embedding.embedding_dim, device=embedding.weight.device, dtype=embedding.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(embedding.weight[kept])
    new.weight.requires_grad_(embedding.weight.requires_grad)
    model.model.query_position_embeddings = new
    model.config.num_queries = keep
    images = sum(batch.shape[0] for batch in calibration)
    return [(f"object queries {total} -> {keep}: kept the most used on {images} calibration images, which made "
            f"{int(hits[kept].sum())} of the {int(hits.sum())} detections scoring > 0.5"),
            "kept queries still attend to each other in the decoder, so their outputs change slightly"]


def _attention_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """Encoder self-attention, decoder self-attention and decoder cross-attention modules."""
    found = []
    for name, module in model.named_modules():
        if name.startswith(("model.encoder.layers.", "model.decoder.layers.")) and \
                name.endswith((".self_attn", ".encoder_attn")):
            found.append((name, module))
    return found


def _slice_linear(linear: torch.nn.Linear, index: torch.Tensor, dim: int) -> torch.nn.Linear:
    """A copy of `linear` keeping `index` along its weight's dim 0 (outputs) or 1 (inputs)."""
    weight = linear.weight.detach().index_select(dim, index)
    out_features, in_features = weight.shape
    new = torch.nn.Linear(in_features, out_features, bias=linear.bias is not None,
                          device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach()[index])
    new.requires_grad_(linear.weight.requires_grad)
    return new


def prune_heads(model: torch.nn.Module, ratio: float) -> list[str]:
    """Remove `ratio` of the heads of every attention module, ranked by the L2 norm of each head's columns of
    the output projection. Hugging Face's DETR attention infers the head count from the projection width
    (`view(..., -1, head_dim)`), so slicing q/k/v rows and o_proj columns per head is all it takes;
    `head_dim` and `scaling` are unchanged."""
    notes, removed_total, heads_total = [], 0, 0
    for name, attention in _attention_modules(model):
        head_dim = attention.head_dim
        heads = attention.q_proj.out_features // head_dim
        remove = round(ratio * heads)
        if remove < 1 or remove >= heads:
            raise OptimError(f"ratio={ratio} removes {remove} of the {heads} heads of {name}",
                             field="steps[].ratio", fix=f"choose a ratio between {1 / heads:.2f} and {(heads - 1) / heads:.2f}")
        norms = attention.o_proj.weight.detach().reshape(attention.o_proj.out_features, heads, head_dim).norm(dim=(0, 2))
        kept_heads = torch.argsort(norms, descending=True)[: heads - remove].sort().values
        index = (kept_heads[:, None] * head_dim + torch.arange(head_dim)).reshape(-1).to(attention.o_proj.weight.device)
        for projection in ("q_proj", "k_proj", "v_proj"):
            setattr(attention, projection, _slice_linear(getattr(attention, projection), index, dim=0))
        attention.o_proj = _slice_linear(attention.o_proj, index, dim=1)
        removed_total += remove
        heads_total += heads
    config = model.config
    for part in ("encoder", "decoder"):
        field = f"{part}_attention_heads"
        setattr(config, field, getattr(config, field) - round(ratio * getattr(config, field)))
    notes.append(f"attention heads {heads_total} -> {heads_total - removed_total} over "
                 f"{len(_attention_modules(model))} attention modules (lowest output-projection norm removed)")
    notes.append("d_model is no longer heads x head_dim: reload the weights into this in-memory model "
                 "(load_state_dict), not with from_pretrained")
    return notes
