"""A claim's verdict as a typed record: the numbers it was decided on and a reason code, never a sentence.

    verdict = Verdict(...)                        # judge.verdicts makes them; reports.words says them in words
    Verdict.from_record(verdict.as_record()) == verdict

The reason says which path decided the verdict (the interval rule, the exact paired test, the exact count) or why
there is none (the claim is untested, it has no pairs, too few seeds for an interval). Everything else a sentence
states is a number here: seeds left out, runs whose training failed, the planning figure, the sequence's look.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """What decided a verdict, or why there is none."""

    INTERVAL = "interval"  # superiority or non-inferiority on the family-adjusted interval
    FEW_SEEDS = "few_seeds"  # fewer seeds than an interval needs: inconclusive
    PAIRED_EXACT = "paired_exact"  # the trainability claims: McNemar's exact test
    EXACT_COUNT = "exact_count"  # the parameter claims: the exact ratio
    NO_PAIRS = "no_pairs"  # tested, but no matched pair of runs: inconclusive
    NO_AXIS = "no_axis"  # untested: the grid has no such axis
    NO_LEVEL = "no_level"  # untested: a level of the axis is absent among the NiN runs (`absent`)
    NO_CANVAS = "no_canvas"  # untested: localisation needs a canvas grid
    NOT_MEASURED = "not_measured"  # untested: no run measured the claim's metric


UNTESTED = (Reason.NO_AXIS, Reason.NO_LEVEL, Reason.NO_CANVAS, Reason.NOT_MEASURED)


@dataclass(frozen=True)
class Fit:
    """A trainability claim's exact test: runs that fit on each side of `pairs` pairs, the discordant pairs, p."""

    fit_a: int
    fit_b: int
    pairs: int
    only_a: int
    only_b: int
    p_value: float


@dataclass(frozen=True)
class Ratio:
    """A parameter claim's counts at one ratio, and the settings (name, level) that single this ratio out."""

    params_a: float
    params_b: float
    where: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class ExactHead:
    """The seeds' exact GAP head (ReLU before GAP), reported apart from a grid whose GAP rows train without it: its
    runs (by label), how many ended ok and stalled, and the test accuracy of those that trained (95% interval)."""

    labels: tuple[str, ...]
    runs: int
    ok: int
    stalled: int
    trained: int = 0
    mean: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan


@dataclass(frozen=True)
class Verdict:
    """One claim judged. Counts are None where the path that decided never reached them; floats NaN likewise."""

    key: str
    claim: str  # the claim as the report states it (verdicts.Claim.text)
    kind: str  # "difference" or "ratio"
    rule: str
    verdict: str
    reason: Reason
    qualifier: str = ""
    b: Any = None  # the level compared against (the other head), for the exact tests' lines
    metric: str | None = None
    direction: int | None = None
    margin: float = math.nan
    margin_chosen_after: bool | None = None  # a --margin given to the report, after the runs
    mean: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    confidence_adjusted: float = math.nan
    ci_low_adjusted: float = math.nan
    ci_high_adjusted: float = math.nan
    family_size: int | None = None
    n_seeds: int | None = None
    n_pairs: int | None = None
    seeds_left_out: int | None = None
    seeds_needed: int | None = None  # a planning figure for a new, independent grid
    runs_flagged: int | None = None  # runs whose training failed among the claim's pairs (all judged)
    settings: int | None = None
    planned_settings: int | None = None
    absent: tuple[Any, ...] = ()  # Reason.NO_LEVEL: the levels missing
    axis: str = ""
    fit: Fit | None = None  # Reason.PAIRED_EXACT
    ratios: tuple[Ratio, ...] = ()  # Reason.EXACT_COUNT
    image_sizes: tuple[int, ...] = ()  # Reason.EXACT_COUNT: the input sizes the counts are at
    # A grid grown by `run --until-resolved`, for the family's claims: the looks taken, and the look (and seeds) that
    # closed the claim, or the seeds of the last look where it is still open.
    looks: int | None = None
    look: int | None = None
    resolved_at_seeds: int | None = None
    open_at_seeds: int | None = None
    max_seeds_reached: bool = False
    # The wall-time claims: the highest 1-minute load average any of the grid's runs met, and the machine's cores.
    machine_load: float = math.nan
    machine_cores: int | None = None

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["reason"] = str(self.reason)
        record["absent"] = list(self.absent)
        record["image_sizes"] = list(self.image_sizes)
        record["ratios"] = [{**asdict(r), "where": [list(w) for w in r.where]} for r in self.ratios]
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Verdict:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in names}
        for name in ("margin", "mean", "ci_low", "ci_high", "confidence_adjusted", "ci_low_adjusted",
                     "ci_high_adjusted", "machine_load"):  # fmt: skip
            values[name] = math.nan if values.get(name) is None else float(values[name])
        values["reason"] = Reason(values["reason"])
        values["absent"] = tuple(values.get("absent", ()))
        values["image_sizes"] = tuple(values.get("image_sizes", ()))
        values["fit"] = Fit(**values["fit"]) if values.get("fit") else None
        values["ratios"] = tuple(Ratio(r["params_a"], r["params_b"], tuple(tuple(w) for w in r["where"]))
                                 for r in values.get("ratios", ()))  # fmt: skip
        return cls(**values)

    @property
    def untested(self) -> bool:
        return self.reason in UNTESTED

    def resolved(self, looks: int, at_look: int | None, seeds: int, max_seeds_reached: bool) -> Verdict:
        """This verdict in a grown grid's report: closed at look `at_look` (1-based) with `seeds` seeds, or open
        (at_look None) at the last look's `seeds`."""
        if at_look is None:
            return replace(self, looks=looks, look=looks, open_at_seeds=seeds, max_seeds_reached=max_seeds_reached)
        return replace(self, looks=looks, look=at_look, resolved_at_seeds=seeds)
