"""Run cost estimates, the refusal limit and its notice, and learning from finished runs."""

from __future__ import annotations

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
