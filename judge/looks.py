"""OUT/<grid>/looks.json, the record of a sequence `run --until-resolved` took: its shape, owned here alone.

    sequence = read(grid_dir.looks_path)        # a Sequence: its Design and every Look
    store.write_json(path, sequence.as_record())
    Sequence.from_record(sequence.as_record()) == sequence

The file's JSON shape is the one every results directory has held since the sequence was written (SCHEMA 1): a
record read and written again is the same JSON, so an existing results directory stays readable. judge.sequential
decides the looks; the runner writes them (runners.until_resolved); the report reads them (judge.load).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nin.layout import read_looks

POCOCK, OBRIEN_FLEMING, BONFERRONI = "pocock", "obrien-fleming", "bonferroni"
SHAPES = (POCOCK, OBRIEN_FLEMING, BONFERRONI)
SHAPE = OBRIEN_FLEMING  # the design the runner uses; it resolved the most claims at equal error control (DECISIONS)
BOUNDARY_DRAWS = 400_000  # simulated sequences per boundary: each level's α to about ±3% at α/k = 0.05/7
BOUNDARY_SEED = 20261201
ADD, STOP = "add seeds", "stop"
SCHEMA = 1


def describe(shape: str) -> str:
    return {
        POCOCK: "repeated t intervals of Pocock's shape, one nominal level at every planned look",
        OBRIEN_FLEMING: "repeated t intervals of O'Brien-Fleming's shape, wide early, near the fixed level at the end",
        BONFERRONI: "t intervals at α/(k × looks) at every look, Bonferroni over claims and looks",
    }[shape]


@dataclass(frozen=True)
class Design:
    """A sequence's plan, fixed before its first look and recorded in looks.json."""

    family: tuple[str, ...]  # the difference claims the grid tests, by key
    schedule: tuple[int, ...]  # seeds at each planned look
    confidences: tuple[float, ...]  # the nominal confidence of each look's intervals (NaN below 3 seeds: no interval)
    seeds_per_round: int
    max_seeds: int
    shape: str
    error: float  # the report's error budget (judge.verdicts.FAMILY_ERROR)

    @property
    def claim_error(self) -> float:
        return self.error / max(len(self.family), 1)

    def confidence(self, look: int) -> float:
        """The nominal confidence of look `look` (0-based)."""
        return self.confidences[min(look, len(self.confidences) - 1)]

    def as_record(self) -> dict[str, Any]:
        return {
            "rule": describe(self.shape), "shape": self.shape, "error": self.error, "family": list(self.family),
            "claim_error": self.claim_error, "schedule": list(self.schedule),
            "confidences": [None if math.isnan(c) else c for c in self.confidences],
            "seeds_per_round": self.seeds_per_round, "max_seeds": self.max_seeds,
            "boundary_draws": BOUNDARY_DRAWS, "boundary_seed": BOUNDARY_SEED,
        }  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Design:
        return cls(
            family=tuple(record["family"]),
            schedule=tuple(int(n) for n in record["schedule"]),
            confidences=tuple(math.nan if c is None else float(c) for c in record["confidences"]),
            seeds_per_round=int(record["seeds_per_round"]),
            max_seeds=int(record["max_seeds"]),
            shape=str(record["shape"]),
            error=float(record["error"]),
        )


@dataclass(frozen=True)
class ClaimAtLook:
    """A claim as a look judged it: its verdict and family-adjusted interval, and the look (and seeds) that closed
    it, None while it is open."""

    verdict: str
    qualifier: str = ""
    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n_seeds: int | None = None
    closed_at: int | None = None
    closed_at_seeds: int | None = None

    def as_record(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "qualifier": self.qualifier, "mean": self.mean, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "n_seeds": self.n_seeds, "closed_at": self.closed_at,
                "closed_at_seeds": self.closed_at_seeds}  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ClaimAtLook:
        return cls(str(record["verdict"]), str(record.get("qualifier") or ""), _float(record.get("mean")),
                   _float(record.get("ci_low")), _float(record.get("ci_high")), _int(record.get("n_seeds")),
                   _int(record.get("closed_at")), _int(record.get("closed_at_seeds")))  # fmt: skip


