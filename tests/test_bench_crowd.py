"""The crowd benchmark: its quick run drives the real app with protocol-level visitors and one projector tab.

A smoke run of the client's protocol layer (open a page, move a widget, follow the fragments' reruns,
read a run's epochs), not a timing gate: no figure is compared with its limit here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, run_quick_bench

from regviz.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = REPO / "bench" / "crowd.py"
# a guard against a hang only: the quick run takes about a minute on two cores and
# up to six times that under the load CI may run beside
DEADLINE = 2400.0  # seconds
RAW = ("visitor", "control", "value", "target", "sent", "first_epoch_s", "complete_s", "from_store")

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    """The figures of one `crowd.py --quick` run."""
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"no browser at {CHROMIUM} (apt-get install -y chromium)")
    out = tmp_path_factory.mktemp("crowd") / "crowd.json"
    proc = run_quick_bench(SCRIPT, out, DEADLINE)
    assert "move -> run complete received" in proc.stdout
    return json.loads(out.read_text())


def _by_visitor(result: dict) -> dict[int, list[dict]]:
    moves: dict[int, list[dict]] = {}
    for m in result["moves"]:
        moves.setdefault(m["visitor"], []).append(m)
    return moves


def test_every_visitor_receives_complete_runs(result):
    """Each visitor's first page and every move it did not replace reach 'all epochs in', run and baseline,
    in the progress line and in the charts' data, with nothing lost and no exception shown."""
    moves = _by_visitor(result)
    assert len(moves) == result["config"]["visitors"] == 3
    for visitor, own in moves.items():
        assert own[0]["control"] == "open"
        for m in own:
            if m["superseded"]:
                continue
            assert m["complete_s"] is not None, (visitor, m)
            assert m["baseline_complete_s"] is not None, (visitor, m)
            assert m["charts_complete_s"] is not None, (visitor, m)
            assert m["first_epoch_s"] <= m["complete_s"]
            assert m["from_store"] in (True, False)
    assert result["figures"]["exceptions"] == []  # (how many took over 60 s is a figure, not checked here)


def test_a_visitor_who_moves_twice_gets_the_second_setting(result):
    """The page of a visitor with two or more moves shows, complete, the settings of its last move."""
    moves = _by_visitor(result)
    movers = [v for v, own in moves.items() if len(own) >= 3]  # the open, then two moves
    assert movers, "the seeded quick script gives at least one visitor two moves"
    for v in movers:
        last = moves[v][-1]
        assert last["complete_s"] is not None
        assert Settings.from_params(result["visitors_pages"][v]) == Settings.from_params(last["target"])
        assert Settings.from_params(last["target"]) != Settings.from_params(moves[v][-2]["target"])


def test_results_hold_the_raw_moves_the_machine_and_the_server_budget(result):
    """Every move's raw figures, the machine, load average and commit; the server's processes on its cores;
    the projector's keypresses timed."""
    assert all(set(RAW) <= set(m) for m in result["moves"])
    assert result["machine"]["load_avg_start"] and result["machine"]["load_avg_end"]
    assert result["checkout"]["commit"]
    assert result["affinity"]["all_on_server_cores"]
    f = result["figures"]
    assert f["peak_rss_mb"]["server_and_workers"] >= f["peak_rss_mb"]["server"] > 0
    assert 0 <= f["visitors_cores"] and f["store_hit_share"] is not None
    waited = [m for m in result["moves"] if m["control"] != "open" and not m["superseded"]]
    assert f["moves_waited_for"] == len(waited) == f["complete_s"]["n"]
    assert f["superseded"] == f["moves"] - len(waited)
    commands = {p["command"].split()[2] for p in result["processes_peak_rss"]}
    assert commands >= {"streamlit", "regviz.runs.worker"}
    assert all(p["peak_rss_mb"] > 0 for p in result["processes_peak_rss"])
    assert f["projector"]["error"] is None and f["projector"]["presses"] >= 1
    assert all(p["last_epoch_s"] is not None for p in result["projector_presses"])
