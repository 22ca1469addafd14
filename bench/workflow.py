"""The universal workflow's datasets: regviz against the book's plain Keras code, both in one run.

    python bench/workflow.py           # Reuters 64-64 x 20 epochs and Boston 4-fold x 100 epochs, 3 seeds
    python bench/workflow.py --quick   # 3 epochs Reuters, 5 epochs Boston, 1 seed (CI: proves it works)
    python bench/workflow.py --out f.json

Targets (issue 9, problem types and K-fold):
- Reuters 64-64, 20 epochs, batch 512, the first 1,000 training newswires validating: regviz's time at
  most 1/8 of the book's `model.fit` on dense multi-hot input, with the same learning: per seed, the
  best epoch (lowest validation loss) within 1 and the minimum validation loss within 0.02.
- Boston Housing, 4-fold, 100 epochs, batch 16: regviz's time at most 1/5 of the book's loop of four
  `fit` calls; both sides' mean validation MAE reported (same model, same protocol).

Reuters' learning is compared twice per seed: with plain fit shuffling as a reader's fit does (the same
initial weights, another batch order), and with plain fit fed regviz's batches (the same weights and
batches: only float rounding differs); the first minus the second is how far a batch order alone moves
the curve. Then regviz trains each seed's initial weights on 12 other batch orders (numpy seeds 1000 on): the
best epochs that the batch order alone gives, and how many of them are within the tolerance of plain
fit's (whose own shuffle is one more draw of a batch order).

Both sides train on data already loaded (the reference's dense arrays, regviz's rows and tensors), each
clock from just before the first model is built to the last epoch's end; the Boston reference's clock
includes its four `evaluate` calls (regviz validates every epoch). A time target counts as met only if
both the seeds' mean and regviz's first run (which traces its functions) are within it.
Writes bench/results/workflow.json.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import live  # noqa: E402  (the machine's description, shared by the benchmarks)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from regviz import data  # noqa: E402
from regviz.model import build_model  # noqa: E402
from regviz.settings import Settings  # noqa: E402
from regviz.training import loop  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
FILES = {
    "reuters": (data.REUTERS_PATH_ENV, SHARED / "reuters_r21578.npz"),
    "boston": (data.BOSTON_PATH_ENV, SHARED / "boston_housing.npz"),
}
DEFAULT_OUT = REPO / "bench" / "results" / "workflow.json"
REUTERS_LIMIT, BOSTON_LIMIT = 1 / 8, 1 / 5  # regviz's time over the reference's
MAX_BEST_EPOCH_DIFF, MAX_LOSS_DIFF = 1, 0.02
FULL = {"reuters_epochs": 20, "boston_epochs": 100, "seeds": [0, 1, 2], "other_orders": 12}
QUICK = {"reuters_epochs": 3, "boston_epochs": 5, "seeds": [0], "other_orders": 2}
ORDER_SEEDS = 1000  # the other batch orders of the spread: numpy seeds 1000, 1001, ...
REUTERS_BATCH, BOSTON_BATCH, FOLDS = 512, 16, 4


def data_files() -> dict[str, Path]:
    """Each dataset's file: its env var's path, else the shared one; exits with one line if absent."""
    paths = {}
    for name, (env, default) in FILES.items():
        path = Path(os.environ.get(env) or default)
        if not path.is_file():
            sys.exit(f"no {name} file at {path}: set {env}")
        os.environ[env] = str(path)  # regviz.data.load reads the same file
        paths[name] = path
    return paths


# ---- the book's code -----------------------------------------------------------------------------


def seeded(seed: int, n_features: int, *layers: tuple[int, str | None]) -> keras.Sequential:
    """keras.Sequential of Dense(units, activation) layers, its initial weights drawn from the seed (as
    regviz draws them), then the seed cleared: a reader's unseeded fit reshuffles every epoch; seeded,
    keras 3.15's fit repeats epoch 1's batch order in every epoch (tf.data restarts its seeded shuffle)."""
    keras.utils.set_random_seed(seed)  # before the layers: their initializers take their seeds when made
    model = keras.Sequential([keras.layers.Dense(units, activation=act) for units, act in layers])
    model.build((None, n_features))
    tf.random.set_seed(None)
    return model


def reuters_model(seed: int) -> keras.Sequential:
    """The book's Reuters classifier: 64-64 relu, softmax over 46 topics, rmsprop; integer labels."""
    model = seeded(seed, data.NUM_WORDS, (64, "relu"), (64, "relu"), (46, "softmax"))
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def reuters_reference(seed: int, epochs: int, dense) -> dict:
    """The book's `fit` on dense multi-hot arrays, validating on the first 1,000 newswires; the clock
    starts before the model is built."""
    x, y, x_val, y_val = dense
    return _clocked(lambda: reuters_model(seed), x, epochs, (x_val, y_val), y=y, batch_size=REUTERS_BATCH)


