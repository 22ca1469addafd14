"""The page as a teacher uses it, driven by Streamlit's AppTest: controls, presets, links, charts, CSV, code.

Every test gets its own run store (conftest points REGVIZ_STORE into tmp_path) and its own Backend: app.py
keeps the backend in st.cache_resource, which is process-wide, so the `app` fixture clears that cache around
each test and shuts down the trainers it made. Trainings are held at a gate until a test lets them run, so
tests that only look at settings never pay for a training.
"""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

import keras
import numpy as np
import pandas as pd
import pytest
import streamlit as st
from markdown_it import MarkdownIt
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module
from test_store import store_of_20_runs

import regviz.service
from regviz import data, sweep
from regviz import settings as settings_mod
from regviz.model import build_model, build_optimizer
from regviz.runs.inprocess import train_here
from regviz.runs.manager import INTERACTIVE, SWEEP
from regviz.runs.pool import WorkersUnavailable
from regviz.runs.threads import ThreadExecutor
from regviz.settings import Settings
from regviz.store import RunStore
from regviz.training import loop

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SCRIPT_TIMEOUT = 120  # seconds for one script run; the first one imports tensorflow
DEADLINE = 180.0  # seconds for a small run and its baseline to finish; only reached when something is broken
FIELDS = [f.name for f in settings_mod.fields()]  # what a person sets (not a fold run's own fold)
PROTOCOL = ("validation", "folds", "repeats")  # their controls are tested with K-fold runs below
SYNTH = {"dataset": "synthetic"}
# a small regularized run on the offline data: two short trainings (run and baseline), a few seconds
SMALL = Settings(dataset="synthetic", width=4, epochs=2, l2=0.001)
SMALL_LINK = {"dataset": "synthetic", "width": "4", "epochs": "2", "l2": "0.001"}
# the book's experiments (Deep Learning with Python), written out here rather than read from regviz
BOOK = {
    "Original 16-16": {"width": 16},
    "Smaller 4-4": {"width": 4},
    "Bigger 512-512": {"width": 512},
    "L2 0.001": {"l2": 0.001},
    "Dropout 0.5": {"dropout": 0.5},
    "L1 0.001": {"l1": 0.001},
    "Noisy labels 0.3": {"width": 16, "label_noise": 0.3},
    "Reuters 64-64": {"dataset": "reuters", "width": 64},
    "Reuters bottleneck 64-4": {"dataset": "reuters", "width": 64, "last_width": 4},
    "Boston 4-fold": {"dataset": "boston", "validation": "kfold", "folds": 4, "epochs": 300},
}
SETTLED = ("done", "from the store", "failed", "cancelled")  # words of a progress line that will not change


# ---- fixtures: one store, one backend and held trainings per test ----------------------------------------


class Gate:
    """Epoch permits for held trainings: each permit lets one epoch through; once opened, every epoch."""

    def __init__(self):
        self._changed = threading.Condition()
        self._permits, self._opened = 0, False

    def release(self, epochs: int | None = None) -> None:
        """Add that many permits, or open the gate for good (None)."""
        # not Semaphore.release(1_000_000): it notifies once per permit, seconds of cpu per call
        with self._changed:
            if epochs is None:
                self._opened = True
            else:
                self._permits += epochs
            self._changed.notify_all()

    def acquire(self) -> None:
        """Wait for a permit (none needed once the gate is open)."""
        with self._changed:
            self._changed.wait_for(lambda: self._opened or self._permits > 0)
            if not self._opened:
                self._permits -= 1


class Recorder:
    """What the app's backends did: each Backend made, each run watched, each training started."""

    def __init__(self):
        self.backends: list[regviz.service.RunService] = []
        self.gate = Gate()  # one permit lets a training compute one epoch

    def open(self, epochs: int | None = None) -> None:
        """Let trainings compute that many more epochs in all (by default: everything)."""
        self.gate.release(epochs)

    @property
    def trained(self) -> list[Settings]:
        """Settings of every training started, in order."""
        return [s for b in self.backends for s in b.trained]

    @property
    def watched(self) -> list:
        """Every Run the page asked a manager for, in order."""
        return [r for b in self.backends for r in b.watched]

    @property
    def priorities(self) -> list[int]:
        """The priority each of those was asked for (manager.INTERACTIVE, SWEEP, ...)."""
        return [p for b in self.backends for p in b.priorities]


def _recording_backend(recorder: Recorder) -> type:
    class RecordingBackend(regviz.service.RunService):
        """The real service, recording what it is asked and passing each epoch through the gate."""

        def __init__(self, *args, **kwargs):
            # trainings in threads of the test process, each epoch held at the gate; the served app's
            # worker processes are tested in test_local.py and test_browser.py
            self.trained, self.watched, self.priorities = [], [], []
            super().__init__(*args, executor=ThreadExecutor(self._train), **kwargs)
            watch = self.manager.watch

            def recording_watch(settings, watcher, priority=INTERACTIVE):
                run = watch(settings, watcher, priority)
                self.watched.append(run)
                self.priorities.append(priority)
                return run

            self.manager.watch = recording_watch
            recorder.backends.append(self)

        def dataset_info(self, name, wait=True):
            # described at once in this process (test_the_page_draws_frames_while_workers_start
            # covers the page before a worker has answered)
            return super().dataset_info(name, wait=True)

        def _train(self, settings, cancel):
            self.trained.append(settings)
            return self._gated(train_here(settings, cancel))

        def _gated(self, records):
            # the gate is passed before an epoch is computed, so a held training costs nothing
            records = iter(records)
            while True:
                recorder.gate.acquire()
                try:
                    record = next(records)
                except StopIteration:
                    return
                yield record

    return RecordingBackend


@pytest.fixture
def store_path(temporary_store) -> Path:
    """This test's run store (conftest points REGVIZ_STORE at it)."""
    return temporary_store


@pytest.fixture
def app(store_path, monkeypatch):
    """A Recorder of the backends the app creates; each test starts with no backend and ends with none."""
    monkeypatch.delenv("REGVIZ_MAX_TRAININGS", raising=False)  # one trainer: run, then baseline
    monkeypatch.setenv("REGVIZ_PREFETCH", "0")  # no background runs taking the gate's epochs
    recorder = Recorder()
    monkeypatch.setattr(regviz.service, "RunService", _recording_backend(recorder))
    st.cache_resource.clear()
    yield recorder
    st.cache_resource.clear()  # its on_release may make one more backend: shut that down too
    for backend in recorder.backends:
        backend.manager.shutdown(timeout=0)  # cancel everything first
    recorder.open()  # held trainings see the cancel and stop before their next epoch
    for backend in recorder.backends:
        assert backend.manager.shutdown(timeout=DEADLINE), "a trainer did not stop"


@pytest.fixture(scope="module")
def small_records() -> dict[Settings, list]:
    """SMALL and its baseline trained once, straight through regviz.training: no app, no store, no backend."""
    return {s: list(loop.train(s)) for s in (SMALL, SMALL.baseline())}


@pytest.fixture
def small_in_store(store_path, small_records) -> dict[Settings, list]:
    """This test's store already holds SMALL and its baseline, as if a session had trained them earlier."""
    store = RunStore(store_path)
    for settings, records in small_records.items():
        store.put(settings, data.load(settings.dataset).version, records)
    return small_records


@pytest.fixture
def media(monkeypatch) -> list[MemoryMediaFileStorage]:
    """The media stores AppTest creates (one per script run), where download buttons keep their data."""
    made = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, endpoint):
            super().__init__(endpoint)
            made.append(self)

    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", Recording)
    return made


# ---- helpers ---------------------------------------------------------------------------------------------


def open_app(params: dict | None = None) -> AppTest:
    """The page opened from a link with these query parameters, after its first script run."""
    at = AppTest.from_file(APP, default_timeout=SCRIPT_TIMEOUT)
    at.query_params.update(params or {})
    at.run()
    assert not at.exception, at.exception
    return at


def progress(at: AppTest) -> list[str]:
    """The progress lines: this run's, then the baseline's (one line when the run is the baseline)."""
    return [p.proto.text for p in at.get("progress")]


def finish(at: AppTest, recorder: Recorder) -> AppTest:
    """Let the trainings run; rerun the page until each progress line is settled (poll with a deadline)."""
    recorder.open()
    end = time.monotonic() + DEADLINE
    at.run()
    while not all(any(word in line for word in SETTLED) for line in progress(at)):
        assert time.monotonic() < end, f"runs did not finish in {DEADLINE} s: {progress(at)}"
        for run in recorder.watched:  # wait on the runs themselves between reruns
            run.wait(max(0.0, end - time.monotonic()))
        at.run()
    assert not at.exception, at.exception
    return at


def controls(at: AppTest) -> dict:
    """The sidebar widgets keyed by a setting's name."""
    return {w.key: w for w in at.sidebar if getattr(w, "key", None) in FIELDS}


def shown_settings(at: AppTest) -> Settings:
    """The settings the controls hold."""
    return Settings(**{name: w.value for name, w in controls(at).items()})


def asked(recorder: Recorder) -> tuple[Settings, ...]:
    """The settings of the runs the page's last script run asked for: the run, then its baseline."""
    runs = [r.settings for r in recorder.watched]
    last, before = runs[-1], runs[-2] if len(runs) > 1 else None
    if before is not None and not before.is_baseline and before.baseline() == last:
        return before, last
    return (last,)


