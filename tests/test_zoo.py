"""The model zoo: shipped model offline, architecture-only entries, local folders, clear errors."""

from __future__ import annotations

import pytest
import torch

from optim.errors import OptimError
from optim.models.zoo import SHIPPED, load_model

shipped_present = pytest.mark.skipif(not (SHIPPED["synth-detr"] / "model.safetensors").exists(),
                                     reason="shipped checkpoint not trained yet")


@shipped_present
def test_shipped_model_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_model("synth-detr")
    assert loaded.trained and loaded.default_input_size == (128, 128)
    with torch.no_grad():
        out = loaded.model(pixel_values=torch.zeros(1, 3, 128, 128))
    assert out.logits.shape[-1] == 5 and out.pred_boxes.shape[-1] == 4


def test_architecture_entries_have_random_weights_flagged():
    loaded = load_model("tiny-detr-arch")
    assert not loaded.trained and loaded.source == "random:tiny-detr"


def test_detr_r50_architecture_builds_without_downloads(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model("detr-r50-arch").model
    params = sum(p.numel() for p in model.parameters())
    assert 40e6 < params < 45e6  # facebook/detr-resnet-50 has 41.5 M parameters


def test_local_folder_roundtrip(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    again = load_model(str(tmp_path / "m")).model
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=x).pred_boxes, tiny_model(pixel_values=x).pred_boxes)


def test_missing_checkpoint_is_a_clear_error(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(OptimError, match="model.safetensors is missing"):
        load_model(str(tmp_path / "m"))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(OptimError, match="cannot load the checkpoint"):
        load_model(str(tmp_path / "m"))


def test_unknown_name_lists_the_zoo():
    with pytest.raises(OptimError, match="synth-detr"):
        load_model("no-such-model")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OptimError, match="hub"):
        load_model("facebook/detr-resnet-50", allow_download=False)
