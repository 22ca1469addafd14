"""Settings: the book's defaults, helpful validation errors, URL round trips, stable keys, hostile links."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, subprocess_env

from regviz import pins, sweep
from regviz import settings as settings_mod
from regviz.settings import Settings, SettingsError, Sweep, spec

# the spec each field is checked against, written out here rather than read from regviz.settings
NUMERIC = {  # name: (lo, hi, is_int)
    "depth": (1, 4, True),
    "width": (1, 512, True),
    "last_width": (0, 512, True),
    "l1": (0.0, 0.1, False),
    "l2": (0.0, 0.1, False),
    "dropout": (0.0, 0.8, False),
    "train_fraction": (0.05, 1.0, False),
    "label_noise": (0.0, 0.5, False),
    "epochs": (1, 500, True),
    "batch_size": (8, 4096, True),
    "learning_rate": (1e-5, 1.0, False),
    "seed": (0, 2**31 - 1, True),
}
CHOICES = {
    "dataset": ("imdb", "reuters", "boston", "synthetic", "topics", "houses"),
    "optimizer": ("rmsprop", "adam", "sgd"),
}
# the evaluation protocol's fields depend on each other (folds only with K-fold, a fold run's own
# fold and repeat, the final run's flag): tests/test_splits.py checks them
PROTOCOL = {"validation", "folds", "repeats", "fold", "repeat", "final"}
# one valid value other than the default for every field
OTHER = {
    "dataset": "synthetic", "depth": 3, "width": 4, "last_width": 8, "l1": 1e-4, "l2": 1e-3, "dropout": 0.5,
    "train_fraction": 0.5, "label_noise": 0.3, "epochs": 7, "batch_size": 128, "optimizer": "adam",
    "learning_rate": 1e-2, "seed": 42,
}
SLIDER_STOPS = {
    "l1": (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    "l2": (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    "dropout": (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "train_fraction": (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0),
    "learning_rate": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
    "width": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    "last_width": (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
    "batch_size": (32, 64, 128, 256, 512, 1024, 2048),
    "label_noise": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
}


def numbers_in(text: str) -> list[float]:
    """Every number written in a message, however it is formatted."""
    return [float(t) for t in re.findall(r"\d+(?:\.\d*)?(?:e[-+]?\d+)?", text)]


def random_settings(rng: np.random.Generator, stops_only: bool) -> Settings:
    """Settings with every field drawn at random: from slider stops, or anywhere in range."""
    values = {name: str(rng.choice(choices)) for name, choices in CHOICES.items()}
    for name, (lo, hi, is_int) in NUMERIC.items():
        if is_int:
            values[name] = int(rng.integers(lo, hi + 1))
        elif stops_only:
            values[name] = float(rng.choice(SLIDER_STOPS[name]))
        else:
            values[name] = float(rng.uniform(lo, hi))
    if stops_only:
        values["width"] = int(rng.choice(SLIDER_STOPS["width"]))
        values["batch_size"] = int(rng.choice(SLIDER_STOPS["batch_size"]))
    return Settings(**values)


def test_defaults_are_the_books_experiment():
    """Out of the box: IMDB, 2 hidden layers of 16, no penalty, no dropout, 20 epochs, batch 512, rmsprop."""
    s = Settings()
    assert (s.dataset, s.depth, s.width) == ("imdb", 2, 16)
    assert (s.l1, s.l2, s.dropout) == (0.0, 0.0, 0.0)
    assert (s.epochs, s.batch_size, s.optimizer) == (20, 512, "rmsprop")
    assert s.learning_rate == pytest.approx(1e-3)
    assert s.train_fraction == 1.0
    assert s.is_baseline


def test_every_field_is_covered_here():
    """This file checks every declared setting (a new field must be added to the tables above)."""
    assert {f.name for f in dataclasses.fields(Settings)} == set(NUMERIC) | set(CHOICES) | PROTOCOL


BAD_TYPE = [(name, value) for name in NUMERIC for value in ("abc", None, True, [1], {"a": 1})]
BAD_TYPE += [(name, value) for name in CHOICES for value in (3, None, True, ["imdb"], 1.5)]
BAD_TYPE += [(name, 2.5) for name, (_, _, is_int) in NUMERIC.items() if is_int]
OUT_OF_RANGE = [(name, lo - (1 if is_int else max(lo, 0.01))) for name, (lo, hi, is_int) in NUMERIC.items()]
OUT_OF_RANGE += [(name, hi + 1 if is_int else hi * 2) for name, (lo, hi, is_int) in NUMERIC.items()]
OUT_OF_RANGE += [("dataset", "mnist"), ("optimizer", "adagrad"), ("dataset", "")]


@pytest.mark.parametrize("name,value", BAD_TYPE + OUT_OF_RANGE)
def test_invalid_value_raises_settings_error_naming_field_value_and_allowed(name, value):
    """A wrong type or out-of-range value raises SettingsError naming field, value and what is allowed."""
    with pytest.raises(SettingsError) as caught:
        Settings(**{name: value})
    e, message = caught.value, str(caught.value)
    assert e.name == name and e.value == value
    assert name in message and repr(value) in message
    if name in CHOICES:
        assert all(choice in e.allowed for choice in CHOICES[name])
    else:
        lo, hi, is_int = NUMERIC[name]
        assert {float(lo), float(hi)} <= set(numbers_in(e.allowed)), e.allowed
        assert ("integer" in e.allowed) == is_int
    assert e.allowed in message


@pytest.mark.parametrize("name,value", [(n, v) for n, v in OUT_OF_RANGE if not isinstance(v, str)])
def test_strict_reading_of_strings_rejects_out_of_range(name, value):
    """from_params reads strings the way a URL holds them and rejects out-of-range ones by field name."""
    with pytest.raises(SettingsError, match=re.escape(name)):
        Settings.from_params({name: str(value)})


def test_strict_reading_rejects_unknown_settings():
    """from_params refuses a name that is not a setting."""
    with pytest.raises(SettingsError, match="colour"):
        Settings.from_params({"colour": "red"})


def test_strings_are_read_like_a_url():
    """Numbers arrive as text; choices ignore case and surrounding spaces."""
    s = Settings.from_params({"depth": "3", "l2": "1e-3", "dataset": " Synthetic ", "epochs": "5.0"})
    assert (s.depth, s.l2, s.dataset, s.epochs) == (3, 0.001, "synthetic", 5)
    assert isinstance(s.depth, int) and isinstance(s.l2, float) and isinstance(s.epochs, int)


def test_round_trip_through_params_for_slider_values():
    """Settings -> to_params -> from_params gives equal settings (and key) for many slider settings."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        s = random_settings(rng, stops_only=True)
        params = s.to_params()
        assert all(isinstance(v, str) for v in params.values())
        back = Settings.from_params(params)
        assert back == s and back.key() == s.key()


