"""The main page: the sidebar's run beside its baseline (and the pinned runs), live, with the reading,
the comparison table, the link and the Keras code."""

from __future__ import annotations

import time

import streamlit as st

from regviz import data, pins, problems, reading, remedies, words
from regviz import views as views_mod
from regviz.listing import keras_code
from regviz.records import best_epoch
from regviz.runs import group
from regviz.settings import Settings
from ui import live_charts, present, replay
from ui.common import (
    POLL_SECONDS,
    around,
    current_settings,
    dataset_title,
    ensure_dataset,
    keep,
    notices,
    prefetch_on,
    problem_line,
    seed_from_link,
    service,
    session_token,
    sidebar,
    views,
    waiting_for_data,
)  # fmt: skip

FULL_RATE_TABS = 3  # all tabs on a run together poll about as often as this many would: more tabs poll
# less often each, so that the server's redraws stay bounded (a fragment rerun slower than its interval
# is preempted by the next)
# after a slider move, the page waits this long for the new run's first epoch before drawing, so that
# the first epoch shows at once rather than at the next poll (a known architecture's epoch takes ~0.1 s)
FIRST_EPOCH_WAIT_S = 0.4
KERAS_LOSS_NOTE = (
    "Keras's loss adds the penalty (the sum of `model.losses`) to the cross-entropy; the data loss leaves "
    "it out, so a regularized run and its baseline are compared on the same scale."
)


def header(settings: Settings, info: data.DatasetInfo | None) -> None:
    """Title and the network in one line."""
    st.title("regviz · see regularization work")
    problem, classes = problems.of_dataset(settings.dataset)
    head = f"Dense({problem.units(classes)}{', ' + problem.activation if problem.activation else ''})"
    layers = " → ".join([f"Dense({units}, relu)" for units in settings.widths()] + [head])
    if info is None:  # no worker can start: the data is not being loaded either (problem_line says why)
        rows = "waiting for a training worker" if service().manager.problem() else "loading the data"
    elif settings.validation == "holdout":
        rows = f"{info.training_rows(settings.train_fraction):,} training examples"
    else:
        repeats = f", {settings.repeats} times reshuffled" if settings.validation == "iterated" else ""
        rows = f"{settings.folds}-fold validation over {info.n_train + info.n_val:,} examples{repeats}"
    st.caption(
        f"{layers} on {dataset_title(settings.dataset)} ({rows}), "
        f"{reading.regularizers(settings) or 'no regularization'}. "
        "Solid lines: this run. Dashed: the same network without regularization (the baseline)."
    )
    if problems.is_upload(settings.dataset):
        st.caption(
            "Numeric features are imputed (median) and standardised, text ones imputed (most frequent) "
            "and one-hot encoded, with statistics of each run's training part only, never of its "
            "validation or test rows (the workflow's step 4)."
        )
    elif problems.is_tabular(settings.dataset):
        st.caption(
            "The features are standardised with the mean and standard deviation of the training part "
            "only, never of the validation or test rows (the workflow's step 4)."
        )


def waiting(settings: Settings) -> None:
    """Empty chart frames while a worker starts and loads the data; a full rerun once it has."""
    waiting_for_data(settings.dataset)
    empty = views().view(_Empty(settings), _Empty(settings), settings, False)
    draw(empty)


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


def progress(run, base, shows: str | None) -> None:
    """The progress lines of run and baseline (a retry button under a failed one), then what a pause or
    replay shows."""
    # the key marks the lines for the charts' component, which says so in them when the connection is lost
    lines = st.container(key="progress")
    for who, r in (("this run", run), ("baseline", base)) if base is not run else (("this run", run),):
        share, text = reading.status(r, who)
        lines.progress(share, text=text)
        label = "Retry this run" if who == "this run" else "Retry the baseline"
        if r.state == "failed" and lines.button(label, key=f"retry-{who}"):
            for fold in r.settings.fold_runs():
                service().manager.retry(fold, session_token())
            st.rerun()
    if shows:
        st.info(shows, icon=":material/replay:" if run.finished else ":material/pause:")


