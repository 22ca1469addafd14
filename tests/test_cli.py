"""The command line: JSON lines per epoch, a summary, help for every setting, exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, subprocess_env

from regviz import cli, data
from regviz import settings as settings_mod
from regviz.settings import Settings

SMALL = ["--dataset", "synthetic", "--width", "4", "--epochs", "3", "--l2", "0.001"]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m regviz ...` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "regviz", *args], cwd=REPO, env=subprocess_env(**env),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_train_prints_one_json_line_per_epoch_then_a_summary(temporary_store):
    """Each epoch is a JSON line as it ends; the last line summarises and says the run was trained."""
    done = run_cli("train", *SMALL, REGVIZ_STORE=str(temporary_store))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    epochs, last = lines[:-1], lines[-1]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    best = min(epochs, key=lambda e: e["val_data_loss"])
    assert last["summary"]["best_epoch"] == best["epoch"]
    assert last["summary"]["min_val_data_loss"] == best["val_data_loss"]
    assert last["summary"]["cached"] is False
    assert (
        last["settings"]
        == Settings.from_params(
            {"dataset": "synthetic", "width": "4", "epochs": "3", "l2": "0.001"}
        ).as_dict()
    )


def test_a_second_run_comes_from_the_store_with_the_same_epochs(temporary_store):
    """The same command again is served from the store: identical epoch lines, cached true."""
    first = run_cli("train", *SMALL, REGVIZ_STORE=str(temporary_store))
    second = run_cli("train", *SMALL, REGVIZ_STORE=str(temporary_store))
    assert second.stdout.splitlines()[:-1] == first.stdout.splitlines()[:-1]
    assert json.loads(second.stdout.splitlines()[-1])["summary"]["cached"] is True


def test_help_documents_every_setting(capsys):
    """`train --help` names every setting with its range and default."""
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in settings_mod.fields():
        assert "--" + f.name.replace("_", "-") in text
        assert " ".join(settings_mod.allowed(f).split()) in text


@pytest.mark.parametrize(
    "args",
    [["--width", "0"], ["--l2", "abc"], ["--optimizer", "lbfgs"], ["--dropout", "0.95"], ["--bogus", "1"],
     ["--label-noise", "0.6"]],
)
def test_bad_input_exits_2_with_one_line(args, capsys):
    """A bad value or unknown option: exit code 2 and a message naming what is wrong, no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        code = cli.main(["train", *args])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert args[0].lstrip("-").replace("-", "_") in err or args[0] in err


