"""The benchmarks' core split: the server's side and the browser's side never share a core when two exist."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
live = pytest.importorskip("live", reason="bench/live.py needs playwright")

AFFINITY = "import os; print(sorted(os.sched_getaffinity(0)))"


def test_split_gives_the_first_cores_to_the_server_and_the_rest_to_the_benchmark():
    mine = sorted(os.sched_getaffinity(0))
    server, bench = live.split_cores(1)
    assert server == {mine[0]}
    assert bench == (set(mine[1:]) or server)
    with pytest.raises(SystemExit, match="--cores 0"):
        live.split_cores(0)
    with pytest.raises(SystemExit, match="give 1 to"):
        live.split_cores(len(mine) + 1)


def test_a_pinned_child_and_its_own_children_run_on_the_given_cores_only():
    core = sorted(os.sched_getaffinity(0))[-1]
    grandchild = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {AFFINITY!r}])"
    out = subprocess.run(
        [sys.executable, "-c", grandchild], capture_output=True, text=True, preexec_fn=live.pinned({core})
    )
    assert out.stdout.strip() == str([core])
    assert live.pinned(None) is None  # unpinned: the child gets what this process has
