"""optim.deploy: a Triton model repository from a measured variant, checked against Triton's own model-config
schema (tritonclient's model_config_pb2), with the measured artifact copied byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from optim.errors import OptimError
from optim.serving.options import ServingOptions

pytest.importorskip("tritonclient.grpc", reason="needs the client extra: pip install 'detr-optim-lab[client]'")

from google.protobuf.text_format import ParseError

from optim.serving.pbtxt import parse_with_schema
from optim.serving.repository import MANIFEST, deploy_variant, read_manifest, sha256, verify_files


def test_repository_configs_parse_with_tritons_schema(served_report, tmp_path):
    report = served_report
    manifest = deploy_variant(report, "onnxruntime-fp32", tmp_path / "repo", ServingOptions(instances=3))
    configs = {p.parent.name: parse_with_schema(p.read_text()) for p in (tmp_path / "repo").glob("*/config.pbtxt")}
    names = manifest["models"]
    assert set(configs) == set(names.values())
    core = configs[names["core"]]
    assert core.backend == "onnxruntime" and core.max_batch_size == 8
    assert [(t.name, list(t.dims)) for t in core.input] == [("pixel_values", [3, 128, 128])]
    assert [(t.name, list(t.dims)) for t in core.output] == [("logits", [20, 5]), ("pred_boxes", [20, 4])]
    assert [(g.count, g.kind) for g in core.instance_group] == [(3, 2)]  # 2 = KIND_CPU
    assert list(core.dynamic_batching.preferred_batch_size) == [4, 8]
    assert core.dynamic_batching.max_queue_delay_microseconds == 100
    detect = configs[names["detect"]]
    assert detect.platform == "ensemble"
    assert [s.model_name for s in detect.ensemble_scheduling.step] == [names["preprocess"], names["core"],
                                                                       names["postprocess"]]
    assert configs[names["preprocess"]].backend == "python"


def test_manifest_records_measurement_and_hashes(served_report, tmp_path):
    out = tmp_path / "repo"
    manifest = deploy_variant(served_report, "openvino-fp32", out, ServingOptions())
    results = json.loads((served_report / "results.json").read_text())
    record = next(v for v in results["variants"] if v["name"] == "openvino-fp32")
    assert manifest["measured"]["accuracy"]["map"] == record["accuracy"]["map"]
    assert manifest["measured"]["latency"]["1"]["p50_ms"] == record["latency"]["1"]["p50_ms"]
    assert manifest["spec"] == record["spec"] and manifest["backend"] == "openvino"
    ir = served_report / "artifacts" / "openvino-fp32" / "model.xml"
    assert manifest["files"]["openvino-fp32/1/model.xml"] == sha256(ir)  # the measured bytes, not a re-export
    assert manifest["files"]["openvino-fp32/1/model.bin"] == sha256(ir.with_suffix(".bin"))
    assert read_manifest(out) == manifest
    verify_files(out, manifest)
    (out / "openvino-fp32" / "1" / "model.bin").write_bytes(b"changed")
    with pytest.raises(OptimError, match="sha256"):
        verify_files(out, manifest)


def test_no_batching_config_has_no_dynamic_batcher(served_report, tmp_path):
    deploy_variant(served_report, "onnxruntime-fp32", tmp_path / "r", ServingOptions(dynamic_batching=False))
    config = parse_with_schema((tmp_path / "r" / "onnxruntime-fp32" / "config.pbtxt").read_text())
    assert not config.HasField("dynamic_batching") and config.max_batch_size == 8


def test_schema_check_rejects_an_unknown_field():
    with pytest.raises(ParseError):
        parse_with_schema('name: "m"\nmax_batch_sise: 8\n')


def test_bad_options_and_unservable_variants_are_clear_errors(served_report, tmp_path):
    with pytest.raises(OptimError, match="--preferred-batch-sizes"):
        ServingOptions(max_batch_size=4, preferred_batch_sizes=(8,))
    result = subprocess.run([sys.executable, "-m", "optim.deploy", str(served_report), "--variant", "pytorch-fp32",
                             "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "engine 'pytorch'" in result.stderr and "onnxruntime or openvino" in result.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(OptimError, match="not a model repository"):
        deploy_variant(served_report, "onnxruntime-fp32", tmp_path / "busy", ServingOptions())
    assert not (tmp_path / MANIFEST).exists()


def test_serving_section_names_only_spec_variants():
    from pydantic import ValidationError

    from optim.spec import ExperimentSpec

    spec = {"name": "x", "variants": [{"name": "a", "engine": {"kind": "onnxruntime"}}],
            "serving": {"variants": ["b"]}}
    with pytest.raises(ValidationError, match=r"serving.variants \['b'\] are not variants"):
        ExperimentSpec.model_validate(spec)
    spec["serving"] = {"variants": ["a"], "concurrency": [0]}
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        ExperimentSpec.model_validate(spec)
