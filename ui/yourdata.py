"""Your own data: upload a CSV, pick the target, check the preview, then train on it on every page.

The file stays with this session: it is held in memory (this session's state, the server's service and
the workers it trains on) and forgotten when the session ends; only "keep results" stores anything,
and then only the runs' curves, under a hash of the file.
"""

from __future__ import annotations

import streamlit as st

from regviz import data, preview
from regviz.data import csvfile
from regviz.settings import Settings
from ui.common import choose, literal, notices, plain, seed_from_link, service, session_token

KEEP_HELP = (
    "Kept: the curves of the runs on this file that finish from now on (their settings, and per epoch "
    "the losses, metrics and weight statistics), in this server's store of finished runs, under a hash "
    "of the file's content, so that the same file shows them again later, to whoever uploads it. Never "
    "kept: the file, its rows, its column names. Without this box, runs on the file are kept in memory "
    "only while this session is open."
)


def _table(uploaded) -> csvfile.Table | None:
    """The uploaded file read once (per file, not per rerun), held for this session by the server's
    registry of uploads (counted against its cap, dropped when the session ends); None with a one-line
    error if unusable."""
    token = session_token()
    table = data.reading(token, uploaded.file_id)
    error = st.session_state.get("upload_error")
    if table is None and (error is None or error[0] != uploaded.file_id):
        try:
            limit = float(st.get_option("server.maxUploadSize"))
            table = csvfile.read_table(uploaded.getvalue(), uploaded.name, limit)
            data.hold_reading(token, uploaded.file_id, table, int(table.frame.memory_usage(deep=True).sum()))
            error = None
        except (csvfile.UploadError, data.UploadRefused) as e:
            table, error = None, (uploaded.file_id, str(e))
        st.session_state.upload_error = error
    if table is None and error:
        st.error(f"This file cannot be used: {error[1]}.")
    return table


def _no_file() -> None:
    """The uploader is empty: the file it held is let go, with its choices."""
    data.drop_reading(session_token())
    for key in ("upload_error", "upload_prepared"):
        st.session_state.pop(key, None)


def _target(table: csvfile.Table) -> tuple[str, str | None]:
    """The target column and the problem type (None: as inferred), from the two menus."""
    columns = list(table.frame.columns)
    if st.session_state.get("upload_target") not in columns:
        st.session_state.upload_target = columns[-1]  # the last column, where most files keep the label
    left, right = st.columns(2)
    target = left.selectbox("Target column (what the network predicts)", columns, key="upload_target")
    try:
        inferred = csvfile.infer_target(target, table.frame[target])
    except csvfile.UploadError as e:
        st.error(f"This column cannot be the target: {e}.")
        return target, "none"
    options = [None, *inferred.allowed]
    if st.session_state.get("upload_kind") not in options:
        st.session_state.upload_kind = None
    kind = right.selectbox(
        "Problem type", options, key="upload_kind",
        format_func=lambda k: f"inferred: {inferred.kind} ({inferred.why})" if k is None else k,
        help="Two values: binary; a few whole numbers or text labels: multiclass; numbers with many values: "
        "regression. Choose another type the target allows to override it.",
    )  # fmt: skip
    return target, kind


def _prepared(table: csvfile.Table, target: str, kind: str | None) -> csvfile.Prepared | None:
    """The file prepared for this target and type (once per choice); None with its error shown."""
    key = (table.digest, target, kind)
    cached = st.session_state.get("upload_prepared")
    if cached is None or cached[0] != key:
        try:
            cached = (key, csvfile.prepare(table, target, kind), None)
        except csvfile.UploadError as e:
            cached = (key, None, str(e))
        st.session_state.upload_prepared = cached
    _, prepared, error = cached
    if error:
        st.error(f"This file cannot be trained on with this target: {error}.")
    return prepared


