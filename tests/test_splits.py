"""Evaluation protocols (regviz/splits.py, Settings' validation/folds/repeats, Dataset.fold): folds
that partition the training split, reshuffled between repeats, the same for a seed everywhere."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from regviz import data, splits
from regviz.settings import Settings, SettingsError


@pytest.mark.parametrize("n, folds", [(404, 4), (1000, 3), (11, 10), (7, 2)])
def test_the_validation_parts_are_disjoint_and_cover_the_rows(n, folds):
    parts = [splits.fold_rows(n, folds, k) for k in range(folds)]
    vals = np.concatenate([v for _, v in parts])
    assert sorted(vals.tolist()) == list(range(n))  # every row validates exactly once
    for train, val in parts:
        assert set(train).isdisjoint(val) and len(train) + len(val) == n
    sizes = [len(v) for _, v in parts]
    assert max(sizes) - min(sizes) <= 1  # equal parts, as the book's num_val_samples


def test_plain_k_fold_takes_contiguous_parts_in_order_as_the_book():
    train, val = splits.fold_rows(404, 4, 1)
    assert val.tolist() == list(range(101, 202)) and train.tolist() == [*range(101), *range(202, 404)]


def test_iterated_k_fold_reshuffles_between_repeats_and_is_fixed_by_the_seed():
    a0 = [splits.fold_rows(100, 4, k, repeat=0, seed=3, shuffle=True)[1] for k in range(4)]
    a1 = [splits.fold_rows(100, 4, k, repeat=1, seed=3, shuffle=True)[1] for k in range(4)]
    again = [splits.fold_rows(100, 4, k, repeat=0, seed=3, shuffle=True)[1] for k in range(4)]
    assert all((x == y).all() for x, y in zip(a0, again, strict=True))
    assert any(set(x) != set(y) for x, y in zip(a0, a1, strict=True))  # other folds in the next repeat
    for repeat in (a0, a1):
        assert sorted(np.concatenate(repeat).tolist()) == list(range(100))


def test_k_fold_settings_name_their_fold_runs_and_refuse_what_a_protocol_does_not_use():
    s = Settings.for_dataset("houses", validation="iterated", folds=3, repeats=2)
    runs = s.fold_runs()
    assert [(r.fold, r.repeat) for r in runs] == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert len({r.key() for r in runs}) == 6 and all(r.whole == s for r in runs)
    assert Settings().fold_runs() == [Settings()]
    assert Settings(folds=7) == Settings()  # unused by hold-out: one experiment, one identity
    for params, words in [({"folds": "1", "validation": "kfold"}, "from 2 to 10"),
                          ({"repeats": "3"}, "only with validation iterated"),
                          ({"folds": "5"}, "only with validation kfold or iterated")]:  # fmt: skip
        with pytest.raises(SettingsError) as e:
            Settings.from_params(params)
        assert words in str(e.value)
    assert Settings.for_dataset("boston").to_params() == {"dataset": "boston"}  # the book's 4-fold
    link = Settings.for_dataset("houses", validation="holdout").to_params()
    assert link == {"dataset": "houses", "validation": "holdout"}


def test_a_fold_trains_on_the_rest_of_the_training_split_and_never_on_the_test_split():
    ds = data.houses()
    x_train, y_train, x_val, y_val = ds.fold(4, 2, 0, 0, shuffle=False)
    whole = np.concatenate([ds.y_val, ds.y_train])
    assert len(y_train) + len(y_val) == len(whole) == 404
    np.testing.assert_array_equal(y_val, whole[202:303])
    test_rows = {tuple(r) for r in ds.x_test.values}
    assert not test_rows & {tuple(r) for r in np.concatenate([x_train.values, x_val.values])}
    sparse = data.topics(n_train=1500, n_test=100)
    xs, ys, xv, yv = sparse.fold(3, 0, 0, 0, shuffle=False)
    joined = np.concatenate([sparse.y_val, sparse.y_train])
    np.testing.assert_array_equal(yv, joined[:500])
    np.testing.assert_array_equal(xv.to_dense(), sparse.x_val.take(500).to_dense())


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"validation": "kfold", "folds": 11}, "from 2 to 10"),
        ({"validation": "iterated", "repeats": 6}, "from 2 to 5"),
        ({"validation": "bootstrap"}, "holdout, kfold, iterated"),
        ({"validation": "kfold", "folds": 3, "fold": 3}, "from -1 to 2"),
    ],
)
def test_out_of_range_protocols_are_one_clear_message(fields, words):
    with pytest.raises(SettingsError) as e:
        Settings(**fields)
    assert words in str(e.value)


def test_the_test_split_is_used_by_the_final_run_only():
    """Hold-out and K-fold runs give the same records whatever the test split holds; the final run
    trains on every training row and evaluates on the test split."""
    from regviz.training.loop import rows_of, train

    ds = data.houses(n_train=200, n_test=40)
    broken = dataclasses.replace(ds, x_test=data.DenseRows(np.full_like(ds.x_test.values, np.nan)))
    for settings in (Settings.for_dataset("houses", epochs=2, validation="holdout"),
                     Settings.for_dataset("houses", epochs=2).fold_runs()[1]):  # fmt: skip
        a, b = list(train(settings, dataset=ds)), list(train(settings, dataset=broken))
        assert [r.val_data_loss for r in a] == [r.val_data_loss for r in b]
    final = Settings.for_dataset("houses", epochs=2, train_fraction=0.5).final_run(2)
    x, y, x_val, y_val = rows_of(final, ds)
    assert len(y) == 200 and (x_val.values == ds.x_test.values).all() and final.train_fraction == 1.0
