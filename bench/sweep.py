"""A 16-cell sweep with two local worker processes against one run on the command line, in one run.

    python bench/sweep.py            # 16 cells of 16-16 IMDB runs, 20 epochs, 2 workers: about a minute
    python bench/sweep.py --quick    # 4 cells, 3 epochs (CI: proves the script works)
    python bench/sweep.py --out f.json

Target (issue "Compare and tune"): the sweep's wall time is at most 9 x one run's command-line time
(`python -m regviz train`, start-up included, the median of three); process parallelism alone gives
about 8 (16 cells / 2 workers). Both are whole commands as a user types them, with --no-store, so
every cell trains. Reported beside the ratio: the time per cell, the CPU the sweep used (its worker
processes included) and the one run's training time alone (its last epoch's clock).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import live  # noqa: E402  (the machine's description, shared by the benchmarks)

DEFAULT_OUT = REPO / "bench" / "results" / "sweep.json"
LIMIT = 9.0
WORKERS = 2
FULL = {"epochs": "20", "grid": {"l2": "0,0.0001,0.001,0.01", "dropout": "0,0.25,0.5,0.6"}, "runs": 3}
QUICK = {"epochs": "3", "grid": {"l2": "0,0.001", "dropout": "0,0.5"}, "runs": 1}


def timed(args: list[str]) -> tuple[float, float, list[dict]]:
    """Wall seconds, CPU seconds (the command and every process it waited for) and its JSON lines."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "regviz", *args], capture_output=True, text=True, cwd=REPO, env=environment()
    )  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"`python -m regviz {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def environment() -> dict[str, str]:
    """The caller's environment, the IMDB file (the shared one unless REGVIZ_IMDB_PATH names another),
    quiet TensorFlow, and the worker count left to the sweep's option."""
    imdb = os.environ.get("REGVIZ_IMDB_PATH") or str(live.DEFAULT_IMDB)
    env = {**os.environ, "REGVIZ_IMDB_PATH": imdb, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    env.pop("REGVIZ_MAX_TRAININGS", None)
    env.pop("RAY_ADDRESS", None)  # local workers: what the target is about
    return env


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="4 cells of 3 epochs: proves the script works")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    plan = QUICK if args.quick else FULL
    if not Path(environment()["REGVIZ_IMDB_PATH"]).is_file():
        sys.exit(f"no IMDB file at {environment()['REGVIZ_IMDB_PATH']}: set REGVIZ_IMDB_PATH")
    common = ["--width", "16", "--epochs", plan["epochs"], "--no-store"]
    one = [timed(["train", *common]) for _ in range(plan["runs"])]
    one_wall = statistics.median(w for w, _, _ in one)
    trained = statistics.median(lines[-2]["seconds"] for _, _, lines in one)  # the last epoch's clock
    grid = [a for name, values in plan["grid"].items() for a in (f"--{name}", values)]
    wall, cpu, lines = timed(["sweep", *common, *grid, "--workers", str(WORKERS)])
    cells = len(lines) - 1
    ratio = wall / one_wall
    result = {
        "machine": live.machine(),
        "plan": {**plan, "workers": WORKERS, "cells": cells},
        "one_run": {"command_s": [round(w, 3) for w, _, _ in one], "median_s": round(one_wall, 3),
                    "training_s": round(trained, 3)},
        "sweep": {"wall_s": round(wall, 3), "per_cell_s": round(wall / cells, 3), "cpu_s": round(cpu, 3),
                  "cores_used": round(cpu / wall, 2), "cells_over_training_s": round(wall / trained, 2)},
        "target": {"measured": round(ratio, 3), "limit": LIMIT, "met": ratio <= LIMIT,
                   "what": f"{cells}-cell sweep with {WORKERS} workers / one run on the command line"},
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    verdict = "met" if result["target"]["met"] else "NOT met"
    print(f"one run on the command line: {one_wall:.2f} s (median of {len(one)}; training {trained:.2f} s)")
    print(f"{cells}-cell sweep, {WORKERS} workers: {wall:.2f} s, {wall / cells:.2f} s per cell, "
          f"{cpu / wall:.2f} cores")  # fmt: skip
    print(f"sweep within {LIMIT:g} x one run: x{ratio:.2f}, {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
