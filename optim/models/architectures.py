"""DETR configurations built from code, with no weights downloaded (the ResNet backbone is Hugging Face's,
built from config, never timm's pretrained one)."""

from __future__ import annotations

from transformers import DetrConfig, ResNetConfig


def synth_detr_config(num_labels: int = 4) -> DetrConfig:
    """The shipped default: a small DETR for 128x128 frames (3-stage, stride-16 basic-block ResNet, 8x8
    tokens, 2 encoder + 3 decoder layers, d_model 128, 20 queries, auxiliary decoding losses).

    The backbone has exactly the stages DETR reads: Hugging Face's ResNet runs every stage even when only
    `out_features` are used, so a fourth stage would cost time and weights for nothing."""
    backbone = ResNetConfig(embedding_size=32, hidden_sizes=[32, 64, 128], depths=[1, 1, 1],
                            layer_type="basic", out_features=["stage3"])
    return DetrConfig(backbone_config=backbone, d_model=128, encoder_layers=2, decoder_layers=3,
                      encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=512,
                      decoder_ffn_dim=512, num_queries=20, num_labels=num_labels, auxiliary_loss=True,
                      dropout=0.0)


def tiny_detr_config(num_labels: int = 4) -> DetrConfig:
    """A minimal DETR for fast tests (one layer of everything, d_model 32, 8 queries)."""
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                            out_features=["stage2"])
    return DetrConfig(backbone_config=backbone, d_model=32, encoder_layers=1, decoder_layers=1,
                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                      decoder_ffn_dim=64, num_queries=8, num_labels=num_labels, auxiliary_loss=True, dropout=0.0)


def detr_r50_config(num_labels: int = 91) -> DetrConfig:
    """The facebook/detr-resnet-50 architecture (ResNet-50, 6+6 layers, 100 queries) with a
    Hugging Face ResNet backbone, for latency studies with random weights."""
    backbone = ResNetConfig(out_features=["stage4"])  # ResNet-50 defaults
    return DetrConfig(backbone_config=backbone, num_labels=num_labels)


ARCHITECTURES = {"synth-detr": synth_detr_config, "tiny-detr": tiny_detr_config, "detr-r50": detr_r50_config}