def show_preview(table: csvfile.Table, prepared: csvfile.Prepared) -> None:
    """Size, type, the target's balance or histogram, what was dropped or imputed, the first rows."""
    for column, (label, value) in zip(st.columns(4), preview.summary(table, prepared), strict=True):
        column.metric(label, value)
    st.caption(f"{literal(prepared.filename)}, {table.separator_name}-separated: {prepared.inferred}.")
    left, right = st.columns([3, 2])
    left.plotly_chart(preview.target_figure(prepared), key="upload_target_chart", theme=None)
    with right:
        lines = prepared.lines() or ["nothing dropped, nothing missing"]
        st.markdown("**Before training**\n" + "\n".join(f"- {plain(line)}" for line in lines))
        if prepared.kind == "regression":
            st.caption(
                "Each run divides the target by its training rows' standard deviation, so the network "
                "starts on its scale; losses are of that scaled target, MAE is in the target's units."
            )
    st.caption("The first rows, as read (every cell shown as text, exactly as in the file):")
    st.dataframe(table.frame.head(20), hide_index=True, key="upload_rows")


def _keep(name: str) -> None:
    """The box changed: runs of a file already in use are stored, or not, from now on."""
    if name in st.session_state.get("uploads", {}):
        service().keep_results(name, session_token(), bool(st.session_state.upload_keep))


def _use(prepared: csvfile.Prepared) -> bool:
    """Train on the file from now on: the explore page's dataset, with defaults suited to its size.
    False, with the one line shown, if the server cannot hold it."""
    token = session_token()
    data.drop_reading(token)  # the table goes: the prepared matrix is all a run needs
    try:
        service().add_upload(prepared, token)
    except data.UploadRefused as e:
        st.error(f"This file cannot be used now: {e}.")
        return False
    st.session_state.pop("upload_prepared", None)
    service().keep_results(prepared.name, token, bool(st.session_state.get("upload_keep")))
    st.session_state.setdefault("uploads", {})[prepared.name] = prepared
    if st.session_state.get("missing_upload") == prepared.name:
        st.session_state.missing_upload = None  # the link's own file: its settings stay as the link had them
        choose({"dataset": prepared.name})
        return True
    small = {"validation": "kfold"} if len(prepared.y) < preview.SMALL_FILE else {}
    fresh = Settings.for_dataset(prepared.name, seed=st.session_state.get("seed", 0), **small)
    choose(fresh.as_dict())
    st.session_state.dropped = []
    return True


def your_data() -> None:
    """The page, top to bottom: the uploader, the target, the preview, then train."""
    seed_from_link("yourdata")
    st.title("Your own data")
    st.caption(
        "Upload a CSV (or a tab- or semicolon-separated file), choose the column to predict, check what "
        "regviz makes of it, then watch regularization work on it on every page. Numeric columns are "
        "standardised and missing values imputed with each run's training rows only; text columns are "
        "one-hot encoded."
    )
    notices()  # what the link carried that was ignored, as every page says it
    missing = st.session_state.get("missing_upload")
    if missing:
        st.info(
            "The link you opened is for runs on an uploaded file, which never leaves the session that "
            "uploaded it. Upload the same file and choose the same target to see them."
        )
    limit = st.get_option("server.maxUploadSize")
    uploaded = st.file_uploader(
        f"CSV file (up to {limit} MB)",
        key="upload_file",
        help="Stays in this session only; see 'Keep results'.",
    )
    if uploaded is None:
        _no_file()
        return
    table = _table(uploaded)
    if table is None:
        return
    target, kind = _target(table)
    if kind == "none":
        return
    prepared = _prepared(table, target, kind)
    if prepared is None:
        return
    show_preview(table, prepared)
    st.checkbox("Keep results", key="upload_keep", help=KEEP_HELP, on_change=_keep, args=(prepared.name,))
    st.caption(KEEP_HELP)
    if missing and prepared.name != missing:
        st.warning("This file, target or type is not the link's: its runs will be this file's own.")
    if st.button("Train on this file", key="upload_use", type="primary", icon=":material/play_arrow:"):
        if _use(prepared):
            st.switch_page("ui/explore.py")


your_data()