def live(run, base, settings: Settings, poll: bool, pinned=()) -> None:
    """Progress, charts, reading and comparison table of a run, its baseline and the pinned runs;
    polled while any of them trains (see poll_seconds)."""
    shows = replay.line(settings, run, [run, base, *pinned])
    if present.active():
        present.status(run, base, shows)
    else:
        progress(run, base, shows)
    # all trained and no replay still under way (asked of the whole runs, before they are cut)
    ended = (
        run.finished and base.finished and all(p.finished for p in pinned) and not replay.polls(settings, run)
    )
    run, base, pinned = replay.cut(settings, run, base, pinned)  # the epochs a pause or replay shows
    view = views().view(run, base, settings, st.session_state.get("keras_loss", False), pinned)
    view = views_mod.to_draw(st.session_state, view, run, base) if poll else view
    if present.active():
        present.chart(view)
    else:
        draw(view)
        st.markdown("\n".join(f"- {line}" for line in view.reading))
        comparison(view)
    if poll:  # the CSV once the runs are finished: no download data rebuilt at every poll of every tab
        if ended:
            st.rerun()  # one full rerun turns polling off
        return
    if present.active():
        return
    st.download_button(
        "Download curves (CSV)",
        view.csv,
        file_name=view.csv_name,
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
    """The pinned runs' table: what differs from the baseline, best epoch, losses, gap, penalty share;
    pins selected in it (the boxes at the rows' left) can be unpinned at once."""
    if not view.table:
        return
    # a new key after each unpin: the rows move, an old selection would point at other runs
    event = st.dataframe(
        list(view.table),
        key=f"compare_table_{st.session_state.get('unpins', 0)}",
        on_select="rerun",
        selection_mode="multi-row",
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
    chosen = pins.selected(view.table, event.selection.rows if event else [])
    if chosen and st.button(f"✕ Unpin the {len(chosen)} selected", key="unpin-selected"):
        pinned = st.session_state.get("pins", [])
        st.session_state.pins = [p for i, p in enumerate(pinned) if i not in chosen]
        st.session_state.unpins = st.session_state.get("unpins", 0) + 1
        st.rerun()  # the whole page: the charts and the link lose those pins


def draw(view) -> None:
    """Loss and accuracy side by side, then the weights (one component: ui/live_charts.py)."""
    figures = (view.loss, view.metrics, view.hist, view.norms)
    live_charts.draw(figures, key="live_charts", as_json=view.figures_json)


def words_panel(settings: Settings, run, base) -> None:
    """Word datasets: the words whose first-layer weights are largest, this run's beside the baseline's,
    and how many L1 has practically zeroed; read off the runs' last records (regviz/words.py)."""
    if not words.has_words(settings.dataset):
        return
    with st.expander("What the first layer keeps: the words", expanded=bool(settings.l1)):
        if not run.finished:
            st.caption("The words appear when the run has finished.")
            return
        vocab = words.vocabulary(settings.dataset)
        sides = [("This run", run)] + ([] if base is run else [("Baseline", base)])
        kept = {who: words.kept(_last(r), vocab) if r.finished else None for who, r in sides}
        if kept["This run"] is not None:
            st.markdown(words.headline(kept["This run"], kept.get("Baseline"), settings.l1))
        if vocab.missing:
            st.caption(vocab.missing)
        if settings.validation != "holdout":
            st.caption("K-fold: the words of the first fold's network (each fold's network keeps its own).")
        st.caption("Largest first, by the L2 norm of the word's row of the first layer's kernel.")
        for column, (who, r) in zip(st.columns(len(sides)), sides, strict=True):
            column.markdown(f"**{who}**")
            if (side := kept[who]) is not None:
                table = [{"word": word, "weight norm": norm} for word, norm in side.words]
                column.dataframe(
                    table, hide_index=True, key=f"words-{who}", height=35 * (len(table) + 1) + 3,
                    column_config={"weight norm": st.column_config.NumberColumn(format="%.4f")},
                )  # fmt: skip
            else:
                column.caption(_no_words(r))


def _last(run):
    records = run.records()
    return records[-1] if records else None


def _no_words(run) -> str:
    if not run.finished:
        return "Its words appear when it has finished."
    if run.state != "done":
        return "No words: it stopped before its last epoch."
    return "No words: it was stored before runs kept them (stored runs are reused, not retrained)."


def link_params(settings: Settings, pinned: list[Settings]) -> dict[str, str | list[str]]:
    """What the link holds: the settings that differ from the defaults, and one `pin` per pinned run."""
    params: dict[str, str | list[str]] = dict(settings.to_params())
    if pinned:
        params["pin"] = [pins.encode(p) for p in pinned]
    return params | replay.link_params(settings) | present.link_params()


def share_and_code(settings: Settings, info: data.DatasetInfo | None) -> None:
    """The link to this experiment (its pins included), and the Keras code that builds its model."""
    params = link_params(settings, st.session_state.get("pins", []))
    query = "&".join(f"{k}={v}" for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs]))
    base_url = (st.context.url or "").rstrip("/") + "/"
    st.caption("Link to this experiment (copy with the icon on the right):")
    st.code(f"{base_url}?{query}" if query else base_url, language=None, wrap_lines=True)
    with st.expander("Show Keras code"):
        features = info.num_features if info else data.NUM_WORDS
        upload = data.uploaded(settings.dataset) if problems.is_upload(settings.dataset) else None
        st.code(keras_code(settings, features, upload=upload), language="python")


