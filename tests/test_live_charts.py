"""The live charts' component (ui/live_charts.py): what the page sends it, that plotly.js's basic bundle
can draw every figure the live page makes, and the fallback to st.plotly_chart without its files. The
browser side is in test_browser.py (every streaming test reads the charts inside the component's frame)
and in bench/live.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import plotly
from streamlit.testing.v1 import AppTest

from regviz import views
from regviz.settings import Settings
from tests.test_figures import curve
from ui import live_charts

PAGE = """
from regviz import figures
from regviz.settings import Settings
from ui import live_charts

s = Settings()
figs = [figures.loss_figure([], None, s), figures.metrics_figure([], None, s),
        figures.weights_histogram(None, None), figures.weight_norms_figure([], None, 20)]
live_charts.draw(figs, key="live")
"""


def _page(tmp_path: Path) -> AppTest:
    script = tmp_path / "page.py"
    script.write_text(PAGE)
    return AppTest.from_file(str(script), default_timeout=60)


def test_the_page_gets_one_component_with_the_four_figures(tmp_path):
    at = _page(tmp_path).run()
    (component,) = at.get("component_instance")
    assert component.proto.component_name == "ui.live_charts.live_charts"
    sent = [json.loads(f) for f in json.loads(component.proto.json_args)["figures"]]
    assert [f["layout"]["title"]["text"].split("<br>")[0] for f in sent] == [
        "Loss per epoch", "Accuracy and ROC AUC, precision, recall", "First hidden layer weights",
        "Weight size per hidden layer",
    ]  # fmt: skip
    assert not at.get("plotly_chart") and not at.exception


def test_without_the_components_files_the_charts_are_st_plotly_charts(tmp_path, monkeypatch):
    monkeypatch.setattr(live_charts, "FILES", tmp_path / "missing")
    at = _page(tmp_path).run()
    assert not at.get("component_instance") and not at.exception
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert titles[0] == "Loss per epoch" and len(titles) == 4


def test_the_bundle_is_plotly_js_basic_of_the_major_version_plotly_ships():
    head = (live_charts.FILES / live_charts.BUNDLE).read_text()[:200]
    full = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()[:200]
    basic = re.search(r"plotly\.js \(basic - minified\) v(\d+)\.", head).group(1)
    assert basic == re.search(r"plotly\.js v(\d+)\.", full).group(1)  # the figures' schema: same major
    assert (live_charts.FILES / "PLOTLY-LICENSE").read_text().startswith("MIT License")
    assert f'<script src="{live_charts.BUNDLE}">' in (live_charts.FILES / "index.html").read_text()


def test_every_live_figure_uses_only_the_basic_bundles_trace_types():
    run, base = curve([0.5, 0.4, 0.35, 0.37, 0.4]), curve([0.5, 0.38, 0.36, 0.39, 0.45])
    s = Settings(l2=0.001)
    pinned = (("L2 0.003", curve([0.5, 0.42, 0.4])),)
    for view in (
        views.build(run, base, s, False, pinned),
        views.build(run, base, s, True),
        views.build([], None, s, False),
        views.build(run, base, Settings(dataset="houses", l2=0.001), False, folds=([run, run], [base, base])),
    ):
        types = {t.get("type", "scatter") for j in view.figures_json for t in json.loads(j)["data"]}
        assert types <= live_charts.TRACE_TYPES, types


def test_a_view_makes_its_figures_json_once_and_it_is_the_figures():
    view = views.build([], None, Settings(), False)
    assert view.figures_json is view.figures_json  # cached on the view, shared by every tab
    assert [json.loads(j)["layout"]["title"]["text"] for j in view.figures_json] == [
        f.layout.title.text for f in (view.loss, view.metrics, view.hist, view.norms)
    ]
