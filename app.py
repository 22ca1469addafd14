"""regviz: move the sliders, watch regularization work. The only module that imports streamlit."""

from __future__ import annotations

import os
import time
import uuid

import streamlit as st

from regviz import data, figures, pins, reading, remedies
from regviz import settings as settings_mod
from regviz import views as views_mod
from regviz.listing import keras_code
from regviz.records import best_epoch
from regviz.service import RunService, log_to_console
from regviz.settings import PRESETS, Settings
from regviz.views import ViewCache

POLL_SECONDS = 0.5  # how often a page polls a short run in progress (longer ones: views.poll_seconds)...
FULL_RATE_TABS = 3  # ...while at most this many tabs watch it; more tabs poll less often each, so that
# the server's redraws stay bounded (a fragment rerun slower than its interval is preempted by the next)
# after a slider move, the page waits this long for the new run's first epoch before drawing, so that
# the first epoch shows at once rather than at the next poll (a known architecture's epoch takes ~0.1 s)
FIRST_EPOCH_WAIT_S = 0.4
KERAS_LOSS_NOTE = (
    "Keras's loss adds the penalty (the sum of `model.losses`) to the cross-entropy; the data loss leaves "
    "it out, so a regularized run and its baseline are compared on the same scale."
)

st.set_page_config(page_title="regviz: see regularization work", page_icon="📉", layout="wide")


@st.cache_resource(show_spinner=False)
def service() -> RunService:
    """One service per server process: its store, its worker processes and its runs serve every session."""
    log_to_console()
    return RunService()


@st.cache_resource(show_spinner=False)
def views() -> ViewCache:
    """Charts built once per change of a run, shared by every tab that watches it."""
    return ViewCache()


def _forget_session(token: str) -> None:
    # the tab is gone: cancel what only this tab was waiting for
    service().manager.unwatch(token)


@st.cache_resource(scope="session", on_release=_forget_session, show_spinner=False)
def session_token() -> str:
    """This browser tab's name as a watcher of runs."""
    return uuid.uuid4().hex


# ---- settings: from the link once, then from the controls ------------------------------------------


def seed_from_link() -> None:
    """On a session's first run, the link's settings fill the controls; what was ignored is noted."""
    if "seeded" in st.session_state:
        # a widget whose state streamlit dropped (a rerun interrupted before the sidebar was drawn) would
        # come back at its own default, its minimum: give it the value the page last used instead
        for name, value in st.session_state.get("kept", {}).items():
            if name not in st.session_state:
                st.session_state[name] = value
        return
    link = {name: value for name, value in st.query_params.to_dict().items() if name != "pin"}
    settings, dropped = Settings.read_lenient(link)
    repeated = [
        (name[:40], ", ".join(values[:-1])[:40], "given more than once; the last value applies")
        for name in link
        if len(values := st.query_params.get_all(name)) > 1
    ]
    pinned, bad_pins = pins.read(st.query_params.get_all("pin"))
    st.session_state.update(settings.as_dict())
    st.session_state.pins = pinned
    st.session_state.dropped = repeated + dropped + bad_pins
    st.session_state.seeded = True


def ensure_dataset() -> data.DatasetInfo | None:
    """The chosen dataset's description (None while a worker loads it); if it can't be loaded, say so
    in one line and switch to an offline one."""
    try:
        return service().dataset_info(st.session_state.dataset, wait=False)
    except data.DatasetUnavailable as e:
        st.session_state.data_notice = f"{e}. Using the offline dataset “{data.OFFLINE_DATASETS[0]}” instead."
        st.session_state.dataset = data.OFFLINE_DATASETS[0]
        return service().dataset_info(st.session_state.dataset, wait=False)


def apply_preset() -> None:
    """Preset callback: the book's experiment, keeping dataset and seed; the pill doesn't stay selected."""
    name, st.session_state.preset = st.session_state.preset, None
    if name:
        st.session_state.update(current_settings().preset(name).as_dict())
        st.session_state.dropped = []


def current_settings() -> Settings:
    """The settings the controls hold now."""
    return Settings(**{f.name: st.session_state[f.name] for f in settings_mod.fields()})


def _options(f, current) -> list:
    # a link or the CLI may hold a valid value between the slider's stops: keep it selectable
    return sorted(set(f.metadata["steps"]) | {current})


def _format(value) -> str:
    return "0" if value == 0 else f"{value:g}"


def _percent(value) -> str:
    return f"{value:.0%}"


