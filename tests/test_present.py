"""Presenter links, play / pause / step / replay: the page through AppTest, the clock as a pure function."""

from __future__ import annotations

import pytest

from regviz import playback
from regviz.playback import Clock
from tests.test_app import (  # noqa: F401  (fixtures used by name)
    SMALL,
    SMALL_LINK,
    SYNTH,
    app,
    asked,
    charts,
    controls,
    open_app,
    small_in_store,
    small_records,
    store_path,
    traces,
    warnings_text,
)

RUN_VAL = "validation (this run)"


@pytest.fixture
def recorder(request):
    """The app fixture's Recorder (tests/test_app.py): what the page's backends trained and watched."""
    return request.getfixturevalue("app")


@pytest.fixture
def stored(request) -> dict:
    """SMALL and its baseline already in this test's store, by settings (tests/test_app.py)."""
    return request.getfixturevalue("small_in_store")


def main_widgets(at) -> dict:
    """The main area's widgets that have a key, by key."""
    return {w.key: w for w in at.main if getattr(w, "key", None)}


def shown_epochs(at) -> int:
    """Points of this run's validation curve on the loss chart."""
    return len(traces(charts(at)["Loss"])[RUN_VAL]["x"])


def info_text(at) -> str:
    return "\n".join(i.value for i in at.info)


# ---- the presenter view ------------------------------------------------------------------------------


def test_a_presenter_link_hides_the_controls_and_shows_the_named_ones(recorder):
    """present=1&show=l2,dropout: no setting in the sidebar, those two in the main area, driving the run."""
    at = open_app(SYNTH | {"present": "1", "show": "l2,dropout"})
    assert controls(at) == {}
    main = main_widgets(at)
    assert {"l2", "dropout"} <= set(main)
    assert not {"width", "epochs", "keras_loss", "pin"} & set(main)
    assert not at.title and not at.code  # no title, no share link or code: the chart has the screen
    assert at.query_params["present"] == "1" and at.query_params["show"] == "l2,dropout"
    main["l2"].set_value(0.01).run()
    assert not at.exception
    assert asked(recorder)[0].l2 == 0.01


def test_show_with_unknown_or_hostile_names_is_noted_and_the_rest_applies(recorder):
    """Unknown show= entries are named in the usual notice of ignored link entries; the known ones show."""
    at = open_app(SYNTH | {"present": "1", "show": "l2,seeded,[x](https://evil.example)"})
    text = warnings_text(at)
    assert "Some of the link's settings were ignored" in text
    assert "seeded" in text and "evil.example" in text
    assert "l2" in main_widgets(at) and "seeded" not in main_widgets(at)
    assert at.query_params["show"] == "l2"


def test_a_plain_link_gives_the_normal_page_on_the_same_settings(recorder):
    """The link without present: every control in the sidebar, the title, on the link's settings."""
    at = open_app(SMALL_LINK)
    assert set(controls(at)) >= {"l2", "width", "epochs"}
    assert at.title and not warnings_text(at)
    assert asked(recorder)[0] == SMALL
    assert "present" not in at.query_params


def test_a_presenter_link_draws_the_headline_and_the_loss_chart(recorder, stored):
    """The presenter view of a stored run: the reading's first line in the headline, the loss chart alone."""
    at = open_app(SMALL_LINK | {"present": "1"})
    assert list(charts(at)) == ["Loss"]
    assert shown_epochs(at) == SMALL.epochs
    # the headline: the reading's comparison with the baseline at the last epoch (regviz.reading)
    said = [m.value for m in at.main.markdown if m.value.startswith("With L2 = 0.001 the validation loss")]
    assert len(said) == 1 and f"at epoch {SMALL.epochs} is" in said[0], said


# ---- pause, step, replay on the page -----------------------------------------------------------------


def test_a_stored_run_opens_paused_from_the_link_and_steps(recorder, stored):
    """pause=1 on a stored run: one epoch, labelled a replay; Step shows the next; the link keeps it."""
    at = open_app(SMALL_LINK | {"pause": "1"})
    assert shown_epochs(at) == 1
    assert "Replay of the stored run" in info_text(at) and "training" not in info_text(at)
    assert at.query_params["pause"] == "1"
    at.button(key="step").click().run()
    assert shown_epochs(at) == 2
    assert at.query_params["pause"] == "2"
    assert not recorder.trained  # a replay trains nothing


