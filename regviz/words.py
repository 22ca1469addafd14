"""What the first layer keeps of the words: the input words whose first-kernel rows are largest, how many
an L1 penalty has practically zeroed, and the dataset's word index that names the inputs.

The worker reads the first kernel once, at the end of a run (`first_layer_inputs`), and the run's last
record carries the result; the page names the inputs with `vocabulary` and says what it shows with
`kept` and `headline`.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regviz import data
from regviz.records import SMALL_WEIGHT, EpochRecord

TOP_INPUTS = 20  # inputs a run's last record keeps, largest first
INDEX_FROM = 3  # keras's loaders (and the shared files): the word of frequency rank r is input r + 3
MARKERS = {0: "(padding)", 1: "(start of text)", 2: "(rare word)", 3: "(unused)"}  # inputs below r = 1
# the word datasets whose inputs have names: keras's module, and where a local file of it is named
TEXT = {"imdb": ("IMDB", data.IMDB_PATH_ENV), "reuters": ("Reuters", data.REUTERS_PATH_ENV)}
Inputs = tuple[tuple[int, float], ...]  # (input, its first-kernel row's L2 norm), largest first


def first_layer_inputs(kernel: np.ndarray, top: int = TOP_INPUTS) -> tuple[Inputs, int]:
    """One pass over a first kernel [inputs, units]: the `top` inputs with the largest row L2 norms
    as (input, norm), largest first (ties: the lower input), and how many inputs have every weight
    below SMALL_WEIGHT in size."""
    k = np.asarray(kernel, np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", k, k, dtype=np.float64))
    zeroed = int(np.count_nonzero(np.abs(k).max(axis=1, initial=0.0) < SMALL_WEIGHT))
    order = np.argsort(-norms, kind="stable")[:top]
    return tuple((int(i), float(norms[i])) for i in order), zeroed


def has_words(dataset: str) -> bool:
    """The datasets whose inputs are words (IMDB, Reuters): the panel's. Their generated twins train on
    made-up inputs, so their runs' records carry the inputs but no page lists them."""
    return dataset in TEXT


@dataclass(frozen=True)
class Vocabulary:
    """The names of a dataset's inputs: its words by input, or none and the one-line reason why."""

    names: dict[int, str]
    missing: str | None = None  # why there are no words (None: there are)

    def name(self, column: int) -> str:
        """The input's word, its marker's role, or its number when there is no word for it."""
        if column in self.names:
            return self.names[column]
        return MARKERS.get(column, f"input {column}") if self.names else f"input {column}"


def vocabulary(dataset: str, n_inputs: int = data.NUM_WORDS) -> Vocabulary:
    """The words of a text dataset's inputs, from the word index beside its local file (the file named
    by $REGVIZ_IMDB_PATH or $REGVIZ_REUTERS_PATH), else keras's get_word_index() (which downloads);
    without one, no words and a one-line reason."""
    if dataset not in TEXT:
        return Vocabulary({}, f"The {dataset} data is generated, without words: inputs are shown by number.")
    title, env = TEXT[dataset]
    index, failure = _word_index(dataset, os.environ.get(env, ""))
    if index is None:
        return Vocabulary({}, f"No word index for {title} ({failure}): inputs are shown by number.")
    return Vocabulary(names_of(index, n_inputs))


def names_of(index: dict[str, int], n_inputs: int = data.NUM_WORDS) -> dict[int, str]:
    """Input -> word for a word index {word: frequency rank, 1 = most frequent}, in keras's encoding
    (input = rank + INDEX_FROM), only the inputs below n_inputs."""
    return {rank + INDEX_FROM: word for word, rank in index.items() if rank + INDEX_FROM < n_inputs}


@functools.lru_cache(maxsize=4)
def _word_index(dataset: str, path: str) -> tuple[dict[str, int] | None, str]:
    """(index, "") or (None, why); kept per process, failures too: a missing download is not retried at
    every rerun of the page."""
    try:
        index = _read_beside(Path(path)) if path else _keras_index(dataset)
    except Exception as e:  # no network, no file, a broken file: all one line
        return None, _one_line(e)
    if not isinstance(index, dict) or not all(isinstance(r, int) for r in index.values()):
        return None, "the word index is not a JSON object of word: rank"
    return index, ""


def _read_beside(path: Path) -> dict:
    """The word index beside a local dataset file: <stem>_word_index.json.gz or .json (the shared
    files' names, and keras's own beside its imdb.npz)."""
    for name in (f"{path.stem}_word_index.json.gz", f"{path.stem}_word_index.json"):
        beside = path.with_name(name)
        if beside.is_file():
            opener = gzip.open if beside.suffix == ".gz" else open
            with opener(beside, "rt", encoding="utf-8") as f:
                return json.load(f)
    raise FileNotFoundError(f"no {path.stem}_word_index.json(.gz) beside {path}")


def _keras_index(dataset: str) -> dict:
    """Keras's word index: its cached file when there is one (the page's process need not import keras
    for it), else keras's get_word_index(), which downloads it into that cache."""
    cached = _keras_home() / "datasets" / f"{dataset}_word_index.json"
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    import keras  # heavy; only a first download needs it

    # keras prints its progress to stdout, which belongs to the command line's JSON lines
    with contextlib.redirect_stdout(sys.stderr):
        return getattr(keras.datasets, dataset).get_word_index()


def _keras_home() -> Path:
    """Where keras's get_file keeps downloads: $KERAS_HOME or ~/.keras, /tmp/.keras if not writable."""
    home = Path(os.path.expanduser(os.environ.get("KERAS_HOME") or "~/.keras"))
    return home if os.access(home, os.W_OK) else Path("/tmp/.keras")


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160] if text else 'no detail'}"


# ---- what the panel shows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kept:
    """One run's side of the panel: its top words with their row norms, and its zeroed inputs."""

    words: tuple[tuple[str, float], ...]
    zeroed: int


def kept(record: EpochRecord | None, vocab: Vocabulary, top: int = TOP_INPUTS) -> Kept | None:
    """A run's last record read through the vocabulary; None when the record has no inputs (a run not
    finished, or stored before its records carried them)."""
    if record is None or record.top_inputs is None or record.zeroed_inputs is None:
        return None
    return Kept(tuple((vocab.name(i), norm) for i, norm in record.top_inputs[:top]), record.zeroed_inputs)


def headline(run: Kept, base: Kept | None, l1: float, n_inputs: int = data.NUM_WORDS) -> str:
    """One sentence: how many of the inputs have every first-layer weight below SMALL_WEIGHT, in this
    run and in the baseline."""
    where = f"every first-layer weight below {SMALL_WEIGHT:g} in size"
    than = f" (the baseline: {base.zeroed:,})" if base is not None else ""
    if l1:
        return f"L1 has practically zeroed {run.zeroed:,} of the {n_inputs:,} words{than}: {where}."
    return f"{run.zeroed:,} of the {n_inputs:,} words have {where}{than}; an L1 penalty zeroes many of them."
