"""The pinned-comparison benchmark: its quick run loads both kinds of page in Chromium and writes the target.

A smoke run, not a timing gate: the figure is not compared with its limit here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import REPO, run_quick_bench

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = REPO / "bench" / "pinned.py"
DEADLINE = 600.0  # seconds; the quick run takes under a minute on two cores

pytestmark = pytest.mark.browser


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no browser at {CHROMIUM} (apt-get install -y chromium)")
def test_quick_pinned_benchmark_writes_its_target(tmp_path):
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    out = tmp_path / "pinned.json"
    proc = run_quick_bench(SCRIPT, out, DEADLINE)
    result = json.loads(out.read_text())
    target = result["target"]
    assert target["limit"] == 0.3 and isinstance(target["met"], bool)
    for key in ("measured", "plain_median_s", "pinned_median_s", "ratio"):
        assert isinstance(target[key], float) and math.isfinite(target[key]), key
    assert len(result["loads"]["plain_s"]) == len(result["loads"]["pinned_s"]) == 2
    assert all(0 < s < 120 for s in result["loads"]["plain_s"] + result["loads"]["pinned_s"])
    assert "pinned page within 0.3 s" in proc.stdout