@dataclass(frozen=True)
class Look:
    """One look of a sequence: the seeds it saw at its nominal confidence, each claim as judged (frozen once it
    closed), the claims still open, and its decision: stop (and why) or which seeds go to which variants next."""

    look: int  # 1-based
    seeds: tuple[int, ...]
    confidence: float | None
    claims: Mapping[str, ClaimAtLook] = field(default_factory=dict)
    open: tuple[str, ...] = ()
    decision: str = STOP
    reason: str = ""
    added_seeds: tuple[int, ...] = ()
    added_groups: tuple[str, ...] = ()
    runs: int = 0  # the grid's runs when the look was taken

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def adds(self) -> bool:
        return self.decision == ADD

    def as_record(self) -> dict[str, Any]:
        return {"look": self.look, "seeds": list(self.seeds), "n_seeds": self.n_seeds, "confidence": self.confidence,
                "claims": {key: claim.as_record() for key, claim in self.claims.items()}, "open": list(self.open),
                "decision": self.decision, "reason": self.reason, "added_seeds": list(self.added_seeds),
                "added_groups": list(self.added_groups), "runs": self.runs}  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Look:
        return cls(
            look=int(record["look"]),
            seeds=tuple(int(s) for s in record["seeds"]),
            confidence=_float(record.get("confidence")),
            claims={str(key): ClaimAtLook.from_record(claim) for key, claim in (record.get("claims") or {}).items()},
            open=tuple(str(key) for key in record.get("open", ())),
            decision=str(record["decision"]),
            reason=str(record.get("reason", "")),
            added_seeds=tuple(int(s) for s in record.get("added_seeds", ())),
            added_groups=tuple(str(g) for g in record.get("added_groups", ())),
            runs=int(record.get("runs", 0)),
        )


@dataclass(frozen=True)
class Sequence:
    """looks.json: the grid the sequence grows (by name, and by a digest of its own runs), its seeds, the tuning
    seeds it must not reuse, its variants, the design planned before the first look, and every look taken."""

    grid: str
    base_runs: str  # runners.grid_runs.base_digest of the grid the sequence grows
    base_seeds: tuple[int, ...]
    reserved_seeds: tuple[int, ...]
    variants: int
    design: Design
    looks: tuple[Look, ...] = ()
    schema: int = SCHEMA

    @property
    def last(self) -> Look | None:
        return self.looks[-1] if self.looks else None

    @property
    def stopped(self) -> bool:
        return self.last is not None and self.last.decision == STOP

    def with_look(self, look: Look) -> Sequence:
        return replace(self, looks=(*self.looks, look))

    def as_record(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "grid": self.grid, "base_runs": self.base_runs, "base_seeds": list(self.base_seeds),
            "reserved_seeds": list(self.reserved_seeds), "variants": self.variants,
            "design": self.design.as_record(), "looks": [look.as_record() for look in self.looks],
        }  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Sequence:
        """The record as read from JSON; ValueError naming what is missing or malformed."""
        try:
            return cls(
                grid=str(record.get("grid", "")),
                base_runs=str(record.get("base_runs", "")),
                base_seeds=tuple(int(s) for s in record.get("base_seeds", ())),
                reserved_seeds=tuple(int(s) for s in record.get("reserved_seeds", ())),
                variants=int(record.get("variants", 0)),
                design=Design.from_record(record["design"]),
                looks=tuple(Look.from_record(look) for look in record["looks"]),
                schema=int(record.get("schema", SCHEMA)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a sequence record ({type(exc).__name__}: {exc})") from None


def read(path: Path) -> Sequence:
    """OUT/<grid>/looks.json as a Sequence; ValueError (or OSError) for a file that is not one."""
    return Sequence.from_record(read_looks(path))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