def test_round_trip_through_params_for_any_valid_float():
    """Any in-range float (from a link or the CLI) survives to_params -> from_params exactly."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        s = random_settings(rng, stops_only=False)
        assert Settings.from_params(s.to_params()) == s


def test_to_params_omits_defaults():
    """Only the fields that differ from the defaults go into the params (what a URL holds)."""
    assert Settings().to_params() == {}
    assert Settings(depth=2, width=16, optimizer="rmsprop").to_params() == {}
    assert set(Settings(l2=1e-3, width=4).to_params()) == {"l2", "width"}
    for name, value in OTHER.items():
        assert set(Settings(**{name: value}).to_params()) == {name}


KEY_SCRIPT = """
import json, sys
from regviz.settings import Settings
print(json.dumps([Settings.from_params(p).key() for p in json.loads(sys.argv[1])]))
"""


def test_key_is_the_same_in_another_process():
    """key() is a pure function of the values: a fresh interpreter with another hash seed agrees."""
    params = [{}] + [{name: str(value)} for name, value in OTHER.items()]
    params.append({name: str(value) for name, value in OTHER.items()})
    out = subprocess.run(
        [sys.executable, "-c", KEY_SCRIPT, json.dumps(params)],
        capture_output=True, text=True, timeout=60, env=subprocess_env(PYTHONHASHSEED="12345"), cwd=REPO,
        check=True,
    )
    assert json.loads(out.stdout) == [Settings.from_params(p).key() for p in params]


def test_key_differs_when_any_field_differs():
    """Changing any single field changes the key; equal settings built differently share one."""
    keys = {Settings().key()} | {Settings(**{name: value}).key() for name, value in OTHER.items()}
    assert len(keys) == len(OTHER) + 1
    assert Settings(l2=0.001).key() == Settings.from_params({"l2": "1e-3"}).key()
    assert Settings(depth=3).key() == Settings(depth=3.0).key()


def test_equal_settings_have_equal_keys_even_for_negative_zero():
    """Settings that compare equal have the same key, including a penalty typed as -0."""
    s = Settings.from_params({"l2": "-0"})
    assert s == Settings()
    assert s.key() == Settings().key()


HOSTILE = [
    float("nan"), "nan", float("inf"), "-inf", "1e999", "x" * 100_000, True, False, None, [], [1, 2],
    {"a": 1}, (), -1, "-1", "", "  ", "0x10", b"3",
]


@pytest.mark.parametrize("name", ["depth", "l2", "dropout", "seed", "dataset", "optimizer"])
@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: type(v).__name__ + ":" + repr(v)[:12])
def test_read_lenient_drops_each_hostile_value_with_a_reason(name, value):
    """A hostile value is dropped with (name, short value, reason) and the field keeps its default."""
    settings, dropped = Settings.read_lenient({name: value})
    assert settings == Settings()
    assert len(dropped) == 1
    field, shown, reason = dropped[0]
    assert field == name
    assert isinstance(reason, str) and reason
    assert len(str(shown)) <= 80  # a megabyte string is not echoed back


def test_read_lenient_keeps_the_good_and_drops_the_bad():
    """In a dict that mixes valid entries, bad values and unknown keys, the valid ones are kept."""
    params = {
        "width": "4", "l2": "0.001", "dataset": "SYNTHETIC",
        "depth": "nan", "dropout": "1e999", "epochs": "-5", "seed": [1], "optimizer": None,
        "colour": "red", "": "x", "k" * 1000: "v", 42: 42,
    }
    settings, dropped = Settings.read_lenient(params)
    assert settings == Settings(width=4, l2=0.001, dataset="synthetic")
    names = [name for name, _, _ in dropped]
    assert sorted(map(str, names)) == sorted(["depth", "dropout", "epochs", "seed", "optimizer",
                                              "colour", "", "k" * 40, "42"])
    assert all(reason for _, _, reason in dropped)
    assert all(len(str(name)) <= 40 for name in names)
    reasons = dict((str(n), r) for n, _, r in dropped)
    assert reasons["colour"] == "unknown setting"


def test_read_lenient_drops_an_integer_too_large_for_a_float():
    """An integer beyond float range (e.g. from JSON) is dropped, not raised."""
    settings, dropped = Settings.read_lenient({"seed": 10**400, "l2": 10**400})
    assert settings == Settings()
    assert [name for name, _, _ in dropped] == ["seed", "l2"]


def test_read_lenient_drops_an_integer_too_long_to_print():
    """An integer of thousands of digits, as a value of a known or unknown key, is dropped, not raised."""
    huge = 10**5000
    settings, dropped = Settings.read_lenient({"seed": huge, "colour": huge})
    assert settings == Settings()
    assert sorted(name for name, _, _ in dropped) == ["colour", "seed"]


def test_baseline_turns_off_only_the_regularizers():
    """baseline() zeroes l1, l2 and dropout and leaves network, data, optimizer and seed alone."""
    s = Settings(**OTHER)
    b = s.baseline()
    assert (b.l1, b.l2, b.dropout) == (0.0, 0.0, 0.0)
    for name in OTHER:
        if name not in ("l1", "l2", "dropout"):
            assert getattr(b, name) == getattr(s, name), name
    assert b.is_baseline and not s.is_baseline
    assert Settings().baseline() == Settings()


def test_settings_are_immutable_and_replace_validates():
    """Settings are frozen; replace() gives a validated copy."""
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.width = 4  # type: ignore[misc]
    assert s.replace(width=4).width == 4
    with pytest.raises(SettingsError):
        s.replace(width=0)
    assert s.replace(l2="0.001").l2 == 0.001


# ---- the table drives the sidebar, the sweep, the pins and the protocols ---------------------------------

# what ui/common.py, sweep.py, sweep_figures.py and pins.py listed by hand before the table carried it
SIDEBAR = {
    "basic": ["dataset", "width", "depth", "last_width", "l2", "l1", "dropout", "train_fraction", "epochs",
              "label_noise"],
    "protocol": ["validation", "folds", "repeats"],
    "advanced": ["optimizer", "learning_rate", "batch_size", "seed"],
}
SWEEP_MENUS = {
    "l2": SLIDER_STOPS["l2"], "l1": SLIDER_STOPS["l1"], "dropout": SLIDER_STOPS["dropout"],
    "width": SLIDER_STOPS["width"], "last_width": SLIDER_STOPS["last_width"], "depth": (1, 2, 3, 4),
    "train_fraction": (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    "epochs": (5, 10, 20, 30, 40, 60, 80, 100, 200, 500), "batch_size": SLIDER_STOPS["batch_size"],
    "optimizer": CHOICES["optimizer"], "learning_rate": SLIDER_STOPS["learning_rate"],
    "seed": tuple(range(10)),
}  # fmt: skip
SWEEP_PICKED = {
    "l2": (0.0, 1e-4, 1e-3, 1e-2), "l1": (0.0, 1e-4, 1e-3, 1e-2), "dropout": (0.0, 0.25, 0.5),
    "width": (4, 16, 64, 256), "last_width": (0, 4, 16, 64), "depth": (1, 2, 3),
    "train_fraction": (0.2, 0.5, 1.0),
    "epochs": (10, 20, 40), "batch_size": (128, 512, 2048), "optimizer": CHOICES["optimizer"],
    "learning_rate": (1e-4, 1e-3, 1e-2), "seed": (0, 1, 2, 3),
}  # fmt: skip
LOG_AXES = {"l1", "l2", "learning_rate", "width", "batch_size"}
PIN_NAMES = {"dataset": "data set", "l1": "L1", "l2": "L2", "train_fraction": "training data",
             "batch_size": "batch", "learning_rate": "rate", "label_noise": "label noise"}  # fmt: skip
PIN_FIRST = ("l2", "l1", "dropout", "width", "depth", "train_fraction", "label_noise")
USED_BY = {"folds": ("kfold", "iterated"), "repeats": ("iterated",), "fold": ("kfold", "iterated"),
           "repeat": ("iterated",)}  # fmt: skip


def test_the_table_gives_what_was_listed_by_hand():
    """The sidebar's sections, the sweep's menus and log axes, the pins' names and order and which protocol
    uses which field come out of the settings table as they were written out by hand before."""
    assert {name: [f.name for f in settings_mod.section(name)] for name in SIDEBAR} == SIDEBAR
    assert list(sweep.MENUS.items()) == list(SWEEP_MENUS.items())  # the menu's order too
    assert sweep.PICKED == SWEEP_PICKED and sweep.LOG_SETTINGS == LOG_AXES
    assert {n: s for n, s in pins.short_names().items() if s != n} == PIN_NAMES
    assert pins.first_named() == PIN_FIRST
    for f in dataclasses.fields(Settings):
        for protocol in ("holdout", "kfold", "iterated"):
            assert settings_mod.used_by(f, protocol) == (protocol in USED_BY.get(f.name, (protocol,))), f.name


@dataclasses.dataclass(frozen=True)
class WithMomentum(Settings):
    """The settings with two fields more, declared once in the table's own terms."""

    momentum: float = spec(
        float, 0.0, "momentum", 0.0, 0.9, label="Momentum", steps=(0.0, 0.5, 0.9), effect="Keeps moving.",
        group=("advanced", 2.5), short="mom", pin_rank=0, sweep=Sweep(3.5, (0.0, 0.9)), axis="log",
    )  # fmt: skip
    shuffles: int = spec(
        int, 3, "reshuffles", 1, 9, label="Shuffles", group=("protocol", 9), protocols=("iterated",)
    )


