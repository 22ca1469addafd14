"""What every page shares: the one service and view cache of the server, this tab's name as a watcher,
the settings (from the link once, then from the sidebar's controls), and the notices."""

from __future__ import annotations

import logging
import os
import uuid

import streamlit as st

import regviz.service
from regviz import data, pins, prefetch, problems
from regviz import settings as settings_mod
from regviz.settings import PRESETS, Settings
from regviz.splits import PROTOCOLS
from regviz.views import ViewCache

POLL_SECONDS = 0.5  # how often a page polls a short run in progress (longer ones: views.poll_seconds)
NOT_SETTINGS = ("pin", "vary", "metric")  # link parameters of the pages, not of a run
_log = logging.getLogger("regviz.ui")


@st.cache_resource(show_spinner=False)
def service() -> regviz.service.RunService:
    """One service per server process: its store, its worker processes and its runs serve every session."""
    regviz.service.log_to_console()
    return regviz.service.RunService()  # looked up at call time: tests put a recording one in its place


@st.cache_resource(show_spinner=False)
def views() -> ViewCache:
    """Charts built once per change of a run, shared by every tab that watches it."""
    return ViewCache()


@st.cache_resource(show_spinner=False)
def around() -> prefetch.Around:
    """The server's background prefetch of the neighbourhood of what visitors look at (one thread)."""
    runs = service()
    return prefetch.Around(runs.manager, runs.costs.estimate, lambda settings: _stored(runs, settings))


def _stored(runs: regviz.service.RunService, settings: Settings) -> bool:
    # an undescribed dataset's runs cannot be looked up yet: the cost estimate skips them too
    info = runs.known_info(settings.dataset)
    return info is not None and runs.store.has(settings, info.version)


def _forget_session(token: str) -> None:
    # the tab is gone: cancel what only this tab was waiting for, its sweep's cells too, and forget the
    # files only it uploaded
    service().manager.unwatch(token)
    service().manager.unwatch(sweep_watcher(token))
    service().drop_uploads(token)


def sweep_watcher(token: str) -> str:
    """The name under which a tab's sweep watches its cells (apart from the runs its pages show)."""
    return token + "/sweep"


@st.cache_resource(scope="session", on_release=_forget_session, show_spinner=False)
def session_token() -> str:
    """This browser tab's name as a watcher of runs."""
    return uuid.uuid4().hex


# ---- settings: from the link once, then from the controls ------------------------------------------


def seed_from_link(page: str) -> None:
    """On a session's first run, the link's settings fill the controls; what was ignored is noted. On
    every later run, the controls are given the settings the tab holds (`kept`) before they are drawn."""
    if "seeded" in st.session_state:
        moved, st.session_state.page = st.session_state.get("page") != page, page
        for name, value in st.session_state.get("kept", {}).items():
            if moved or _held(name) != value:
                _note_dropped(name, value)
                st.session_state[name] = value
        return
    st.session_state.page = page
    link = {name: value for name, value in st.query_params.to_dict().items() if name not in NOT_SETTINGS}
    settings, dropped = Settings.read_lenient(link)
    repeated = [
        (name[:40], ", ".join(values[:-1])[:40], "given more than once; the last value applies")
        for name in link
        if len(values := st.query_params.get_all(name)) > 1
    ]
    pinned, bad_pins = pins.read(st.query_params.get_all("pin"))
    st.session_state.update(settings.as_dict())
    keep(settings)
    st.session_state.pins = pinned
    st.session_state.dropped = repeated + dropped + bad_pins
    st.session_state.seeded = True


# The settings a tab holds are `kept`: the link seeds them, and only a control's own callback, a preset,
# a dataset change or the page's code (choose) change them. A widget's state alone is not trusted: when
# streamlit drops it (a rerun interrupted before the sidebar was drawn, another page shown, a fragment's
# rerun beside a click) the widget comes back at its own default, and the page would train a run nobody
# asked for and let go of the one it showed (a Play click did so in CI on 2026-12-05). So each control's
# default is the kept setting too (control): a browser that has dropped a widget's state (a fragment's
# run finishing beside a full one) re-creates it at that default, and sends no move.


def keep(settings: Settings) -> None:
    """The settings this tab shows now, held across reruns and pages."""
    st.session_state.kept = settings.as_dict()


def choose(values: dict) -> None:
    """Settings changed by the page's own code (a preset, a dataset, a file, a sweep's cell): the
    controls and the held settings alike."""
    st.session_state.update(values)
    st.session_state.setdefault("kept", {}).update(values)