def reuters_same_batches(seed: int, epochs: int, dense, rows) -> dict:
    """The same model and fit, fed through tf.data the batches regviz trains on for this seed
    (`loop.batch_orders`): both sides then start from the same weights and see the same batches, so
    their curves can differ only by float rounding. Not timed against regviz (tf.data's gather is not
    fit's own array pipeline)."""
    x_rows, y_rows = rows  # the dense training rows and labels as tensors, made once
    n = int(y_rows.shape[0])
    orders = np.stack(list(itertools.islice(loop.batch_orders(seed, n), epochs)))
    batches = (
        tf.data.Dataset.from_tensor_slices(orders)
        .flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(REUTERS_BATCH))
        .map(lambda i: (tf.gather(x_rows, i), tf.gather(y_rows, i)))
    )
    steps = -(-n // REUTERS_BATCH)  # with steps_per_epoch, fit carries one iterator over all epochs
    return _clocked(
        lambda: reuters_model(seed), batches, epochs, dense[2:], steps_per_epoch=steps, shuffle=False
    )


def _clocked(build, x, epochs: int, validation, **fit) -> dict:
    """build().fit(x, ...) validating every epoch, timed from before the build to the last epoch's end
    (after its validation), with its curve."""
    ends = []
    clock = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    start = time.perf_counter()
    history = build().fit(x, epochs=epochs, validation_data=validation, callbacks=[clock], verbose=0, **fit)
    return curve(history.history["val_loss"], ends[-1] - start, ends[0] - start)


def boston_model(seed: int) -> keras.Sequential:
    """The book's build_model(): 64-64 relu, one linear unit, rmsprop, mse, mae."""
    model = seeded(seed, 13, (64, "relu"), (64, "relu"), (1, None))
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
    return model


def boston_reference(seed: int, epochs: int, book) -> dict:
    """The book's K-fold loop: fold i's rows validate, the rest train a fresh model; its MAE evaluated."""
    x, y = book
    n = len(x) // FOLDS
    maes = []
    start = time.perf_counter()
    for i in range(FOLDS):
        val, val_y = x[i * n : (i + 1) * n], y[i * n : (i + 1) * n]
        part = np.concatenate([x[: i * n], x[(i + 1) * n :]], axis=0)
        part_y = np.concatenate([y[: i * n], y[(i + 1) * n :]], axis=0)
        model = boston_model(seed)
        model.fit(part, part_y, epochs=epochs, batch_size=BOSTON_BATCH, verbose=0)
        maes.append(float(model.evaluate(val, val_y, verbose=0)[1]))
    return {"seconds": time.perf_counter() - start, "fold_val_mae": maes, "val_mae": float(np.mean(maes))}


def book_boston(path: Path):
    """The book's training data, standardised with its own mean and standard deviation."""
    with np.load(path) as f:
        x, y = f["x_train"].copy(), f["y_train"]
    x -= x.mean(axis=0)
    x /= x.std(axis=0)
    return x, y


# ---- regviz --------------------------------------------------------------------------------------


def reuters_regviz(seed: int, epochs: int, dataset) -> dict:
    """regviz.training.loop.train with the dataset's book defaults: 64-64, rmsprop, batch 512."""
    settings = Settings.for_dataset("reuters", epochs=epochs, seed=seed)
    losses, ends = [], []
    start = time.perf_counter()
    for record in loop.train(settings, dataset=dataset):
        ends.append(time.perf_counter())
        losses.append(record.val_data_loss)
    return curve(losses, ends[-1] - start, ends[0] - start)


@contextlib.contextmanager
def batch_orders_of(order_seed: int):
    """regviz's runs draw their batch orders from this seed instead of the run's (the initial weights
    still come from the run's seed)."""
    own = loop.batch_orders
    loop.batch_orders = lambda _seed, n_rows: own(order_seed, n_rows)
    try:
        yield
    finally:
        loop.batch_orders = own


def order_spread(seed: int, epochs: int, dataset, orders: int) -> dict:
    """regviz from the seed's initial weights on other batch orders: how far the batch order alone
    moves the best epoch and the minimum validation loss (plain fit's own shuffle is one more order)."""
    best, low = [], []
    for k in range(orders):
        with batch_orders_of(ORDER_SEEDS + k):
            run = reuters_regviz(seed, epochs, dataset)
        best.append(run["best_epoch"])
        low.append(run["min_val_loss"])
    return {"seed": seed, "order_seeds": [ORDER_SEEDS + k for k in range(orders)], "best_epoch": best,
            "min_val_loss": [round(v, 5) for v in low]}  # fmt: skip


def boston_regviz(seed: int, epochs: int, dataset) -> dict:
    """The 4-fold experiment's fold runs, each trained with loop.train; the last epoch's MAE per fold."""
    settings = Settings.for_dataset("boston", validation="kfold", folds=FOLDS, epochs=epochs, seed=seed)
    maes = []
    start = time.perf_counter()
    for fold in settings.fold_runs():
        *_, last = loop.train(fold, dataset=dataset)
        maes.append(last.val_mae)
    return {"seconds": time.perf_counter() - start, "fold_val_mae": maes, "val_mae": float(np.mean(maes))}


def curve(val_losses, seconds: float, first_epoch_seconds: float) -> dict:
    """A run's time, its validation loss per epoch, its best epoch and that epoch's loss."""
    best = int(np.argmin(val_losses)) + 1
    return {
        "seconds": seconds,
        "first_epoch_seconds": first_epoch_seconds,
        "best_epoch": best,
        "min_val_loss": float(val_losses[best - 1]),
        "val_loss": [float(v) for v in val_losses],
    }


# ---- one run -------------------------------------------------------------------------------------


def warm_up(reuters, dense, boston, book) -> None:
    """One tiny run of each side and dataset, so that no timed run pays TensorFlow's start-up; regviz's
    width-4 models share no traced function with the timed ones (its batching functions, two per batch
    size, are traced here, as an app's start-up does)."""
    n = 256
    reuters_model(0).fit(dense[0][:n], dense[1][:n], epochs=1, batch_size=REUTERS_BATCH, verbose=0)
    boston_model(0).fit(book[0][:n], book[1][:n], epochs=1, batch_size=BOSTON_BATCH, verbose=0)
    for name, ds in (("reuters", reuters), ("boston", boston)):
        tiny = Settings.for_dataset(name, epochs=1, width=4)
        x, y, x_val, y_val = ds.x_train.take(n), ds.y_train[:n], ds.x_val.take(n), ds.y_val[:n]
        fit = loop.fit_dense if name == "boston" else loop.fit
        for _ in fit(tiny, x, y, x_val, y_val):
            pass
        if name == "reuters":  # both forms of its batching function, as an app's start-up makes them
            loop.warm_batches(ds.x_train, ds.y_train, tiny.batch_size)


def alternate(seeds, sides, label: str) -> dict[str, list[dict]]:
    """Each side once per seed, the order swapped from seed to seed so drifting load hits both."""
    runs = {name: [] for name in sides}
    for i, seed in enumerate(seeds):
        for name in list(sides) if i % 2 == 0 else list(sides)[::-1]:
            runs[name].append(sides[name](seed) | {"seed": seed})
            print(f"  {label} seed {seed} {name}: {runs[name][-1]['seconds']:.2f} s", flush=True)
    return runs


def same_initial_weights(seed: int) -> bool:
    """Whether the reference's Reuters model and regviz's (`regviz.model.build_model`) start from the
    same weights for a seed: then the two sides' curves differ only by their batch orders."""
    keras.utils.set_random_seed(seed)
    ours = build_model(Settings.for_dataset("reuters", seed=seed), data.NUM_WORDS).get_weights()
    theirs = reuters_model(seed).get_weights()
    return len(ours) == len(theirs) and all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))