def figures(at: AppTest) -> list[dict]:
    """Every plotly figure on the page: the live charts' component's (ui/live_charts.py), then the
    st.plotly_chart ones."""
    live = [
        json.loads(fig)
        for c in at.get("component_instance")
        if c.proto.component_name.endswith(".live_charts")
        for fig in json.loads(c.proto.json_args)["figures"]
    ]
    return live + [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def charts(at: AppTest) -> dict[str, dict]:
    """Every plotly figure on the page, by the first word of its title."""
    return {f["layout"]["title"]["text"].split()[0]: f for f in figures(at)}


def traces(fig: dict) -> dict[str, dict]:
    """A figure's traces by legend name."""
    return {t.get("name"): t for t in fig["data"]}


def warnings_text(at: AppTest) -> str:
    """All warnings on the page, joined."""
    return "\n".join(w.value for w in at.warning)


def stored(store_path: Path, settings: Settings):
    """The records the run store holds for these settings on their dataset."""
    return RunStore(store_path).get(settings, data.load(settings.dataset).version)


def downloaded(at: AppTest, media: list[MemoryMediaFileStorage]) -> bytes:
    """What the CSV download button would hand the browser after the last script run."""
    button = next(b for b in at.get("download_button") if b.key == "csv")
    return media[-1].get_file(button.proto.url.rsplit("/", 1)[-1]).content


def presets(at: AppTest):
    """The row of preset pills in the sidebar."""
    return next(w for w in at.sidebar if getattr(w, "key", None) == "preset")


def keras_code_shown(at: AppTest) -> str:
    """The model code in the "Show Keras code" expander."""
    expander = next(e for e in at.expander if e.label == "Show Keras code")
    return next(c.value for c in expander.code if "keras.Sequential" in c.value)


def expected(**fields) -> Settings:
    """Settings on the offline dataset with these fields changed."""
    return Settings(dataset="synthetic", **fields)


# ---- controls and settings -------------------------------------------------------------------------------


CHANGES = {
    "dataset": "imdb",
    "depth": 3,
    "width": 64,
    "last_width": 4,
    "l1": 1e-4,
    "l2": 3e-3,
    "dropout": 0.25,
    "train_fraction": 0.5,
    "label_noise": 0.2,
    "epochs": 7,
    "batch_size": 128,
    "optimizer": "sgd",
    "learning_rate": 0.01,
    "seed": 42,
}  # one new value per setting


def test_every_setting_has_a_control_keyed_by_its_name(app):
    """Each Settings field has exactly one sidebar control with key = field name, holding the link's value."""
    at = open_app(SYNTH)
    keys = [w.key for w in at.sidebar if getattr(w, "key", None) in FIELDS]
    assert sorted(keys) == sorted(FIELDS)
    assert shown_settings(at) == expected()
    assert set(CHANGES) | set(PROTOCOL) == set(FIELDS), "every control is exercised below"


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_control_changes_the_settings_the_app_trains(app, request, monkeypatch, name):
    """Moving one control changes that setting in the URL, in the runs asked for and on the charts' axes."""
    value = CHANGES[name]
    if name == "dataset":  # the other dataset is IMDB: from the offline file, never a download
        monkeypatch.setenv(data.IMDB_PATH_ENV, str(request.getfixturevalue("imdb_path")))
    at = open_app(SYNTH)
    controls(at)[name].set_value(value)
    at.run()
    assert not at.exception, at.exception
    want = Settings(**(SYNTH | {name: value}))
    assert shown_settings(at) == want
    assert at.query_params == want.to_params()
    assert asked(app) == ((want,) if want.is_baseline else (want, want.baseline()))
    for title in ("Loss", "Accuracy", "Weight"):  # the charts with an epoch axis, fixed to the run's length
        assert charts(at)[title]["layout"]["xaxis"]["range"] == [0.5, want.epochs + 0.5]


def test_controls_that_come_back_at_values_nobody_chose_show_the_tabs_settings(app):
    """A rerun in which streamlit holds the controls at values nobody chose (their widget state dropped:
    each would come back at its minimum, as all did beside a Play click in CI) shows and trains the tab's
    settings; a control its user moves afterwards still moves."""
    at = open_app(SYNTH | {"width": "64", "l2": "0.0001", "epochs": "3"})
    want = shown_settings(at)
    lowest = {f.name: min(f.metadata["steps"]) for f in settings_mod.fields() if f.metadata["steps"]}
    assert len(lowest) >= 5
    for name, value in lowest.items():
        at.session_state[name] = value
    at.run()
    assert not at.exception, at.exception
    assert shown_settings(at) == want
    assert asked(app) == (want, want.baseline())
    controls(at)["width"].set_value(8)
    at.run()
    assert shown_settings(at) == want.replace(width=8)
    at.run()  # and stays where its user put it
    assert shown_settings(at) == want.replace(width=8) and asked(app)[0] == want.replace(width=8)


def test_the_shown_link_reopens_the_same_experiment(app):
    """The link under the charts is this page's address plus every changed setting; it reopens them all."""
    at = AppTest.from_file(APP, default_timeout=SCRIPT_TIMEOUT)
    at.context["url"] = "https://regviz.example/"
    at.query_params.update(SYNTH)
    at.run()
    for name, value in CHANGES.items():
        if name != "dataset":
            controls(at)[name].set_value(value)
    at.run()
    link = next(c.value for c in at.code if c.value.startswith("https://regviz.example/"))
    address, query = link.split("?")
    assert address == "https://regviz.example/"
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    again = open_app(params)
    assert shown_settings(again) == shown_settings(at) == Settings(**(SYNTH | CHANGES | SYNTH))
    assert not again.warning


# ---- presets ---------------------------------------------------------------------------------------------


def test_the_presets_are_the_books_experiments(app):
    """The sidebar offers one preset per experiment of the book, no more."""
    at = open_app(SYNTH)
    assert sorted(presets(at).options) == sorted(BOOK)


@pytest.mark.parametrize("label", [label for label, fields in BOOK.items() if "dataset" not in fields])
def test_a_preset_sets_the_books_experiment_keeping_dataset_and_seed(app, label):
    """A preset resets every other setting to the book's, keeps dataset and seed, and trains that."""
    start = {"width": "64", "l1": "0.0003", "dropout": "0.3", "epochs": "3", "seed": "5", "depth": "3"}
    at = open_app(SYNTH | start | {"batch_size": "128", "optimizer": "adam", "learning_rate": "0.003"})
    presets(at).set_value(label)
    at.run()
    assert not at.exception, at.exception
    want = Settings(dataset="synthetic", seed=5, **BOOK[label])
    assert shown_settings(at) == want
    assert at.query_params == want.to_params()
    assert asked(app)[0] == want


def test_a_preset_or_a_moved_control_clears_the_link_notice(app):
    """The warning about a bad link goes away once the teacher picks a preset, or moves a control."""
    at = open_app(SYNTH | {"width": "abc"})
    assert "width" in warnings_text(at)
    presets(at).set_value("L2 0.001")
    at.run()
    assert not at.warning
    at = open_app(SYNTH | {"width": "abc"})
    controls(at)["epochs"].set_value(3)
    at.run()
    assert not at.warning


def test_a_store_rebuilt_from_a_damaged_file_is_told_once(app, store_path):
    """After the server finds its store cut short and salvages it, the first page says how many runs were
    salvaged and lost, and keeps saying so in that session; a session opened later is not told again."""
    whole = store_of_20_runs(store_path)
    store_path.write_bytes(whole[: len(whole) // 2])
    with pytest.warns(RuntimeWarning, match="moved it to"):
        first = open_app(SMALL_LINK)
    assert len(re.findall(r"\d+ runs? salvaged, \d+ lost", warnings_text(first))) == 1
    first.run()
    assert "salvaged" in warnings_text(first)
    second = open_app(SMALL_LINK)
    assert "salvaged" not in warnings_text(second) and not second.exception


# ---- links -----------------------------------------------------------------------------------------------

VALID_LINK = {
    "width": "64", "l2": "0.0001", "dropout": "0.3", "epochs": "3", "dataset": "synthetic", "seed": "5",
    "learning_rate": "0.003", "batch_size": "128", "optimizer": "adam",
}  # fmt: skip


def test_a_valid_link_seeds_every_control(app):
    """Each setting in a link appears in its control, nothing is reported as ignored, the URL stays."""
    at = open_app(VALID_LINK)
    want = Settings(
        width=64, l2=1e-4, dropout=0.3, epochs=3, dataset="synthetic", seed=5, learning_rate=0.003,
        batch_size=128, optimizer="adam",
    )  # fmt: skip
    assert shown_settings(at) == want
    assert not at.warning
    assert at.query_params == VALID_LINK
    assert asked(app) == (want, want.baseline())


def test_a_link_value_between_slider_stops_is_kept(app):
    """width=100 and l2=0.0002 are valid though no slider stop: kept in the controls, the URL and the run."""
    at = open_app(SYNTH | {"width": "100", "l2": "0.0002"})
    want = expected(width=100, l2=2e-4)
    assert controls(at)["width"].value == 100
    assert controls(at)["l2"].value == 2e-4
    assert not at.warning
    assert at.query_params == want.to_params()
    assert asked(app)[0] == want
    assert "Dense(100, relu)" in at.caption[0].value


def browser_default(widget):
    """The value a browser gives a widget it re-creates without its state: the element's own default."""
    proto, kind = widget.proto, type(widget).__name__
    if kind == "SelectSlider":  # the indices of its options
        return widget.options[int(proto.default[0])]
    if kind == "Selectbox":  # the index of its option
        return widget.options[proto.default]
    if kind == "Multiselect":  # the indices of its options
        return [widget.options[i] for i in proto.default]
    return proto.default[0] if kind == "Slider" else proto.default


def shown_value(widget):
    """The widget's value as its element writes it (a select slider's, a selectbox's or a multiselect's
    labels)."""
    kind = type(widget).__name__
    if kind in ("SelectSlider", "Selectbox"):
        return str(widget.format_func(widget.value))
    return [str(widget.format_func(v)) for v in widget.value] if kind == "Multiselect" else widget.value


def test_a_control_the_browser_recreates_comes_back_at_the_tabs_setting_not_its_minimum(app):
    """Every control's default is the tab's setting: a browser that drops a widget's state and draws it
    again starts it there, so the value it then sends is no move (a loaded run once sent every slider at
    its minimum on a Play click, and the page trained a 1-unit network)."""
    link = SYNTH | {
        "width": "64", "depth": "3", "l1": "0.0001", "l2": "0.001", "dropout": "0.5",
        "train_fraction": "0.5", "label_noise": "0.1", "epochs": "7", "batch_size": "128",
        "optimizer": "adam", "learning_rate": "0.01", "validation": "iterated", "folds": "5",
        "repeats": "3", "seed": "5",
    }  # fmt: skip
    at = open_app(link)
    assert set(controls(at)) == set(FIELDS)
    for name, widget in controls(at).items():
        assert browser_default(widget) == shown_value(widget), name
    controls(at)["l2"].set_value(0.01).run()
    assert controls(at)["l2"].value == 0.01
    assert browser_default(controls(at)["l2"]) == "0.01"


def test_a_label_noise_link_sets_its_slider_and_the_run_and_its_baseline_keep_it(app):
    """label_noise=0.3 in a link: the slider shows 30 % with help that names memorisation, the URL keeps
    it, and both the run and its baseline train with it; moving the slider to 0 drops it from the URL."""
    at = open_app(SYNTH | {"label_noise": "0.3", "l2": "0.001", "epochs": "2"})
    want = expected(label_noise=0.3, l2=1e-3, epochs=2)
    slider = controls(at)["label_noise"]
    assert slider.value == 0.3 and "memorisation" in slider.help
    assert at.query_params == want.to_params() and not at.warning
    assert asked(app) == (want, want.baseline()) and want.baseline().label_noise == 0.3
    slider.set_value(0.0)
    at.run()
    assert "label_noise" not in at.query_params and shown_settings(at) == want.replace(label_noise=0.0)


HOSTILE = {  # case: (link, names the warning must mention, settings that still apply)
    "unknown key": ({"bogus": "1", "width": "8"}, ["bogus"], {"width": 8}),
    "not a number": ({"width": "abc", "l2": "0.001"}, ["width"], {"l2": 0.001}),
    "too big": ({"width": "9999", "epochs": "3"}, ["width"], {"epochs": 3}),
    "negative": ({"l2": "-1", "width": "8"}, ["l2"], {"width": 8}),
    "nan": ({"dropout": "nan", "l1": "0.001"}, ["dropout"], {"l1": 0.001}),
    "overflow": ({"epochs": "1e999", "width": "8"}, ["epochs"], {"width": 8}),
    "not an integer": ({"depth": "2.5", "seed": "7"}, ["depth"], {"seed": 7}),
    "unknown choice": ({"optimizer": "adamw", "width": "8"}, ["optimizer"], {"width": 8}),
    "10 kB value": ({"optimizer": "a" * 10_000, "width": "8"}, ["optimizer"], {"width": 8}),
    "10 kB key": ({"k" * 10_000: "1", "width": "8"}, ["kkkk"], {"width": 8}),
    "empty values": ({"width": "", "l2": "", "epochs": "3"}, ["width", "l2"], {"epochs": 3}),
    "repeated keys": ({"width": ["4", "8"], "epochs": "3"}, ["width"], {"width": 8, "epochs": 3}),
    "state keys": ({"keras_loss": "1", "seeded": "1", "width": "8"}, ["keras_loss", "seeded"], {"width": 8}),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_link_opens_with_a_warning_and_valid_settings(app, case):
    """A bad link never raises: one short warning names what was ignored, and the rest of the link applies."""
    params, ignored, kept = HOSTILE[case]
    at = open_app(SYNTH | params)
    want = expected(**kept)
    assert shown_settings(at) == want
    assert asked(app)[0] == want
    assert len(at.warning) == 1, f"one warning expected for {case}"
    text = warnings_text(at)
    assert all(name in text for name in ignored), text
    assert len(text) < 600  # a 10 kB value is cut short, never pasted into the page
    assert at.query_params == want.to_params()  # the bad parts leave the URL


def test_a_link_cannot_put_a_clickable_link_into_the_warning(app):
    """Text from the link is shown literally: a markdown link in a value does not render as a link."""
    at = open_app(SYNTH | {"optimizer": "[win a prize](https://evil.example)"})
    text = warnings_text(at)
    assert "evil.example" in text
    html = MarkdownIt("commonmark").render(text)
    assert "<a " not in html, html


# ---- charts ----------------------------------------------------------------------------------------------


def test_loss_chart_shows_the_run_solid_over_the_dashed_baseline(app, store_path, small_records):
    """After the run, its losses are solid lines and the baseline's dashed, with the values trained."""
    at = finish(open_app(SMALL_LINK), app)
    assert progress(at) == ["This run: done, 2 of 2 epochs.", "Baseline: done, 2 of 2 epochs."]
    run, base = stored(store_path, SMALL), stored(store_path, SMALL.baseline())
    assert len(run) == len(base) == SMALL.epochs
    lines = traces(charts(at)["Loss"])
    for who, records, dash in (("this run", run, "solid"), ("baseline", base, "dash")):
        for split, key in (("train", "data_loss"), ("validation", "val_data_loss")):
            trace = lines[f"{split} ({who})"]
            assert trace["line"]["dash"] == dash
            assert trace["x"] == [1, 2]
            assert trace["y"] == pytest.approx([getattr(r, key) for r in records], rel=1e-12)
    # the page trains what its settings say: a training of the same settings outside the app agrees
    for who, settings in (("this run", SMALL), ("baseline", SMALL.baseline())):
        direct = [r.val_data_loss for r in small_records[settings]]
        assert lines[f"validation ({who})"]["y"] == pytest.approx(direct, rel=1e-4)
    assert charts(at)["Loss"]["layout"]["xaxis"]["range"] == [0.5, 2.5]


def test_keras_loss_toggle_adds_the_penalty(app, small_in_store):
    """With "keras_loss" on, the loss chart shows cross-entropy plus penalty; the baseline has no penalty."""
    at = open_app(SMALL_LINK)
    assert all("from the store" in line for line in progress(at))
    at.toggle(key="keras_loss").set_value(True)
    at.run()
    assert not at.exception, at.exception
    run, base = small_in_store[SMALL], small_in_store[SMALL.baseline()]
    lines = traces(charts(at)["Loss"])
    penalty = np.array([r.penalty for r in run])
    assert (penalty > 0).all()
    run_val = np.array([r.val_data_loss for r in run])
    assert lines["validation (this run)"]["y"] == pytest.approx(run_val + penalty, rel=1e-9)
    assert lines["train (this run)"]["y"] == pytest.approx([r.loss for r in run], rel=1e-12)
    assert lines["validation (baseline)"]["y"] == pytest.approx([r.val_data_loss for r in base], rel=1e-12)
    assert "as Keras reports it" in charts(at)["Loss"]["layout"]["yaxis"]["title"]["text"]
    at.toggle(key="keras_loss").set_value(False)
    at.run()
    lines = traces(charts(at)["Loss"])
    assert lines["validation (this run)"]["y"] == pytest.approx(run_val, rel=1e-12)


def test_progress_and_charts_stream_epoch_by_epoch(app):
    """While training, each rerun shows the epochs so far: a progress line and that many points per curve."""
    at = open_app(SMALL_LINK | {"epochs": "3"})
    settings = SMALL.replace(epochs=3)
    assert re.fullmatch(
        r"Baseline: waiting for a free trainer, place 1 in the queue, "
        r"starts in about \d+ s, trains in about \d+ s\.",
        progress(at)[1],
    ), progress(at)
    run = next(r for r in app.watched if r.settings == settings)
    app.open(1)  # one epoch of the run
    end = time.monotonic() + DEADLINE
    version = run.version
    while len(run.records()) < 1:
        assert time.monotonic() < end, "the first epoch never came"
        version = run.wait_for_change(version, max(0.0, end - time.monotonic()))
    at.run()
    assert progress(at)[0].startswith("This run: training, epoch 1 of 3")
    lines = traces(charts(at)["Loss"])
    assert lines["train (this run)"]["x"] == [1]
    assert "train (baseline)" not in lines
    assert charts(at)["Loss"]["layout"]["xaxis"]["range"] == [0.5, 3.5]  # the axis does not rescale
    at = finish(at, app)
    assert traces(charts(at)["Loss"])["train (this run)"]["x"] == [1, 2, 3]


# ---- the CSV ---------------------------------------------------------------------------------------------


def test_csv_has_a_row_per_epoch_of_run_and_baseline(app, small_in_store, media):
    """The download holds epoch, losses, penalty, AUC and a run column; one row per run and baseline epoch."""
    at = finish(open_app(SMALL_LINK), app)
    assert all("from the store" in line for line in progress(at))
    table = pd.read_csv(io.BytesIO(downloaded(at, media)))
    assert {"epoch", "data_loss", "val_data_loss", "penalty", "val_auc", "run"} <= set(table.columns)
    assert len(table) == 2 * SMALL.epochs
    for label, settings in (("run", SMALL), ("baseline", SMALL.baseline())):
        rows = table[table["run"] == label].sort_values("epoch")
        records = small_in_store[settings]
        assert rows["epoch"].tolist() == [1, 2]
        for column in ("data_loss", "val_data_loss", "penalty", "val_auc"):
            assert rows[column].tolist() == pytest.approx([getattr(r, column) for r in records], rel=1e-12)
    assert (table[table["run"] == "baseline"]["penalty"] == 0).all()


def test_csv_of_an_unregularized_run_lists_each_epoch_once(app, small_in_store, media):
    """When the run is its own baseline, the CSV has one row per epoch, not the same rows twice."""
    at = finish(open_app(SYNTH | {"width": "4", "epochs": "2"}), app)  # SMALL's baseline
    assert progress(at) == ["This run: from the store, all 2 epochs (trained before)."]
    table = pd.read_csv(io.BytesIO(downloaded(at, media)))
    assert table["epoch"].tolist() == [1, 2]


# ---- the Keras code --------------------------------------------------------------------------------------

CODE_CASES = {
    "l2": {"width": "8", "l2": "0.001"},
    "l1 and dropout": {"l1": "0.0003", "dropout": "0.5", "depth": "3"},
    "l1_l2 and dropout": {"l1": "1e-05", "l2": "0.0003", "dropout": "0.2", "width": "4", "optimizer": "adam"},
    "none": {"depth": "1", "optimizer": "sgd", "learning_rate": "0.01"},
    "between stops": {"l2": "0.000123456789", "dropout": "0.123456789", "learning_rate": "0.00077777777"},
}


def describe(model: keras.Model) -> list[tuple]:
    """Each layer's type, units, activation, regularizer (class and config) and dropout rate."""
    rows = []
    for layer in model.layers:
        reg = getattr(layer, "kernel_regularizer", None)
        rows.append((
            type(layer).__name__,
            getattr(layer, "units", None),
            getattr(getattr(layer, "activation", None), "__name__", None),
            None if reg is None else (type(reg).__name__, reg.get_config()),
            getattr(layer, "rate", None),
        ))  # fmt: skip
    return rows


@pytest.mark.parametrize("case", list(CODE_CASES))
def test_exported_code_builds_the_same_model(app, case):
    """The "Show Keras code" listing, run, builds the app's model: layers, penalties, dropout, optimizer."""
    at = open_app(SYNTH | CODE_CASES[case])
    settings = shown_settings(at)
    namespace: dict = {}
    exec(keras_code_shown(at), namespace)  # the code a teacher would paste into a notebook
    model = namespace["model"]
    reference = build_model(settings, data.load(settings.dataset).num_features)
    assert model.input_shape == reference.input_shape
    assert describe(model) == describe(reference)
    optimizer = build_optimizer(settings)
    assert type(model.optimizer) is type(optimizer)
    assert float(model.optimizer.learning_rate) == float(optimizer.learning_rate)


# ---- data and the store ----------------------------------------------------------------------------------


def test_the_reuters_bottleneck_preset_without_reuters_falls_back_to_the_offline_topics(app, monkeypatch):
    """Chapter 3's preset picks Reuters with the book's 64-4 network; with no Reuters file and no
    network, the page says so in one line and trains the same network on the offline topics."""

    def no_network(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.delenv(data.REUTERS_PATH_ENV, raising=False)
    monkeypatch.setattr(keras.datasets.reuters, "load_data", no_network)
    data._load_cached.cache_clear()
    at = open_app(SYNTH | {"seed": "5", "epochs": "2"})
    presets(at).set_value("Reuters bottleneck 64-4")
    at.run()
    assert not at.exception, at.exception
    (notice,) = [i.value for i in at.info]
    assert "Reuters" in notice and "topics" in notice and "\n" not in notice
    want = Settings.for_dataset("topics", width=64, last_width=4, seed=5)
    assert shown_settings(at) == want and asked(app)[0] == want
    assert "Dense(64, relu) → Dense(4, relu) → Dense(46, softmax)" in at.caption[0].value
    at = finish(at, app)
    assert "validation top-3 accuracy (this run)" in traces(charts(at)["Accuracy"])


def test_choosing_reuters_takes_the_books_network_for_it(app, monkeypatch):
    """Picking a dataset in the sidebar starts from its book network: Reuters 64 units, IMDB 16."""
    monkeypatch.setenv(data.REUTERS_PATH_ENV, "/nonexistent/reuters.npz")  # fails at once: offline topics
    at = open_app(SYNTH)
    controls(at)["dataset"].set_value("topics").run()
    assert controls(at)["width"].value == 64 and at.query_params.get("width") is None
    controls(at)["dataset"].set_value("synthetic").run()
    assert controls(at)["width"].value == 16


def test_a_failed_imdb_download_falls_back_to_the_offline_dataset(app, monkeypatch):
    """Without a local IMDB file and with the download failing, the page says so in one line and goes on."""
    calls = []

    def no_network(*args, **kwargs):
        calls.append(kwargs)
        raise OSError("network unreachable (test)")

    monkeypatch.delenv(data.IMDB_PATH_ENV, raising=False)
    monkeypatch.setattr(keras.datasets.imdb, "load_data", no_network)
    data._load_cached.cache_clear()
    at = open_app({"width": "4", "epochs": "2"})
    assert calls, "the app tried the download"
    assert len(at.info) == 1
    notice = at.info[0].value
    assert "\n" not in notice
    assert "IMDB" in notice and "synthetic" in notice
    assert controls(at)["dataset"].value == "synthetic"
    assert asked(app)[0] == expected(width=4, epochs=2)
    assert at.query_params["dataset"] == "synthetic"
    assert "SYNTHETIC" in at.caption[0].value


def test_a_second_session_gets_the_run_from_the_store(app, store_path):
    """A run finished in one session is served to a later one (after a restart) from the store, untrained."""
    first = finish(open_app(SMALL_LINK), app)
    assert all("done" in line for line in progress(first))
    trained_before = list(app.trained)
    assert trained_before == [SMALL, SMALL.baseline()]
    st.cache_resource.clear()  # a new server process: a new backend on the same store file
    second = open_app(SMALL_LINK)
    assert progress(second) == [
        "This run: from the store, all 2 epochs (trained before).",
        "Baseline: from the store, all 2 epochs (trained before).",
    ]
    assert app.trained == trained_before  # nothing trained again
    lines = traces(charts(second)["Loss"])
    records = stored(store_path, SMALL)
    assert lines["validation (this run)"]["y"] == pytest.approx([r.val_data_loss for r in records], rel=1e-12)


def test_a_second_session_in_the_same_process_shares_the_finished_run(app):
    """Another tab with the same settings sees the finished run at once and starts no training."""
    finish(open_app(SMALL_LINK), app)
    trained_before = list(app.trained)
    second = open_app(SMALL_LINK)
    assert all("done" in line or "from the store" in line for line in progress(second))
    assert app.trained == trained_before


# ---- the page while workers start, fail, or refuse a run -------------------------------------------------


class SlowToStart(ThreadExecutor):
    """Trains in threads, but describes no dataset until `up` is set, as workers loading TensorFlow."""

    def __init__(self, train):
        super().__init__(train)
        self.up = threading.Event()

    def describe(self, dataset, timeout=None):
        assert self.up.wait(DEADLINE), "the test never let the workers come up"
        return super().describe(dataset, timeout)


class NeverStarts(ThreadExecutor):
    """An executor whose workers cannot start: every training ends with its one-line problem."""

    PROBLEM = (
        "the training workers cannot start: ModuleNotFoundError: No module named 'tensorflow' (exit code 1)"
    )

    def start(self, job):
        job.end(self.PROBLEM)

    def problem(self):
        return self.PROBLEM


@pytest.fixture
def serve_with(store_path, monkeypatch):
    """Serve the app with a real RunService on an executor the test chooses; shut down after."""
    monkeypatch.setenv("REGVIZ_PREFETCH", "0")  # only the runs the test's page asks for
    made = []

    def serve(executor_class, **service_kwargs):
        class Service(regviz.service.RunService):
            def __init__(self):
                super().__init__(executor=executor_class(train_here), **service_kwargs)
                made.append(self)

        monkeypatch.setattr(regviz.service, "RunService", Service)
        st.cache_resource.clear()
        return made

    yield serve
    st.cache_resource.clear()
    for service in made:
        if isinstance(service.executor, SlowToStart):
            service.executor.up.set()
        assert service.close(timeout=DEADLINE)


def wait_described(service: regviz.service.RunService, dataset: str) -> None:
    """Poll, with a deadline, until the service's background request has described the dataset."""
    end = time.monotonic() + DEADLINE
    while service.known_info(dataset) is None:
        assert time.monotonic() < end, f"{dataset} was never described"
        time.sleep(0.05)  # poll interval, bounded by the deadline


def test_the_page_draws_frames_while_workers_start(serve_with):
    """Before a worker has described the data, the page shows its controls, empty charts and one line."""
    services = serve_with(SlowToStart)
    at = open_app(SMALL_LINK)
    assert progress(at) == ["Starting the trainer: loading TensorFlow and the data (after a restart only)…"]
    assert set(charts(at)) == {"Loss", "Accuracy", "First", "Weight"}
    assert "loading the data" in at.caption[0].value and controls(at)["width"].value == 4
    services[0].executor.up.set()
    wait_described(services[0], "synthetic")
    at.run()
    assert not at.exception and len(progress(at)) == 2 and "Starting" not in progress(at)[0]
    assert "training examples" in at.caption[0].value


def test_workers_that_cannot_start_are_one_line_on_the_page(serve_with):
    """A server whose workers cannot start says so once at the top, and each run shows it as its failure."""
    services = serve_with(NeverStarts)
    at = open_app(SMALL_LINK)
    assert [e.value for e in at.error] == [f"Training is not available on this server: {NeverStarts.PROBLEM}"]
    # the runs are asked for once the data is described (in the background: the first script run may
    # come before it, as when the synthetic data is not yet generated in this process)
    wait_described(services[0], "synthetic")
    at.run()
    assert len(progress(at)) == 2, progress(at)
    assert all("training failed: the training workers cannot start" in line for line in progress(at))
    assert not at.exception and len(at.get("button")) >= 1


class NeverDescribes(NeverStarts):
    """Workers that cannot start cannot describe a dataset either (as real worker processes)."""

    def describe(self, dataset, timeout=None):
        raise WorkersUnavailable(self.PROBLEM)


def test_workers_that_cannot_start_nor_describe_never_say_the_trainer_is_starting(serve_with):
    """The page waits for the data's description: its line says no worker can start, as the error
    line above it does, rather than "Starting the trainer" for ever."""
    serve_with(NeverDescribes)
    at = open_app(SMALL_LINK)
    assert [e.value for e in at.error] == [f"Training is not available on this server: {NeverStarts.PROBLEM}"]
    lines = progress(at)
    assert lines and all(line.startswith("Waiting for a training worker: none can start") for line in lines)
    assert "(waiting for a training worker)" in at.caption[0].value
    assert "loading the data" not in at.caption[0].value
    assert not at.exception


def test_a_failed_run_can_be_retried_from_the_page(app, monkeypatch):
    """A training that fails shows one line and a retry button; the retry trains it again to the end."""
    calls = []
    real = train_here

    def fails_once(settings, cancel=None):
        calls.append(settings)
        if settings == SMALL and calls.count(SMALL) == 1:
            raise RuntimeError("the training process stopped (killed by SIGKILL)")
        return real(settings, cancel)

    monkeypatch.setattr(sys.modules[__name__], "train_here", fails_once)
    at = finish(open_app(SMALL_LINK), app)
    assert (
        progress(at)[0]
        == "This run: training failed: RuntimeError: the training process stopped (killed by SIGKILL)"
    )
    at.button(key="retry-this run").click().run()
    at = finish(at, app)
    assert progress(at)[0] == "This run: done, 2 of 2 epochs." and calls.count(SMALL) == 2


def test_a_run_over_the_cost_limit_is_refused_with_what_to_lower(serve_with, monkeypatch):
    """A link to a run estimated above REGVIZ_MAX_RUN_SECONDS is not trained; the page says why."""
    services = serve_with(ThreadExecutor, max_run_seconds=5.0)
    at = open_app({"dataset": "synthetic", "width": "512", "depth": "4", "epochs": "100", "batch_size": "32"})
    # the estimate needs the data's description, asked in the background (the first script run may come
    # before it, under load: CI of f996ca4 saw the "Starting the trainer" line here)
    wait_described(services[0], "synthetic")
    at.run()
    line = progress(at)[0]
    assert line.startswith("This run: not trained. This run would take about")
    assert "REGVIZ_MAX_RUN_SECONDS" in line and "Lower the epochs" in line
    assert not at.exception


# ---- pinned runs -----------------------------------------------------------------------------------------


def pin_button(at: AppTest):
    return next(b for b in at.button if b.key == "pin")


def pins_in_link(at: AppTest) -> list[str]:
    value = at.query_params.get("pin", [])
    return value if isinstance(value, list) else [value]


def test_pinning_a_run_keeps_it_on_the_charts_and_in_the_link_after_a_move(app, small_in_store):
    """Pin the stored run, move L2: the pinned run's validation curve stays, named by what differs from
    the baseline, the link carries it, and the table lists run, baseline and pin."""
    at = open_app(SMALL_LINK)
    pin_button(at).click().run()
    assert pins_in_link(at) == ["dataset:synthetic,width:4,l2:0.001,epochs:2"]
    assert pin_button(at).disabled  # already pinned
    controls(at)["l2"].set_value(0.01).run()
    at = finish(at, app)
    lines = traces(charts(at)["Loss"])
    pinned = lines["validation (pin 1: L2 0.001)"]
    assert pinned["x"] == [1, 2] and pinned["line"]["dash"] == "dot"
    want = [r.val_data_loss for r in small_in_store[SMALL]]
    assert pinned["y"] == pytest.approx(want)
    assert "validation accuracy (pin 1: L2 0.001)" in traces(charts(at)["Accuracy"])
    table = at.dataframe[0].value
    assert list(table["run"]) == ["this run", "baseline", "pin 1"]
    assert list(table["differs"]) == ["L2 0.01", "no regularization", "L2 0.001"]
    assert table["min_val_loss"][2] == pytest.approx(min(want))
    assert at.query_params["l2"] in ("0.01", ["0.01"]) and len(pins_in_link(at)) == 1


def test_a_link_with_pins_reproduces_the_comparison_and_unpin_removes_one(app, small_in_store):
    link = SMALL_LINK | {"l2": "0.01", "pin": ["dataset:synthetic,width:4,epochs:2,l2:0.001"]}
    at = finish(open_app(link), app)
    assert "validation (pin 1: L2 0.001)" in traces(charts(at)["Loss"])
    assert not at.warning
    unpin = next(b for b in at.button if b.key == "unpin-0")
    assert unpin.label == "✕ Unpin 1: L2 0.001"
    unpin.click().run()
    assert "pin" not in at.query_params
    assert not any("pin" in name for name in traces(charts(at)["Loss"]))
    assert not at.dataframe


def test_a_hostile_pin_list_opens_with_a_notice_and_the_good_pins(app):
    good = [
        f"dataset:synthetic,width:4,epochs:2,l2:{v}"
        for v in ("0.001", "0.01", "0.1", "0.0001", "0.0003", "0.003")
    ]
    link = SMALL_LINK | {"pin": ["<b>bold</b>", good[0], good[0], *good[1:], "dataset:synthetic,l2:1e-05"]}
    at = open_app(link)
    text = warnings_text(at)
    assert "not a pin" in text and "pinned twice" in text and "at most 6 pinned runs" in text
    assert "`pin='<b>bold</b>'`" in text  # in a code span: shown as typed, never as markup
    assert len(pins_in_link(at)) == 6
    assert pin_button(at).disabled  # six pinned already


# ---- the sweep page ----------------------------------------------------------------------------------------

SWEEP_BASE = Settings(dataset="synthetic", width=4, epochs=2)
SWEEP_LINK = {"dataset": "synthetic", "width": "4", "epochs": "2"}
GRID = {"l2": [0.0, 0.001], "dropout": [0.0, 0.5]}


@pytest.fixture(scope="module")
def grid_records() -> dict[Settings, list]:
    """The 2 x 2 grid's cells trained once, straight through regviz.training: no app, no store."""
    cells = [SWEEP_BASE.replace(l2=l2, dropout=d) for l2 in GRID["l2"] for d in GRID["dropout"]]
    return {cell: list(loop.train(cell)) for cell in cells}


def open_sweep(params: dict) -> AppTest:
    """The sweep page opened from a link with these query parameters (AppTest starts on the main page)."""
    at = open_app(SWEEP_LINK)
    at.query_params.clear()
    at.query_params.update(params)
    at.switch_page("ui/sweep.py").run()
    assert not at.exception, at.exception
    return at


def sweep_chart(at: AppTest) -> dict:
    (chart,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return chart


def test_a_sweep_link_draws_the_stored_cells_at_once_with_their_summaries(app, store_path, grid_records):
    """Every cell stored: the heatmap shows each cell's lowest validation loss as the store has it, the
    best outlined, and nothing trains; the link keeps the grid and the metric."""
    store = RunStore(store_path)
    for cell, records in grid_records.items():
        store.put(cell, data.load("synthetic").version, records)
    at = open_sweep({**SWEEP_LINK, "vary": ["l2:0,0.001", "dropout:0,0.5"], "metric": "min_val_loss"})
    trace = sweep_chart(at)["data"][0]
    want = [min(r.val_data_loss for r in grid_records[c]) for c in sweep.cells(SWEEP_BASE, GRID)]
    assert trace["marker"]["color"] == pytest.approx(want)
    assert trace["x"] == ["0", "0", "0.001", "0.001"] and trace["y"] == ["0", "0.5", "0", "0.5"]
    best = want.index(min(want))
    assert [w == 3 for w in trace["marker"]["line"]["width"]] == [i == best for i in range(4)]
    cells = set(grid_records)
    assert not cells & set(app.trained)
    assert {r.settings for r, p in zip(app.watched, app.priorities, strict=True) if p == SWEEP} == cells
    table = at.dataframe[0].value
    assert list(table["lowest validation loss"]) == pytest.approx(sorted(want))
    assert at.query_params["vary"] == ["l2:0,0.001", "dropout:0,0.5"]


def test_a_sweep_trains_its_missing_cells_and_they_fill_in(app):
    """Cells not stored train (at sweep priority) and their values appear as they finish."""
    at = open_sweep({**SWEEP_LINK, "vary": ["dropout:0,0.5"], "metric": "best_epoch"})
    assert sweep_chart(at)["data"][0]["y"] == []  # nothing finished yet
    app.open()
    for run in app.watched:
        assert run.wait(DEADLINE)
    at.run()
    curve = sweep_chart(at)
    line, best = curve["data"]
    assert line["name"] == "best epoch (lowest validation loss)" and len(line["y"]) == 2
    assert best["name"].startswith("best: ")
    assert {s.dropout for s in app.trained} == {0.0, 0.5} and not at.warning


@pytest.mark.parametrize(
    "vary, why",
    [
        (["nope:1,2"], "unknown setting"),
        (["l2:0,7"], "a number from 0.0 to 0.1"),
        (["l2:0"], "at least two values"),
        (["width:1,2,4,8,16,32,64", "l2:0,1e-05,3e-05,0.0001,0.0003,0.001"], "at most 36"),
        (["l2:0,0.1", "l1:0,0.1", "dropout:0,0.5"], "at most 2"),
    ],
)
def test_a_bad_sweep_link_opens_with_one_line_and_no_sweep(app, vary, why):
    at = open_sweep({**SWEEP_LINK, "vary": vary})
    assert why in warnings_text(at) and "not started" in warnings_text(at)
    assert not at.get("plotly_chart") and SWEEP not in app.priorities


def test_the_grid_choosers_default_is_what_they_hold_so_a_recreated_one_keeps_the_choice(app):
    """As the sidebar's controls: a browser that re-creates a sweep chooser from its default gets the
    choice it held, not an empty one."""
    at = open_sweep({**SWEEP_LINK, "vary": ["dropout:0,0.5"], "metric": "best_epoch"})
    at.multiselect(key="sweep_vary").set_value(["dropout", "l2"]).run()
    at.multiselect(key="sweep_values_l2").set_value([0.0, 0.001]).run()
    for key in ("sweep_vary", "sweep_values_dropout", "sweep_values_l2"):
        chooser = at.multiselect(key=key)
        assert browser_default(chooser) == shown_value(chooser), key
    assert at.multiselect(key="sweep_values_l2").value == [0.0, 0.001]
    metric = at.selectbox(key="sweep_metric")
    assert metric.value == "best_epoch" and browser_default(metric) == shown_value(metric)


def test_the_grid_chooser_refuses_too_many_cells_and_runs_a_good_grid(app):
    """Chosen values over 36 cells: the Run button is off with the reason; a good choice runs the sweep."""
    at = open_sweep(SWEEP_LINK)
    at.multiselect(key="sweep_vary").set_value(["width", "l2"]).run()
    at.multiselect(key="sweep_values_width").set_value(list(sweep.MENUS["width"])).run()
    at.multiselect(key="sweep_values_l2").set_value(list(sweep.MENUS["l2"])).run()
    run = at.button(key="sweep_run")
    assert run.disabled and "100 cells" in run.proto.help
    at.multiselect(key="sweep_values_width").set_value([16, 4]).run()
    at.multiselect(key="sweep_values_l2").set_value([0.0, 0.01]).run()
    at.button(key="sweep_run").click().run()
    assert at.query_params["vary"] == ["width:4,16", "l2:0,0.01"]
    watched = zip(app.watched, app.priorities, strict=True)
    cells = {(r.settings.width, r.settings.l2) for r, p in watched if p == SWEEP}
    assert cells == {(4, 0.0), (4, 0.01), (16, 0.0), (16, 0.01)}
    at.multiselect(key="sweep_values_l2").set_value([0.0, 0.001]).run()
    at.button(key="sweep_run").click().run()  # a new grid: the old grid's cells nobody else waits for stop
    dropped = [r for r in app.watched if r.settings.l2 == 0.01]
    assert dropped and all(r.wait(DEADLINE) and r.state == "cancelled" for r in dropped)


def test_a_store_that_cannot_be_reached_is_one_line_and_runs_still_train(app, monkeypatch):
    """REGVIZ_STORE names a PostgreSQL server that is not there: the page says so in one line (no
    password, no traceback), the run trains and is shown, and nothing raises."""
    pytest.importorskip("psycopg", reason="no PostgreSQL driver (requirements-postgres.txt)")
    monkeypatch.setenv("REGVIZ_STORE", "postgresql://regviz:hunter2@127.0.0.1:9/nowhere")
    at = finish(open_app(SMALL_LINK), app)
    (line,) = [w.value for w in at.warning if "Store of finished runs" in w.value]
    assert "127.0.0.1:9" in line and "hunter2" not in line and "\n" not in line
    assert all("done, 2 of 2 epochs" in p for p in progress(at))


def test_a_regression_dataset_shows_its_error_and_says_how_its_features_are_scaled(app, media):
    """houses (offline Boston): the network ends in one linear unit, the second chart is the mean
    absolute error, the page says the features are standardised on the training part only, and the
    CSV has MAE columns, no accuracy."""
    at = finish(open_app({"dataset": "houses", "epochs": "3", "validation": "holdout"}), app)
    assert "Dense(64, relu) → Dense(64, relu) → Dense(1)" in at.caption[0].value
    assert any("training part only" in c.value for c in at.caption)
    lines = traces(charts(at)["Mean"])
    assert {"train MAE (this run)", "validation MAE (this run)"} <= set(lines)
    run = app.watched[0]
    assert lines["validation MAE (this run)"]["y"] == pytest.approx([r.val_mae for r in run.records()])
    header = downloaded(at, media).decode().splitlines()[0].split(",")
    assert "val_mae" in header and "mae" in header and "val_accuracy" not in header


# ---- K-fold validation ---------------------------------------------------------------------------------

KFOLD_LINK = {"dataset": "houses", "validation": "kfold", "folds": "3", "epochs": "3", "width": "16"}


def test_k_fold_trains_a_model_per_fold_and_draws_their_mean_band_and_folds(app):
    """validation kfold, 3 folds: three fold runs each of run and baseline; the loss chart's validation
    curve is the folds' mean (each fold faint, one standard deviation as a band), the reading says
    how much the folds disagree."""
    at = finish(open_app(KFOLD_LINK), app)
    want = Settings.from_params(KFOLD_LINK)
    assert {r.settings for r in app.watched} == {*want.fold_runs(), *want.baseline().fold_runs()}
    folds = [list(loop.train(f)) for f in want.baseline().fold_runs()]  # the run is its own baseline here
    lines = traces(charts(at)["Loss"])
    mean = np.mean([[r.val_data_loss for r in f] for f in folds], axis=0)
    assert lines["validation (this run)"]["y"] == pytest.approx(list(mean), rel=1e-6)
    assert "validation ± 1 sd of 3 folds (this run)" in lines and "validation, each fold" in lines
    assert sum(t.get("legendgroup") == "folds" for t in charts(at)["Loss"]["data"]) == 3
    assert any("The 3 folds" in m.value for m in at.markdown)
    assert "3-fold validation over 404 examples" in at.caption[0].value
    assert "validation" not in at.query_params  # 4-fold K-fold is houses' own default protocol
    assert at.query_params["folds"] == "3"


def test_a_k_fold_run_whose_folds_are_stored_appears_at_once(app, store_path):
    """Every fold is a stored run: with all of them in the store, the page trains nothing."""
    want = Settings.from_params(KFOLD_LINK)
    store = RunStore(store_path)
    for fold in want.fold_runs():
        store.put(fold, data.load("houses").version, list(loop.train(fold)))
    at = open_app(KFOLD_LINK)
    assert all("from the store" in line for line in progress(at)) and app.trained == []


def test_the_fold_controls_only_apply_to_the_protocols_that_use_them(app):
    at = open_app(SYNTH)
    assert controls(at)["folds"].disabled and controls(at)["repeats"].disabled
    controls(at)["validation"].set_value("iterated").run()
    assert not controls(at)["folds"].disabled and not controls(at)["repeats"].disabled
    assert at.query_params["validation"] == "iterated"
    runs = {r.settings for r in app.watched if r.settings.validation == "iterated"}
    assert {(r.fold, r.repeat) for r in runs} == {(f, k) for f in range(4) for k in range(2)}


def test_the_final_evaluation_trains_on_all_training_data_and_reports_test_figures_once(app):
    """The expander's button trains the settings on the whole training split for the validation
    curve's best epoch and shows the test figures, labelled as test, from that run's one evaluation."""
    at = finish(open_app(SMALL_LINK), app)
    run = next(r for r in app.watched if r.settings == SMALL)
    best = min(run.records(), key=lambda r: r.val_data_loss).epoch
    at.button(key="final_button").click().run()
    at = finish(at, app)
    final = SMALL.final_run(best)
    assert final in {r.settings for r in app.watched}
    ds = data.load("synthetic")
    x, y = ds.whole_training_split()
    want = list(loop.fit(final, x, y, ds.x_test, ds.y_test))[-1]
    (line,) = [s.value for s in at.success if "Test figures" in s.value]
    assert f"for {best} epochs" in line
    assert f"test loss (binary cross-entropy) {want.val_data_loss:.4f}" in line
    assert f"test accuracy {want.val_accuracy:.4f}" in line and "test ROC AUC" in line


def test_a_sweep_of_k_fold_runs_draws_each_cells_fold_mean_with_its_band(app):
    """K-fold cells: the validation curve is each cell's folds' mean value, with a band of one standard
    deviation over the folds; every fold is a run the sweep watches."""
    link = {"dataset": "houses", "epochs": "2", "folds": "2", "width": "8", "vary": ["dropout:0,0.5"]}
    at = open_app({k: v for k, v in link.items() if k != "vary"})  # the session's settings: houses
    at.query_params.update(link)
    at.switch_page("ui/sweep.py").run()
    app.open()
    for run in app.watched:
        assert run.wait(DEADLINE)
    at.run()
    band, line, _best = sweep_chart(at)["data"]
    assert band["fill"] == "toself" and len(line["y"]) == 2
    base = Settings.from_params({k: v for k, v in link.items() if k != "vary"})
    for i, dropout in enumerate((0.0, 0.5)):
        folds = [list(loop.train(f)) for f in base.replace(dropout=dropout).fold_runs()]
        mean = np.mean([[r.val_data_loss for r in f] for f in folds], axis=0)
        assert line["y"][i] == pytest.approx(mean.min(), rel=1e-6)


# ---- your own data: an uploaded CSV --------------------------------------------------------------------


def binary_csv(rows: int = 120, seed: int = 3) -> bytes:
    """A small binary file made here: two numeric features, a text one with gaps, a yes/no label."""
    rng = np.random.default_rng(seed)
    lines = ["id,size,weight,colour,bought"]
    for i in range(rows):
        size, weight, colour = rng.normal(), rng.normal(), rng.choice(["red", "blue", ""])
        label = "yes" if size + 0.5 * (colour == "red") + rng.normal(0, 0.5) > 0.3 else "no"
        lines.append(f"{i + 1},{size:.3f},{weight:.3f},{colour},{label}")
    return "\n".join(lines).encode()


def regression_csv(rows: int = 150, seed: int = 4) -> bytes:
    """A small regression file made here, semicolon-separated: a price in dollars from two features."""
    rng = np.random.default_rng(seed)
    lines = ["area;rooms;town;price"]
    for _ in range(rows):
        area, rooms, town = rng.uniform(40, 200), rng.integers(1, 6), rng.choice(["north", "south"])
        price = 2500 * area + 8000 * rooms + 30000 * (town == "north") + rng.normal(0, 20000)
        lines.append(f"{area:.1f};{rooms};{town};{price:.0f}")
    return "\n".join(lines).encode()


def upload(at: AppTest, name: str, content: bytes) -> AppTest:
    """The file handed to the Your data page's uploader, the page run again."""
    at.file_uploader(key="upload_file").set_value((name, content, "text/csv")).run()
    assert not at.exception, at.exception
    return at


def data_page(params: dict | None = None) -> AppTest:
    """The Your data page of a new session (opened from a link with these parameters; by default on
    the offline dataset, so that nothing loads IMDB)."""
    at = open_app(params or SYNTH)
    at.switch_page("ui/yourdata.py").run()
    assert not at.exception, at.exception
    return at


def train_on_it(at: AppTest) -> AppTest:
    """Press "Train on this file", then show the explore page (AppTest stays on the page it was told)."""
    at.button(key="upload_use").click().run()
    assert not at.exception, at.exception
    at.switch_page("ui/explore.py").run()
    assert not at.exception, at.exception
    return at


def test_an_uploaded_binary_csv_previews_then_trains_with_live_curves_and_its_listing(app):
    """Upload, preview (rows, type, class balance, what was dropped and imputed), then train: the
    explore page trains the file's K-fold runs (a small file), the curves stream, and the Keras code
    loads the CSV."""
    at = upload(data_page(), "shop.csv", binary_csv())
    shown = {m.label: m.value for m in at.metric}
    assert shown["rows"] == "120" and shown["problem type"] == "binary"
    assert at.selectbox(key="upload_target").value == "bought"
    (balance,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bars = balance["data"][0]
    counts = pd.read_csv(io.BytesIO(binary_csv()))["bought"].value_counts()
    assert dict(zip(bars["x"], bars["y"], strict=True)) == counts.to_dict()
    before = next(m.value for m in at.markdown if "Before training" in m.value).replace("\\", "")
    assert "'id' dropped: an identifier" in before and "'colour'" in before and "imputed" in before
    assert not [s for s in app.trained if s.dataset.startswith("csv-")]  # nothing trains before the button
    at = train_on_it(at)
    controls(at)["epochs"].set_value(3).run()
    at = finish(at, app)
    name = at.session_state["dataset"]
    assert name.startswith("csv-binary-2-") and "shop.csv → bought (binary)" in at.caption[0].value
    assert {r.settings.validation for r in app.watched if r.settings.epochs == 3} == {"kfold"}
    assert all("done, 3 of 3 epochs" in p for p in progress(at))
    lines = traces(charts(at)["Loss"])
    assert len(lines["validation (this run)"]["y"]) == 3
    code = keras_code_shown(at)
    assert "pd.read_csv('shop.csv'" in code and "ColumnTransformer" in code


def test_an_uploaded_regression_csv_shows_its_histogram_and_trains_its_mae(app):
    """A ;-separated file with prices: regression inferred, the target's histogram previewed, and the
    explore page's second chart is the MAE in dollars, streamed epoch by epoch."""
    at = upload(data_page(), "flats.csv", regression_csv())
    at.selectbox(key="upload_target").set_value("price").run()
    shown = {m.label: m.value for m in at.metric}
    assert shown["problem type"] == "regression" and shown["columns"] == "4"
    assert any("semicolon-separated: numbers with" in c.value for c in at.caption)
    (hist,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    values = hist["data"][0]["x"]  # plotly sends a numpy array as base64 bytes
    values = np.frombuffer(base64.b64decode(values["bdata"]), values["dtype"])
    assert hist["data"][0]["type"] == "histogram"
    want = pd.read_csv(io.BytesIO(regression_csv()), sep=";")["price"].to_numpy()
    assert sorted(values) == pytest.approx(sorted(want))
    at = train_on_it(at)
    controls(at)["epochs"].set_value(2).run()
    controls(at)["validation"].set_value("holdout").run()
    at = finish(at, app)
    assert "Dense(1)" in at.caption[0].value
    mae = traces(charts(at)["Mean"])["validation MAE (this run)"]["y"]
    assert len(mae) == 2 and all(v > 1000 for v in mae)  # dollars, not standard deviations


@pytest.mark.parametrize(
    "name, content, why",
    [
        ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "is a PNG image, not a CSV"),
        ("blob.csv", bytes(range(256)) * 8, "is a binary file"),
        ("header.csv", b"a,b,c\n", "has a header line but no rows"),
        ("one.csv", b"a,b\n" + b"1,same\n" * 30, "has one value"),
        ("names.csv", b"a,who\n" + b"".join(b"%d,name%d\n" % (i % 3, i) for i in range(30)), "has one row"),
        ("ids.csv", b"id,y\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(30)), "no usable feature"),
        (
            "wide.csv",
            b",".join(b"c%d" % i for i in range(10_000)) + b"\n" + b"1," * 9999 + b"1\n",
            "10,000 columns",
        ),
    ],
)
def test_a_broken_upload_is_one_line_and_a_good_file_works_after_it(app, name, content, why):
    """A bad file gives one error line and no traceback; the page stays usable and the next, good
    file previews and trains."""
    at = upload(data_page(), name, content)
    (error,) = [e.value for e in at.error]
    assert why in error and "\n" not in error and not at.exception
    at = upload(at, "shop.csv", binary_csv())
    assert not at.error and {m.label: m.value for m in at.metric}["problem type"] == "binary"
    assert at.button(key="upload_use")


def test_a_file_name_with_folders_and_markup_is_shown_literally(app):
    """Path parts are dropped and markup characters removed: the name shows as plain text."""
    at = upload(data_page(), "../../etc/<b>x</b>.csv", binary_csv())
    caption = next(c.value for c in at.caption if "binary classification" in c.value)
    assert caption.startswith("`b.csv`, comma-separated")
    assert caption.startswith("`b.csv`") and "<" not in caption and "etc" not in caption


def test_an_uploaded_file_stays_with_its_session_and_its_link_offers_the_upload_elsewhere(app, store_path):
    """The link of a run on an uploaded file carries no data: a new session opening it sees one line
    saying the data is not here, with the upload offered, and no traceback; after the same file is
    uploaded there, the link's own settings apply. Nothing was stored (keep results was off)."""
    at = train_on_it(upload(data_page(), "shop.csv", binary_csv()))
    controls(at)["l2"].set_value(0.001).run()
    controls(at)["epochs"].set_value(2).run()
    link = {k: v[-1] if isinstance(v, list) else v for k, v in at.query_params.items()}
    name = link["dataset"]
    assert name.startswith("csv-binary-2-") and "shop" not in json.dumps(link)
    at = finish(at, app)
    assert RunStore(store_path).get(Settings.from_params(link), name) is None  # not kept
    other = open_app(link)
    (line,) = [w.value for w in other.warning if "uploaded in another session" in w.value]
    assert "upload the same file" in line and not other.exception
    assert [p.proto.page for p in other.get("page_link")]  # the way to the upload
    other.switch_page("ui/yourdata.py").run()
    assert any("never leaves the session" in i.value for i in other.info)
    other = train_on_it(upload(other, "shop.csv", binary_csv()))
    assert other.session_state["dataset"] == name and other.session_state["l2"] == 0.001
    assert other.session_state["epochs"] == 2 and not other.warning


def test_keep_results_stores_the_runs_curves_and_the_same_file_shows_them_again(app, store_path):
    """With "keep results" ticked, the finished runs go to the store under the file's hash: after a
    restart, another session uploading the same file (under another name) gets them from the store."""
    at = upload(data_page(), "shop.csv", binary_csv())
    at.checkbox(key="upload_keep").check().run()
    at = train_on_it(at)
    controls(at)["epochs"].set_value(2).run()
    controls(at)["validation"].set_value("holdout").run()
    at = finish(at, app)
    settings = Settings(**{f: at.session_state[f] for f in FIELDS})
    assert RunStore(store_path).get(settings, settings.dataset) is not None
    trained = len(app.trained)
    st.cache_resource.clear()  # a new server: nothing in memory, the file forgotten with its session
    other = upload(data_page(), "copy.csv", binary_csv())
    other = train_on_it(other)
    controls(other)["epochs"].set_value(2).run()
    controls(other)["validation"].set_value("holdout").run()
    assert all("from the store" in p for p in progress(other)), progress(other)
    assert settings not in app.trained[trained:] and settings.baseline() not in app.trained[trained:]


def test_a_session_that_ends_forgets_its_uploaded_file(app):
    """The service holds the file while its session is open; the session's release forgets it."""
    at = train_on_it(upload(data_page(), "shop.csv", binary_csv()))
    name = at.session_state["dataset"]
    assert data.uploaded(name) is not None
    st.cache_resource.clear()  # what streamlit does when the session goes: its session resources released
    assert data.uploaded(name) is None


def test_a_file_over_the_upload_limit_is_one_line(app):
    """The browser refuses a file over server.maxUploadSize itself; one that reaches the page anyway
    (another client) is refused by regviz with the limit named."""
    limit = st.get_option("server.maxUploadSize")
    st.config.set_option("server.maxUploadSize", 1)
    try:
        at = upload(data_page(), "big.csv", b"a,b\n" + b"1,2\n" * 300_000)
        (error,) = [e.value for e in at.error]
        assert "big.csv is 1.1 MB; files up to 1 MB can be used" in error
    finally:
        st.config.set_option("server.maxUploadSize", limit)


def test_pins_and_a_sweep_work_on_an_uploaded_file(app):
    """Pin a run on the file and its link carries the pin; the sweep page varies a setting over the
    file's runs, which train (at sweep priority) on the file."""
    at = train_on_it(upload(data_page(), "shop.csv", binary_csv()))
    name = at.session_state["dataset"]
    controls(at)["validation"].set_value("holdout").run()
    controls(at)["epochs"].set_value(2).run()
    controls(at)["l2"].set_value(0.001).run()
    at.button(key="pin").click().run()
    assert not at.exception, at.exception
    assert len(at.session_state["pins"]) == 1 and at.session_state["pins"][0].dataset == name
    at.query_params["vary"] = ["dropout:0,0.5"]
    at.switch_page("ui/sweep.py").run()
    assert not at.exception, at.exception
    app.open()
    for run in app.watched:
        assert run.wait(DEADLINE)
    at.run()
    line, _best = sweep_chart(at)["data"]
    assert len(line["y"]) == 2
    swept = {r.settings for r, p in zip(app.watched, app.priorities, strict=True) if p == SWEEP}
    assert {s.dataset for s in swept} == {name} and {s.dropout for s in swept} == {0.0, 0.5}
    assert swept <= set(app.trained)


def test_the_remedies_page_runs_the_books_remedies_on_an_uploaded_file(app):
    """The four remedies over a 16-16 baseline on half of the file's rows, on its own batches and
    epochs, each a run on the file."""
    at = train_on_it(upload(data_page(), "shop.csv", binary_csv()))
    name = at.session_state["dataset"]
    at.switch_page("ui/remedies.py").run()
    assert not at.exception, at.exception
    assert any("shop.csv → bought (binary)" in c.value for c in at.caption)
    asked = [r.settings for r in app.watched if r.settings.dataset == name and r.settings.width in (4, 16)]
    base = Settings.for_dataset(name)
    assert asked and {(s.batch_size, s.epochs) for s in asked} == {(base.batch_size, base.epochs)}


def test_a_formula_cell_is_shown_literally_in_the_preview(app):
    """A spreadsheet formula (formula injection) is a text cell like any other: the preview shows it as
    typed and it becomes a category, never evaluated or altered."""
    formula = "=cmd|' /C calc'!A0"
    rows = "\n".join(f"{i % 7},{formula if i % 2 else 'plain'},{i % 2}" for i in range(40))
    at = upload(data_page(), "formula.csv", f"x,note,y\n{rows}".encode())
    (preview,) = [d.value for d in at.dataframe]
    assert formula in list(preview["note"]) and not at.error


def test_a_column_name_with_markup_is_shown_as_typed_in_the_notes(app):
    """A column named like a link, HTML and LaTeX, dropped with a note: the note renders as the text
    typed, no link, tag or formula made of it."""
    name = "[x](javascript:alert(1)) <b>$y$</b>"
    rows = "\n".join(f"{i % 5},{'' if i % 20 else 'v'},{i % 2}" for i in range(40))
    at = upload(data_page(), "markup.csv", f'a,"{name}",y\n{rows}'.encode())
    before = next(m.value for m in at.markdown if "Before training" in m.value)
    html = MarkdownIt().render(before)
    assert "<a" not in html and "<b>" not in html and "$y$" in html.replace("\\", "")
    assert "[x](javascript:alert(1)) &lt;b&gt;$y$&lt;/b&gt;" in html


def test_a_data_page_link_with_ignored_entries_gives_the_usual_notice(app):
    """/data?dataset=csv-zz&target=<script> opens on the Your data page with the one warning every page
    gives for a link's ignored entries, the markup shown as text; nothing trains."""
    # the page's own file, as /data runs it first (AppTest opens app.py on its default page only)
    at = AppTest.from_file(str(Path(APP).parent / "ui" / "yourdata.py"), default_timeout=SCRIPT_TIMEOUT)
    at.query_params.update({"dataset": "csv-zz", "target": "<script>"})
    at.run()
    assert not at.exception, at.exception
    (warning,) = [w.value for w in at.warning]
    assert warning.startswith("Some of the link's settings were ignored:")
    assert "`dataset='csv-zz'`" in warning and "`target='<script>'` (unknown setting)" in warning
    assert at.title[0].value == "Your own data" and len(at.get("file_uploader")) == 1
    assert not app.trained


def test_an_upload_over_the_servers_cap_is_one_line_and_holds_nothing(app, monkeypatch):
    """With REGVIZ_MAX_UPLOAD_MB smaller than the file's table, the page refuses it in one line naming
    the setting, and the server holds nothing for the session."""
    monkeypatch.setenv(data.MAX_UPLOAD_MB_ENV, "0.001")
    at = upload(data_page(), "shop.csv", binary_csv())
    (error,) = [e.value for e in at.error]
    assert "REGVIZ_MAX_UPLOAD_MB" in error and "\n" not in error and not at.exception
    assert data.held_bytes() == 0 and not at.get("metric")


def test_sklearns_wine_file_previews_whole_with_one_line_on_its_count_line(app):
    """scikit-learn's wine_data.csv (a first line of 5 fields over rows of 14): the preview has 14
    columns and 13 network inputs, the class column (the last) as the target of a 3-class problem, and
    says in one line that line 1 is not a header (it showed 5 columns and 4 inputs, a feature as target)."""
    import sklearn

    wine = Path(sklearn.__file__).parent / "datasets" / "data" / "wine_data.csv"
    at = upload(data_page(), "wine_data.csv", wine.read_bytes())
    shown = {m.label: m.value for m in at.metric}
    assert (shown["rows"], shown["columns"], shown["network inputs"]) == ("178", "14", "13")
    assert shown["problem type"] == "multiclass" and at.selectbox(key="upload_target").value == "column 14"
    before = next(m.value for m in at.markdown if "Before training" in m.value).replace("\\", "")
    assert "has 5 fields and every row after it 14: it is not a header" in before
    assert not at.error