def final_evaluation(settings: Settings, run) -> None:
    """The workflow's last step: these settings trained on the whole training split for a chosen number
    of epochs (default: the validation curve's best epoch), then measured once on the test split."""
    final = st.session_state.get("final_run")
    with st.expander("Final evaluation on the test split", expanded=final is not None):
        st.caption(
            "The workflow's last step: train on every training example (validation rows included) for "
            "the epochs the validation curve chose, then measure once on the test split, which nothing "
            "else ever touches. Do not tune on these figures."
        )
        best = best_epoch(run.records()) if run.finished else None
        epochs = st.number_input(
            "Epochs (default: the best epoch of the validation curve)", 1, 500, value=best or settings.epochs,
            key=f"final_epochs_{settings.key()}_{best}",
        )  # fmt: skip
        if st.button("Train on all training data and test", key="final_button", icon=":material/flag:"):
            final = st.session_state.final_run = settings.final_run(int(epochs))
        if final is not None:
            done = service().manager.watch(final, session_token()).finished
            st.fragment(final_result, run_every=None if done else POLL_SECONDS)(final, not done)


def final_result(final: Settings, poll: bool) -> None:
    """The final run's progress, then its test figures, labelled as such; polled while it trains."""
    run = service().manager.watch(final, session_token())
    if run.state != "done":
        st.progress(*reading.status(run, "final run"))
    else:
        last, problem = run.records()[-1], problems.of_dataset(final.dataset)[0]
        shown = [f"test loss ({problem.loss}) {last.val_data_loss:.4f}"]
        for metric in problem.metrics:
            if (value := getattr(last, metric.field)) is not None:
                shown.append(f"{metric.label.replace('validation', 'test')} {value:.4f}")
        st.success(
            f"Test figures, trained on the whole training split for {final.epochs} epochs (the test split "
            f"was used for nothing else): {'; '.join(shown)}."
        )
    if poll and run.finished:
        st.rerun()  # one full rerun turns polling off


def neighbourhood(settings: Settings) -> None:
    """Once this run and its baseline are done, the runs one slider stop away train in the background
    (regviz/prefetch.py's Around, a thread of its own: nothing here waits for the store or the workers)."""
    if st.session_state.get("around") != settings:  # once per settings, not at every rerun
        around().ask(settings)
        st.session_state.around = settings


def _same_experiment(final: Settings, settings: Settings) -> bool:
    return final.replace(epochs=settings.epochs) == settings.final_run(settings.epochs)


def explore() -> None:
    """The main page, top to bottom: settings, work, output."""
    seed_from_link("explore")
    present.from_link()
    info = ensure_dataset()
    if present.active():
        present.stage()
    else:
        sidebar()
    settings = current_settings()
    keep(settings)
    pinned = st.session_state.setdefault("pins", [])
    params = link_params(settings, pinned)
    in_url = {name: st.query_params.get_all(name) for name in st.query_params}
    if in_url != {name: value if isinstance(value, list) else [value] for name, value in params.items()}:
        st.query_params.from_dict(params)
    if not present.active():
        header(settings, info)
        present.present_this(params)
    notices()
    problem_line()
    if not present.active() and st.toggle(
        "Show the loss as Keras reports it (penalty included)", key="keras_loss", help=KERAS_LOSS_NOTE
    ):
        st.caption(KERAS_LOSS_NOTE)
    manager, token = service().manager, session_token()
    final = st.session_state.get("final_run")
    if final is not None and not _same_experiment(final, settings):
        final = st.session_state.final_run = None  # another experiment now: its final run is not this one's
    finals = [final] if final is not None else []
    refused = group.refusal(manager, settings, pinned) if info is not None else None
    asked = [] if refused else [settings, settings.baseline(), *pinned]  # refused: nothing of it queued
    manager.unwatch(token, keep=group.kept([*asked, *finals]))
    if info is None:
        st.fragment(waiting, run_every=POLL_SECONDS)(settings)
    else:
        if refused:  # the whole request is over the cost limit: one line says what to lower
            run = base = group.Refused(settings, refused)
            pin_runs = []
        else:
            run = group.watch(manager, settings, token)  # a K-fold run: its folds, read as their mean
            base = run if settings.is_baseline else group.watch(manager, settings.baseline(), token)
            pin_runs = [group.watch(manager, p, token) for p in pinned]
        first_epoch(run)
        poll = not (run.finished and base.finished and all(p.finished for p in pin_runs))
        poll = poll or replay.polls(settings, run)  # a replay polls like a live run, training nothing
        views_mod.forget_drawn(st.session_state)  # a full run draws the newest view, whatever the gap
        every = poll_seconds(run, base) if poll else None
        replay.controls(settings, run, [run, base, *pin_runs], pace=not present.active())
        st.fragment(live, run_every=every)(run, base, settings, poll, pin_runs)
        if not present.active():
            pin_controls(settings, pinned)
            if not refused:
                words_panel(settings, run, base)
                final_evaluation(settings, run)
        wanted = (settings.dataset, settings.seed)
        if prefetch_on() and st.session_state.get("prefetched") != wanted:  # once, not at every move
            manager.prefetch(remedies.runs(*wanted))  # the remedies page, trained while nobody waits
            st.session_state.prefetched = wanted
        if prefetch_on() and run.state == base.state == "done":
            neighbourhood(settings)
    if not present.active():
        share_and_code(settings, info)


explore()