def time_target(ours: list[dict], ref: list[dict], limit: float, what: str) -> dict:
    """regviz's time over the reference's: the seeds' mean and regviz's first run; the worse counts."""
    ref_mean = float(np.mean([r["seconds"] for r in ref]))
    mean = float(np.mean([r["seconds"] for r in ours])) / ref_mean
    first = ours[0]["seconds"] / ref_mean
    measured = max(mean, first)
    return {
        "what": what,
        "measured": round(measured, 4),
        "mean_ratio": round(mean, 4),
        "first_run_ratio": round(first, 4),
        "limit": round(limit, 4),
        "met": measured <= limit,
    }


def differences(ours: list[dict], ref: list[dict]) -> list[dict]:
    """Per seed, one side minus the other: best epoch, minimum validation loss, the largest epoch gap."""
    return [
        {
            "seed": a["seed"],
            "best_epoch_diff": a["best_epoch"] - b["best_epoch"],
            "min_val_loss_diff": round(a["min_val_loss"] - b["min_val_loss"], 5),
            "max_epoch_gap": round(float(np.max(np.abs(np.subtract(a["val_loss"], b["val_loss"])))), 5),
        }
        for a, b in zip(ours, ref, strict=True)
    ]


def learning_targets(per_seed: list[dict], against: str, key: str) -> dict:
    """The largest per-seed difference of best epoch and of minimum validation loss, against limits."""
    epoch = max(abs(d["best_epoch_diff"]) for d in per_seed)
    loss = max(abs(d["min_val_loss_diff"]) for d in per_seed)
    return {
        f"reuters_best_epoch{key}": {
            "what": f"Reuters: |best epoch, regviz - {against}|, largest of the seeds",
            "measured": float(epoch),
            "limit": MAX_BEST_EPOCH_DIFF,
            "met": epoch <= MAX_BEST_EPOCH_DIFF,
        },
        f"reuters_min_val_loss{key}": {
            "what": f"Reuters: |min val loss, regviz - {against}|, largest",
            "measured": float(loss),
            "limit": MAX_LOSS_DIFF,
            "met": loss <= MAX_LOSS_DIFF,
        },
    }


