"""The shared view cache: a run's figures are built once per change, whoever asks and however often."""

from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
from conftest import REPO, subprocess_env

from regviz import data, figures, views
from regviz.data import csvfile
from regviz.settings import Settings
from regviz.views import ViewCache, build
from tests.test_runs import record
from tests.test_uploads import flats_csv

S = Settings(dataset="synthetic", epochs=3, l2=0.001)


class StubRun:
    """A run's key, version and records, as the manager's Run gives them."""

    def __init__(self, settings: Settings, records=()):
        self.key, self.version, self._records = settings.key(), 1, list(records)
        self.settings = settings

    def add(self, rec) -> None:
        self._records.append(rec)
        self.version += 1

    def snapshot(self):
        return self.version, list(self._records)


def test_many_tabs_polling_one_run_build_its_figures_once():
    """Ten tabs asking twenty times for an unchanged run and baseline share one built view."""
    run, base = StubRun(S, [record(1)]), StubRun(S.baseline(), [record(1), record(2)])
    cache = ViewCache()
    views = [cache.view(run, base, S, False) for _tab in range(10) for _poll in range(20)]
    assert cache.built == 1 and all(v is views[0] for v in views)


def test_a_new_epoch_or_the_loss_toggle_builds_a_new_view():
    """A new record of the run or of its baseline, or the other loss kind, is a new view."""
    run, base = StubRun(S, [record(1)]), StubRun(S.baseline(), [record(1)])
    cache = ViewCache()
    first = cache.view(run, base, S, False)
    run.add(record(2))
    second = cache.view(run, base, S, False)
    base.add(record(2))
    third = cache.view(run, base, S, False)
    keras = cache.view(run, base, S, True)
    assert cache.built == 4 and (first.epochs, second.epochs, third.epochs) == (1, 2, 2)
    assert keras.loss.layout.yaxis.title.text != third.loss.layout.yaxis.title.text


def test_a_view_holds_what_the_figure_builders_make():
    """The view's figures, CSV and reading equal the pure builders' output for the same records."""
    records, baseline = [record(1), record(2)], [record(1), record(2), record(3)]
    view = build(records, baseline, S, False)
    assert view.loss.to_dict() == figures.loss_figure(records, baseline, S).to_dict()
    assert view.norms.to_dict() == figures.weight_norms_figure(records, baseline, S.epochs).to_dict()
    assert view.csv == figures.curves_csv(records, baseline)


def test_the_csv_is_made_when_first_asked_for_and_a_page_of_charts_imports_no_pandas():
    """Building a view makes no CSV (polls of a training run never download it); the first read makes
    it, with the baseline's rows first. A fresh process that builds a page's view and figures has not
    imported pandas (0.3 s of a fresh server's first page), until the CSV is asked for."""
    records, baseline = [record(1)], [record(1), record(2)]
    view = build(records, baseline, S, False)
    assert "csv" not in vars(view)
    assert view.csv.splitlines()[0].startswith("run,") and view.csv.count("\nbaseline,") == 2
    assert "csv" in vars(view) and view.csv is view.csv
    assert build(records, None, S, False).csv.count("\nrun,") == 1
    script = (
        "import sys\n"
        "import ui.common\n"
        "from regviz.settings import Settings\n"
        "from regviz.views import build\n"
        "from tests.test_runs import record\n"
        "view = build([record(1)], [record(1)], Settings(dataset='synthetic', epochs=3), False)\n"
        "view.loss.to_json(), view.hist.to_json()\n"
        "print('pandas' in sys.modules)\n"
        "view.csv\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=subprocess_env()
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]


