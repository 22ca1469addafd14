"""Run cost estimates, the refusal limit and its notice, and learning from finished runs."""

from __future__ import annotations

import math

import pytest

from regviz.data import DatasetInfo
from regviz.runs.costs import DEFAULT_MAX_RUN_SECONDS, CostModel, epoch_seconds, max_run_seconds_from_env
from regviz.settings import Settings

IMDB = DatasetInfo(
    "imdb", "v", n_train=9683, n_val=10000, num_features=10000, nnz_per_row=130.6, description=""
)


def model(limit: float = 120.0) -> CostModel:
    return CostModel(lambda name: IMDB if name == "imdb" else None, max_seconds=limit)


def test_bigger_runs_cost_more():
    """Width, depth, epochs, smaller batches and more data each raise the estimate."""
    base = Settings()
    cost = model().estimate
    for bigger in (
        base.replace(width=512), base.replace(depth=4), base.replace(epochs=40),
        base.replace(batch_size=32),
    ):  # fmt: skip
        assert cost(bigger) > cost(base)
    assert epoch_seconds(base.replace(train_fraction=0.5), IMDB) < epoch_seconds(base, IMDB)


def test_the_books_runs_fit_and_a_huge_one_is_refused_with_what_to_lower():
    """The book's runs (16-16, 512-512, L2, dropout) fit the default limit; 4 x 512 for 100 epochs do not."""
    costs = model(DEFAULT_MAX_RUN_SECONDS)
    for book in (Settings(), Settings(width=512), Settings(l2=0.001), Settings(dropout=0.5)):
        assert costs.refusal(book, costs.estimate(book)) is None
    huge = Settings(width=512, depth=4, epochs=100, batch_size=32)
    notice = costs.refusal(huge, costs.estimate(huge))
    assert notice is not None and "REGVIZ_MAX_RUN_SECONDS" in notice
    assert "Lower the epochs, units per layer, hidden layers or training data" in notice


def test_an_unknown_dataset_has_no_estimate():
    """While the dataset is not described yet there is no estimate (and so no refusal)."""
    assert model().estimate(Settings(dataset="synthetic")) is None


def test_finished_runs_correct_the_estimates():
    """On a host twice as slow as the fitted one, estimates move towards twice the model's figure."""
    costs, s = model(), Settings()
    first = costs.estimate(s)
    for _ in range(20):
        costs.learn(s, 2 * first)
    assert costs.estimate(s) == pytest.approx(2 * first, rel=0.01)
    costs.learn(s, 1e9)  # an absurd measurement moves the ratio by a bounded step only
    assert costs.estimate(s) < 3 * first


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, DEFAULT_MAX_RUN_SECONDS), ("", DEFAULT_MAX_RUN_SECONDS), ("30", 30.0), (" 7.5 ", 7.5)],
)
def test_max_run_seconds_from_env(raw, expected):
    """REGVIZ_MAX_RUN_SECONDS sets the limit; unset or blank means the default."""
    environ = {} if raw is None else {"REGVIZ_MAX_RUN_SECONDS": raw}
    assert max_run_seconds_from_env(environ) == expected


@pytest.mark.parametrize("raw", ["0", "-3", "soon", "nan", "inf"])
def test_max_run_seconds_rejects_bad_values(raw):
    """Anything but a positive finite number is an error naming the variable."""
    with pytest.raises(ValueError, match="REGVIZ_MAX_RUN_SECONDS"):
        max_run_seconds_from_env({"REGVIZ_MAX_RUN_SECONDS": raw})


# ---- what a page asks for in total (issue 19 §1) ---------------------------------------------------------

BIG_IMDB = DatasetInfo(  # IMDB as the page server knows it: 15,000 hold-out training rows, 10,000 validation
    "imdb", "v", n_train=15000, n_val=10000, num_features=10000, nnz_per_row=130.6, description=""
)
ISSUE_LINK = Settings(validation="iterated", folds=10, repeats=5, width=512, epochs=100)


class Store:
    """The store's lookup: the runs saved, by key."""

    def __init__(self, stored=()):
        self.keys = {s.key() for s in stored}

    def lookup(self, settings):
        return [] if settings.key() in self.keys else None


def manager(stored=(), limit=DEFAULT_MAX_RUN_SECONDS):
    """A RunManager over IMDB's description whose executor never trains (these tests only ask)."""
    from regviz.runs.manager import RunManager
    from regviz.runs.threads import ThreadExecutor

    costs = CostModel(lambda name: BIG_IMDB, max_seconds=limit)
    executor = ThreadExecutor(lambda s, c: iter(()), 1)
    return RunManager(executor, Store(stored).lookup, lambda s, r: None, costs)


def test_a_fold_is_estimated_on_the_rows_it_trains_on():
    """A fold of K trains on (K-1)/K of the joined split and validates on the rest, as splits.fold_rows
    cuts them (IMDB: 25,000 rows; 10 folds: 22,500 and 2,500), and a fraction cuts the training part."""
    from regviz.runs.costs import split_rows
    from regviz.splits import fold_rows

    for folds, fold, fraction in ((10, 3, 1.0), (4, 0, 1.0), (3, 2, 0.5), (7, 6, 0.3)):
        s = Settings(validation="kfold", folds=folds, fold=fold, train_fraction=fraction)
        train, val = fold_rows(25000, folds, fold)
        assert split_rows(s, BIG_IMDB) == (max(1, math.ceil(len(train) * fraction)), len(val))
    assert split_rows(Settings(), BIG_IMDB) == (15000, 10000)  # hold-out: its fixed split
    fold = Settings(validation="kfold", folds=4, fold=0)
    assert epoch_seconds(fold, BIG_IMDB) > epoch_seconds(Settings(), BIG_IMDB)  # 18,750 rows, not 15,000


