"""Model -> model compression steps for DETR: pruning (`apply.apply_prune`) and distillation
(`distill.apply_distill`), with size/FLOP figures from `stats.model_stats`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CompressionResult:
    """A compressed model plus human-readable notes for the report (what was done, what it costs)."""

    model: object  # transformers.DetrForObjectDetection, in eval mode
    notes: list[str] = field(default_factory=list)
