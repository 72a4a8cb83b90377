"""Nothing stale, nothing half-written: a stored variant is reused only when everything that determines its figures
matches; one runner per output folder; kill -9 and a full disk lose no finished result; a failed baseline leaves
fidelity 'n/a'."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from optim.fingerprint import differences, libraries_of, variant_fingerprint, weights_sha256
from optim.results import ResultStore
from optim.spec import ExperimentSpec

SPEC = """
name: r
model: {model}
input_size: [64, 64]
data: {{dataset: coco, root: {root}, eval_split: test, eval_images: {images}, calibration_split: val,
        calibration_images: 4}}
batch_sizes: {batches}
eval_batch_size: 4
latency: {{warmup_iters: 1, min_iters: 2, max_iters: 5, max_seconds: 0.2, steady_wait: 0, threads: 1}}
profile: {{stages: false}}
{extra}
variants:
  - {{name: fp32, engine: {{kind: pytorch}}}}
  - {{name: int8, steps: [{{kind: quantize, method: torch_dynamic}}], engine: {{kind: pytorch}}}}
  - {{name: fp32-again, engine: {{kind: pytorch}}}}
"""


def _spec(tmp: Path, root: Path, model: str = "tiny-detr-arch", images: int = 8, batches: str = "[1]",
          extra: str = "") -> Path:
    path = tmp / "r.yaml"
    path.write_text(SPEC.format(model=model, root=root, images=images, batches=batches, extra=extra))
    return path


def _run(spec: Path, *args: str, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "optim.run", str(spec), *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=spec.parent, **popen)


def _records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "variants").glob("*.json"))}


def _save_model(folder: Path, seed: int) -> None:
    from optim.models.zoo import load_model

    torch.manual_seed(seed)
    model = load_model("tiny-detr-arch", num_labels=4).model
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "optim.json").write_text(json.dumps({"input_size": [64, 64]}))


# --- fingerprints, without running anything -------------------------------------------------------------------

RUN = {"model": {"name": "m", "weights_sha256": "a"}, "data": {"eval": {"images": 8}}, "batch_sizes": [1],
       "eval_batch_size": 8, "latency": {"max_iters": 300}, "seed": 0, "machine": {"cpu": "x", "cores": 2}}


@pytest.mark.parametrize("key, change", [
    ("model.weights_sha256", lambda run: run["model"].update(weights_sha256="b")),
    ("data.eval.images", lambda run: run["data"]["eval"].update(images=6)),
    ("batch_sizes", lambda run: run.update(batch_sizes=[1, 8])),
    ("eval_batch_size", lambda run: run.update(eval_batch_size=4)),
    ("latency.max_iters", lambda run: run["latency"].update(max_iters=30)),
    ("seed", lambda run: run.update(seed=1)),
    ("machine.cores", lambda run: run["machine"].update(cores=16)),
])
def test_any_changed_setting_makes_a_stored_record_stale(tmp_path, key, change):
    spec = ExperimentSpec.model_validate({"name": "t", "variants": [{"name": "a"}]})
    variant = spec.all_variants()[0]
    store = ResultStore(tmp_path)
    stored = variant_fingerprint(json.loads(json.dumps(RUN)), spec, variant, None)
    store.save({"name": "a", "status": "ok", "fingerprint": stored})
    assert store.finished("a", stored) == (store.load("a"), [])
    changed = json.loads(json.dumps(RUN))
    change(changed)
    record, why = store.finished("a", variant_fingerprint(changed, spec, variant, None))
    assert record is None and len(why) == 1 and why[0].startswith(key)


def test_variant_spec_libraries_and_baseline_are_part_of_the_fingerprint():
    spec = ExperimentSpec.model_validate({"name": "t", "variants": [
        {"name": "a"}, {"name": "b", "steps": [{"kind": "quantize", "method": "nncf"}], "engine": {"kind": "openvino"}}]})
    a, b = spec.all_variants()
    assert {"openvino", "nncf", "onnx", "torch"} <= set(libraries_of(b)) and "openvino" not in libraries_of(a)
    one = variant_fingerprint(RUN, spec, b, {"name": "a", "status": "ok", "detections_sha256": "1"})
    other = variant_fingerprint(RUN, spec, b, {"name": "a", "status": "failed", "detections_sha256": None})
    assert any(d.startswith("baseline.status") for d in differences(one, other))
    assert differences(None, one) == ["the stored record has no fingerprint (written by an older version)"]
    assert ResultStore(Path("/nonexistent")).finished("a", one) == (None, [])


def test_weights_hash_sees_one_changed_number(tiny_model):
    before = weights_sha256(tiny_model)
    with torch.no_grad():
        next(tiny_model.parameters()).view(-1)[0] += 1e-3
    assert weights_sha256(tiny_model) != before


# --- end to end ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_new_weights_at_the_same_path_and_new_batch_sizes_are_measured_again(tmp_path, tiny_dataset_root):
    model = tmp_path / "my-model"
    _save_model(model, seed=1)
    spec = _spec(tmp_path, tiny_dataset_root, model=str(model))
    first = _run(spec)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "reports" / "r"
    kept = _run(spec)
    assert kept.stdout.count("already measured") == 3, kept.stdout[-3000:]
    _save_model(model, seed=2)  # the same folder, other weights (e.g. a re-trained model)
    _spec(tmp_path, tiny_dataset_root, model=str(model), batches="[1, 2]")
    again = _run(spec)
    assert again.returncode == 0 and "already measured" not in again.stdout, again.stderr[-3000:]
    assert "measuring again, the stored record is stale: " in again.stdout
    for name, record in _records(out).items():
        reasons = " ".join(record["remeasured_because"])
        assert "model.weights_sha256 changed" in reasons and "batch_sizes: [1] -> [1, 2]" in reasons, name
        assert set(record["latency"]) == {"1", "2"} and f"measured again: {reasons.split(' ')[0]}" in " ".join(
            record["notes"])  # the report's notes say why
    results = json.loads((out / "results.json").read_text())
    assert all(v["fingerprint"]["model"]["weights_sha256"] == results["variants"][0]["fingerprint"]["model"][
        "weights_sha256"] for v in results["variants"])


@pytest.mark.slow
def test_a_second_runner_on_the_same_folder_is_refused(tmp_path, tiny_dataset_root):
    spec = _spec(tmp_path, tiny_dataset_root)
    store = ResultStore(tmp_path / "reports" / "r")
    with store.locked():
        result = _run(spec)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"another run is writing to this folder (process {os.getpid()})" in result.stderr
    assert not (store.out_dir / "variants").exists()


@pytest.mark.slow
def test_kill_9_mid_run_then_the_same_command_keeps_finished_variants_and_measures_the_rest(tmp_path,
                                                                                           tiny_dataset_root):
    spec = _spec(tmp_path, tiny_dataset_root)
    out = tmp_path / "reports" / "r"
    process = subprocess.Popen([sys.executable, "-m", "optim.run", str(spec)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (out / "variants" / "fp32.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    survivors = _records(out)
    assert "fp32" in survivors and len(survivors) < 3  # killed after the baseline, before the last variant
    rerun = _run(spec)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "fp32: already measured" in rerun.stdout
    after = _records(out)
    assert set(after) == {"fp32", "int8", "fp32-again"}
    for name, record in survivors.items():
        assert after[name] == record  # identical, not re-measured
    assert not list(out.rglob("*.tmp"))
    assert len(json.loads((out / "results.json").read_text())["variants"]) == 3


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare with user and mount namespaces (a private tmpfs)")
def test_a_full_disk_ends_in_a_clear_error_and_keeps_every_finished_variant(tmp_path, tiny_dataset_root):
    """The run writes into a 1 MiB tmpfs that is filled up once the baseline's record exists."""
    spec = _spec(tmp_path, tiny_dataset_root)
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f"""
mount -t tmpfs -o size=1m tmpfs {disk}
{sys.executable} -m optim.run {spec} --out {disk}/r > {tmp_path}/log.txt 2>&1 &
run=$!
while [ ! -f {disk}/r/variants/fp32.json ] && kill -0 $run 2>/dev/null; do sleep 0.02; done
dd if=/dev/zero of={disk}/fill bs=4k 2>/dev/null
wait $run
echo $? > {tmp_path}/rc.txt
rm {disk}/fill
cp -r {disk}/r {tmp_path}/copy
"""
    subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=tmp_path, timeout=300, check=True)
    log = (tmp_path / "log.txt").read_text()
    assert (tmp_path / "rc.txt").read_text().strip() == "2", log[-3000:]
    assert "the disk is full" in log and "run the same command again" in log and "Traceback" not in log, log[-3000:]
    copy = tmp_path / "copy"
    kept = _records(copy)  # valid JSON: nothing half-written
    assert "fp32" in kept and not list(copy.rglob("*.tmp"))
    rerun = _run(spec, "--out", str(copy))
    assert rerun.returncode == 0 and "fp32: already measured" in rerun.stdout, rerun.stderr[-3000:]
    assert _records(copy)["fp32"] == kept["fp32"] and len(_records(copy)) == 3


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="the baseline must fail: it asks for a GPU")
def test_a_failed_baseline_leaves_fidelity_not_applicable(tmp_path, tiny_dataset_root):
    spec = tmp_path / "b.yaml"
    spec.write_text(SPEC.format(model="tiny-detr-arch", root=tiny_dataset_root, images=4, batches="[1]",
                                extra="baseline: gpu")
                    .replace("  - {name: fp32-again, engine: {kind: pytorch}}",
                             "  - {name: gpu, engine: {kind: pytorch, device: cuda}}"))
    result = _run(spec)
    assert result.returncode == 0, result.stderr[-3000:]
    variants = {v["name"]: v for v in json.loads((tmp_path / "reports" / "r" / "results.json").read_text())["variants"]}
    assert variants["gpu"]["status"] == "failed"
    for name in ("fp32", "int8"):
        assert variants[name]["status"] == "ok" and variants[name]["accuracy"]["fidelity"] is None
    with (tmp_path / "reports" / "r" / "results.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["variant"] in ("fp32", "int8")]
    assert rows and all(row["fidelity"] == "" and row["delta_map_points"] == "" for row in rows)  # not applicable