def test_a_field_added_to_the_table_shows_up_in_the_sidebar_sweep_and_pins():
    """A new field, declared once with its group, short name, rank, sweep values and axis, is in its
    sidebar section at its place, in the sweep's menu at its place with its values and log axis, and named
    first (by its short name) in a pin's label."""
    advanced = [f.name for f in settings_mod.section("advanced", WithMomentum)]
    assert advanced == ["optimizer", "learning_rate", "momentum", "batch_size", "seed"]
    assert [f.name for f in settings_mod.section("protocol", WithMomentum)][-1] == "shuffles"
    menus = sweep.menus(WithMomentum)
    assert list(menus)[:4] == ["l2", "l1", "dropout", "momentum"] and menus["momentum"] == (0.0, 0.5, 0.9)
    assert sweep.picks(WithMomentum)["momentum"] == (0.0, 0.9) and "momentum" in sweep.log_axes(WithMomentum)
    assert "shuffles" not in menus
    assert pins.label(WithMomentum(momentum=0.5, l2=0.001), WithMomentum()) == "mom 0.5, L2 0.001"


def test_a_field_of_one_protocol_keeps_its_declared_default_under_the_others():
    """The default a protocol's field falls back to is the one its table entry declares (written once):
    under other protocols, or in a final run, it is reset; a link that sets it is told where it applies."""
    iterated = WithMomentum(validation="iterated", shuffles=7, folds=5, repeats=4)
    assert (iterated.shuffles, iterated.folds, iterated.repeats) == (7, 5, 4)
    assert WithMomentum(validation="kfold", shuffles=7).shuffles == 3
    final = iterated.final_run(epochs=5)
    assert (final.validation, final.shuffles, final.folds, final.repeats) == ("holdout", 3, 4, 2)
    settings, dropped = WithMomentum.read_lenient({"shuffles": "7"})
    assert settings.shuffles == 3 and dropped == [("shuffles", "7", "only with validation iterated")]