def test_the_cache_is_bounded_and_safe_for_many_threads():
    """Concurrent tabs on many runs: no error, and no more views kept than the bound."""
    cache, errors = ViewCache(keep=8), []

    def tab(i):
        try:
            for j in range(20):
                run = StubRun(S.replace(seed=(i * 20 + j) % 12), [record(1)])
                cache.view(run, run, run.settings, False)
        except Exception as e:  # collected: an assert in a thread would be lost
            errors.append(e)

    threads = [threading.Thread(target=tab, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache._views) <= 8


class TimedRun(StubRun):
    """A StubRun with the start time and end state the redraw gap reads."""

    def __init__(self, settings: Settings, started_at=None, finished=False):
        super().__init__(settings)
        self.started_at, self.finished = started_at, finished


def test_a_tab_polls_about_ten_times_over_the_longest_run_from_half_a_second_to_two():
    assert views.poll_seconds([1.5]) == views.MIN_GAP_S  # the book's 16-16
    assert views.poll_seconds([15.0, 2.0]) == 1.5  # a 512-512 run over its baseline
    assert views.poll_seconds([120.0]) == views.MAX_GAP_S
    assert views.poll_seconds([120.0, None]) == views.MIN_GAP_S  # not estimated: as often as ever
    assert views.poll_seconds([]) == views.MIN_GAP_S


def test_the_redraw_gap_grows_with_the_time_trained_and_is_zero_once_both_runs_ended():
    now = 1000.0
    base = TimedRun(S.baseline(), started_at=now - 100, finished=True)
    assert views.redraw_gap(TimedRun(S, started_at=now - 1), base, now) == views.MIN_GAP_S
    assert views.redraw_gap(TimedRun(S, started_at=now - 6), base, now) == 1.5
    assert views.redraw_gap(TimedRun(S, started_at=now - 60), base, now) == views.MAX_GAP_S
    assert views.redraw_gap(TimedRun(S, started_at=None), base, now) == 0.0  # queued, nothing to draw often
    ended = TimedRun(S, started_at=now - 60, finished=True)
    assert views.redraw_gap(ended, base, now) == 0.0


def test_a_poll_within_the_gap_draws_the_view_it_drew_last_and_the_next_one_after_it():
    session: dict = {}
    run = TimedRun(S, started_at=time.time() - 60)  # gap: MAX_GAP_S
    base = TimedRun(S.baseline(), started_at=time.time() - 60, finished=True)
    cache = ViewCache()
    first = cache.view(run, base, S, False)
    assert views.to_draw(session, first, run, base, now=10.0) is first
    run.add(record(1))
    second = cache.view(run, base, S, False)
    assert second is not first
    assert views.to_draw(session, second, run, base, now=10.0 + views.MAX_GAP_S / 2) is first
    assert views.to_draw(session, second, run, base, now=10.0 + views.MAX_GAP_S + 0.01) is second
    run.add(record(2))
    run.finished = True  # the poll after the last epoch draws it at once
    third = cache.view(run, base, S, False)
    assert views.to_draw(session, third, run, base, now=10.0 + views.MAX_GAP_S + 0.02) is third


def test_a_full_script_run_or_another_run_draws_the_newest_view_at_once():
    session: dict = {}
    run, base = TimedRun(S, started_at=time.time() - 60), TimedRun(S.baseline(), started_at=time.time() - 60)
    cache = ViewCache()
    first = cache.view(run, base, S, False)
    views.to_draw(session, first, run, base, now=10.0)
    run.add(record(1))
    second = cache.view(run, base, S, False)
    views.forget_drawn(session)
    assert views.to_draw(session, second, run, base, now=10.1) is second
    other = TimedRun(S.replace(l2=0.01), started_at=time.time())
    fresh = cache.view(other, base, S, False)
    assert views.to_draw(session, fresh, other, base, now=10.2) is fresh


class StatefulRun(StubRun):
    """A StubRun with the state the comparison table shows."""

    def __init__(self, settings: Settings, records=(), state="done"):
        super().__init__(settings, records)
        self.state = state


def test_a_pinned_runs_new_epoch_builds_a_new_view_with_its_table_row():
    cache = ViewCache()
    run, base = StatefulRun(S, [record(1)]), StatefulRun(S.baseline(), [record(1)])
    pin = StatefulRun(S.replace(l2=0.01), state="running")
    first = cache.view(run, base, S, False, [pin])
    assert cache.view(run, base, S, False, [pin]) is first
    assert [row["run"] for row in first.table] == ["this run", "baseline", "pin 1"]
    assert first.table[2]["differs"] == "L2 0.01" and first.table[2]["best_epoch"] is None
    pin.add(record(1))
    second = cache.view(run, base, S, False, [pin])
    assert second is not first and second.table[2]["best_epoch"] == 1
    assert "validation (pin 1: L2 0.01)" in [t.name for t in second.loss.data]
    assert cache.view(run, base, S, False).table == ()  # no pins, no table


# ---- the CSV download: the pinned runs too, under a name that says what it holds ----------------------


def losses(epochs: int, start: float) -> list:
    """Records 1..epochs whose validation data loss falls from `start` by 0.01 an epoch."""
    return [dataclasses.replace(record(e), val_data_loss=start - 0.01 * e) for e in range(1, epochs + 1)]


def test_the_csv_holds_the_pinned_runs_rows_after_the_run_and_baseline():
    """Each pinned run's epochs follow the run's and the baseline's, named as in the legends."""
    run, base, pin = losses(2, 0.6), losses(3, 0.7), losses(2, 0.5)
    cache = ViewCache()
    view = cache.view(
        StatefulRun(S, run), StatefulRun(S.baseline(), base), S, False,
        [StatefulRun(S.replace(l2=0.01), pin), StatefulRun(S.replace(l2=0.0), [])],
    )  # fmt: skip
    table = pd.read_csv(io.StringIO(view.csv))
    assert table["run"].tolist() == ["baseline"] * 3 + ["run"] * 2 + ["pin 1: L2 0.01"] * 2
    for label, records in (("baseline", base), ("run", run), ("pin 1: L2 0.01", pin)):
        rows = table[table["run"] == label]
        assert rows["epoch"].tolist() == [r.epoch for r in records]
        assert rows["val_data_loss"].tolist() == pytest.approx([r.val_data_loss for r in records], rel=1e-12)
    assert view.csv_name == "synthetic_epochs-3_l2-0.001_vs_baseline_pins_l2-0.01_no-regularization.csv"


SAFE = re.compile(r"[a-z0-9][a-z0-9._-]*\.csv")


@pytest.mark.parametrize(
    ("settings", "pinned", "name"),
    [
        (Settings(l2=0.001), (), "imdb_l2-0.001_vs_baseline.csv"),
        (Settings(), (), "imdb_baseline.csv"),
        (Settings(width=4, dropout=0.5), (), "imdb_width-4_dropout-0.5_vs_baseline.csv"),
        (Settings.for_dataset("reuters", train_fraction=0.5, l1=1e-4), (),
         "reuters_training-data-50pct_l1-0.0001_vs_baseline.csv"),
        (Settings.for_dataset("boston"), (), "boston_baseline.csv"),
        (Settings(l2=0.001), ("dropout 0.5", "no regularization"),
         "imdb_l2-0.001_vs_baseline_pins_dropout-0.5_no-regularization.csv"),
    ],
)  # fmt: skip
def test_the_csvs_file_name_says_the_dataset_and_what_differs(settings, pinned, name):
    """The name is the dataset, the shared changes from its defaults, the run's regularizers and the pins."""
    assert views.csv_name(settings, pinned) == name and SAFE.fullmatch(name)


def test_many_pins_are_counted_and_an_uploaded_file_is_named_by_its_file_in_safe_characters():
    """Six long pins make the name too long: they are counted. An upload is named by its file and
    target (its dataset name is a hash), with folders, spaces and markup left out."""
    pinned = [f"L2 0.0{i}, width {2**i}, training data 50%" for i in range(6)]
    name = views.csv_name(Settings(l2=0.001), pinned)
    assert name == "imdb_l2-0.001_vs_baseline_and-6-pins.csv"
    prepared = csvfile.prepare(csvfile.read_table(flats_csv(), "..\\My <b>flats (2024).csv"), "price")
    data.add_upload(prepared, holder="s")
    try:
        name = views.csv_name(Settings.for_dataset(prepared.name, l2=0.001), ())
    finally:
        data.forget_upload(prepared.name)
    assert SAFE.fullmatch(name) and name.startswith("my-")  # no folder, the <b> markup gone
    assert name.endswith("flats-2024-price_l2-0.001_vs_baseline.csv")
    assert views.csv_name(Settings.for_dataset(prepared.name), ()) == "uploaded-file_baseline.csv"