def control(f) -> None:
    """The widget for one setting, keyed by the setting's name."""
    m, help = f.metadata, f"{f.metadata['effect']} ({settings_mod.allowed(f)})"
    common = dict(key=f.name, help=help, on_change=_clear_link_notice)
    if m["choices"]:
        st.selectbox(m["label"], m["choices"], **common)
    elif m["steps"]:
        options = _options(f, st.session_state[f.name])
        shown = _percent if f.name == "train_fraction" else _format
        st.select_slider(m["label"], options, format_func=shown, **common)
    elif f.name == "seed":
        st.number_input(m["label"], m["lo"], m["hi"], step=1, **common)
    elif m["kind"] is int:
        st.slider(m["label"], m["lo"], m["hi"], step=1, **common)
    else:
        st.slider(m["label"], float(m["lo"]), float(m["hi"]), step=0.05, **common)


def _clear_link_notice() -> None:
    st.session_state.dropped = []


BASIC = ("dataset", "width", "depth", "l2", "l1", "dropout", "train_fraction", "epochs")
ADVANCED = ("optimizer", "learning_rate", "batch_size", "seed")


def sidebar() -> None:
    """Presets, the regularization controls, and the advanced ones folded away."""
    by_name = {f.name: f for f in settings_mod.fields()}
    with st.sidebar:
        st.pills(
            "The book's experiments",
            list(PRESETS),
            key="preset",
            on_change=apply_preset,
            help="One click sets the network and regularization of an experiment from chapter 4; "
            "dataset and seed stay as they are.",
        )
        st.subheader("Network and regularization")
        for name in BASIC:
            control(by_name[name])
        with st.expander("Advanced"):
            for name in ADVANCED:
                control(by_name[name])


# ---- the page -----------------------------------------------------------------------------------------


def _literal(text: str) -> str:
    # text from a link is shown as typed: in a code span markdown makes no links, emphasis or colours
    return "`" + " ".join(text.replace("`", "'").split()) + "`"


def notices() -> None:
    """What was ignored in the link, and a dataset that could not be loaded."""
    if st.session_state.get("dropped"):
        ignored = "; ".join(
            f"{_literal(f'{name}={value!r}')} ({why})" for name, value, why in st.session_state.dropped
        )
        st.warning(f"Some of the link's settings were ignored: {ignored}. The rest of the link applies.")
    if st.session_state.get("data_notice"):
        st.info(st.session_state.data_notice)


def header(settings: Settings, info: data.DatasetInfo | None) -> None:
    """Title and the network in one line."""
    st.title("regviz · see regularization work")
    layers = " → ".join([f"Dense({settings.width}, relu)"] * settings.depth + ["Dense(1, sigmoid)"])
    rows = "loading the data"
    if info is not None:
        rows = f"{info.training_rows(settings.train_fraction):,} training examples"
    st.caption(
        f"{layers} on {settings.dataset.upper()} ({rows}), "
        f"{reading.regularizers(settings) or 'no regularization'}. "
        "Solid lines: this run. Dashed: the same network without regularization (the baseline)."
    )


def problem_line() -> None:
    """One line when no training worker can start (reported once in the log, shown on every page)."""
    problem = service().manager.problem()
    if problem:
        st.error(f"Training is not available on this server: {problem}")


def waiting(settings: Settings) -> None:
    """Empty chart frames while a worker starts and loads the data; a full rerun once it has."""
    waiting_for_data(settings.dataset)
    empty = views().view(_Empty(settings), _Empty(settings), settings, False)
    draw(empty)


def waiting_for_data(dataset: str) -> None:
    """A line while a worker starts and loads the dataset; a full rerun once it has."""
    try:
        ready = service().dataset_info(dataset, wait=False) is not None
    except data.DatasetUnavailable:
        ready = True  # the full run says so and switches to an offline dataset
    if ready:
        st.rerun()
    st.progress(0.0, text="Starting the trainer: loading TensorFlow and the data (after a restart only)…")


class _Empty:
    """A run with no records yet, to draw empty chart frames."""

    def __init__(self, settings: Settings):
        self.key = "empty-" + settings.key()

    def snapshot(self):
        return 0, []


def poll_seconds(run, base) -> float:
    """This tab's poll interval: about ten polls over the longer run's estimate (views.poll_seconds),
    stretched so that all tabs on the run together poll about as often as FULL_RATE_TABS tabs would."""
    every = views_mod.poll_seconds(r.estimate for r in (run, base) if not r.finished)
    return every * max(1.0, max(run.watchers, base.watchers) / FULL_RATE_TABS)


def first_epoch(run) -> None:
    """Wait briefly for a just-started run's first epoch (not for a queued one)."""
    deadline, version = time.monotonic() + FIRST_EPOCH_WAIT_S, run.version
    while run.state == "running" and not run.records() and (left := deadline - time.monotonic()) > 0:
        version = run.wait_for_change(version, left)


