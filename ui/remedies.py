"""The book's four ways to fight overfitting, plus L1, as small multiples over one baseline."""

from __future__ import annotations

import streamlit as st

from regviz import figures, reading, remedies
from regviz.runs import group
from ui.common import (
    POLL_SECONDS,
    dataset_title,
    ensure_dataset,
    notices,
    problem_line,
    seed_from_link,
    service,
    session_token,
    waiting_for_data,
)  # fmt: skip


def remedies_page() -> None:
    """The book's four ways to fight overfitting, plus L1, as small multiples over one baseline."""
    seed_from_link("remedies")
    info = ensure_dataset()
    dataset, seed = st.session_state.dataset, st.session_state.seed
    st.title("Four ways to fight overfitting")
    st.caption(
        f"Chapter 4 of *Deep Learning with Python*, on {dataset_title(dataset)} (seed {seed}). The baseline "
        "(dashed) is the book's Dense(16) → Dense(16) network on half of the training data; each chart "
        "changes one thing of it (solid). Blue: training loss; orange: validation loss; stars: the "
        "best epoch, where early stopping would stop. The server trains these runs while nobody "
        "waits, so they usually come from the store."
    )
    notices()
    problem_line()
    wanted = remedies.runs(dataset, seed)
    manager, token = service().manager, session_token()
    manager.unwatch(token, keep=group.kept(wanted))
    if info is None:
        st.fragment(waiting_for_data, run_every=POLL_SECONDS)(dataset)
        return
    runs = [group.watch(manager, settings, token) for settings in wanted]
    poll = not all(r.finished for r in runs)
    st.fragment(remedy_grid, run_every=POLL_SECONDS if poll else None)(runs, poll)


def remedy_grid(runs, poll: bool) -> None:
    """Progress of the runs still training, what to compare, then one small chart per remedy, three to a
    row, each with its verdict against the baseline underneath."""
    base, *others = runs
    named = [("baseline", base), *((m.title, r) for m, r in zip(remedies.REMEDIES, others, strict=True))]
    for who, r in named:
        if r.state != "done":
            st.progress(*reading.status(r, who))
    shown = base.records()
    st.markdown(remedies.COMPARE)
    st.markdown(f"- {remedies.baseline_line(shown)}")
    cols = st.columns(3)
    for i, (remedy, r) in enumerate(zip(remedies.REMEDIES, others, strict=True)):
        total = max(base.total_epochs, r.total_epochs)
        title = f"{remedy.title}<br><sup>{remedy.change}</sup>"
        records = r.records()
        fig = figures.remedy_figure(title, records, shown, total)
        cols[i % 3].plotly_chart(fig, key=f"remedy-{i}", theme=None)
        cols[i % 3].markdown(f"- {remedies.verdict(remedy.title, records, shown)}")
    if poll and all(r.finished for r in runs):
        st.rerun()


remedies_page()