def reuters(plan: dict, dataset, dense) -> tuple[dict, dict]:
    """Both sides per seed, alternating; then plain fit fed regviz's batches; the figures and targets."""
    epochs = plan["reuters_epochs"]
    sides = {
        "plain fit": lambda s: reuters_reference(s, epochs, dense),
        "regviz": lambda s: reuters_regviz(s, epochs, dataset),
    }
    runs = alternate(plan["seeds"], sides, "Reuters")
    rows = tf.constant(dense[0]), tf.constant(dense[1], tf.float32)
    runs["plain fit, regviz's batches"] = [
        reuters_same_batches(s, epochs, dense, rows) | {"seed": s} for s in plan["seeds"]
    ]
    del rows
    ref, ours, same = (runs[k] for k in ("plain fit", "regviz", "plain fit, regviz's batches"))
    spread = [order_spread(s, epochs, dataset, plan["other_orders"]) for s in plan["seeds"]]
    for one, own, fit in zip(spread, ours, ref, strict=True):
        one["with_the_runs_order"] = own["best_epoch"]
        near = [abs(e - fit["best_epoch"]) <= MAX_BEST_EPOCH_DIFF for e in one["best_epoch"]]
        one["orders_within_tolerance_of_plain_fit"] = sum(near)
    diffs = {
        "regviz - plain fit": differences(ours, ref),
        "regviz - plain fit on regviz's batches": differences(ours, same),
        "plain fit - plain fit on regviz's batches (two batch orders)": differences(ref, same),
    }
    what = f"Reuters 64-64, {epochs} epochs: regviz / plain fit"
    targets = {"reuters_time": time_target(ours, ref, REUTERS_LIMIT, what)}
    targets |= learning_targets(diffs["regviz - plain fit"], "plain fit", "")
    targets |= learning_targets(
        diffs["regviz - plain fit on regviz's batches"], "fit, same batches", "_same_batches"
    )
    return runs | {"differences": diffs, "batch_order_spread": spread}, targets


