"""What L1 keeps, the words: the first kernel's largest rows and zeroed inputs against NumPy, the inputs
named through a word index (hand-made, the shared files, none), the last record carrying them through
training, JSON and K-fold means, and the panel on the page."""

from __future__ import annotations

import dataclasses
import gzip
import json

import keras
import numpy as np
import pytest

from regviz import data, words
from regviz.records import SMALL_WEIGHT, EpochRecord, LayerStats, mean_records
from regviz.settings import Settings
from regviz.store import RunStore
from regviz.training import trainers
from regviz.training.loop import train
from tests.test_app import app, finish, open_app, store_path, stored  # noqa: F401 (fixtures)

L1_RUN = Settings(dataset="synthetic", epochs=3, width=8, l1=0.001, batch_size=128)
PANEL = "What the first layer keeps: the words"


@pytest.fixture(autouse=True)
def fresh_word_indexes():
    """Each test reads the word indexes anew (they are kept per process)."""
    words._word_index.cache_clear()
    yield
    words._word_index.cache_clear()


def kernel_with_zeroed_rows(seed=3, n=300, units=7) -> np.ndarray:
    """A kernel whose rows are ordinary, all below SMALL_WEIGHT, or below it but for one weight."""
    rng = np.random.default_rng(seed)
    k = rng.normal(0, 0.05, (n, units)).astype(np.float32)
    k[::3] = rng.uniform(-0.9, 0.9, (len(k[::3]), units)) * SMALL_WEIGHT  # zeroed
    k[1::9] *= 1e-4
    k[1::9, 0] = 2 * SMALL_WEIGHT  # one weight above: not zeroed
    return k


def record(epoch=1, **fields) -> EpochRecord:
    """A record with made-up numbers, for what records carry (not what training computes)."""
    base = dict(
        epoch=epoch, data_loss=0.5, val_data_loss=0.6, penalty=0.0, loss=0.5, val_loss=0.6, accuracy=0.8,
        val_accuracy=0.7, val_auc=0.75, seconds=1.0, layers=(LayerStats(1.0, 0.1),), hist=(1, 2, 3),
    )  # fmt: skip
    return EpochRecord(**{**base, **fields})


# ---- the first kernel --------------------------------------------------------------------------------------


def test_top_inputs_and_zeroed_count_match_numpy():
    """Top inputs are NumPy's row norms in argsort order; zeroed counts rows with every |w| < SMALL_WEIGHT."""
    k = kernel_with_zeroed_rows()
    top, zeroed = words.first_layer_inputs(k, top=20)
    norms = np.linalg.norm(k.astype(np.float64), axis=1)
    expected = np.argsort(-norms, kind="stable")[:20]
    assert [i for i, _ in top] == expected.tolist()
    assert [n for _, n in top] == pytest.approx(norms[expected], rel=1e-6)
    assert zeroed == int(np.all(np.abs(k) < SMALL_WEIGHT, axis=1).sum()) == 100


def test_a_hand_made_vocabulary_names_the_inputs_with_keras_offset():
    """Rank r is input r + 3; inputs 0-3 are the markers; inputs past the word list keep their number."""
    index = {"the": 1, "good": 2, "bad": 3, "plot": 4, "rare": 9}  # rank 9 is input 12: past 10 inputs
    vocab = words.Vocabulary(words.names_of(index, n_inputs=10))
    assert [vocab.name(i) for i in range(10)] == [
        "(padding)", "(start of text)", "(rare word)", "(unused)", "the", "good", "bad", "plot",
        "input 8", "input 9",
    ]  # fmt: skip
    k = np.zeros((10, 2), np.float32)
    k[6], k[5], k[4] = [0.6, -0.8], [0.3, 0.0], [0.0, 2 * SMALL_WEIGHT]  # bad 1.0 > good 0.3 > the
    top, zeroed = words.first_layer_inputs(k, top=3)
    kept = words.kept(record(top_inputs=top, zeroed_inputs=zeroed), vocab)
    assert [w for w, _ in kept.words] == ["bad", "good", "the"]
    assert [n for _, n in kept.words] == pytest.approx([1.0, 0.3, 2 * SMALL_WEIGHT])
    assert kept.zeroed == 7
    headline = words.headline(kept, None, l1=0.001, n_inputs=10)
    assert headline.startswith("L1 has practically zeroed 7 of the 10 words")


def test_the_word_index_beside_a_local_file_is_read(tmp_path, monkeypatch):
    """$REGVIZ_IMDB_PATH's <stem>_word_index.json.gz (or .json) names the inputs; Keras is not asked."""
    monkeypatch.setattr(keras.datasets.imdb, "get_word_index", pytest.fail)
    (tmp_path / "reviews.npz").write_bytes(b"")
    with gzip.open(tmp_path / "reviews_word_index.json.gz", "wt") as f:
        json.dump({"great": 1, "movie": 2}, f)
    monkeypatch.setenv(data.IMDB_PATH_ENV, str(tmp_path / "reviews.npz"))
    vocab = words.vocabulary("imdb")
    assert vocab.missing is None and (vocab.name(4), vocab.name(5)) == ("great", "movie")
    (tmp_path / "news.npz").write_bytes(b"")
    (tmp_path / "news_word_index.json").write_text(json.dumps({"oil": 1}))
    monkeypatch.setenv(data.REUTERS_PATH_ENV, str(tmp_path / "news.npz"))
    assert words.vocabulary("reuters").name(4) == "oil"


