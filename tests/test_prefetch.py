"""Before class: the neighbourhood prefetch trains, counts, resumes, and keeps within its budget."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import REPO, subprocess_env

from regviz import data, prefetch
from regviz.settings import FRACTION_STEPS, PENALTY_STEPS, PRESETS, WIDTH_STEPS, Settings
from regviz.store import RunStore

SMALL = ["--dataset", "synthetic", "--preset", "Smaller 4-4", "--epochs", "2"]
SMALL_RUNS = 9  # 4-4 with l2 1e-5, l1 1e-5, dropout 0.05, width 2 or 8, depth 1 or 3, 90 % data: see below
DEADLINE_S = 300


def command(*args: str) -> list[str]:
    """The prefetch command line."""
    return [sys.executable, "-m", "regviz", "prefetch", *args]


def run(*args: str, store) -> subprocess.CompletedProcess:
    """`python -m regviz prefetch ...` on this store, in a fresh interpreter."""
    return subprocess.run(
        command(*args), cwd=REPO, env=subprocess_env(REGVIZ_STORE=str(store)),
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip


def rows(store) -> list[tuple[dict, list]]:
    """(settings, records) of every stored row, read with plain sqlite3."""
    with sqlite3.connect(store) as db:
        got = db.execute("SELECT settings, records FROM runs").fetchall()
    return [(json.loads(s), json.loads(r)) for s, r in got]


def test_one_preset_neighbourhood_worked_by_hand():
    """L2 0.001 on IMDB: itself, 9 one-stop neighbours, and the 6 baselines they do not share: 16."""
    base = Settings()
    preset = base.replace(l2=0.001)
    expected = {
        preset,
        *(preset.replace(l2=v) for v in (3e-4, 3e-3)),
        preset.replace(l1=1e-5), preset.replace(dropout=0.05),
        *(preset.replace(width=w) for w in (8, 32)), *(preset.replace(depth=d) for d in (1, 3)),
        preset.replace(train_fraction=0.9),
        base, *(base.replace(width=w) for w in (8, 32)), *(base.replace(depth=d) for d in (1, 3)),
        base.replace(train_fraction=0.9),
    }  # fmt: skip
    got = prefetch.neighbourhood(["imdb"], ["L2 0.001"])
    assert len(got) == len(set(got)) == 16
    assert set(got) == expected


def test_whole_neighbourhood_is_presets_their_one_stop_neighbours_and_baselines():
    """Every run of the default neighbourhood is a preset, one control one stop from one, or such a run's
    baseline; every such neighbour is in it; the count matches one made from the stops tables."""
    got = prefetch.neighbourhood(["imdb", "reuters", "boston"])
    presets = [Settings.for_dataset(PRESETS[n].get("dataset", "imdb")).preset(n) for n in PRESETS]
    steps = {"l2": PENALTY_STEPS, "l1": PENALTY_STEPS, "width": WIDTH_STEPS, "train_fraction": FRACTION_STEPS}

    def one_stop(p: Settings) -> list[Settings]:
        out = []
        for name, stops in steps.items():
            i = stops.index(getattr(p, name))
            out += [p.replace(**{name: stops[j]}) for j in (i - 1, i + 1) if 0 <= j < len(stops)]
        out += [p.replace(depth=d) for d in (p.depth - 1, p.depth + 1) if 1 <= d <= 4]
        out += [p.replace(dropout=round(v, 2)) for v in (p.dropout - 0.05, p.dropout + 0.05) if 0 <= v <= 0.8]
        return out

    wanted = {s for p in presets for s in [p, *one_stop(p)]}
    wanted |= {s.baseline() for s in wanted}
    assert len(got) == len(set(got))
    assert set(got) == wanted
    assert len(prefetch.runs_of(got)) == len(got) + 3 * sum(s.validation == "kfold" for s in got)


def test_killed_and_restarted_trains_nothing_twice_and_leaves_no_half_run(tmp_path):
    """SIGKILL after the first stored run, then a restart (on 2 workers): every stored row is a whole run,
    the restart skips exactly what was stored and trains the rest, and the store ends with each run once."""
    store = tmp_path / "runs.sqlite"
    proc = subprocess.Popen(
        command(*SMALL), cwd=REPO, env=subprocess_env(REGVIZ_STORE=str(store)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not (store.exists() and RunStore(store).count() >= 1):
            assert proc.poll() is None and time.monotonic() < deadline, "no run was stored"
            time.sleep(0.05)  # poll interval, bounded by the deadline
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    kept = rows(store)
    assert 1 <= len(kept) <= SMALL_RUNS
    assert all(len(records) == 2 for _, records in kept)  # whole runs only
    again = run(*SMALL, "--workers", "2", store=store)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout.splitlines()[-1])
    assert summary["runs"] == SMALL_RUNS
    assert summary["already_stored"] == len(kept)
    assert summary["trained"] == SMALL_RUNS - len(kept)
    assert summary["left"] == 0
    final = rows(store)
    assert len(final) == SMALL_RUNS
    wanted = prefetch.neighbourhood(["synthetic"], ["Smaller 4-4"], 2)
    assert sorted(json.dumps(s, sort_keys=True) for s, _ in final) == sorted(
        json.dumps(s.as_dict(), sort_keys=True) for s in wanted
    )
    assert "prefetch [" in again.stderr  # the progress bar


def test_a_spent_budget_starts_nothing(tmp_path):
    """--budget-minutes 0: no run is trained or stored, and the summary says all are left."""
    store = tmp_path / "runs.sqlite"
    done = run(*SMALL, "--budget-minutes", "0", store=store)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert (summary["trained"], summary["left"]) == (0, SMALL_RUNS)
    assert not store.exists() or RunStore(store).count() == 0


def test_a_run_still_training_at_the_budget_is_cut_and_not_stored(tmp_path):
    """A run whose deadline has passed stops at once and stores nothing; with time left it is stored."""
    store = RunStore(tmp_path / "runs.sqlite")
    settings = Settings(dataset="synthetic", width=4, epochs=3)
    version = data.describe(data.load("synthetic")).version
    where = str(store.path)
    outcome, _ = prefetch.train_one(settings.as_dict(), version, where, deadline=time.time())
    assert outcome == "cut"
    assert store.count() == 0
    outcome, _ = prefetch.train_one(settings.as_dict(), version, where, deadline=time.time() + DEADLINE_S)
    assert outcome == "trained"
    assert len(store.get(settings, version)) == 3
    assert prefetch.train_one(settings.as_dict(), version, where, deadline=time.time())[0] == "stored"


def test_bad_options_get_one_line(tmp_path):
    """An unknown preset, dataset or worker count: exit 2 and one line, no traceback."""
    for args in (["--preset", "Huge"], ["--dataset", "mnist"], ["--workers", "0"], ["--epochs", "0"]):
        done = run(*args, store=tmp_path / "runs.sqlite")
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_ctrl_c_stops_with_one_line_and_keeps_what_is_stored(tmp_path):
    """SIGINT after the first stored run: exit 130 with one line saying how to go on, no traceback,
    and every stored row a whole run."""
    store = tmp_path / "runs.sqlite"
    proc = subprocess.Popen(
        command(*SMALL), cwd=REPO, env=subprocess_env(REGVIZ_STORE=str(store)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not (store.exists() and RunStore(store).count() >= 1) and proc.poll() is None:
            assert time.monotonic() < deadline, "no run was stored"
            time.sleep(0.05)  # poll interval, bounded by the deadline
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        proc.kill()
    assert all(len(records) == 2 for _, records in rows(store))
    if proc.returncode == 0:
        return  # it had already finished every run when the signal came: nothing to stop
    assert proc.returncode == 130
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("prefetch: stopped")