def boston(plan: dict, dataset, book) -> tuple[dict, dict]:
    """Both sides' 4-fold experiment per seed, alternating; the figures and the time target."""
    epochs = plan["boston_epochs"]
    sides = {
        "plain fit": lambda s: boston_reference(s, epochs, book),
        "regviz": lambda s: boston_regviz(s, epochs, dataset),
    }
    runs = alternate(plan["seeds"], sides, "Boston")
    maes = {k: float(np.mean([x["val_mae"] for x in v])) for k, v in runs.items()}
    what = f"Boston 4-fold, {epochs} epochs: regviz / the book's four fits"
    return runs | {"mean_val_mae": maes}, {
        "boston_time": time_target(runs["regviz"], runs["plain fit"], BOSTON_LIMIT, what)
    }


def measure(plan: dict, paths: dict[str, Path]) -> dict:
    """Load both datasets, warm both sides up, run Reuters then Boston side by side; every figure."""
    reuters_ds, boston_ds = data.load("reuters"), data.load("boston")
    x, x_val = reuters_ds.x_train.to_dense(), reuters_ds.x_val.to_dense()  # the book's vectorize_sequences
    dense = (x, reuters_ds.y_train, x_val, reuters_ds.y_val)
    book = book_boston(paths["boston"])
    warm_up(reuters_ds, dense, boston_ds, book)
    started = time.perf_counter()
    loop.warm_rows(reuters_ds.training_rows(1.0)[0], reuters_ds.x_val)  # regviz's tensors, made at start-up
    tensors_s = time.perf_counter() - started
    r, r_targets = reuters(plan, reuters_ds, dense)
    b, b_targets = boston(plan, boston_ds, book)
    return {
        "plan": plan
        | {
            "reuters_batch": REUTERS_BATCH,
            "boston_batch": BOSTON_BATCH,
            "folds": FOLDS,
            "reuters_rows": {"train": len(reuters_ds.y_train), "validation": len(reuters_ds.y_val)},
            "files": {k: str(v) for k, v in paths.items()},
        },
        "reference": {
            "reuters_loss": "sparse_categorical_crossentropy on integer labels",
            "boston_standardised_on": "all 404 training rows, as in the book (regviz: each fold's own)",
            "boston_validation": "fit without validation_data, then evaluate (timed); regviz: every epoch",
            "same_initial_weights": same_initial_weights(plan["seeds"][0]),
        },
        "regviz_rows_to_tensors_s": round(tensors_s, 4),
        "reuters": r,
        "boston": b,
        "targets": r_targets | b_targets,
    }


# ---- report --------------------------------------------------------------------------------------


