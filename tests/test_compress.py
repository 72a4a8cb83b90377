"""Compression steps on the tiny random DETR: structured pruning really shrinks the model and keeps its
output shapes and ONNX export, sparsity patterns hold, decoder truncation equals the original's earlier
layer, and distillation lowers the distillation loss and resumes from its checkpoint."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch

from optim.compress.apply import apply_prune
from optim.compress.distill import apply_distill
from optim.compress.sparsity import sparsity
from optim.compress.stats import model_stats
from optim.data.coco import CocoDetection, CocoFolder
from optim.data.synthetic import SplitSpec, SyntheticSpec, generate_split
from optim.engines.onnx_export import PARITY_ATOL, export_onnx
from optim.errors import OptimError
from optim.models.architectures import tiny_detr_config
from optim.spec import DistillStep, PruneStep

SIZE = (64, 64)


def tiny(seed: int = 0, **config_fields):
    """A tiny random DETR (1 encoder / 1 decoder layer unless overridden), in eval mode."""
    from transformers import DetrForObjectDetection

    torch.manual_seed(seed)
    config = tiny_detr_config()
    for key, value in config_fields.items():
        setattr(config, key, value)
    return DetrForObjectDetection(config).eval()


def images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


def prune(model, calibration=None, train_data=None, **fields):
    return apply_prune(model, PruneStep(kind="prune", **fields), calibration=calibration, train_data=train_data)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread; two threads competing with other jobs spin ~20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> CocoDetection:
    root = tmp_path_factory.mktemp("synthetic")
    spec = SyntheticSpec(image_size=64, splits={"train": SplitSpec(4, 4), "val": SplitSpec(2, 2)})
    generate_split(root, "train", spec)
    return CocoDetection(CocoFolder.from_root(root, "train"), SIZE)


STRUCTURED = {
    "channels": {"method": "channels", "ratio": 0.5},
    "channels_taylor": {"method": "channels", "ratio": 0.5, "importance": "taylor"},
    "heads": {"method": "heads", "ratio": 0.5},
    "queries": {"method": "queries", "keep": 4},
    "decoder_layers": {"method": "decoder_layers", "keep": 2},
    "encoder_layers": {"method": "encoder_layers", "keep": 1},
}


@pytest.mark.parametrize("name", STRUCTURED)
def test_structured_pruning_shrinks_and_exports(name, tmp_path):
    import onnxruntime as ort

    fields = STRUCTURED[name]
    model = tiny(decoder_layers=3, encoder_layers=2) if name.endswith("layers") else tiny()
    x = images()
    before = model_stats(model, SIZE)
    result = prune(model, calibration=[x], **fields)
    pruned = result.model
    after = model_stats(pruned, SIZE)
    assert after["flops"] < before["flops"] and after["params"] < before["params"], (before, after)
    assert result.notes
    queries = fields.get("keep", 8) if name == "queries" else 8
    with torch.no_grad():
        out = pruned(pixel_values=x)
    assert out.logits.shape == (2, queries, 5) and out.pred_boxes.shape == (2, queries, 4)
    assert pruned.config.num_queries == queries
    # The input model is untouched.
    assert model_stats(model, SIZE) == before

    path = export_onnx(pruned, tmp_path / "pruned.onnx", SIZE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = images(3, seed=1).numpy()
    logits, boxes = session.run(None, {"pixel_values": batch})
    with torch.no_grad():
        reference = pruned(pixel_values=torch.from_numpy(batch))
    np.testing.assert_allclose(boxes, reference.pred_boxes.numpy(), atol=PARITY_ATOL["pred_boxes"], rtol=0)
    np.testing.assert_allclose(logits, reference.logits.numpy(), atol=PARITY_ATOL["logits"], rtol=0)


def test_channel_pruning_keeps_transformer_width_and_updates_ffn_config():
    pruned = prune(tiny(), calibration=[images()], method="channels", ratio=0.5).model
    assert pruned.model.input_projection.out_channels == 32  # d_model untouched
    assert pruned.model.input_projection.in_channels < 16  # backbone output channels were pruned
    for layer in (*pruned.model.encoder.layers, *pruned.model.decoder.layers):
        assert layer.mlp.fc1.out_features == layer.mlp.fc2.in_features == pruned.config.encoder_ffn_dim == 32
    frozen_norm = pruned.model.backbone.model.embedder.embedder.normalization
    assert frozen_norm.running_var.shape == (pruned.model.backbone.model.embedder.embedder.convolution.out_channels,)


def test_channel_pruning_drops_backbone_stages_detr_never_reads():
    from transformers import DetrForObjectDetection

    torch.manual_seed(0)
    config = tiny_detr_config()
    config.backbone_config.out_features = ["stage1"]  # stage2 still runs in Hugging Face's backbone, unused
    model = DetrForObjectDetection(config).eval()
    result = prune(model, calibration=[images()], method="channels", ratio=0.5)
    assert len(result.model.model.backbone.model.encoder.stages) == 1
    assert any("stage2" in note for note in result.notes)
    with torch.no_grad():
        assert result.model(pixel_values=images()).pred_boxes.shape == (2, 8, 4)


def test_decoder_truncation_equals_the_originals_earlier_layer():
    original = tiny(decoder_layers=3)
    pruned = prune(original, method="decoder_layers", keep=2).model
    assert len(pruned.model.decoder.layers) == 2 and pruned.config.decoder_layers == 2
    x = images()
    with torch.no_grad():
        # DETR (auxiliary_loss) layer-norms every decoder layer's output, then the shared final layer norm.
        second = original.model(pixel_values=x).intermediate_hidden_states[1]
        hidden = original.model.decoder.layernorm(second)
        expected_logits = original.class_labels_classifier(hidden)
        expected_boxes = original.bbox_predictor(hidden).sigmoid()
        got = pruned(pixel_values=x)
        full = original(pixel_values=x)
    torch.testing.assert_close(got.logits, expected_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.pred_boxes, expected_boxes, atol=1e-5, rtol=0)
    assert (full.logits - got.logits).abs().max() > 1e-3  # the check can tell the layers apart


def test_query_pruning_keeps_the_most_used_queries():
    model = tiny()
    x = images(4)
    with torch.no_grad():
        best = model(pixel_values=x).logits.softmax(-1)[..., :-1].max(-1).values  # (images, queries)
    assert not (best > 0.5).any()  # a random model detects nothing, so queries rank by mean best score
    pruned = prune(model, calibration=[x[:2], x[2:]], method="queries", keep=3).model
    kept = pruned.model.query_position_embeddings.weight
    expected = torch.argsort(best.mean(0), descending=True)[:3].sort().values
    torch.testing.assert_close(kept, model.model.query_position_embeddings.weight[expected])


def test_head_pruning_slices_projections():
    pruned = prune(tiny(), method="heads", ratio=0.5).model
    attention = pruned.model.encoder.layers[0].self_attn
    assert attention.q_proj.out_features == attention.k_proj.out_features == attention.v_proj.out_features == 16
    assert attention.o_proj.in_features == 16 and attention.o_proj.out_features == 32
    assert attention.head_dim == 16 and pruned.config.encoder_attention_heads == 1


@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_unstructured_sparsity_matches_ratio(ratio):
    model = tiny()
    result = prune(model, method="unstructured", ratio=ratio)
    assert abs(sparsity(result.model) - ratio) < 0.01
    assert sparsity(model) < 0.01
    assert any("no CPU speed-up" in note for note in result.notes)


def test_two_four_pattern_holds_on_every_group():
    pruned = prune(tiny(), method="semi_structured_2_4").model
    checked = 0
    for module in pruned.modules():
        if isinstance(module, torch.nn.Linear):
            nonzero = (module.weight != 0).reshape(module.out_features, -1, 4).sum(-1)
            assert int(nonzero.max()) <= 2
            checked += 1
    assert checked == 20
    assert abs(sparsity(pruned, (torch.nn.Linear,)) - 0.5) < 1e-6


def test_bad_steps_are_explained():
    with pytest.raises(OptimError, match="keep"):
        prune(tiny(), method="decoder_layers")
    with pytest.raises(OptimError, match="does not remove"):
        prune(tiny(), method="decoder_layers", keep=1)
    with pytest.raises(OptimError, match="calibration"):
        prune(tiny(), method="queries", keep=2)
    with pytest.raises(OptimError, match="taylor"):
        prune(tiny(), method="heads", importance="taylor")
    with pytest.raises(OptimError, match="training split"):
        prune(tiny(), method="unstructured", finetune_steps=2)


def test_finetune_after_sparsity_keeps_the_zeros(train_data):
    model = tiny()
    plain = prune(model, method="unstructured", ratio=0.5).model
    tuned = prune(model, train_data=train_data, method="unstructured", ratio=0.5, finetune_steps=3)
    assert abs(sparsity(tuned.model) - 0.5) < 0.01
    changed = [not torch.equal(a, b) for a, b in zip(plain.parameters(), tuned.model.parameters())]
    assert any(changed)  # fine-tuning did update weights
    assert any("fine-tuned 3 steps" in note for note in tuned.notes)


def test_taylor_importance_uses_labelled_batches_when_there_is_training_data(train_data):
    model = tiny()
    result = prune(model, train_data=train_data, method="channels", ratio=0.5, importance="taylor")
    assert any("labelled training batches" in note for note in result.notes)
    assert model_stats(result.model, SIZE)["flops"] < model_stats(model, SIZE)["flops"]
    assert all(p.grad is None for p in result.model.parameters())  # gradients used for ranking are dropped


def _log_rows(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def confident_teacher():
    """A random DETR made to predict class 0 in a fixed box: far from a random student, so there is
    something to distill."""
    teacher = tiny(seed=1)
    with torch.no_grad():
        teacher.class_labels_classifier.bias[0] += 3.0
        teacher.bbox_predictor.layers[-1].bias.copy_(torch.tensor([-0.8, 0.4, -1.5, -1.0]))
    return teacher


def test_distillation_lowers_the_distillation_loss_and_resumes(train_data, tmp_path):
    teacher = confident_teacher()
    student = prune(tiny(seed=0), calibration=[images()], method="queries", keep=6).model  # 6 vs 8 queries
    step = DistillStep(kind="distill", steps=20, lr=3e-3, batch_size=2)
    result = apply_distill(student, teacher, step, train_data, tmp_path, save_every=10)
    rows = _log_rows(tmp_path / "distill_log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 21))
    distill = [float(r["distill"]) for r in rows]
    assert np.mean(distill[-5:]) < 0.8 * np.mean(distill[:5]), distill  # ~0.6 on this seed
    assert (tmp_path / "student" / "model.safetensors").is_file()
    assert result.model.config.num_queries == 6

    # A finished run resumes to the same weights without training; a longer budget continues from step 20.
    again = apply_distill(student, teacher, step, train_data, tmp_path)
    for a, b in zip(result.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    longer = apply_distill(student, teacher, step.model_copy(update={"steps": 22}), train_data, tmp_path)
    assert [int(r["step"]) for r in _log_rows(tmp_path / "distill_log.csv")][-2:] == [21, 22]
    assert any("resumed at step 20" in note for note in longer.notes)
    # Other settings make it another run: its checkpoint and log start over.
    other = apply_distill(student, teacher, step.model_copy(update={"steps": 3, "lr": 1e-4}), train_data, tmp_path)
    assert [int(r["step"]) for r in _log_rows(tmp_path / "distill_log.csv")] == [1, 2, 3]
    assert not any("resumed" in note for note in other.notes)


def test_distillation_refuses_a_teacher_with_other_classes(train_data, tmp_path):
    step = DistillStep(kind="distill", steps=1)
    with pytest.raises(OptimError, match="classes"):
        apply_distill(tiny(), tiny(num_labels=7), step, train_data, tmp_path)


def test_distillation_learning_rate_schedules():
    from optim.compress.distill import learning_rate
    from optim.spec import DistillStep

    cosine = DistillStep(kind="distill", steps=101, lr=1e-3, schedule="cosine")
    rates = [learning_rate(cosine, i) for i in range(101)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert rates[50] == pytest.approx(5.5e-4) and all(a >= b for a, b in itertools.pairwise(rates))
    constant = DistillStep(kind="distill", steps=10, lr=1e-3)
    assert {learning_rate(constant, i) for i in range(10)} == {1e-3}