def _held(name: str):
    # the control's value as streamlit holds it now, or a marker when it holds none
    try:
        return st.session_state[name]
    except KeyError:
        return _NONE


_NONE = object()


def _note_dropped(name: str, value) -> None:
    held = _held(name)
    if held is not _NONE and held != value:  # a value nobody chose: said in the log, the page shows kept
        _log.info("control %s came back at %r unmoved; it shows the tab's setting %r", name, held, value)


def ensure_dataset() -> data.DatasetInfo | None:
    """The chosen dataset's description (None while a worker loads it); if it can't be loaded, say so
    in one line and switch to an offline one. An uploaded file this session does not hold (a link from
    another session) stops the page with a line that offers the upload."""
    name = st.session_state.dataset
    if problems.is_upload(name):
        held = st.session_state.get("uploads", {}).get(name)
        if held is None:  # another session's file, even if the server holds it
            _offer_upload(name)
        if data.uploaded(name) is None:
            service().add_upload(held, session_token())  # this session's file, held by the service again
        return service().dataset_info(name, wait=False)
    try:
        return service().dataset_info(name, wait=False)
    except data.DatasetUnavailable as e:
        offline = data.offline_for(name)
        st.session_state.data_notice = f"{e}. Using the offline dataset “{offline}” instead."
        choose({"dataset": offline})
        return service().dataset_info(st.session_state.dataset, wait=False)


def _offer_upload(name: str) -> None:
    """One line that the link's uploaded file is not here, the way to upload it, and the page stops."""
    st.session_state.missing_upload = name
    st.warning(
        "This link is for runs on a file uploaded in another session. Uploaded data never leaves the "
        "session that uploaded it (the link carries only settings), so it is not here: upload the "
        "same file, with the same target, to see these runs, or choose a dataset of the book."
    )
    st.page_link("ui/yourdata.py", label="Upload the file", icon=":material/upload_file:")
    if st.button("Use the book's IMDB reviews instead", key="missing_upload_imdb"):
        choose(Settings.for_dataset("imdb", seed=st.session_state.get("seed", 0)).as_dict())
        st.session_state.missing_upload = None
        st.rerun()
    st.stop()


def apply_preset() -> None:
    """Preset callback: the book's experiment, keeping dataset and seed; the pill doesn't stay selected."""
    name, st.session_state.preset = st.session_state.preset, None
    if name:
        choose(current_settings().preset(name).as_dict())
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
    changed = _dataset_changed if f.name == "dataset" else _moved
    # a field a protocol does not use (folds under hold-out) is shown but cannot be moved
    protocol = st.session_state.get("validation")
    off = protocol in PROTOCOLS and not settings_mod.used_by(f, protocol)
    common = dict(key=f.name, help=help, on_change=changed, args=(f.name,), disabled=off)
    # the widget's default is the tab's setting, not the control's minimum: a browser that re-creates a
    # widget whose state it dropped starts it at its default and sends that value as a move (under load,
    # a Play click once sent every slider at its minimum, and the page trained a 1-unit network)
    value = st.session_state[f.name]
    if f.name == "dataset":  # the book's datasets and this session's uploaded files
        names = [*m["choices"], *st.session_state.get("uploads", {})]
        names += [] if value in names else [value]
        labels = {name: dataset_label(name) for name in names}  # bound now: no session state at format time
        st.selectbox(m["label"], names, index=names.index(value), format_func=labels.__getitem__, **common)
    elif m["choices"]:
        st.selectbox(m["label"], m["choices"], index=list(m["choices"]).index(value), **common)
    elif m["steps"]:
        shown = _percent if m["percent"] else _format
        st.select_slider(m["label"], _options(f, value), value=value, format_func=shown, **common)
    elif m["typed"]:
        st.number_input(m["label"], m["lo"], m["hi"], value=value, step=1, **common)
    elif m["kind"] is int:
        st.slider(m["label"], m["lo"], m["hi"], value=value, step=1, **common)
    else:
        st.slider(m["label"], float(m["lo"]), float(m["hi"]), value=float(value), step=0.05, **common)


def dataset_label(name: str) -> str:
    """A dataset as the page names it: an uploaded file by its file name and target."""
    held = st.session_state.get("uploads", {}).get(name)
    if held is not None:
        return f"{held.filename} → {held.target} ({held.kind})"
    return "uploaded file (not in this session)" if problems.is_upload(name) else name