def table(result: dict) -> str:
    """Both sides per seed, the means, regviz's first run against its warm ones, then the targets."""
    r, b, plan = result["reuters"], result["boston"], result["plan"]
    same = "fit on regviz's batches"
    head = f"Reuters 64-64, {plan['reuters_epochs']} epochs"
    rows = [(head, "plain fit", "regviz", "regviz - fit", same, "regviz - that")]
    for ref, ours, fed in zip(r["plain fit"], r["regviz"], r["plain fit, regviz's batches"], strict=True):
        seed = f"  seed {ours['seed']}:"
        rows.append(_seconds_row(seed, ref, ours))
        rows.append(
            _paired(f"{seed} best epoch", ref["best_epoch"], ours["best_epoch"], "d", fed["best_epoch"])
        )
        loss = "min_val_loss"
        rows.append(_paired(f"{seed} min val loss", ref[loss], ours[loss], ".4f", fed[loss]))
    rows += _means(r)
    for one in r["batch_order_spread"]:
        best = one["best_epoch"]
        label = f"  seed {one['seed']}: regviz's best epoch on {len(best)} other batch orders"
        near = f"{one['orders_within_tolerance_of_plain_fit']} of {len(best)} within 1 of plain fit"
        rows.append((label, "", f"{min(best)}-{max(best)}", f"median {np.median(best):g}", near))
    rows.append((f"Boston 4-fold, {plan['boston_epochs']} epochs", "", "", ""))
    for ref, ours in zip(b["plain fit"], b["regviz"], strict=True):
        seed = f"  seed {ours['seed']}:"
        rows.append(_seconds_row(seed, ref, ours))
        rows.append(_paired(f"{seed} val MAE, mean of folds", ref["val_mae"], ours["val_mae"], ".3f"))
    rows += _means(b)
    mae = b["mean_val_mae"]
    rows.append(_paired("  val MAE, mean of seeds", mae["plain fit"], mae["regviz"], ".3f"))
    rows.append(("target", "measured", "limit", "verdict"))
    for t in result["targets"].values():
        rows.append(
            (t["what"], f"{t['measured']:.4g}", f"{t['limit']:.4g}", "met" if t["met"] else "NOT met")
        )
    rows = [(*row, *[""] * (6 - len(row))) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _seconds_row(seed: str, ref: dict, ours: dict) -> tuple:
    ratio = ours["seconds"] / ref["seconds"]
    return f"{seed} seconds", f"{ref['seconds']:.2f}", f"{ours['seconds']:.2f}", f"x{ratio:.3f}"


def _paired(label: str, ref, ours, fmt: str, fed=None) -> tuple:
    row = (label, f"{ref:{fmt}}", f"{ours:{fmt}}", f"{ours - ref:+{fmt}}")
    return row if fed is None else (*row, f"{fed:{fmt}}", f"{ours - fed:+{fmt}}")


def _means(runs: dict) -> list[tuple]:
    ref, ours = (float(np.mean([x["seconds"] for x in runs[k]])) for k in ("plain fit", "regviz"))
    rows = [("  mean seconds", f"{ref:.2f}", f"{ours:.2f}", f"x{ours / ref:.3f} = 1/{ref / ours:.1f}")]
    if len(runs["regviz"]) > 1:  # the first run traces regviz's functions; the others reuse them
        first = runs["regviz"][0]["seconds"]
        warm = float(np.mean([x["seconds"] for x in runs["regviz"][1:]]))
        label = "  regviz: first run (traces) / warm runs"
        rows.append((label, "", f"{first:.2f} / {warm:.2f}", f"x{first / ref:.3f} / x{warm / ref:.3f}"))
    return rows


def main() -> int:
    """Measure both sides, write the JSON, print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 epochs Reuters, 5 Boston, 1 seed: a smoke run")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    paths = data_files()
    machine = live.machine()
    result = {"machine": machine, "quick": args.quick} | measure(QUICK if args.quick else FULL, paths)
    machine["load_avg_end"] = os.getloadavg()
    for t in result["targets"].values():
        assert math.isfinite(t["measured"]), t
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
