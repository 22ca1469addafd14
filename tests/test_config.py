"""The served app's Streamlit configuration (.streamlit/config.toml): every option is one Streamlit knows,
and the ones the app's speed and classroom use rest on have their values."""

from __future__ import annotations

import tomllib

from conftest import REPO
from streamlit import config

CONFIG = REPO / ".streamlit" / "config.toml"


def options() -> dict[str, object]:
    with CONFIG.open("rb") as f:
        table = tomllib.load(f)
    return {f"{section}.{name}": value for section, values in table.items() for name, value in values.items()}


def test_every_option_is_a_streamlit_option():
    """A misspelt option is ignored by Streamlit without a word: each one here must exist."""
    known = set(config._config_options_template)  # the option table Streamlit reads config files against
    assert known, "streamlit's option table moved"
    assert set(options()) <= known, set(options()) - known


def test_the_options_the_page_relies_on():
    opts = options()
    assert opts["runner.postScriptGC"] is False  # no full collection after every poll of every tab
    assert opts["server.fileWatcherType"] == "none"  # no reload mid-lesson
    assert opts["client.showErrorDetails"] == "none"  # a class never sees a traceback
    assert opts["server.disconnectedSessionTTL"] <= 30  # a closed tab frees its runs soon


def test_the_upload_limit_is_the_one_the_command_line_uses():
    """server.maxUploadSize (MB) and regviz's own limit for files read by the command line agree."""
    from regviz.data.csvfile import MAX_MB

    assert options()["server.maxUploadSize"] == MAX_MB
