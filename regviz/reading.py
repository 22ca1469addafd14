"""A short reading of the curves in plain words: does it overfit, and what did regularization change."""

from __future__ import annotations

import math

from regviz import problems
from regviz.records import EpochRecord, best_epoch, spread
from regviz.settings import Settings

# how far the last validation data loss is above its minimum: from OVERFIT_RISE the run plainly overfits,
# from SLIGHT_RISE it starts to; below that it has turned up only slightly (still said, with the numbers)
OVERFIT_RISE = 0.10
SLIGHT_RISE = 0.02
NO_BASELINE = "The baseline has no epochs yet, so there is nothing to compare with."


def reading(
    run: list[EpochRecord], baseline: list[EpochRecord] | None, settings: Settings, folds=(None, None)
) -> list[str]:
    """Plain sentences about the run and its baseline, read off their validation and training curves;
    folds holds each fold's records of a K-fold run and of its baseline (their means are run and
    baseline), whose spread tells a real rise from the folds' noise."""
    lines = [_regularization_sentence(settings), *_network_sentence(settings)]
    if not run:
        return [*lines, "No epochs yet: the reading starts after the first one."]
    lines += _noise_sentence(run, baseline, settings)
    if settings.is_baseline:
        return [
            *lines, _overfit_sentence(run, "the baseline", settings, folds[0]),
            *_metric_sentence(run, None, settings, folds[0]), _gap_sentence(run, None, settings),
        ]  # fmt: skip
    if not baseline:
        return [*lines, _overfit_sentence(run, "this run", settings, folds[0]), NO_BASELINE]
    return [
        *lines,
        _overfit_sentence(baseline, "the baseline", settings, folds[1]),
        _overfit_sentence(run, "this run", settings, folds[0]),
        _comparison_sentence(run, baseline, settings),
        _best_sentence(run, baseline, settings),
        *_metric_sentence(run, baseline, settings, folds[0]),
        _gap_sentence(run, baseline, settings),
    ]


def regularizers(settings: Settings) -> str:
    """The switched-on regularizers in words, e.g. "L2 = 0.001 and dropout 0.3"; "" for the baseline."""
    parts = [
        f"L1 = {_plain(settings.l1)}" if settings.l1 else "",
        f"L2 = {_plain(settings.l2)}" if settings.l2 else "",
        f"dropout {_plain(settings.dropout)}" if settings.dropout else "",
    ]
    return _join([p for p in parts if p])


def _regularization_sentence(settings: Settings) -> str:
    if settings.is_baseline:
        return (
            "This run is the baseline: no L1, L2 or dropout. Move a regularization slider to compare with it."
        )
    return (
        f"This run adds {regularizers(settings)} to the baseline, the same network without L1, L2 or dropout."
    )


def _network_sentence(settings: Settings) -> list[str]:
    # a smaller network or less data changes overfitting too, so say when they are not the defaults
    default, parts = Settings.for_dataset(settings.dataset), []
    if (settings.depth, settings.width) != (default.depth, default.width):
        shape = f"{_count(settings.depth, 'hidden layer')} of {_count(settings.width, 'unit')}"
        parts.append(f"{shape} (default {default.depth} of {default.width})")
    if settings.train_fraction != default.train_fraction:
        parts.append(f"{_num(settings.train_fraction * 100)} % of the training data (default all)")
    who = "This run uses" if settings.is_baseline else "Run and baseline both use"
    return [f"{who} {_join(parts)}."] if parts else []


ZHANG = 'Zhang et al., 2017, "Understanding deep learning requires rethinking generalization"'


def _noise_sentence(run: list[EpochRecord], baseline, settings: Settings) -> list[str]:
    """With label noise: whether the curves show memorisation (training loss falling while validation
    loss climbs), and how the regularized run's training loss compares with the baseline's."""
    if not settings.label_noise:
        return []
    first, last = run[0], run[-1]
    best = _at(run, best_epoch(run))
    head = f"{_num(settings.label_noise * 100)} % of the training labels are wrong (label noise)"
    falls = f"the training loss falls from {_num(first.data_loss)} to {_num(last.data_loss)}"
    if len(run) < 2 or last.data_loss >= first.data_loss:
        return [f"{head}, and the network has not started to fit them: its training loss is "
                f"{_num(last.data_loss)} at epoch {last.epoch}."]  # fmt: skip
    if last.val_data_loss <= best.val_data_loss:
        return [f"{head}: {falls} by epoch {last.epoch}, and the validation loss has not climbed yet. "
                f"Memorising the wrong labels shows as the training loss nears zero ({ZHANG})."]  # fmt: skip
    low, end = _num_pair(best.val_data_loss, last.val_data_loss)
    text = (
        f"{head}: {falls} by epoch {last.epoch} while the validation loss climbs from {low} (epoch "
        f"{best.epoch}) to {end}. That is memorisation: the network learns the wrong labels by heart, "
        f"which cannot generalise, and regularization slows it ({ZHANG})."
    )
    if baseline and not settings.is_baseline and len(baseline) >= len(run):
        ours, theirs = _num_pair(last.data_loss, _at(baseline, last.epoch).data_loss)
        text += f" Here the training loss at epoch {last.epoch} is {ours}, the baseline's {theirs}."
    return [text]


