"""The shipped model card's figures are reproduced by the project's own evaluation, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from optim.models.zoo import SHIPPED

WEIGHTS = SHIPPED["synth-detr"]


@pytest.mark.slow
@pytest.mark.skipif(not (WEIGHTS / "metrics.json").exists(), reason="shipped checkpoint not trained yet")
def test_model_card_test_map_is_reproduced(tmp_path):
    card = json.loads((WEIGHTS / "metrics.json").read_text())
    result = subprocess.run([sys.executable, "-m", "optim.evaluation", "synth-detr", "--root", str(tmp_path / "data"),
                             "--split", "test", "--generate"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout)
    for key in ("map", "map_50", "map_small", "map_medium"):
        assert measured[key] == pytest.approx(card["test"][key], abs=1e-4), key