def test_keras_cached_word_index_is_read_without_asking_keras(tmp_path, monkeypatch):
    """Without a local file, a word index keras downloaded before (in $KERAS_HOME) is read directly."""
    monkeypatch.setattr(keras.datasets.reuters, "get_word_index", pytest.fail)
    monkeypatch.delenv(data.REUTERS_PATH_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "reuters_word_index.json").write_text(json.dumps({"wheat": 1, "said": 2}))
    vocab = words.vocabulary("reuters")
    assert vocab.missing is None and [vocab.name(i) for i in (4, 5)] == ["wheat", "said"]


def test_no_word_index_is_one_line(tmp_path, monkeypatch):
    """No file beside the local data, a failed download, a broken file, generated data: one line each."""

    def no_network(*args, **kwargs):
        raise OSError("network unreachable (test)\nsecond line")

    monkeypatch.setattr(keras.datasets.imdb, "get_word_index", no_network)
    monkeypatch.delenv(data.IMDB_PATH_ENV, raising=False)
    (tmp_path / "keras").mkdir()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # nothing cached from an earlier download
    (tmp_path / "reviews.npz").write_bytes(b"")
    (tmp_path / "broken.npz").write_bytes(b"")
    (tmp_path / "broken_word_index.json").write_text("[1, 2]")
    lines = [words.vocabulary("imdb").missing]
    for name in ("reviews.npz", "broken.npz"):
        monkeypatch.setenv(data.IMDB_PATH_ENV, str(tmp_path / name))
        lines.append(words.vocabulary("imdb").missing)
    lines.append(words.vocabulary("synthetic").missing)
    assert all(line and "\n" not in line for line in lines), lines
    assert "network unreachable" in lines[0] and "reviews_word_index" in lines[1] and "word: rank" in lines[2]
    assert words.Vocabulary({}, lines[0]).name(77) == "input 77"


def test_the_shared_word_index_names_the_inputs_as_the_readme_decodes(imdb_path, monkeypatch):
    """The shared IMDB file's inputs get index - 3 -> rank -> word, read here from the file itself."""
    beside = imdb_path.with_name(imdb_path.stem + "_word_index.json.gz")
    if not beside.is_file():
        pytest.skip(f"no word index beside {imdb_path}")
    monkeypatch.setenv(data.IMDB_PATH_ENV, str(imdb_path))
    with gzip.open(beside, "rt") as f:
        by_rank = {rank: word for word, rank in json.load(f).items()}
    vocab = words.vocabulary("imdb")
    assert [vocab.name(i) for i in (4, 5, 100, 9999)] == [by_rank[r] for r in (1, 2, 97, 9996)]
    assert len(vocab.names) == data.NUM_WORDS - 4


# ---- records: JSON, K-fold ---------------------------------------------------------------------------------


def test_inputs_survive_json_and_old_records_read_without_them():
    """to_dict -> JSON -> from_dict gives the same record; a stored dict from before has None for both."""
    r = record(top_inputs=((12, 0.5), (7, 0.25)), zeroed_inputs=9)
    assert EpochRecord.from_dict(json.loads(json.dumps(r.to_dict()))) == r
    old = record().to_dict()
    del old["top_inputs"], old["zeroed_inputs"]
    assert EpochRecord.from_dict(old) == record()


def test_a_k_fold_mean_keeps_the_first_folds_inputs():
    """Words do not average: the mean record takes fold 1's inputs (None where fold 1 has none)."""
    fold1 = [record(1), record(2, top_inputs=((5, 1.0),), zeroed_inputs=3)]
    fold2 = [record(1), record(2, top_inputs=((6, 2.0),), zeroed_inputs=4, val_data_loss=0.8)]
    mean = mean_records([fold1, fold2])
    assert (mean[0].top_inputs, mean[0].zeroed_inputs) == (None, None)
    assert (mean[1].top_inputs, mean[1].zeroed_inputs) == (((5, 1.0),), 3)
    assert mean[1].val_data_loss == pytest.approx(0.7)


# ---- training ----------------------------------------------------------------------------------------------


def test_training_fills_the_inputs_on_the_last_record_only(small_dataset):
    """Only the last epoch's record has them, and they are NumPy's on the run's final first kernel."""
    records = list(train(L1_RUN, dataset=small_dataset))
    assert [(r.top_inputs, r.zeroed_inputs) for r in records[:-1]] == [(None, None)] * 2
    # the run's trainer is back in the pool with its final weights, until the next run resets it
    kernel = trainers.pool.idle(L1_RUN, small_dataset.num_features)[-1].model.layers[0].kernel.numpy()
    norms = np.linalg.norm(kernel, axis=1)
    top = records[-1].top_inputs
    assert [i for i, _ in top] == np.argsort(-norms, kind="stable")[: words.TOP_INPUTS].tolist()
    assert [n for _, n in top] == pytest.approx(norms[[i for i, _ in top]], rel=1e-5)
    assert records[-1].zeroed_inputs == int(np.all(np.abs(kernel) < SMALL_WEIGHT, axis=1).sum()) > 0