def live(run, base, settings: Settings, poll: bool, pinned=()) -> None:
    """Progress, charts, reading and comparison table of a run, its baseline and the pinned runs;
    polled while any of them trains (see poll_seconds)."""
    for who, r in (("this run", run), ("baseline", base)) if base is not run else (("this run", run),):
        share, text = reading.status(r, who)
        st.progress(share, text=text)
        label = "Retry this run" if who == "this run" else "Retry the baseline"
        if r.state == "failed" and st.button(label, key=f"retry-{who}"):
            service().manager.retry(r.settings, session_token())
            st.rerun()
    view = views().view(run, base, settings, st.session_state.get("keras_loss", False), pinned)
    view = views_mod.to_draw(st.session_state, view, run, base) if poll else view
    draw(view)
    st.markdown("\n".join(f"- {line}" for line in view.reading))
    comparison(view)
    if poll:  # the CSV once the runs are finished: no download data rebuilt at every poll of every tab
        if run.finished and base.finished and all(p.finished for p in pinned):
            st.rerun()  # one full rerun turns polling off
        return
    st.download_button(
        "Download curves (CSV)",
        view.csv,
        file_name=f"regviz-{settings.key()}.csv",
        mime="text/csv",
        key="csv",
        on_click="ignore",
    )


def pin_controls(settings: Settings, pinned: list[Settings]) -> None:
    """Pin the current run (up to pins.MAX_PINS), and unpin any pinned one."""
    reference = settings.baseline()
    full, already = len(pinned) >= pins.MAX_PINS, settings in pinned
    why = "already pinned" if already else f"at most {pins.MAX_PINS} pinned runs" if full else None
    cols = st.columns([1, 3])
    cols[0].button(
        "Pin this run", key="pin", icon=":material/push_pin:", on_click=_pin, args=(settings,),
        disabled=bool(why),
        help=why or "Keep this run on the loss and accuracy charts, and in a table, while you move on.",
    )  # fmt: skip
    with cols[1]:
        for i, p in enumerate(pinned):
            st.button(
                f"✕ Unpin {i + 1}: {pins.label(p, reference)}", key=f"unpin-{i}", on_click=_unpin, args=(i,)
            )


def _pin(settings: Settings) -> None:
    pinned = st.session_state.setdefault("pins", [])
    if settings not in pinned and len(pinned) < pins.MAX_PINS:
        pinned.append(settings)


def _unpin(i: int) -> None:
    pinned = st.session_state.get("pins", [])
    if 0 <= i < len(pinned):
        del pinned[i]


def comparison(view) -> None:
    """The pinned runs' table: what differs from the baseline, best epoch, losses, gap, penalty share."""
    if not view.table:
        return
    st.dataframe(
        list(view.table),
        hide_index=True,
        column_config={
            "run": "run", "differs": "differs from the baseline", "epochs": "epochs",
            "best_epoch": st.column_config.NumberColumn("best epoch", format="%d"),
            "min_val_loss": st.column_config.NumberColumn("min. validation loss", format="%.4f"),
            "last_val_loss": st.column_config.NumberColumn("validation loss, last epoch", format="%.4f"),
            "gap": st.column_config.NumberColumn("generalization gap", format="%.4f"),
            "penalty_share": st.column_config.NumberColumn("penalty share", format="percent"),
        },
    )  # fmt: skip


def draw(view) -> None:
    """Loss and accuracy side by side, then the weights."""
    left, right = st.columns(2)
    # theme=None: the figures carry their own light style (figures.STYLE), cheaper for the browser
    left.plotly_chart(view.loss, key="loss_chart", theme=None)
    right.plotly_chart(view.metrics, key="metrics_chart", theme=None)
    left, right = st.columns(2)
    left.plotly_chart(view.hist, key="hist_chart", theme=None)
    right.plotly_chart(view.norms, key="norms_chart", theme=None)


def link_params(settings: Settings, pinned: list[Settings]) -> dict[str, str | list[str]]:
    """What the link holds: the settings that differ from the defaults, and one `pin` per pinned run."""
    params: dict[str, str | list[str]] = dict(settings.to_params())
    if pinned:
        params["pin"] = [pins.encode(p) for p in pinned]
    return params


def share_and_code(settings: Settings, info: data.DatasetInfo | None) -> None:
    """The link to this experiment (its pins included), and the Keras code that builds its model."""
    params = link_params(settings, st.session_state.get("pins", []))
    query = "&".join(f"{k}={v}" for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs]))
    base_url = (st.context.url or "").rstrip("/") + "/"
    st.caption("Link to this experiment (copy with the icon on the right):")
    st.code(f"{base_url}?{query}" if query else base_url, language=None, wrap_lines=True)
    with st.expander("Show Keras code"):
        features = info.num_features if info else data.NUM_WORDS
        st.code(keras_code(settings, features), language="python")


