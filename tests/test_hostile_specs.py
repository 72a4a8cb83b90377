"""A corpus of malformed and hostile specs, data sets and models: each one is refused by `python -m optim.validate`
(and the run commands) with exit 2, a message naming the file and the field, no traceback, and nothing written."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optim.data.synthetic import MARKER
from optim.models.zoo import SHIPPED

V = "name: t\nvariants: [{name: a}]\n"  # the smallest valid experiment
F = "name: t\ntrainer: lightning\n"  # the smallest valid fine-tuning spec


def _users_coco(tmp: Path, tiny: Path) -> Path:
    """A user's own COCO folder (no generator marker, their own annotation info, their own files beside the data).
    Their `info` matters: other tests' runs may have regenerated `tiny` as the default synthetic data set, which
    the generator would then recognize as current and only read."""
    root = tmp / "coco"
    shutil.copytree(tiny, root, ignore=shutil.ignore_patterns(MARKER))
    (root / "LICENSE.txt").write_text("mine")
    for path in (root / "annotations").glob("*.json"):
        coco = json.loads(path.read_text())
        path.write_text(json.dumps({**coco, "info": {"description": "my own frames"}}))
    return root


def _edit_annotations(tmp: Path, tiny: Path, edit) -> Path:
    root = _users_coco(tmp, tiny)
    path = root / "annotations" / "instances_test.json"
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))
    return root


def _model(tmp: Path, optim_json: str | None = None, files=("config.json", "model.safetensors")) -> Path:
    folder = tmp / "model"
    folder.mkdir()
    for name in files:
        shutil.copy(SHIPPED["synth-detr"] / name, folder / name)
    if optim_json is not None:
        (folder / "optim.json").write_text(optim_json)
    return folder


def _first_box(coco: dict, bbox) -> None:
    coco["annotations"][0]["bbox"] = bbox


def _a_file(tmp: Path) -> Path:
    (tmp / "data.txt").write_text("not a folder")
    return tmp / "data.txt"


# (id, spec text or bytes with {root}/{model} placeholders, setup(tmp, tiny) -> {placeholder: path}, expected texts)
CASES = [
    ("duplicate-top-level-key", V + "variants: [{name: b}]\n", None, ["duplicate key", "'variants'"]),
    ("duplicate-nested-key", "name: t\nvariants: [{name: a, engine: {kind: pytorch, kind: openvino}}]\n", None,
     ["duplicate key", "'kind'"]),
    ("quoted-yes-as-bool", V + "trust_remote_code: 'yes'\n", None, ["field 'trust_remote_code'", "true or false"]),
    ("quoted-number-as-float", V + "latency: {max_seconds: '0.5'}\n", None, ["field 'latency.max_seconds'"]),
    ("float-as-int", V + "latency: {max_iters: 300.5}\n", None, ["field 'latency.max_iters'"]),
    ("quoted-int-batch", V + "batch_sizes: ['8']\n", None, ["field 'batch_sizes.0'"]),
    ("bool-as-int", V + "eval_batch_size: true\n", None, ["field 'eval_batch_size'"]),
    ("1e12-iterations", V + "latency: {max_iters: 1000000000000}\n", None, ["field 'latency.max_iters'"]),
    ("infinite-seconds", V + "latency: {max_seconds: .inf}\n", None, ["field 'latency.max_seconds'", "finite"]),
    ("nan-seconds", V + "latency: {max_seconds: .nan}\n", None, ["field 'latency.max_seconds'"]),
    ("huge-warmup", V + "latency: {warmup_iters: 100000000}\n", None, ["field 'latency.warmup_iters'"]),
    ("huge-steady-wait", V + "latency: {steady_wait: 1.0e9}\n", None, ["field 'latency.steady_wait'"]),
    ("negative-seed", V + "seed: -1\n", None, ["field 'seed'"]),
    ("seed-beyond-numpy", V + "seed: 99999999999\n", None, ["field 'seed'"]),
    ("huge-thread-count", V + "latency: {threads: 100000}\n", None, ["field 'latency.threads'"]),
    ("zero-threads", V + "latency: {threads: 0}\n", None, ["field 'latency.threads'"]),
    ("huge-batch", V + "batch_sizes: [100000]\n", None, ["field 'batch_sizes.0'"]),
    ("no-batch-sizes", V + "batch_sizes: []\n", None, ["field 'batch_sizes'"]),
    ("zero-eval-batch", V + "eval_batch_size: 0\n", None, ["field 'eval_batch_size'"]),
    ("zero-input-size", V + "input_size: [0, 128]\n", None, ["field 'input_size.0'"]),
    ("huge-input-size", V + "input_size: [100000, 100000]\n", None, ["field 'input_size"]),
    ("one-number-input-size", V + "input_size: [128]\n", None, ["field 'input_size"]),
    ("batch-too-big-for-memory", V + "input_size: [4096, 4096]\nbatch_sizes: [256]\n", None, ["GiB"]),
    ("negative-eval-images", V + "data: {eval_images: -5}\n", None, ["field 'data.eval_images'"]),
    ("huge-calibration", V + "data: {calibration_images: 1000000000}\n", None, ["field 'data.calibration_images'"]),
    ("absolute-output-dir", V + "output_dir: /tmp/elsewhere\n", None, ["field 'output_dir'", "--out"]),
    ("climbing-output-dir", V + "output_dir: ../../outside\n", None, ["field 'output_dir'", "--out"]),
    ("climbing-name", "name: ../x\nvariants: [{name: a}]\n", None, ["field 'name'"]),
    ("climbing-variant-name", "name: t\nvariants: [{name: ../../x}]\n", None, ["field 'variants.0.name'"]),
    ("variants-not-a-list", "name: t\nvariants: abc\n", None, ["field 'variants'"]),
    ("latin-1-byte", b"name: t\ndescription: caf\xe9\nvariants: [{name: a}]\n", None, ["not UTF-8", "line 2"]),
    ("utf-16", "name: t\nvariants: [{name: a}]\n".encode("utf-16"), None, ["UTF-16"]),
    ("binary", bytes(range(256)) * 4, None, ["binary"]),
    ("deeply-nested-flow", "name: t\nx: " + "[" * 20000 + "]" * 20000 + "\n", None, ["nested"]),
    ("deeply-nested-mappings", "name: t\nx: " + "{a: " * 60 + "1" + "}" * 60 + "\n", None, ["nested more than"]),
    ("billion-laughs", ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"), None,
     ["expands to more than"]),
    ("oversized-file", V + "# " + "x" * (2 << 20) + "\n", None, ["at most"]),
    ("not-a-mapping", "- a\n- b\n", None, ["must be a YAML mapping"]),
    ("empty-file", "", None, ["must be a YAML mapping"]),
    ("unhashable-key", "? [a, b]\n: 1\n", None, ["invalid YAML"]),
    ("tab-indentation", "name: t\nvariants:\n\t- name: a\n", None, ["invalid YAML"]),
    ("nul-in-model", V + 'model: "a\\0b"\n', None, ["field 'model'", "control character"]),
    ("nul-in-data-root", V + 'data: {root: "a\\0b"}\n', None, ["field 'data.root'", "control character"]),
    ("empty-model", V + "model: ''\n", None, ["field 'model'"]),
    ("climbing-split", V + "data: {dataset: coco, root: '{root}', eval_split: ../test}\n",
     lambda tmp, tiny: {"root": _users_coco(tmp, tiny)}, ["field 'data.eval_split'"]),
    ("unknown-synthetic-split", V + "data: {eval_split: holdout}\n", None, ["field 'data'", "holdout"]),
    ("synthetic-into-users-coco", V + "data: {root: '{root}'}\n", lambda tmp, tiny: {"root": _users_coco(tmp, tiny)},
     ["field 'data.root'", "refusing"]),
    ("synthetic-into-new-absolute-folder", V + "data: {root: '{root}'}\n", lambda tmp, tiny: {"root": tmp / "new"},
     ["field 'data.root'", "outside the working folder", "--out"]),
    ("synthetic-into-new-climbing-folder", V + "data: {root: ../../new-data}\n", None,
     ["field 'data.root'", "outside the working folder"]),
    ("synthetic-root-is-a-file", V + "data: {root: '{root}'}\n", lambda tmp, tiny: {"root": _a_file(tmp)},
     ["field 'data.root'", "is a file"]),
    ("coco-root-is-a-file", V + "data: {dataset: coco, root: '{root}'}\n", lambda tmp, tiny: {"root": _a_file(tmp)},
     ["field 'data.root'", "a file"]),
    ("coco-root-missing", V + "data: {dataset: coco, root: nowhere}\n", None, ["field 'data.root'", "missing"]),
    ("coco-split-missing", V + "data: {dataset: coco, root: '{root}', eval_split: holdout}\n",
     lambda tmp, tiny: {"root": _users_coco(tmp, tiny)}, ["field 'data.eval_split'", "instances_holdout.json"]),
    ("annotation-not-json", V + "data: {dataset: coco, root: '{root}'}\n",
     lambda tmp, tiny: {"root": _broken_json(tmp, tiny)}, ["instances_test.json", "not a JSON file"]),
    ("annotation-is-a-list", V + "data: {dataset: coco, root: '{root}'}\n",
     lambda tmp, tiny: {"root": _replace_annotations(tmp, tiny, "[1, 2]")}, ["instances_test.json", "list"]),
    ("box-with-three-numbers", V + "data: {dataset: coco, root: '{root}'}\n",
     lambda tmp, tiny: {"root": _edit_annotations(tmp, tiny, lambda c: _first_box(c, [1, 2, 3]))},
     ["instances_test.json", "image id", "4 finite numbers"]),
    ("negative-box", V + "data: {dataset: coco, root: '{root}'}\n",
     lambda tmp, tiny: {"root": _edit_annotations(tmp, tiny, lambda c: _first_box(c, [5, 5, -3, 4]))},
     ["instances_test.json", "negative"]),
    ("box-outside-image", V + "data: {dataset: coco, root: '{root}'}\n",
     lambda tmp, tiny: {"root": _edit_annotations(tmp, tiny, lambda c: _first_box(c, [50, 50, 400, 10]))},
     ["instances_test.json", "outside"]),
    ("box-with-text", V + "data: {dataset: coco, root: '{root}'}\n",
     lambda tmp, tiny: {"root": _edit_annotations(tmp, tiny, lambda c: _first_box(c, ["1", 2, 3, 4]))},
     ["instances_test.json", "4 finite numbers"]),
    ("annotation-of-unknown-image", V + "data: {dataset: coco, root: '{root}'}\n",
     lambda tmp, tiny: {"root": _edit_annotations(tmp, tiny, lambda c: c["annotations"][0].update(image_id=4242))},
     ["instances_test.json", "image id 4242"]),
    ("unknown-category", V + "data: {dataset: coco, root: '{root}'}\n",
     lambda tmp, tiny: {"root": _edit_annotations(tmp, tiny, lambda c: c["annotations"][0].update(category_id=77))},
     ["instances_test.json", "category id 77"]),
    ("duplicate-image-ids", V + "data: {dataset: coco, root: '{root}'}\n",
     lambda tmp, tiny: {"root": _edit_annotations(tmp, tiny, lambda c: c["images"][1].update(id=c["images"][0]["id"]))},
     ["instances_test.json", "used by two images"]),
    ("malformed-optim-json", V.replace("name: t\n", "name: t\nmodel: '{model}'\n"),
     lambda tmp, tiny: {"model": _model(tmp, "{not json")}, ["optim.json", "field 'input_size'"]),
    ("optim-json-bad-size", V.replace("name: t\n", "name: t\nmodel: '{model}'\n"),
     lambda tmp, tiny: {"model": _model(tmp, '{"input_size": [128, "wide"]}')}, ["optim.json", "input_size"]),
    ("model-without-weights", V.replace("name: t\n", "name: t\nmodel: '{model}'\n"),
     lambda tmp, tiny: {"model": _model(tmp, None, ("config.json",))}, ["field 'model'", "model.safetensors"]),
    ("model-path-missing", V.replace("name: t\n", "name: t\nmodel: ./no/such/model\n"), None, ["field 'model'"]),
    ("model-is-a-file", V.replace("name: t\n", "name: t\nmodel: '{model}'\n"),
     lambda tmp, tiny: {"model": _a_file(tmp)}, ["field 'model'", "is a file"]),
    ("distill-teacher-missing", "name: t\nvariants: [{name: a, steps: [{kind: distill, teacher: ./gone}]}]\n", None,
     ["field 'variants.0.steps.0.teacher'"]),
    ("finetune-absolute-output", F + "output_dir: /tmp/elsewhere\n", None, ["field 'output_dir'", "--output-dir"]),
    ("finetune-1e12-steps", F + "steps: 1000000000000\n", None, ["field 'steps'"]),
    ("finetune-quoted-lr", F + "lr: '0.001'\n", None, ["field 'lr'"]),
    ("finetune-name-escape", "name: ../../x\ntrainer: lightning\n", None, ["field 'name'"]),
    ("finetune-generates-into-users-coco", F + "data: {root: '{root}'}\n",
     lambda tmp, tiny: {"root": _users_coco(tmp, tiny)}, ["field 'data.root'", "refusing"]),
    ("finetune-init-missing", F + "model: {init: ./nope}\n", None, ["field 'model.init'"]),
]


def _broken_json(tmp: Path, tiny: Path) -> Path:
    return _replace_annotations(tmp, tiny, '{"images": [')


def _replace_annotations(tmp: Path, tiny: Path, text: str) -> Path:
    root = _users_coco(tmp, tiny)
    (root / "annotations" / "instances_test.json").write_text(text)
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _write_case(tmp: Path, tiny: Path, text, setup) -> Path:
    values = {key: str(value) for key, value in (setup(tmp, tiny) if setup else {}).items()}
    if isinstance(text, str):
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        text = text.encode()
    path = tmp / "spec.yaml"
    path.write_bytes(text)
    return path


def test_the_corpus_is_large():
    assert len(CASES) >= 60 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("text, setup, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_validate_refuses_with_file_field_and_no_traceback(tmp_path, tiny_dataset_root, text, setup, expected):
    path = _write_case(tmp_path, tiny_dataset_root, text, setup)
    before = _snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-m", "optim.validate", str(path)], capture_output=True, text=True,
                            timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert str(tmp_path) in result.stderr, result.stderr  # the file at fault is named (spec, data or model file)
    for text_part in expected:
        assert text_part in result.stderr, result.stderr
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed


RUN_CASES = ["synthetic-into-users-coco", "malformed-optim-json", "1e12-iterations", "duplicate-top-level-key",
             "latin-1-byte", "absolute-output-dir", "box-with-three-numbers"]


@pytest.mark.parametrize("case", RUN_CASES)
def test_run_refuses_before_writing_anything(tmp_path, tiny_dataset_root, case):
    _, text, setup, expected = next(c for c in CASES if c[0] == case)
    path = _write_case(tmp_path, tiny_dataset_root, text, setup)
    before = _snapshot(tmp_path)
    result = subprocess.run([sys.executable, "-m", "optim.run", str(path)], capture_output=True, text=True, timeout=120,
                            check=False, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert all(part in result.stderr for part in expected), result.stderr
    assert _snapshot(tmp_path) == before and not (tmp_path / "reports").exists()
