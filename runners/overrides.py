"""Command-line overrides of a grid: `--set KEY=VALUE` (Hydra's spelling) and the `--epochs N` shorthand.

They replace a shared setting, `seeds` or a grid-level key (`validation`) for every row of the grid; runners.spec
applies them while it expands.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from nin.variant import GRID_LEVEL_FIELDS, VARIANT_FIELDS
from runners.grid_yaml import GridLoader, SpecError, printable

# A setting, an axis, an include row's key. The grid-level fields (validation) are top-level keys of the file.
SETTING_KEYS = tuple(f for f in VARIANT_FIELDS if f != "seed" and f not in GRID_LEVEL_FIELDS)
OVERRIDE_KEYS = ("seeds", *GRID_LEVEL_FIELDS, *SETTING_KEYS)


@dataclass(frozen=True)
class Override:
    """One command-line override of a shared setting (or of `seeds`); `flag` is how the user spelled it."""

    key: str
    value: Any
    flag: str  # "--set lr=1e-2" or "--epochs 3": what an error names


def parse_overrides(pairs: Sequence[str] = (), epochs: int | None = None) -> tuple[Override, ...]:
    """`--set KEY=VALUE` pairs (Hydra's spelling; the value read as YAML) plus the `--epochs N` shorthand.

    What can be checked without the grid is checked here; the values themselves are checked with the grid's rows.
    """
    overrides: dict[str, Override] = {}
    for pair in pairs:
        flag = printable(f"--set {pair}")
        key, sep, text = pair.partition("=")
        if not sep:
            raise SpecError(f"{flag}: expected KEY=VALUE, e.g. --set epochs=20")
        if not key:
            raise SpecError(f"{flag}: the key before '=' is empty: name a setting, e.g. --set epochs=20")
        if key == "seed":
            raise SpecError(f"{flag}: set seeds with --set seeds=N (a count) or --set seeds=[0,1,2], not 'seed'")
        if key not in OVERRIDE_KEYS:
            close = difflib.get_close_matches(key, OVERRIDE_KEYS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise SpecError(printable(f"{flag}: unknown key '{key}' ({hint}allowed: {', '.join(OVERRIDE_KEYS)})"))
        try:
            value = yaml.load(text, Loader=GridLoader)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpecError(f"{flag}: the value is not valid YAML ({problem})") from None
        if key != "seeds" and isinstance(value, (list, dict)):
            shape = "list" if isinstance(value, list) else "mapping"
            fix = (
                "it is one value for the whole grid"
                if key in GRID_LEVEL_FIELDS
                else f"to compare several values, make {key} an axis of the grid file"
            )
            raise SpecError(f"{flag}: {key} takes a single value, got a {shape} ({fix})")
        if key in overrides:
            raise SpecError(f"{flag}: {key} is already set by {overrides[key].flag}: give it once")
        overrides[key] = Override(key, value, flag)
    if epochs is not None:
        if "epochs" in overrides:
            raise SpecError(f"--epochs {epochs} and {overrides['epochs'].flag} both set epochs: give one of them")
        overrides["epochs"] = Override("epochs", epochs, f"--epochs {epochs}")
    return tuple(overrides.values())