def _overfit_sentence(records: list[EpochRecord], who: str, settings: Settings, folds=None) -> str:
    so_far = "so far " if len(records) < settings.epochs else ""
    return _cap(f"{so_far}{who} {_verdict(records, bool(so_far), _spread_at_end(records, folds))}.")


def _spread_at_end(records: list[EpochRecord], folds) -> float | None:
    """The folds' standard deviation of the validation data loss at the mean curve's last epoch."""
    if not folds or len(folds) < 2:
        return None
    sds = spread(folds, "val_data_loss")
    return sds[len(records) - 1] if len(sds) >= len(records) else None


def _verdict(records: list[EpochRecord], streaming: bool, noise: float | None = None) -> str:
    # any rise after the minimum is said, with its size: a class sees the curve turn up, however little
    best, last = best_epoch(records), records[-1]
    low, end = _at(records, best).val_data_loss, last.val_data_loss
    if best == last.epoch:
        return f"does not overfit: its validation loss is still falling ({_num(low)} at epoch {best})"
    if end <= low:  # back at its lowest (a tie): flat, not rising
        return f"has levelled off: its validation loss at epoch {last.epoch} equals its lowest ({_num(low)})"
    rise, values = _rise(end, low), _num_pair(low, end)
    higher = f"{_num(rise * 100)} % higher {'at' if streaming else 'by'} epoch {last.epoch}"
    if noise is not None and end - low < noise:
        return (
            f"turns up after epoch {best}, within the folds' spread: its mean validation loss is lowest "
            f"there ({values[0]}) and {higher} ({values[1]}), a rise smaller than the folds' standard "
            f"deviation ({_num(noise)}), so the folds show no clear overfitting"
        )
    beyond = f", more than the folds' standard deviation ({_num(noise)})" if noise is not None else ""
    if rise >= OVERFIT_RISE:
        return f"overfits from epoch {best}: its validation loss is lowest there and {higher}{beyond}"
    how = "starts to overfit after" if rise >= SLIGHT_RISE else "turns up only slightly after"
    since = f"lowest there ({values[0]}) and has turned up since, {higher} ({values[1]})"
    return f"{how} epoch {best}: its validation loss is {since}{beyond}"


def _metric_sentence(run, baseline, settings: Settings, folds=None) -> list[str]:
    """The problem's main metric (accuracy, MAE) at its best epoch and at the last, for run and baseline;
    for a K-fold run, the epoch after which it improves by less than the folds' spread."""
    metric = problems.of_dataset(settings.dataset)[0].main
    if getattr(run[-1], metric.field) is None:
        return []
    name = _cap(metric.label)
    so_far = " so far" if len(run) < settings.epochs else ""
    best, value = _metric_best(run, metric)
    if baseline is None:
        text = (
            f"{name} is best{so_far} at epoch {best} ({value}) and "
            f"{_metric_value(run[-1], metric)} at epoch {run[-1].epoch}."
        )
    else:
        k = _common_epoch(run, baseline)
        base_best, base_value = _metric_best(baseline, metric)
        text = (
            f"{name} at its best{so_far}: {value} (epoch {best}) for this run and {base_value} "
            f"(epoch {base_best}) for the baseline; at epoch {k}, {_metric_value(_at(run, k), metric)} "
            f"and {_metric_value(_at(baseline, k), metric)}."
        )
    return [text + _plateau(run, metric, folds)]


def _metric_best(records: list[EpochRecord], metric) -> tuple[int, str]:
    pick = max if metric.higher_is_better else min
    best = pick(records, key=lambda r: getattr(r, metric.field))
    return best.epoch, _metric_value(best, metric)


def _metric_value(record: EpochRecord, metric) -> str:
    value = getattr(record, metric.field)
    if "accuracy" in metric.field:
        return f"{value * 100:.1f} %"
    return f"{_num(value, 3)}{' ' + metric.unit if metric.unit else ''}"


def _plateau(run: list[EpochRecord], metric, folds) -> str:
    """' Beyond the folds' spread, it stops improving after epoch P.' for a K-fold run that does."""
    if not folds or len(folds) < 2:
        return ""
    sign = 1 if metric.higher_is_better else -1
    values = [sign * getattr(r, metric.field) for r in run]
    sds = spread(folds, metric.field)[: len(values)]
    # the first epoch from which all that is left to gain is within the folds' standard deviation
    stop = next((i for i, sd in enumerate(sds) if max(values[i:]) - values[i] <= sd), None)
    if stop is None or stop + 1 >= len(values):
        return ""
    return (
        f" Beyond the folds' spread (their standard deviation), it stops improving after epoch "
        f"{run[stop].epoch}."
    )