def test_an_unavailable_dataset_exits_1_with_one_line(monkeypatch, capsys):
    """When IMDB can't be downloaded the command says so in one line and exits 1."""

    def unavailable(name):
        raise data.DatasetUnavailable(
            "IMDB could not be downloaded (URLError: offline); offline datasets: synthetic"
        )

    monkeypatch.setattr(data, "load", unavailable)
    assert cli.main(["train", "--epochs", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "offline datasets: synthetic" in err[0]


def test_code_prints_the_keras_listing(capsys):
    """`code` prints the book-style listing of the given settings."""
    assert cli.main(["code", "--l1", "0.001", "--dropout", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "regularizers.l1(0.001)" in out and "layers.Dropout(0.5)" in out


def test_label_noise_round_trips_through_the_command_line(temporary_store):
    """`--label-noise 0.3` trains those settings under their key; `--label-noise 0` is the run without it,
    under the same key; `code` spells the noise out."""
    noisy = run_cli("train", *SMALL, "--label-noise", "0.3", REGVIZ_STORE=str(temporary_store))
    assert noisy.returncode == 0, noisy.stderr
    last = json.loads(noisy.stdout.splitlines()[-1])
    want = Settings(dataset="synthetic", width=4, epochs=3, l2=0.001, label_noise=0.3)
    assert Settings(**last["settings"]) == want and last["key"] == want.key()
    assert cli.parser().parse_args(["train", "--label-noise", "0"]).label_noise == "0"
    zero = Settings.from_params({"label_noise": "0", "l2": "0.001"})
    assert zero.key() == Settings(l2=0.001).key()


def test_code_spells_out_the_label_noise(capsys):
    """`code --label-noise 0.2` prints a listing that flips a fifth of the training labels."""
    assert cli.main(["code", "--label-noise", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "def noisy(labels):" in out and "round(0.2 * n)" in out and "y_train = noisy(y[train_rows])" in out


SWEEP = ["--dataset", "synthetic", "--width", "4", "--epochs", "2"]


def test_sweep_prints_a_line_per_cell_then_the_best_and_reads_stored_cells_the_second_time(temporary_store):
    store = {"REGVIZ_STORE": str(temporary_store)}
    first = run_cli("sweep", *SWEEP, "--l2", "0,0.001", "--dropout", "0,0.5", **store)
    assert first.returncode == 0, first.stderr
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    cells, summary = lines[:-1], lines[-1]["summary"]
    assert [c["cell"] for c in cells] == [
        {"l2": 0.0, "dropout": 0.0}, {"l2": 0.0, "dropout": 0.5},
        {"l2": 0.001, "dropout": 0.0}, {"l2": 0.001, "dropout": 0.5},
    ]  # fmt: skip
    assert not any(c["stored"] for c in cells)
    assert summary["best"] == min(cells, key=lambda c: c["min_val_data_loss"]) and summary["cells"] == 4
    # each cell is the run `train` gives for its settings
    one = run_cli("train", *SWEEP, "--l2", "0.001", "--dropout", "0.5", **store)
    assert (
        json.loads(one.stdout.splitlines()[-1])["summary"]["min_val_data_loss"]
        == cells[3]["min_val_data_loss"]
    )
    again = run_cli("sweep", *SWEEP, "--l2", "0,0.001", "--dropout", "0,0.5", **store)
    assert all(json.loads(line)["stored"] for line in again.stdout.splitlines()[:-1])


@pytest.mark.parametrize(
    "args, words",
    [
        (["--l2", "0,5"], "l2='0,5'"),
        (["--l2", "0,1e-5,1e-4,1e-3,1e-2,0.1", "--dropout", "0,0.1,0.2,0.3,0.4,0.5,0.6"], "42 cells"),
        (["--l2", "0.001"], "no setting varies"),
    ],
)
def test_a_bad_sweep_grid_exits_2_with_one_line(args, words, capsys):
    assert cli.main(["sweep", *args]) == cli.BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert words.split("=")[0] in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_sweep_on_two_worker_processes_gives_the_cells_trained_in_this_process(temporary_store):
    """--workers 2 trains two cells at once in worker processes: the same cells, equal to 1e-6, each
    line printed as its cell finishes, and a worker count below 1 is refused with one line."""
    grid = ("--l2", "0,0.001", "--dropout", "0,0.5")
    here = run_cli("sweep", *SWEEP, *grid, "--no-store", REGVIZ_STORE=str(temporary_store))
    both = run_cli("sweep", *SWEEP, *grid, "--no-store", "--workers", "2", REGVIZ_STORE=str(temporary_store))
    assert here.returncode == 0 and both.returncode == 0, both.stderr[-2000:]

    def cells(proc):
        lines = [json.loads(line) for line in proc.stdout.splitlines()[:-1]]
        return {json.dumps(c["cell"], sort_keys=True): c for c in lines}

    assert cells(here).keys() == cells(both).keys() and len(cells(both)) == 4
    for name, cell in cells(here).items():
        assert cells(both)[name]["min_val_data_loss"] == pytest.approx(cell["min_val_data_loss"], abs=1e-6)
        assert cells(both)[name]["best_epoch"] == cell["best_epoch"] and not cells(both)[name]["stored"]
    bad = run_cli("sweep", *SWEEP, *grid, "--workers", "0")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--workers" in bad.stderr


def test_k_fold_prints_each_fold_epoch_then_the_mean_curves_summary(temporary_store):
    """--validation kfold: one line per fold-epoch (with fold and repeat), then a summary of the folds'
    mean curve: its best epoch, the mean validation loss and MAE there; stored folds the second time."""
    args = ["train", "--dataset", "houses", "--validation", "kfold", "--folds", "3", "--epochs", "4"]
    first = run_cli(*args, REGVIZ_STORE=str(temporary_store))
    assert first.returncode == 0, first.stderr[-2000:]
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    epochs, summary = lines[:-1], lines[-1]["summary"]
    assert [(e["fold"], e["epoch"]) for e in epochs] == [(f, e) for f in (1, 2, 3) for e in (1, 2, 3, 4)]
    mean = [sum(e["val_data_loss"] for e in epochs if e["epoch"] == k) / 3 for k in (1, 2, 3, 4)]
    best = mean.index(min(mean)) + 1
    assert summary["best_epoch"] == best and summary["min_val_data_loss"] == pytest.approx(min(mean))
    mae = sum(e["val_mae"] for e in epochs if e["epoch"] == best) / 3
    assert summary["val_mae_at_best"] == pytest.approx(mae) and summary["folds"] == 3
    assert summary["cached"] is False
    again = run_cli(*args, REGVIZ_STORE=str(temporary_store))
    assert json.loads(again.stdout.splitlines()[-1])["summary"]["cached"] is True


@pytest.mark.parametrize(
    "args, words",
    [
        (["--folds", "1", "--validation", "kfold"], "folds='1'"),
        (["--repeats", "3"], "only with validation iterated"),
    ],
)
def test_bad_protocol_combinations_exit_2_with_one_line(args, words, capsys):
    assert cli.main(["train", "--dataset", "houses", *args]) == cli.BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
