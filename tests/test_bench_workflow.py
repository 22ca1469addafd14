"""The workflow benchmark: its quick run trains Reuters and Boston both ways and writes every target.

A smoke run, not a timing gate: no figure is compared with its limit here.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from conftest import REPO, run_quick_bench

from regviz import data

SCRIPT = REPO / "bench" / "workflow.py"
DEADLINE = 600.0  # seconds; the quick run takes about 20 s on two cores
SHARED = REPO.parent / "shared" / "data"
FILES = {
    data.REUTERS_PATH_ENV: SHARED / "reuters_r21578.npz",
    data.BOSTON_PATH_ENV: SHARED / "boston_housing.npz",
}
MISSING = [env for env, default in FILES.items() if not Path(os.environ.get(env) or default).is_file()]


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.skipif(bool(MISSING), reason=f"the benchmark trains on the shared files ({', '.join(MISSING)})")
def test_quick_workflow_benchmark_writes_every_target(tmp_path):
    """`workflow.py --quick` exits 0, prints the table, and writes a finite figure, a limit and a verdict
    for each target, with one run per side and seed."""
    out = tmp_path / "workflow.json"
    proc = run_quick_bench(SCRIPT, out, DEADLINE)
    assert "target" in proc.stdout and "Boston 4-fold" in proc.stdout

    result = json.loads(out.read_text())
    assert result["quick"] is True and result["plan"]["seeds"] == [0]
    targets = result["targets"]
    assert {"reuters_time", "reuters_best_epoch", "reuters_min_val_loss", "boston_time"} <= targets.keys()
    for name, target in targets.items():
        assert _number(target["measured"]) and _number(target["limit"]), name
        assert isinstance(target["met"], bool), name
    for side in ("plain fit", "regviz", "plain fit, regviz's batches"):
        (run,) = result["reuters"][side]
        assert len(run["val_loss"]) == result["plan"]["reuters_epochs"] == 3 and run["seconds"] > 0
    (spread,) = result["reuters"]["batch_order_spread"]  # regviz's seed-0 weights on two other orders
    (own,) = result["reuters"]["regviz"]
    assert spread["order_seeds"] == [1000, 1001] and all(1 <= e <= 3 for e in spread["best_epoch"])
    assert spread["with_the_runs_order"] == own["best_epoch"]
    assert 0 <= spread["orders_within_tolerance_of_plain_fit"] <= 2
    assert round(own["min_val_loss"], 5) not in spread["min_val_loss"]  # other orders: other curves
    for side in ("plain fit", "regviz"):
        (run,) = result["boston"][side]
        assert len(run["fold_val_mae"]) == 4 and all(_number(m) and m > 0 for m in run["fold_val_mae"])
    assert result["reference"]["same_initial_weights"] is True
    assert result["machine"]["cores"] >= 1 and len(result["machine"]["load_avg_end"]) == 3