def _comparison_sentence(run: list[EpochRecord], baseline: list[EpochRecord], settings: Settings) -> str:
    k = _common_epoch(run, baseline)
    ours, theirs = _num_pair(_at(run, k).val_data_loss, _at(baseline, k).val_data_loss)
    so_far = "So far, with" if k < settings.epochs else "With"
    return (
        f"{so_far} {regularizers(settings)} the validation loss at epoch {k} is {ours} instead of {theirs}."
    )


def _best_sentence(run: list[EpochRecord], baseline: list[EpochRecord], settings: Settings) -> str:
    # early stopping keeps each model at its best epoch, the fairest comparison of the two
    ours, theirs = best_epoch(run), best_epoch(baseline)
    low, base_low = _num_pair(_at(run, ours).val_data_loss, _at(baseline, theirs).val_data_loss)
    so_far = " so far" if len(run) < settings.epochs else ""
    return (
        f"At its best epoch{so_far}, where early stopping would stop, this run reaches {low} (epoch {ours}) "
        f"and the baseline {base_low} (epoch {theirs})."
    )


def _gap_sentence(run: list[EpochRecord], baseline: list[EpochRecord] | None, settings: Settings) -> str:
    k = _common_epoch(run, baseline) if baseline else run[-1].epoch
    so_far = "so far the" if k < settings.epochs else "the"
    head = _cap(f"{so_far} generalization gap (validation minus training loss) at epoch {k}")
    # dropout is on while the training loss is measured, which raises it and narrows the gap
    note = " (the training loss is measured with dropout on)" if settings.dropout else ""
    if not baseline:
        return f"{head} is {_num(_gap(run, k))}{note}."
    ours, theirs = _num_pair(_gap(run, k), _gap(baseline, k))
    return f"{head} is {ours} for this run{note} and {theirs} for the baseline."


def _at(records: list[EpochRecord], epoch: int) -> EpochRecord:
    return next(r for r in records if r.epoch == epoch)


def _common_epoch(run: list[EpochRecord], baseline: list[EpochRecord]) -> int:
    return min(run[-1].epoch, baseline[-1].epoch)


def _gap(records: list[EpochRecord], epoch: int) -> float:
    r = _at(records, epoch)
    return r.val_data_loss - r.data_loss


def _rise(value: float, low: float) -> float:
    if low <= 0:
        return math.inf if value > low else 0.0
    return value / low - 1


def _num(x: float, digits: int = 2) -> str:
    """x to `digits` significant digits, without exponent notation for everyday sizes."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return f"{round(x, digits - 1 - math.floor(math.log10(abs(x)))):g}"


def _num_pair(a: float, b: float) -> tuple[str, str]:
    # two different numbers should not read the same, so add a digit when 2 are not enough
    for digits in range(2, 7):
        if _num(a, digits) != _num(b, digits):
            break
    return _num(a, digits), _num(b, digits)


def _plain(x: float) -> str:
    return f"{x:.6f}".rstrip("0").rstrip(".")


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _join(parts: list[str]) -> str:
    return ", ".join(parts) if len(parts) < 2 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def status(run, who: str) -> tuple[float, str]:
    """Progress share and one line for a Run: from the store, queued (place, estimates), epoch k of N,
    time left, failed or refused (with the reason)."""
    done, total = len(run.records()), run.total_epochs
    if run.from_store:
        return 1.0, f"{_cap(who)}: from the store, all {total} epochs (trained before)."
    state = run.state
    if state == "queued":
        place = run.queue_position() or 1
        starts = run.starts_in()
        when = f", starts in about {_seconds(starts)}" if starts is not None else ""
        cost = f", trains in about {_seconds(run.estimate)}" if run.estimate is not None else ""
        return 0.0, f"{_cap(who)}: waiting for a free trainer, place {place} in the queue{when}{cost}."
    if state == "refused":
        return 0.0, f"{_cap(who)}: not trained. {run.error}"
    if state == "failed":
        return done / total, f"{_cap(who)}: training failed: {run.error}"
    if state in ("done", "cancelled"):
        return done / total, f"{_cap(who)}: {state}, {done} of {total} epochs."
    eta = run.eta_seconds()
    left = f", about {_seconds(eta)} left" if eta is not None else ", starting"
    return done / total, f"{_cap(who)}: training, epoch {done} of {total}{left}."


def _seconds(seconds: float) -> str:
    return f"{math.ceil(seconds)} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"


def folds(fold_runs) -> list[str]:
    """How much the folds of a K-fold run disagree: the spread of their lowest validation losses."""
    lows = [min(r.val_data_loss for r in records) for records in fold_runs if records]
    if len(lows) < 2:
        return []
    mean = sum(lows) / len(lows)
    sd = (sum((v - mean) ** 2 for v in lows) / len(lows)) ** 0.5
    share = sd / mean if mean else 0.0
    word = "agree closely" if share < 0.05 else "disagree noticeably" if share > 0.15 else "differ somewhat"
    return [
        f"The {len(lows)} folds {word}: their lowest validation losses run from {min(lows):.3f} to "
        f"{max(lows):.3f} (standard deviation {sd:.3f}, {share:.0%} of the mean); the curves show "
        "their mean, the band one standard deviation."
    ]
