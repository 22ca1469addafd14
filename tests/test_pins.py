"""Pinned runs (regviz/pins.py): their link text reads back, hostile pin lists are cut with reasons,
legend labels name what differs from the baseline, and the table's figures come from the records."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regviz import pins
from regviz.settings import Settings, SettingsError
from tests.test_runs import record as plain_record

BASE = Settings()


def record(epoch: int, val: float):
    """A hand-made record with this validation data loss and a penalty of 0.01."""
    return dataclasses.replace(plain_record(epoch), val_data_loss=val, penalty=0.01, data_loss=0.3)


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),
        Settings(l2=0.001),
        Settings(dropout=0.5, width=64),
        Settings(dataset="synthetic", seed=3, l1=3e-5),
    ],
)
def test_a_pin_reads_back_from_its_link_text(settings):
    text = pins.encode(settings)
    assert pins.decode(text) == settings
    assert "&" not in text and "=" not in text  # one query value, whatever the settings


def test_link_texts_are_short_and_readable():
    assert pins.encode(Settings()) == "default"
    assert pins.encode(Settings(l2=0.001)) == "l2:0.001"
    assert pins.encode(Settings(width=64, dropout=0.5)) == "width:64,dropout:0.5"


@pytest.mark.parametrize(
    "text",
    ["l2", "l2:", "l2:lots", "colour:red", "l2:0.001,l2:0.01", "width:64,,", "x" * 400, ":0.1", "l2:-1"],
)
def test_malformed_pin_texts_raise_a_settings_error(text):
    with pytest.raises(SettingsError):
        pins.decode(text)


def test_a_hostile_pin_list_keeps_the_good_ones_and_says_why_for_the_rest():
    texts = ["l2:0.001", "nonsense", "l2:0.001", *(f"l2:{v}" for v in (1e-5, 3e-5, 1e-4, 3e-4, 3e-3, 1e-2))]
    kept, dropped = pins.read(texts)
    assert kept == [Settings(l2=v) for v in (0.001, 1e-5, 3e-5, 1e-4, 3e-4, 3e-3)]
    reasons = [why for _, _, why in dropped]
    assert reasons[0].startswith("not a pin")
    assert reasons[1] == "pinned twice"
    assert reasons[2] == f"at most {pins.MAX_PINS} pinned runs"
    assert len(dropped) == 3


@given(st.lists(st.text(max_size=80), max_size=12))
def test_reading_any_pin_list_never_raises_and_keeps_at_most_six(texts):
    kept, dropped = pins.read(texts)
    assert len(kept) <= pins.MAX_PINS
    assert len(kept) + len(dropped) == len(texts)
    assert len(set(kept)) == len(kept)
    assert all(len(value) <= 40 for _, value, _ in dropped)


def test_labels_name_what_differs_from_the_baseline_regularization_first():
    assert pins.label(Settings(l2=0.001), BASE) == "L2 0.001"
    assert pins.label(Settings(width=64, dropout=0.5), BASE) == "dropout 0.5, width 64"
    assert pins.label(Settings(train_fraction=0.5), BASE) == "training data 50%"
    assert pins.label(BASE, BASE) == "no regularization"
    assert pins.label(Settings(seed=3), BASE) == "seed 3"


def test_a_table_row_reads_best_epoch_losses_gap_and_penalty_share_off_the_records():
    records = [record(1, val=0.5), record(2, val=0.4), record(3, val=0.45)]
    row = pins.row("pin 1", Settings(l2=0.001, epochs=3), BASE, records, "done")
    assert row.best_epoch == 2
    assert row.min_val_loss == pytest.approx(0.4)
    assert row.last_val_loss == pytest.approx(0.45)
    last = records[-1]
    assert row.gap == pytest.approx(last.val_data_loss - last.data_loss)
    assert row.penalty_share == pytest.approx(last.penalty / (last.data_loss + last.penalty))
    assert row.epochs == "3 of 3"
    assert row.differs == "L2 0.001, epochs 3"


def test_a_row_of_a_run_still_waiting_has_no_figures():
    row = pins.row("pin 2", Settings(dropout=0.5), BASE, [], "queued")
    assert (row.best_epoch, row.min_val_loss, row.gap, row.penalty_share) == (None, None, None, None)
    assert row.epochs == "0 of 20 (queued)"


def test_rows_selected_in_the_table_name_the_pins_to_unpin():
    """Only pin rows count; the run's and the baseline's rows and stale indices are ignored."""
    table = [{"run": "this run"}, {"run": "baseline"}, {"run": "pin 1"}, {"run": "pin 2"}, {"run": "pin 3"}]
    assert pins.selected(table, [0, 1, 3, 4]) == {1, 2}
    assert pins.selected(table, [9, -1]) == set() and pins.selected(table, []) == set()
