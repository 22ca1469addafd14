"""Presenter links: `present=1` opens the main page as a projector view. The controls are hidden but for
those `show=` names (drawn large above the chart, the same widgets, so the run reacts), the reading's
headline and the loss chart fill the screen in large type. The *Present this* control builds such a link."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from regviz import playback, reading
from regviz import settings as settings_mod
from ui.common import control

PARAMS = ("present", "show", "pause", "pace")  # the link's entries this module and ui/replay.py read
MAX_SHOWN = 4  # controls on a projector: more would not fit beside each other in large type
STYLE = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"],
[data-testid="stHeader"], [data-testid="stToolbar"] { display: none !important; }
/* one screen tall: the loss chart (height "stretch") takes what the controls and the headline leave */
[data-testid="stMainBlockContainer"] { padding: 0.75rem 2rem 0.5rem 2rem; max-width: 100%;
  height: 100vh; box-sizing: border-box; display: flex; flex-direction: column; }
[data-testid="stLayoutWrapper"]:has(.st-key-present_chart),
[data-testid="stVerticalBlock"]:has(.st-key-present_chart) { flex: 1 1 0; min-height: 0; }
/* on a screen too short for it the chart keeps 280 px and the page scrolls, rather than a sliver of chart */
.st-key-present_chart { min-height: 280px; }
[data-testid="stMain"] p, [data-testid="stMain"] label p { font-size: 1.3rem; }
[data-testid="stMain"] [data-testid="stCaptionContainer"] p { font-size: 1.05rem; }
.st-key-present_headline p { font-size: 1.75rem; line-height: 1.25; font-weight: 600; }
.st-key-present_controls label p { font-size: 1.5rem; font-weight: 600; }
/* a phone is no projector: the page scrolls, the chart keeps room for its legend and plot, its title fits */
@media (max-width: 640px) {
  [data-testid="stMainBlockContainer"] { height: auto; padding: 0.75rem 1rem; }
  .st-key-present_chart { min-height: 560px; }
  .st-key-present_chart .gtitle { font-size: 14px !important; }
}
</style>"""


def _names() -> dict[str, str]:
    return {f.name: f.metadata["label"] for f in settings_mod.fields()}


def from_link() -> None:
    """Once a session: the link's presenter and playback entries, taken from the notice of unknown
    settings that seed_from_link made; a bad one is noted there instead."""
    if st.session_state.get("present_seeded"):
        return
    st.session_state.present_seeded = True
    dropped = [
        d for d in st.session_state.get("dropped", []) if not (d[0] in PARAMS and d[2] == "unknown setting")
    ]
    given = {name: st.query_params.get_all(name)[-1] for name in PARAMS if st.query_params.get_all(name)}
    present = given.get("present", "0").strip()
    if present not in ("0", "1"):
        dropped.append(("present", present[:40], "1 for the presenter view, 0 for the page"))
    st.session_state.present = present == "1"
    names, shown = _names(), []
    for name in (n.strip() for n in given.get("show", "").split(",") if n.strip()):
        if name not in names:
            dropped.append(("show", name[:40], "not a control of the page"))
        elif name not in shown and len(shown) < MAX_SHOWN:
            shown.append(name)
    st.session_state.present_show = shown
    for name, read, key in (
        ("pause", playback.read_pause, "pause_link"),
        ("pace", playback.read_pace, "pace"),
    ):
        if name in given:
            try:
                st.session_state[key] = read(given[name])
            except ValueError as e:
                dropped.append((name, given[name][:40], str(e)))
    st.session_state.dropped = dropped


def active() -> bool:
    """Whether this tab shows the presenter view."""
    return bool(st.session_state.get("present"))


def link_params() -> dict[str, str]:
    """What the link holds of the presenter view: `present=1` and the controls shown."""
    if not active():
        return {}
    shown = st.session_state.get("present_show") or []
    return {"present": "1", **({"show": ",".join(shown)} if shown else {})}


def stage() -> None:
    """The projector's frame: no sidebar, large type, and the named controls large above the chart."""
    st.set_page_config(initial_sidebar_state="collapsed")
    st.html(STYLE)
    by_name = {f.name: f for f in settings_mod.fields()}
    shown = [by_name[name] for name in st.session_state.get("present_show") or []]
    if shown:
        with st.container(key="present_controls"):
            for col, f in zip(st.columns(len(shown)), shown, strict=True):
                with col:
                    control(f)


def headline(lines) -> str:
    """The reading's sentence a class should read first: how this run's validation loss compares with
    the baseline's (a regularized run), else whether the run overfits."""
    for line in lines:
        if line.startswith(("With ", "So far, with ")):
            return line
    return next((line for line in lines if "validation" in line), lines[0] if lines else "")


def status(run, base, shows: str | None) -> None:
    """The progress of run and baseline, and what a pause or replay shows, in one small line."""
    pairs = (("this run", run),) if base is run else (("this run", run), ("baseline", base))
    lines = [reading.status(r, who)[1] for who, r in pairs]
    st.caption(" · ".join([*lines, *([shows] if shows else [])]))


def chart(view) -> None:
    """The reading's headline in large type, and the loss chart below it across the page."""
    with st.container(key="present_headline"):
        st.markdown(headline(view.reading) or "Waiting for the first epoch…")
    # no height of its own: the figure sizes itself to the container the screen leaves it
    fig = go.Figure(view.loss).update_layout(
        height=None, autosize=True, title_font_size=24, xaxis_tickfont_size=16, yaxis_tickfont_size=16
    )
    with st.container(key="present_chart", height="stretch"):
        st.plotly_chart(
            fig,
            key="present_loss",
            theme=None,
            height="stretch",
            config={"displaylogo": False, "responsive": True},
        )


def present_this(params: dict) -> None:
    """The sidebar's *Present this*: pick the controls to show, get the presenter link to copy."""
    names = _names()
    with st.sidebar.expander("Present this", icon=":material/co_present:"):
        shown = st.multiselect(
            "Controls to show on the projector",
            list(names),
            key="present_pick",
            format_func=names.__getitem__,
            max_selections=MAX_SHOWN,
            help="The rest are hidden; these stay, large, above the loss chart.",
        )
        paused = st.checkbox(
            "Open paused at epoch 1", key="present_paused", help="Then Play or Step in class."
        )
        extra = {
            "present": "1",
            **({"show": ",".join(shown)} if shown else {}),
            **({"pause": "1"} if paused else {}),
        }
        query = _query({**{k: v for k, v in params.items() if k not in PARAMS}, **extra})
        base_url = (st.context.url or "").rstrip("/") + "/"
        st.caption(
            "Presenter link (copy with the icon on the right); without `present=1` it is the normal page:"
        )
        st.code(f"{base_url}?{query}", language=None, wrap_lines=True)


def _query(params: dict) -> str:
    return "&".join(f"{k}={v}" for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs]))