def test_the_table_refuses_metadata_it_does_not_know():
    """A misspelt metadata key or an unknown sidebar section fails where the field is declared."""
    with pytest.raises(TypeError, match="pinrank"):
        spec(int, 0, "x", 0, 1, pinrank=1)
    with pytest.raises(TypeError, match="sidebar"):
        spec(int, 0, "x", 0, 1, group=("middle", 1))


def test_label_noise_round_trips_through_the_link_and_is_left_out_at_zero():
    """label_noise=0.3 is one entry of the link and reads back equal, with its key; at 0 the link and the
    key are those of the same settings without it, so runs stored before it existed keep their keys."""
    noisy = Settings(l2=1e-3, label_noise=0.3)
    assert noisy.to_params() == {"l2": "0.001", "label_noise": "0.3"}
    back = Settings.from_params(noisy.to_params())
    assert back == noisy and back.key() == noisy.key() != Settings(l2=1e-3).key()
    clean = Settings(l2=1e-3, label_noise=0.0)
    assert clean.to_params() == {"l2": "0.001"}
    without = {k: v for k, v in clean.as_dict().items() if k != "label_noise"}
    before = hashlib.sha256(json.dumps(without, sort_keys=True).encode()).hexdigest()[:16]
    assert clean.key() == before
    with pytest.raises(SettingsError, match="label_noise"):
        Settings.from_params({"label_noise": "0.6"})


def test_a_noisy_run_keeps_its_noise_in_its_baseline_and_final_run():
    """Label noise belongs to the data, not the regularizers: the baseline, folds and final run keep it."""
    s = Settings.for_dataset("boston", l2=1e-3, label_noise=0.2)
    assert s.baseline().label_noise == 0.2 and not s.is_baseline
    assert {f.label_noise for f in s.fold_runs()} == {0.2} and s.final_run(40).label_noise == 0.2