def explore() -> None:
    """The main page, top to bottom: settings, work, output."""
    seed_from_link()
    info = ensure_dataset()
    sidebar()
    settings = current_settings()
    st.session_state.kept = settings.as_dict()
    pinned = st.session_state.setdefault("pins", [])
    params = link_params(settings, pinned)
    in_url = {name: st.query_params.get_all(name) for name in st.query_params}
    if in_url != {name: value if isinstance(value, list) else [value] for name, value in params.items()}:
        st.query_params.from_dict(params)
    header(settings, info)
    notices()
    problem_line()
    if st.toggle(
        "Show the loss as Keras reports it (penalty included)", key="keras_loss", help=KERAS_LOSS_NOTE
    ):
        st.caption(KERAS_LOSS_NOTE)
    manager, token = service().manager, session_token()
    manager.unwatch(token, keep=[settings, settings.baseline(), *pinned])
    if info is None:
        st.fragment(waiting, run_every=POLL_SECONDS)(settings)
    else:
        run = manager.watch(settings, token)
        base = run if settings.is_baseline else manager.watch(settings.baseline(), token)
        pin_runs = [manager.watch(p, token) for p in pinned]
        first_epoch(run)
        poll = not (run.finished and base.finished and all(p.finished for p in pin_runs))
        views_mod.forget_drawn(st.session_state)  # a full run draws the newest view, whatever the gap
        every = poll_seconds(run, base) if poll else None
        st.fragment(live, run_every=every)(run, base, settings, poll, pin_runs)
        pin_controls(settings, pinned)
        wanted = (settings.dataset, settings.seed)
        if prefetch_on() and st.session_state.get("prefetched") != wanted:  # once, not at every move
            manager.prefetch(remedies.runs(*wanted))  # the remedies page, trained while nobody waits
            st.session_state.prefetched = wanted
    share_and_code(settings, info)


def prefetch_on() -> bool:
    """REGVIZ_PREFETCH (default 1): train the remedies page's runs in the background; 0 turns it off."""
    return os.environ.get("REGVIZ_PREFETCH", "1").strip() not in ("0", "false", "no", "off")


def remedies_page() -> None:
    """The book's four ways to fight overfitting, plus L1, as small multiples over one baseline."""
    seed_from_link()
    info = ensure_dataset()
    dataset, seed = st.session_state.dataset, st.session_state.seed
    st.title("Four ways to fight overfitting")
    st.caption(
        f"Chapter 4 of *Deep Learning with Python*, on {dataset.upper()} (seed {seed}). The baseline "
        "(dashed) is the book's Dense(16) → Dense(16) network on half of the training data; each chart "
        "changes one thing of it (solid). Blue: training loss; orange: validation loss; stars: the "
        "best epoch, where early stopping would stop. The server trains these runs while nobody "
        "waits, so they usually come from the store."
    )
    notices()
    problem_line()
    wanted = remedies.runs(dataset, seed)
    manager, token = service().manager, session_token()
    manager.unwatch(token, keep=wanted)
    if info is None:
        st.fragment(waiting_for_data, run_every=POLL_SECONDS)(dataset)
        return
    runs = [manager.watch(settings, token) for settings in wanted]
    poll = not all(r.finished for r in runs)
    st.fragment(remedy_grid, run_every=POLL_SECONDS if poll else None)(runs, poll)


def remedy_grid(runs, poll: bool) -> None:
    """Progress of the runs still training, then one small chart per remedy, three to a row."""
    base, *others = runs
    named = [("baseline", base), *((m.title, r) for m, r in zip(remedies.REMEDIES, others, strict=True))]
    for who, r in named:
        if r.state != "done":
            st.progress(*reading.status(r, who))
    shown = base.records()
    cols = st.columns(3)
    for i, (remedy, r) in enumerate(zip(remedies.REMEDIES, others, strict=True)):
        total = max(base.total_epochs, r.total_epochs)
        title = f"{remedy.title}<br><sup>{remedy.change}</sup>"
        fig = figures.remedy_figure(title, r.records(), shown, total)
        cols[i % 3].plotly_chart(fig, key=f"remedy-{i}", theme=None)
    with cols[len(remedies.REMEDIES) % 3]:
        st.markdown("\n".join(f"- {line}" for line in remedies_reading(base, others)))
    if poll and all(r.finished for r in runs):
        st.rerun()


def remedies_reading(base, others) -> list[str]:
    """Each remedy's lowest validation loss and best epoch against the baseline's, in plain words."""
    named = [("Baseline: lowest validation loss ", base)]
    named += [(f"{remedy.title}: ", r) for remedy, r in zip(remedies.REMEDIES, others, strict=True)]
    lines = []
    for prefix, r in named:
        records = r.records()
        if records:
            best = best_epoch(records)
            lines.append(f"{prefix}{records[best - 1].val_data_loss:.3f}, at epoch {best}.")
    return lines


st.navigation(
    [
        st.Page(explore, title="Explore", icon=":material/tune:", default=True),
        st.Page(remedies_page, title="Four remedies", icon=":material/grid_view:", url_path="remedies"),
    ]
).run()
