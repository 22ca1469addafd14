"""The benchmark script: its quick run completes and writes both sides, their ratios and the other figures.

A smoke run, not a timing gate: no figure is compared with a target here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, imdb_file, subprocess_env

SCRIPT = REPO / "bench" / "compare.py"
DEADLINE = 600.0  # seconds; the quick run takes under a minute on two cores


@pytest.mark.slow
def test_quick_benchmark_writes_both_sides_and_their_ratios(tmp_path):
    """`compare.py --quick` exits 0, prints the table and writes JSON with reference, regviz and ratios."""
    data = imdb_file()
    if not data.is_file():
        pytest.skip(f"offline IMDB file not found at {data} (set REGVIZ_IMDB_PATH)")
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out), "--data", str(data)],
        capture_output=True, text=True, timeout=DEADLINE, cwd=REPO, env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "plain Keras fit" in proc.stdout and "regviz" in proc.stdout

    result = json.loads(out.read_text())
    assert result["config"]["quick"] is True
    model = result["models"]["16-16"]
    for side in ("reference", "regviz", "reference_same_order"):
        runs = model[side]["runs"]
        assert len(runs) == len(result["config"]["seeds"])
        for run in runs:
            assert run["seconds"] > 0
            assert len(run["val_data_loss"]) == result["config"]["epochs"]
            assert 1 <= run["best_epoch"] <= result["config"]["epochs"]
    ratio = model["ratio"]
    sides = model["regviz"]["mean_seconds"], model["reference"]["mean_seconds"]
    assert ratio["time_mean"] == pytest.approx(sides[0] / sides[1])
    assert {"time_mean", "time_cold", "speedup_mean"} <= ratio.keys()
    assert {"time", "learning"} <= model["targets"].keys()
    assert model["targets"]["learning"]["against"] == "reference_same_order"
    # fed the same batches from the same weights, keras's fit and regviz agree (2 epochs of 16-16)
    same = model["learning"]["same_order"]
    assert same["max_epoch_loss_gap"] < 1e-3 and same["best_epoch_diff"] == 0
    assert {"best_epoch_diff", "min_val_data_loss_diff"} <= model["learning"]["own_shuffle"].keys()
    assert result["memory"]["train_default_mb"] > result["memory"]["tf_keras_only_mb"] > 0
    assert result["latency"]["first_record_seconds"] and result["latency"]["stored_get_seconds"]["max"] > 0
    assert result["machine"]["nproc"] >= 1 and result["machine"]["tensorflow"]