def test_the_issues_link_is_refused_as_a_whole_in_one_line():
    """10 folds x 5 repeats of 512 units for 100 epochs: one fold may fit, the 50 do not; one line says
    what to lower, and nothing is queued."""
    from regviz.runs import group

    m = manager()
    try:
        one = m._costs.estimate(ISSUE_LINK.fold_runs()[0])
        assert one < DEFAULT_MAX_RUN_SECONDS < 50 * one
        why = group.refusal(m, ISSUE_LINK)
        assert why is not None and "\n" not in why
        assert why.startswith("This run would take about") and "50 trainings" in why
        assert "Lower the folds, repeats, epochs" in why and "REGVIZ_MAX_RUN_SECONDS" in why
        assert isinstance(group.watch(m, ISSUE_LINK, "a"), group.Refused) and not m._queue
    finally:
        m.shutdown(timeout=5)


def test_the_total_counts_the_baseline_and_pins_and_not_what_is_stored():
    """A regularized K-fold run, its baseline and a pin are summed; a part already stored costs nothing."""
    from regviz.runs import group

    run = Settings(validation="kfold", folds=4, width=64, epochs=20, l2=0.001)
    pin = run.replace(l2=0.01)
    m = manager()
    each = sum(m._costs.estimate(f) for f in run.fold_runs())  # the baseline's folds cost about as much
    m.shutdown(timeout=5)
    limit = 2.5 * each  # the run and its baseline fit; with the pin, three of them do not
    m = manager(limit=limit)
    try:
        assert group.refusal(m, run) is None
        why = group.refusal(m, run, [pin])
        assert why.startswith("This run, its baseline and a pinned run would take about")
        assert "or unpin runs" in why
    finally:
        m.shutdown(timeout=5)
    m = manager(stored=run.baseline().fold_runs(), limit=limit)  # the baseline is in the store
    try:
        assert group.refusal(m, run, [pin]) is None
    finally:
        m.shutdown(timeout=5)


# ---- estimates learn from a run's own epochs (issue 19 §2) -----------------------------------------------


class Interleaving:
    """An executor that trains each job at once, as a worker interleaving it with three others would
    report it: each record's wall-clock seconds four times the epochs' own, the own compute measured."""

    slots = 1

    def __init__(self, own_epoch: float):
        self.own_epoch = own_epoch

    def start(self, job) -> None:
        from dataclasses import replace

        from regviz.records import HIST_EDGES, EpochRecord, LayerStats

        for epoch in range(1, job.settings.epochs + 1):
            record = EpochRecord(
                epoch, 0.5, 0.6, 0.0, 0.5, 0.6, 0.8, 0.7, None, 0.0, (LayerStats(1.0, 0.0),),
                (0,) * (len(HIST_EDGES) - 1),
            )  # fmt: skip
            job.record(replace(record, seconds=4 * self.own_epoch * epoch), compute=self.own_epoch)
        job.end(None)

    def cancel(self, job) -> None:
        job.end(None)

    def close(self, timeout=None) -> bool:
        return True


def test_an_interleaved_run_does_not_change_the_limits_verdict_on_a_fixed_link():
    """A run that shared its worker (wall seconds 4x its epochs' own) teaches the model its own
    seconds: a fixed link just under the limit stays accepted, its estimate unchanged."""
    from regviz.runs.manager import RunManager

    link = Settings(width=512, epochs=30)
    costs = model()
    costs.max_seconds = costs.estimate(link) / 0.9  # the link uses 90 % of the limit
    before = costs.estimate(link)
    other = Settings(width=64, epochs=5)
    own_epoch = costs.estimate(other) / other.epochs  # its own epochs (the trace in them) as estimated
    m = RunManager(Interleaving(own_epoch), lambda s: None, lambda s, r: None, costs)
    run = m.watch(other, "b")
    assert run.state == "done" and run.records()[-1].seconds == pytest.approx(4 * 5 * own_epoch)
    assert costs.estimate(link) == pytest.approx(before)
    assert costs.refusal(link, costs.estimate(link)) is None
    m.shutdown(timeout=1)


def test_one_run_moves_the_estimates_by_a_bounded_step():
    """However slow one run was (a loaded host), it moves every estimate by at most MAX_STEP: a link
    at 90 % of the limit is still accepted after it."""
    from regviz.runs.costs import MAX_STEP

    costs, s = model(), Settings()
    link = Settings(width=512, epochs=30)
    costs.max_seconds = costs.estimate(link) / 0.9
    first, fixed = costs.estimate(s), costs.estimate(link)
    costs.learn(s, 100 * first)
    assert costs.estimate(s) == pytest.approx(MAX_STEP * first)
    assert costs.estimate(link) < costs.max_seconds
    costs.learn(s, first / 100)
    costs.learn(s, first / 100)
    assert costs.estimate(link) == pytest.approx(fixed / MAX_STEP)