def test_a_bad_pause_or_pace_in_the_link_is_noted(recorder):
    """pause=0 and pace=fast are named in the notice; the page opens live."""
    at = open_app(SYNTH | {"pause": "0", "pace": "fast"})
    text = warnings_text(at)
    assert "pause" in text and "pace" in text
    assert "pause" not in at.query_params and "pace" not in at.query_params


# ---- the clock -------------------------------------------------------------------------------------------


def test_a_live_clock_shows_every_epoch_until_paused():
    """Live: all n epochs; paused: the epoch it held, however many more arrive."""
    live = Clock()
    assert playback.shown(live, 100.0, 7) == 7
    held = playback.pause(live, 100.0, 7)
    assert [playback.shown(held, 100.0 + t, n) for t, n in ((0, 7), (5, 9), (50, 20))] == [7, 7, 7]


def test_step_shows_one_more_epoch_and_stops_at_the_last():
    """Step from a pause at k holds at k+1; never past the epochs there are."""
    c = Clock(paused=3)
    c = playback.step(c, 0.0, 5)
    assert playback.shown(c, 9.0, 5) == 4
    c = playback.step(playback.step(c, 0.0, 5), 0.0, 5)
    assert c.paused == 5 and playback.shown(c, 0.0, 5) == 5


def test_a_replay_advances_with_time_at_its_pace():
    """A replay from epoch 1 at 0.5 s per epoch: floor(t / 0.5) more epochs after t seconds, capped at n."""
    c = playback.replay(Clock(pace=0.5), now=10.0)
    got = [playback.shown(c, 10.0 + t, 6) for t in (0.0, 0.49, 0.5, 1.2, 2.5, 100.0)]
    assert got == [1, 1, 2, 3, 6, 6]
    assert playback.moving(c, 10.0, 6) and not playback.moving(c, 13.0, 6)


def test_pause_and_resume_a_replay_go_on_from_the_same_epoch():
    """A replay paused at epoch 3 holds there; resumed later, it goes on from 3 at its pace."""
    c = playback.replay(Clock(pace=1.0), now=0.0)
    c = playback.pause(c, 2.0, 10)
    assert playback.shown(c, 60.0, 10) == 3
    c = playback.resume(c, 60.0, 10, finished=True)
    assert [playback.shown(c, 60.0 + t, 10) for t in (0.0, 1.0, 3.0)] == [3, 4, 6]


def test_resuming_a_live_run_catches_up():
    """A live run resumed after a pause shows every epoch it has."""
    c = playback.resume(Clock(paused=2), 5.0, 9, finished=False)
    assert playback.shown(c, 5.0, 9) == 9 and not playback.moving(c, 5.0, 9)


@pytest.mark.parametrize(("seconds", "n", "pace"), [(4.0, 20, 0.2), (60.0, 20, 0.25), (0.1, 20, 0.02)])
def test_the_default_pace_is_the_trained_one_at_most_five_seconds_a_run(seconds, n, pace):
    """Trained pace seconds/n, capped so the whole replay takes at most 5 s (and no faster than 0.02 s)."""
    assert playback.trained_pace(seconds, n) == pytest.approx(pace)
    assert playback.trained_pace(seconds, n) * n <= playback.MAX_REPLAY_S + 1e-9


@pytest.mark.parametrize("raw", ["0", "-1", "x", "1e9", "", "nan"])
def test_a_bad_pause_is_refused(raw):
    """pause must be a whole epoch from 1."""
    with pytest.raises(ValueError):
        playback.read_pause(raw)


@pytest.mark.parametrize("raw", ["0", "0.3", "inf", "nan", "fast"])
def test_a_bad_pace_is_refused(raw):
    """pace must be one of the offered paces."""
    with pytest.raises(ValueError):
        playback.read_pace(raw)