def test_reading_the_inputs_changes_nothing_else(small_dataset):
    """A 2-epoch run's records equal the first two of a 3-epoch run but for the time and the inputs."""
    short, long = (list(train(L1_RUN.replace(epochs=n), dataset=small_dataset)) for n in (2, 3))
    plain = [dataclasses.replace(r, seconds=0.0, top_inputs=None, zeroed_inputs=None) for r in short]
    assert plain == [dataclasses.replace(r, seconds=0.0) for r in long[:2]]
    assert short[-1].top_inputs is not None


# ---- the page ----------------------------------------------------------------------------------------------


def panel(at):
    """The words panel's expander."""
    return next(e for e in at.expander if e.label == PANEL)


def test_the_panel_lists_an_imdb_runs_words_and_zeroed_count(app, store_path, imdb_path, monkeypatch):  # noqa: F811
    """An L1 IMDB run: its words and the baseline's, as the shared index names the stored inputs."""
    monkeypatch.setenv(data.IMDB_PATH_ENV, str(imdb_path))
    beside = imdb_path.with_name(imdb_path.stem + "_word_index.json.gz")
    if not beside.is_file():
        pytest.skip(f"no word index beside {imdb_path}")
    with gzip.open(beside, "rt") as f:
        by_input = {rank + 3: word for word, rank in json.load(f).items()}
    at = finish(open_app({"dataset": "imdb", "width": "4", "epochs": "2", "l1": "0.001"}), app)
    settings = Settings(dataset="imdb", width=4, epochs=2, l1=0.001)
    shown = panel(at)
    assert shown.proto.expanded  # an L1 run opens it
    run, base = stored(store_path, settings)[-1], stored(store_path, settings.baseline())[-1]
    tables = [df.value for df in shown.dataframe]
    for table, last in zip(tables, (run, base), strict=True):
        assert list(table["word"]) == [by_input[i] for i, _ in last.top_inputs]
        assert list(table["weight norm"]) == pytest.approx([n for _, n in last.top_inputs])
    zeroed = f"zeroed {run.zeroed_inputs:,} of the 10,000 words (the baseline: {base.zeroed_inputs:,})"
    assert zeroed in shown.markdown[0].value


def test_without_a_word_index_the_panel_says_so_in_one_line(app, tmp_path, imdb_path, monkeypatch):  # noqa: F811
    """IMDB from a file with no index beside it: one line says so, and inputs are shown by number."""
    (tmp_path / "alone.npz").symlink_to(imdb_path)
    monkeypatch.setenv(data.IMDB_PATH_ENV, str(tmp_path / "alone.npz"))
    data._load_cached.cache_clear()
    at = finish(open_app({"dataset": "imdb", "width": "4", "epochs": "1"}), app)
    shown = panel(at)
    assert not shown.proto.expanded  # no L1: closed, but there
    notes = [c.value for c in shown.caption if "word index" in c.value]
    assert len(notes) == 1 and "\n" not in notes[0] and notes[0].startswith("No word index for IMDB")
    assert all(w.startswith("input ") for w in shown.dataframe[0].value["word"])


def test_generated_and_tabular_data_have_no_words_panel(app):  # noqa: F811
    """The generated reviews and Boston-shaped tracts have no words: no panel."""
    for dataset in ("synthetic", "houses"):
        at = open_app({"dataset": dataset, "epochs": "2"})
        assert all(e.label != PANEL for e in at.expander)


def test_a_baseline_stored_before_records_carried_words_says_so(app, store_path, imdb_path, monkeypatch):  # noqa: F811
    """A baseline stored before records carried the inputs shows one line instead of its table, and the
    headline leaves it out; the run's own table is still there."""
    monkeypatch.setenv(data.IMDB_PATH_ENV, str(imdb_path))
    settings = Settings(dataset="imdb", width=4, epochs=1, l1=0.001)
    run, base = (list(train(s)) for s in (settings, settings.baseline()))
    old_base = [dataclasses.replace(r, top_inputs=None, zeroed_inputs=None) for r in base]
    store = RunStore(store_path)
    for s, records in ((settings, run), (settings.baseline(), old_base)):
        store.put(s, data.load("imdb").version, records)
    at = open_app({"dataset": "imdb", "width": "4", "epochs": "1", "l1": "0.001"})
    shown = panel(at)
    named = [words.vocabulary("imdb").name(i) for i, _ in run[-1].top_inputs]
    assert [df.value["word"].tolist() for df in shown.dataframe] == [named]  # the run's table only
    assert any("stored before runs kept them" in c.value for c in shown.caption)
    zeroed = f"L1 has practically zeroed {run[-1].zeroed_inputs:,} of the 10,000 words:"
    assert shown.markdown[0].value.startswith(zeroed)
