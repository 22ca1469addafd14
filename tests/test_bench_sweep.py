"""The sweep benchmark: its quick run times one command-line run and a 4-cell sweep on two workers
and writes the target. A smoke run, not a timing gate: the ratio is not compared with its limit here."""

from __future__ import annotations

import json
import math

import pytest
from conftest import REPO, imdb_file, run_quick_bench

SCRIPT = REPO / "bench" / "sweep.py"
DEADLINE = 600.0  # seconds; the quick run takes about 15 s on two cores


@pytest.mark.skipif(not imdb_file().is_file(), reason="the benchmark trains on the shared IMDB file")
def test_quick_sweep_benchmark_writes_its_target(tmp_path):
    out = tmp_path / "sweep.json"
    proc = run_quick_bench(SCRIPT, out, DEADLINE)
    result = json.loads(out.read_text())
    target = result["target"]
    assert target["limit"] == 9.0 and isinstance(target["met"], bool)
    assert isinstance(target["measured"], float) and math.isfinite(target["measured"])
    assert target["measured"] > 0
    assert result["plan"]["cells"] == 4 and result["plan"]["workers"] == 2
    assert 0 < result["sweep"]["cores_used"] <= result["machine"]["cores"] + 0.5
    assert "sweep within 9 x one run" in proc.stdout