def dataset_title(name: str) -> str:
    """A dataset as a caption names it: IMDB, REUTERS, ..., an uploaded file by name and target."""
    return dataset_label(name) if problems.is_upload(name) else name.upper()


def _clear_link_notice() -> None:
    st.session_state.dropped = []


def _moved(name: str) -> None:
    # a control moved by its user: the tab's setting now. Only kept is written: a widget's own key set in
    # its callback is sent back to the browser, and during a storm of key presses that pulls the thumb
    # back to an older stop (a loaded test run walked the width slider to 2 and 128 that way)
    _clear_link_notice()
    st.session_state.setdefault("kept", {})[name] = st.session_state[name]


def _dataset_changed(name: str) -> None:
    # the book's network for the new dataset (Reuters: 64-64), as a link to it would start
    _moved(name)
    fresh = Settings.for_dataset(st.session_state[name])
    choose({n: getattr(fresh, n) for n in settings_mod.DATASET_FIELDS})


def sidebar() -> None:
    """Presets, the regularization controls, and the advanced ones folded away."""
    with st.sidebar:
        st.pills(
            "The book's experiments",
            list(PRESETS),
            key="preset",
            on_change=apply_preset,
            help="One click sets the network and regularization of an experiment from chapter 4 (or "
            "chapter 3's Reuters ones); the seed, and for chapter 4's the dataset, stay as they are.",
        )
        st.subheader("Network and regularization")
        for f in settings_mod.section("basic"):
            control(f)
        st.subheader("Evaluation protocol")
        for f in settings_mod.section("protocol"):
            control(f)
        with st.expander("Advanced"):
            for f in settings_mod.section("advanced"):
                control(f)


# ---- lines every page may show ------------------------------------------------------------------------


def literal(text: str) -> str:
    # text from a link is shown as typed: in a code span markdown makes no links, emphasis or colours
    return "`" + " ".join(text.replace("`", "'").split()) + "`"


MARKDOWN_SPECIALS = frozenset("\\`*_{}[]()#+-.!|<>~$:&=")


def plain(text: str) -> str:
    """Text from a file (column names, values) for markdown, as typed and in the page's own font: every
    character markdown, HTML or LaTeX could act on escaped, on one line."""
    return "".join("\\" + c if c in MARKDOWN_SPECIALS else c for c in " ".join(str(text).split()))


def notices() -> None:
    """What was ignored in the link, and a dataset that could not be loaded."""
    if st.session_state.get("dropped"):
        ignored = "; ".join(
            f"{literal(f'{name}={value!r}')} ({why})" for name, value, why in st.session_state.dropped
        )
        st.warning(f"Some of the link's settings were ignored: {ignored}. The rest of the link applies.")
    if st.session_state.get("data_notice"):
        st.info(st.session_state.data_notice)


def problem_line() -> None:
    """One line when no training worker can start (reported once in the log, shown on every page), one
    while the store of finished runs cannot be reached, and one after a damaged store was rebuilt."""
    # the rebuild is told once per server: to the first page drawn after it, for the rest of its session
    st.session_state.store_notice = service().store.take_notice() or st.session_state.get("store_notice")
    if st.session_state.store_notice:
        st.warning(st.session_state.store_notice)
    problem = service().manager.problem()
    if problem:
        st.error(f"Training is not available on this server: {problem}")
    store = service().store_problem()
    if store:
        st.warning(
            f"Store of finished runs: {store.rstrip('.')}. Runs still train and are shown, but are kept in "
            "memory only until the store is back."
        )


def waiting_for_data(dataset: str) -> None:
    """A line while a worker starts and loads the dataset; a full rerun once it has."""
    try:
        ready = service().dataset_info(dataset, wait=False) is not None
    except data.DatasetUnavailable:
        ready = True  # the full run says so and switches to an offline dataset
    if ready:
        st.rerun()
    if service().manager.problem():  # said above by problem_line; "starting" would contradict it
        st.progress(0.0, text="Waiting for a training worker: none can start now (see above); retrying…")
    else:
        st.progress(0.0, text="Starting the trainer: loading TensorFlow and the data (after a restart only)…")


def prefetch_on() -> bool:
    """REGVIZ_PREFETCH (default 1): train the remedies page's runs, and the runs one slider stop from a
    visitor's finished run, in the background; 0 turns it off."""
    return os.environ.get("REGVIZ_PREFETCH", "1").strip() not in ("0", "false", "no", "off")
