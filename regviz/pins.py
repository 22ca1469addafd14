"""Pinned runs: up to MAX_PINS earlier settings drawn beside the current run and compared in a table.

A pin is a whole run's settings, written into the link as one `pin=` entry of `name:value` pairs
(the fields that differ from the defaults, e.g. `pin=l2:0.001,width:64`; `pin=default` for the
book's original network), so a shared link reproduces the comparison: from the store when the
runs are there, trained like any other run when they are not. No streamlit here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from regviz.records import EpochRecord, best_epoch
from regviz.settings import Settings, SettingsError

MAX_PINS = 6
DEFAULT = "default"  # the link text of a pin of the default settings
MAX_TEXT = 300  # a pin's link text longer than this is not read (every setting fits in about 150)


def short_names(of: type = Settings) -> dict[str, str]:
    """How a table and a legend name each setting that differs from the reference (the settings table's)."""
    return {f.name: f.metadata["short"] or f.name for f in dataclasses.fields(of)}


def first_named(of: type = Settings) -> tuple[str, ...]:
    """The settings a label names first, in that order: regularization, what a comparison is usually about."""
    ranked = [f for f in dataclasses.fields(of) if f.metadata["pin_rank"] is not None]
    return tuple(f.name for f in sorted(ranked, key=lambda f: f.metadata["pin_rank"]))


def encode(settings: Settings) -> str:
    """A pin's link text: `name:value` for each field that differs from the defaults."""
    params = settings.to_params()
    return ",".join(f"{name}:{value}" for name, value in params.items()) or DEFAULT


def decode(text: str) -> Settings:
    """The settings of a pin's link text; SettingsError (with what is wrong) when it cannot be read."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise SettingsError("pin", text, f"at most {MAX_TEXT} characters of name:value pairs")
    text = text.strip()
    if text.lower() == DEFAULT:
        return Settings()
    params: dict[str, str] = {}
    for pair in text.split(","):
        name, sep, value = pair.partition(":")
        name = name.strip()
        if not sep or not name or name in params:
            raise SettingsError("pin", text, "name:value pairs separated by commas, each name once")
        params[name] = value
    return Settings.from_params(params)


def read(texts: list[str]) -> tuple[list[Settings], list[tuple[str, str, str]]]:
    """Pins from a link's `pin=` entries, plus (name, value, reason) for each one left out: unreadable,
    a duplicate, or beyond MAX_PINS. Never raises."""
    pins: list[Settings] = []
    dropped: list[tuple[str, str, str]] = []
    for text in texts:
        try:
            pin = decode(text)
        except SettingsError as e:
            dropped.append(("pin", _shown(text), f"not a pin ({e})"))
            continue
        if pin in pins:
            dropped.append(("pin", _shown(text), "pinned twice"))
        elif len(pins) >= MAX_PINS:
            dropped.append(("pin", _shown(text), f"at most {MAX_PINS} pinned runs"))
        else:
            pins.append(pin)
    return pins, dropped


def differences(settings: Settings, reference: Settings) -> list[str]:
    """What differs from the reference, as 'L2 0.001', 'width 64' (regularization first)."""
    fields = {f.name: f for f in dataclasses.fields(settings)}
    declared, first, short = list(fields), first_named(type(settings)), short_names(type(settings))
    names = sorted(declared, key=lambda n: first.index(n) if n in first else len(first) + declared.index(n))
    out = []
    for name in names:
        mine, theirs = getattr(settings, name), getattr(reference, name)
        if mine != theirs:
            out.append(f"{short[name]} {_value(fields[name], mine)}")
    return out


def label(settings: Settings, reference: Settings) -> str:
    """A pin's name in a legend or a table: what differs from the reference, or 'same as the baseline'."""
    return ", ".join(differences(settings, reference)) or "no regularization"


@dataclass(frozen=True)
class Row:
    """One run's line in the comparison table."""

    run: str  # "this run", "baseline" or "pin 1".."pin 6"
    differs: str  # from the baseline
    epochs: str  # "20 of 20", "7 of 20 (training)", "queued"
    best_epoch: int | None
    min_val_loss: float | None
    last_val_loss: float | None
    gap: float | None  # validation minus training data loss at the last epoch
    penalty_share: float | None  # penalty / (data loss + penalty) at the last epoch, training side

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def row(name: str, settings: Settings, reference: Settings, records: list[EpochRecord], state: str) -> Row:
    """The table's line of a run (its records so far; state as the manager names it)."""
    last = records[-1] if records else None
    best = best_epoch(records)
    epochs = f"{len(records)} of {settings.epochs}" + ("" if state in ("done", "stored") else f" ({state})")
    share = None
    if last is not None and (last.data_loss + last.penalty) > 0:
        share = last.penalty / (last.data_loss + last.penalty)
    return Row(
        run=name,
        differs=label(settings, reference),
        epochs=epochs,
        best_epoch=best,
        min_val_loss=records[best - 1].val_data_loss if best else None,
        last_val_loss=last.val_data_loss if last else None,
        gap=(last.val_data_loss - last.data_loss) if last else None,
        penalty_share=share,
    )


def _value(f: dataclasses.Field, value) -> str:
    if f.metadata["percent"]:
        return f"{value:.0%}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _shown(text) -> str:
    text = text if isinstance(text, str) else repr(text)
    return text if len(text) <= 40 else text[:37] + "..."


def selected(table, rows) -> set[int]:
    """Indices into the pin list of the selected rows of the table (Row.as_dict() rows); rows of the
    run and the baseline, and indices out of range, are ignored."""
    chosen = set()
    for i in rows:
        if isinstance(i, int) and 0 <= i < len(table) and table[i]["run"].startswith("pin "):
            chosen.add(int(table[i]["run"].split()[1]) - 1)
    return chosen
