"""The remedies page's runs (regviz/remedies.py) and its small multiples (figures.remedy_figure)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from regviz import data, figures, remedies
from regviz.settings import Settings
from regviz.store import RunStore
from tests.test_app import APP, SCRIPT_TIMEOUT, app, store_path  # noqa: F401 (the app's fixtures)
from tests.test_figures import curve


def test_one_baseline_then_each_remedy_changes_one_thing_of_it():
    base, *others = remedies.runs("synthetic", 3)
    assert base == Settings(dataset="synthetic", seed=3, train_fraction=0.5) and base.is_baseline
    changed = [
        {f.name for f in dataclasses.fields(Settings) if getattr(o, f.name) != getattr(base, f.name)}
        for o in others
    ]
    assert changed == [{"train_fraction"}, {"width"}, {"l2"}, {"dropout"}, {"l1"}]
    assert [o.train_fraction for o in others][0] == 1.0 and others[1].width == 4
    assert (others[2].l2, others[3].dropout, others[4].l1) == (0.001, 0.5, 0.001)  # the book's values
    assert len(remedies.REMEDIES) == len(others)


def test_a_small_multiple_draws_remedy_solid_over_the_dashed_baseline_with_best_epochs():
    run, base = curve([0.5, 0.4, 0.45]), curve([0.5, 0.35, 0.6])
    fig = figures.remedy_figure("Dropout", run, base, 3)
    names = [t.name for t in fig.data]
    assert names == [
        "train (baseline)", "validation (baseline)", "train (this run)", "validation (this run)",
        "best epoch (baseline)", "best epoch (this run)",
    ]  # fmt: skip
    assert fig.data[1].line.dash == "dash" and fig.data[3].line.dash == "solid"
    assert list(fig.data[4].x) == [2] and list(fig.data[5].x) == [2]
    assert fig.layout.showlegend is False and fig.layout.height == figures.REMEDY_PX
    assert list(fig.layout.xaxis.range) == [0.5, 3.5]


def test_a_small_multiple_with_nothing_yet_says_it_waits():
    fig = figures.remedy_figure("L1", [], [], 20)
    assert not fig.data and "waiting" in fig.layout.annotations[0].text


# ---- the verdict under each small multiple ------------------------------------------------------------

# the half-data baseline and "more data" on the shared IMDB reviews, in shape: more data is lower at its
# best epoch and higher at the end
BASE = [0.50, 0.40, 0.35, 0.33, 0.32, 0.315, 0.312, 0.309, 0.32, 0.33, 0.35, 0.41]
MORE = [0.45, 0.33, 0.29, 0.284, 0.30, 0.33, 0.36, 0.39, 0.42, 0.45, 0.48, 0.51]


def best_and_end(vals) -> tuple[float, int, float]:
    """(lowest, its 1-based epoch, last) by NumPy: the reference the verdicts are checked against."""
    v = np.asarray(vals)
    return float(v.min()), int(v.argmin()) + 1, float(v[-1])


def test_a_verdict_gives_best_epoch_and_end_against_the_baseline_in_plain_words():
    """More data: lower at its best epoch, higher at the end, and the line says what that means."""
    low, best, end = best_and_end(MORE)
    base_low, base_best, base_end = best_and_end(BASE)
    line = remedies.verdict("More data", curve(MORE), curve(BASE))
    assert line == (
        f"More data: best {low:.3f} at epoch {best} (baseline {base_low:.3f} at epoch {base_best}): lower; "
        f"at epoch {len(MORE)}, {end:.2f} (baseline {base_end:.2f}): higher — more data helps the best "
        "epoch, but this run overfits more by the end."
    )


def test_a_best_within_two_percent_of_the_baselines_is_about_the_same():
    """L2 0.001 on IMDB: best 0.310 against 0.309 reads as the same; only its end is lower."""
    l2 = [0.52, 0.41, 0.36, 0.34, 0.325, 0.315, 0.311, 0.310, 0.312, 0.32, 0.33, 0.36]
    low, best, _ = best_and_end(l2)
    line = remedies.verdict("Weight regularization", curve(l2), curve(BASE))
    assert f"best {low:.3f} at epoch {best} (baseline 0.309 at epoch 8): about the same;" in line
    assert "0.36 (baseline 0.41): lower — no better at its best epoch: it only overfits less" in line


@pytest.mark.parametrize(
    ("scale_best", "scale_end", "words"),
    [
        (0.9, 0.9, "lower; .*lower — a remedy helps, at the best epoch and at the end"),
        (1.1, 1.1, "higher; .*higher — worse, at its best epoch and at the end"),
        (1.1, 0.9, "higher; .*lower — worse at its best epoch, though it overfits less by the end"),
        (1.0, 1.0, "about the same; .*about the same — no clear difference from the baseline"),
    ],
)
def test_each_pair_of_comparisons_has_its_own_plain_words(scale_best, scale_end, words):
    """Lower, higher or about the same at the best epoch and at the end: each pair reads in words."""
    run = [v * scale_best for v in BASE[:-1]] + [BASE[-1] * scale_end]
    assert re.search(words, remedies.verdict("A remedy", curve(run), curve(BASE)))


def test_while_they_train_the_verdict_compares_the_epochs_both_have():
    """A remedy 6 epochs in over a baseline 4 epochs in: best and end are read over epochs 1 to 4."""
    low, best, end = best_and_end(MORE[:4])
    base_low, base_best, base_end = best_and_end(BASE[:4])
    line = remedies.verdict("More data", curve(MORE[:6]), curve(BASE[:4]))
    assert f"best {low:.3f} at epoch {best} (baseline {base_low:.3f} at epoch {base_best})" in line
    assert f"at epoch 4, {end:.2f} (baseline {base_end:.2f})" in line


def test_a_verdict_without_epochs_or_baseline_still_reads():
    """No epochs yet, or no baseline yet: one line each, with what is known."""
    assert remedies.verdict("Dropout", [], curve(BASE)) == "Dropout: waiting for its first epoch."
    low, best, end = best_and_end(MORE)
    assert remedies.verdict("Dropout", curve(MORE), []) == (
        f"Dropout: best {low:.3f} at epoch {best}, {end:.2f} at epoch {len(MORE)} (the baseline has no "
        "epochs yet)."
    )
    assert remedies.baseline_line(curve(BASE)).startswith("Baseline: lowest validation loss 0.309 at epoch 8")


def test_two_close_values_get_digits_until_they_differ_and_large_ones_no_exponent():
    """0.3091 against 0.3094 is shown with four digits; a regression loss of 1234.5 as 1234."""
    line = remedies.verdict("L1", curve([0.5, 0.3091]), curve([0.5, 0.3094]))
    assert "best 0.3091 at epoch 2 (baseline 0.3094 at epoch 2)" in line
    assert "best 1234 at epoch 1" in remedies.verdict("L1", curve([1234.5]), [])


# ---- the page -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("app")
def test_the_remedies_page_shows_each_panels_verdict_and_what_to_compare(temporary_store):
    """With the six runs in the store, the page says what to compare, the baseline's line, and under each
    chart its verdict, its numbers read off the stored curves by NumPy."""
    curves = [BASE, MORE, [v * 1.3 for v in BASE], [v * 1.004 for v in BASE], BASE[:-1] + [0.35], MORE]
    wanted = remedies.runs("synthetic", 0)
    store = RunStore(temporary_store)
    for settings, vals in zip(wanted, curves, strict=True):
        store.put(settings, data.load("synthetic").version, curve(vals + [vals[-1]] * (settings.epochs - 12)))
    at = AppTest.from_file(APP, default_timeout=SCRIPT_TIMEOUT)
    at.query_params.update({"dataset": "synthetic"})
    at.switch_page("ui/remedies.py").run()
    assert not at.exception, at.exception
    shown = [m.value for m in at.markdown]
    assert remedies.COMPARE in shown
    bullets = [v.removeprefix("- ") for v in shown if v.startswith("- ")]
    assert bullets[0].startswith("Baseline: lowest validation loss 0.309 at epoch 8")
    verdicts = dict(line.split(": ", 1) for line in bullets[1:])
    assert sorted(verdicts) == sorted(m.title for m in remedies.REMEDIES)  # in the columns' order
    for title, vals in zip((m.title for m in remedies.REMEDIES), curves[1:], strict=True):
        low, best, _ = best_and_end(vals + [vals[-1]] * 8)
        assert verdicts[title].startswith(f"best {low:.3f} at epoch {best} (baseline 0.309 at epoch 8)")
    assert "more data helps the best epoch, but this run overfits more by the end" in verdicts["More data"]
    assert "worse, at its best epoch and at the end" in verdicts["A smaller network"]
    assert "no clear difference" in verdicts["Weight regularization"]
    assert "no better at its best epoch: it only overfits less" in verdicts["Dropout"]
