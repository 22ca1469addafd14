"""The remedies page's runs (regviz/remedies.py) and its small multiples (figures.remedy_figure)."""

from __future__ import annotations

import dataclasses

from regviz import figures, remedies
from regviz.settings import Settings
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
