"""Seeds on demand: the sequential rule `nin-ablate run --until-resolved` stops by, and the report then reads.

A sequence is planned before its first look (`plan`): looks at n0, n0 + K, ..., N seeds (n0 the grid's seeds, K
--seeds-per-round, N --max-seeds), the family of the k difference claims the grid tests, and the report's one error
budget α = 0.05. At look j every claim still open is judged by the fixed rule's own words (verdicts.decide) on its
seed-level Student-t interval, at the look's nominal confidence 1 − α_j. The nominal levels make the intervals
*repeated confidence intervals* (Jennison & Turnbull 1989) of O'Brien & Fleming's shape (the z-scale boundary
c·√(N/n), strict at the first looks, near the fixed level at the last), with c chosen so that, for each claim, the
chance that the interval misses the true difference at any planned look is α/k (Bonferroni across the claims). That
holds whatever the stopping rule, so:

- stopping a claim as soon as its verdict is not inconclusive keeps the chance of any wrong verdict in the report ≤ α;
- a claim that closed stays closed at the verdict of its closing look (frozen), even when later looks add pairs to
  it because open claims share its variants;
- the report of a grown grid re-applies the rule at the looks the sequence recorded (OUT/<grid>/looks.json).

The seed-level t statistics at the looks have a joint law free of the mean and the sd (the data are only assumed
normal, as by the t interval itself), so c is found once per schedule by Monte-Carlo (`nominal_levels`), seeded.
Pocock's shape (one level at every look) and Bonferroni over looks are here for the comparison that chose O'Brien &
Fleming's: it resolved the most claims at equal error control (docs/DECISIONS.md, "Seeds on demand"; simulations of
the whole stopping loop in tests/judge/test_sequential_simulation.py).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy import stats as sps

from judge import verdicts as rule
from judge.load import Results
from judge.stats import MIN_INTERVAL_N as MIN_N

POCOCK, OBRIEN_FLEMING, BONFERRONI = "pocock", "obrien-fleming", "bonferroni"
SHAPES = (POCOCK, OBRIEN_FLEMING, BONFERRONI)
SHAPE = OBRIEN_FLEMING  # the design the runner uses; it resolved the most claims at equal error control (DECISIONS)
DEFAULT_MAX_SEEDS = 12
DEFAULT_SEEDS_PER_ROUND = 1
MAX_SEEDS = 20  # the boundaries are proved by simulation of the whole loop up to here
BOUNDARY_DRAWS = 400_000  # simulated sequences per boundary: each level's α to about ±3% at α/k = 0.05/7
BOUNDARY_SEED = 20261201
ADD, STOP = "add seeds", "stop"
CLOSING = (rule.SUPPORTED, rule.CONTRADICTED, rule.EQUIVALENT)  # the verdicts that close a claim
SCHEMA = 1


@dataclass(frozen=True)
class Design:
    """A sequence's plan, fixed before its first look and recorded in looks.json."""

    family: tuple[str, ...]  # the difference claims the grid tests, by key
    schedule: tuple[int, ...]  # seeds at each planned look
    confidences: tuple[float, ...]  # the nominal confidence of each look's intervals (NaN below 3 seeds: no interval)
    seeds_per_round: int
    max_seeds: int
    shape: str = SHAPE
    error: float = rule.FAMILY_ERROR

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


def describe(shape: str) -> str:
    return {
        POCOCK: "repeated t intervals of Pocock's shape, one nominal level at every planned look",
        OBRIEN_FLEMING: "repeated t intervals of O'Brien-Fleming's shape, wide early, near the fixed level at the end",
        BONFERRONI: "t intervals at α/(k × looks) at every look, Bonferroni over claims and looks",
    }[shape]


def schedule(first: int, per_round: int, max_seeds: int) -> tuple[int, ...]:
    """Seed counts at the planned looks: first, first + per_round, ..., ending at max_seeds."""
    looks = list(range(first, max_seeds, per_round)) + [max_seeds]
    return tuple(sorted(set(looks)))


def plan(family: Sequence[str], first: int, per_round: int, max_seeds: int, shape: str = SHAPE) -> Design:
    """The design of a sequence over `family` from `first` seeds, `per_round` more per look, up to `max_seeds`."""
    looks = schedule(first, per_round, max_seeds)
    error = rule.FAMILY_ERROR / max(len(family), 1)
    return Design(tuple(family), looks, nominal_levels(looks, error, shape), per_round, max_seeds, shape)


@functools.lru_cache(maxsize=32)
def nominal_levels(looks: tuple[int, ...], error: float, shape: str = SHAPE,
                   draws: int = BOUNDARY_DRAWS) -> tuple[float, ...]:  # fmt: skip
    """Each look's two-sided confidence such that, for i.i.d. normal seed-level values, the chance that the t interval
    misses the mean at any look with an interval (≥ 3 seeds) is `error`. One look is the fixed rule: 1 − error."""
    judged = [n for n in looks if n >= MIN_N]
    if not judged:
        return tuple(math.nan for _ in looks)
    if len(judged) == 1:
        alphas = {judged[0]: error}
    elif shape == BONFERRONI:
        alphas = {n: error / len(judged) for n in judged}
    else:
        t_stats = _null_t_statistics(looks, draws)[:, [looks.index(n) for n in judged]]
        alphas = _pocock(t_stats, judged, error) if shape == POCOCK else _obrien_fleming(t_stats, judged, error)
    return tuple(1 - alphas[n] if n in alphas else math.nan for n in looks)


def _null_t_statistics(looks: tuple[int, ...], draws: int) -> np.ndarray:
    """|t| of the mean at each look for `draws` sequences of i.i.d. N(0, 1) values, drawn block by block: a block of
    b values gives its sum S ~ N(0, b) and its sum of squares S²/b + χ²(b − 1), independent of S."""
    rng = np.random.default_rng(BOUNDARY_SEED)
    total_sum = np.zeros(draws)
    total_squares = np.zeros(draws)
    out = np.empty((draws, len(looks)))
    before = 0
    for j, n in enumerate(looks):
        block = n - before
        block_sum = rng.standard_normal(draws) * math.sqrt(block)
        total_squares += block_sum**2 / block + (rng.chisquare(block - 1, draws) if block > 1 else 0.0)
        total_sum += block_sum
        before = n
        if n < 2:
            out[:, j] = 0.0
            continue
        variance = np.maximum(total_squares - total_sum**2 / n, 0.0) / (n - 1)
        out[:, j] = np.abs(total_sum / n) / np.sqrt(variance / n)
    return out


def _missed(t_stats: np.ndarray, judged: list[int], alphas: Sequence[float]) -> float:
    critical = np.array([sps.t.ppf(1 - a / 2, n - 1) for n, a in zip(judged, alphas)])
    return float((t_stats > critical).any(axis=1).mean())


def _bisect(miss, low: float, high: float, target: float, rising: bool) -> float:
    """The parameter in [low, high] at which miss(parameter) = target; miss rises (or falls) with the parameter."""
    for _ in range(40):
        middle = math.sqrt(low * high) if low > 0 else (low + high) / 2
        if (miss(middle) > target) == rising:
            high = middle
        else:
            low = middle
    return math.sqrt(low * high) if low > 0 else (low + high) / 2


def _pocock(t_stats: np.ndarray, judged: list[int], error: float) -> dict[int, float]:
    nominal = _bisect(lambda a: _missed(t_stats, judged, [a] * len(judged)), error / len(judged) / 2, error, error,
                      rising=True)  # fmt: skip
    return {n: nominal for n in judged}


def _obrien_fleming(t_stats: np.ndarray, judged: list[int], error: float) -> dict[int, float]:
    last = judged[-1]

    def alphas(c: float) -> list[float]:  # the z-scale boundary c·√(N/n), as a nominal level per look
        return [2 * float(sps.norm.sf(c * math.sqrt(last / n))) for n in judged]

    c = _bisect(lambda c: _missed(t_stats, judged, alphas(c)), 1.0, 10.0, error, rising=False)
    return dict(zip(judged, alphas(c)))


# ---- the stopping loop -----------------------------------------------------------------------------------------
class Host(Protocol):
    """What the loop needs from whoever supplies the runs: the runner (runners.until_resolved), which trains them,
    or the simulations (tests.verdict_simulation), which draw them."""

    def ready(self, seeds: Sequence[int], looks: Sequence[Mapping[str, Any]]) -> bool:
        """Every run the looks so far call for (the grid's seeds and every addition) has finished."""

    def judge(self, seeds: Sequence[int], confidence: float, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each claim in `keys` judged on these seeds at this confidence: verdict, qualifier, mean, ci_low, ci_high,
        n_seeds."""

    def groups(self, keys: frozenset[str]) -> list[str]:
        """The variants (group ids) on both sides of these claims' pairs: the ones a new seed goes to."""

    def record(self, look: dict[str, Any]) -> None:
        """Keep the decision (the runner writes looks.json before it trains what the look added)."""


def follow(design: Design, looks: Sequence[Mapping[str, Any]], base_seeds: Sequence[int], base_runs: int,
           host: Host, reserved: Sequence[int] = (), ceiling: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Take every look the design still has, from the recorded `looks` on, until one decides to stop; returns the
    looks. Stops early (its last look still adding) when the host's runs are not all finished (a worker died)."""
    done = [dict(look) for look in looks]
    while not done or done[-1]["decision"] != STOP:
        seeds = seeds_of(base_seeds, done)
        if not host.ready(seeds, done):
            return done
        keys = open_claims(design, done)
        judged = host.judge(seeds, design.confidence(len(done)), keys)
        look = next_look(design, done, seeds, judged, host.groups, runs_of(base_runs, done), reserved, ceiling)
        host.record(look)
        done.append(look)
    return done


def next_look(
    design: Design,
    looks: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    judged: Mapping[str, Mapping[str, Any]],
    groups_for: Any,
    runs: int,
    reserved: Sequence[int] = (),
    ceiling: int | None = None,
) -> dict[str, Any]:
    """The decision of one look: each claim's verdict (frozen once it closed), which are open, and whether to stop
    (and why) or which seeds go to which variants next."""
    number = len(looks) + 1
    earlier = looks[-1]["claims"] if looks else {}
    claims: dict[str, dict[str, Any]] = {}
    for key in design.family:
        if key in earlier and earlier[key]["closed_at"] is not None:
            claims[key] = dict(earlier[key])
            continue
        found = dict(judged[key])
        found["closed_at"] = number if found["verdict"] in CLOSING else None
        found["closed_at_seeds"] = len(seeds) if found["closed_at"] else None
        claims[key] = found
    still_open = [key for key in design.family if claims[key]["closed_at"] is None]
    # Trainability and wall-time claims are judged at every look but hold no sequence open (verdicts.
    # holds_sequence_open): more seeds cannot close the one, and the other must not buy seeds with the clock.
    holding = [key for key in still_open if rule.holds_sequence_open(key)]
    confidence = _number(design.confidence(len(looks)))
    look = {"look": number, "seeds": list(seeds), "n_seeds": len(seeds), "confidence": confidence,
            "claims": claims, "open": still_open, "decision": STOP, "reason": "", "added_seeds": [],
            "added_groups": [], "runs": runs}  # fmt: skip
    # The reason counts only the claims that decide the sequence: whether a wall-time claim closed depends on the
    # clock, and a record must read the same whichever machine took the look.
    deciding = [key for key in design.family if rule.holds_sequence_open(key)]
    aside = " (trainability and wall-time claims aside)" if len(deciding) < len(design.family) else ""
    if not holding:
        look["reason"] = f"every claim resolved ({len(deciding)} of {len(deciding)}{aside}) at {len(seeds)} seeds"
        return look
    if len(seeds) >= design.max_seeds:
        look["reason"] = (f"{len(holding)} of {len(deciding)} claims still open at {len(seeds)} seeds{aside}, the "
                          f"most this sequence plans (--max-seeds {design.max_seeds})")  # fmt: skip
        return look
    added = next_seeds(seeds, reserved, min(design.seeds_per_round, design.max_seeds - len(seeds)))
    groups = sorted(groups_for(frozenset(holding)))
    more = len(added) * len(groups)
    if ceiling is not None and runs + more > ceiling:
        look["reason"] = (f"{len(holding)} of {len(deciding)} claims still open at {len(seeds)} seeds{aside}; the "
                          f"next round ({more} runs) would take the grid past its {ceiling}-run ceiling (--yes raises "
                          f"it)")  # fmt: skip
        return look
    look.update(decision=ADD, added_seeds=added, added_groups=groups,
                reason=f"seed(s) {', '.join(map(str, added))} for {len(groups)} variants")  # fmt: skip
    return look


def next_seeds(seeds: Sequence[int], reserved: Sequence[int], count: int) -> list[int]:
    """`count` new seed numbers after the highest so far, skipping reserved ones (a tuned grid's tuning seeds)."""
    taken = set(seeds) | set(reserved)
    out: list[int] = []
    candidate = max(seeds) + 1 if seeds else 0
    while len(out) < count:
        if candidate not in taken:
            out.append(candidate)
        candidate += 1
    return out


def seeds_of(base_seeds: Sequence[int], looks: Sequence[Mapping[str, Any]]) -> list[int]:
    """The grid's seeds and every seed the looks added, in order."""
    return [*base_seeds, *(seed for look in looks for seed in look["added_seeds"])]


def runs_of(base_runs: int, looks: Sequence[Mapping[str, Any]]) -> int:
    """The grid's runs with every addition the looks made."""
    return base_runs + sum(len(look["added_seeds"]) * len(look["added_groups"]) for look in looks)


def open_claims(design: Design, looks: Sequence[Mapping[str, Any]]) -> list[str]:
    """The claims no look has closed yet (all of the family before the first look)."""
    return list(looks[-1]["open"]) if looks else list(design.family)


# ---- the report of a grown grid ------------------------------------------------------------------------------------
def at_seeds(results: Results, seeds: Sequence[int]) -> Results:
    """The results as a look saw them: the runs of these seeds only (each run's training flags are its own)."""
    runs = results.runs[results.runs["seed"].isin(list(seeds))].copy()
    return replace(results, runs=runs.reset_index(drop=True))


def judge_look(results: Results, seeds: Sequence[int], design: Design, look: int,
               margins: dict[str, float] | None = None) -> pd.DataFrame:  # fmt: skip
    """Every claim at look `look` (0-based) on these seeds: the fixed rule's words at the look's nominal level."""
    frame = rule.judge_family(at_seeds(results, seeds), margins, design.confidence(look), len(design.family))
    return frame.set_index("key", drop=False)


def judged_claims(frame: pd.DataFrame, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """What a look records of each claim it judged."""
    return {
        key: {"verdict": frame.loc[key, "verdict"], "qualifier": frame.loc[key, "qualifier"],
              "mean": _number(frame.loc[key, "mean"]), "ci_low": _number(frame.loc[key, "ci_low_adjusted"]),
              "ci_high": _number(frame.loc[key, "ci_high_adjusted"]), "n_seeds": _count(frame.loc[key, "n_seeds"])}
        for key in keys
    }  # fmt: skip


def report_verdicts(results: Results, margins: dict[str, float] | None = None) -> pd.DataFrame:
    """The report's verdicts. A grid grown by --until-resolved (results.sequence): the sequential rule re-applied at
    each recorded look, each claim at the look that closed it (or the last look, open), with the seed count it
    resolved at. Any other grid: the fixed rule (verdicts.verdicts)."""
    record = results.sequence
    if record is None:
        return rule.verdicts(results, margins)
    design = Design.from_record(record["design"])
    looks = record["looks"]
    frames = [judge_look(results, look["seeds"], design, i, margins) for i, look in enumerate(looks)]
    last = frames[-1]
    rows = []
    for key in last.index:
        row = last.loc[key].copy()
        if key in design.family:
            closed = next((i for i, frame in enumerate(frames) if frame.loc[key, "verdict"] in CLOSING), None)
            if closed is not None:
                row = frames[closed].loc[key].copy()
                row["resolved_at_seeds"], row["look"] = looks[closed]["n_seeds"], closed + 1
                text = f"resolved at {looks[closed]['n_seeds']} seeds (look {closed + 1} of {len(looks)})"
            else:
                row["look"] = len(looks)
                most = ", the most this sequence plans" if looks[-1]["n_seeds"] >= design.max_seeds else ""
                text = f"open at {looks[-1]['n_seeds']} seeds{most}"
            row["sequence"] = text
            row["sentence"] = f"{row['sentence'].removesuffix('.')}; sequential: {text}."
        rows.append(row)
    frame = pd.DataFrame(rows).reset_index(drop=True)
    for column in ("resolved_at_seeds", "look"):
        frame[column] = frame[column].astype("Int64")
    return frame


def family_text(record: Mapping[str, Any]) -> str:
    """The sequential design and its one error budget, in a sentence for the page."""
    design = Design.from_record(record["design"])
    looks = record["looks"]
    levels = [c for c in design.confidences if not math.isnan(c)]
    if not levels:  # every look below 3 seeds (--max-seeds 2): seeds are added, but no claim can ever close
        interval = "no interval (every look has fewer than 3 seeds, too few for one: each claim stays open)"
    elif len(set(levels)) == 1:
        interval = f"a {levels[0]:.2%} t interval"
    else:
        interval = f"a {levels[0]:.2%} (first look) to {levels[-1]:.2%} (last) t interval"
    k = len(design.family)
    return (
        f"Seeds on demand (run --until-resolved): {len(design.schedule)} looks at {_seed_range(design.schedule)} "
        f"seeds ({design.seeds_per_round} more per look, only to the variants of claims still open), all planned "
        f"before the first. One error budget: at each look each of the {k} difference claims is judged on "
        f"{interval} — {describe(design.shape)} — so that for each claim the chance that any "
        f"look's interval misses the truth is 0.05/{k}, and the chance that any supported, contradicted or "
        f"equivalent verdict here is wrong is at most 5%, wherever the sequence stopped, provided the seed-level "
        f"differences are near normal (the exact trainability tests take the same levels, set for t statistics: "
        f"an approximation for them). A verdict is frozen at the "
        f"look that closed it; {len(looks)} look(s) taken. {rule.SEED_UNIT}"
    )


@dataclass(frozen=True)
class Spend:
    """What a sequence spent against the fixed design at its --max-seeds (every variant × N seeds)."""

    trained: int  # runs the grid has now
    variants: int  # the grid's variants (record["variants"]): the fixed design trains each on max_seeds seeds
    max_seeds: int
    family: int
    still_open: int
    last: Mapping[str, Any]  # the last look

    @classmethod
    def of(cls, record: Mapping[str, Any], trained: int) -> Spend:
        design = Design.from_record(record["design"])
        last = record["looks"][-1]
        return cls(trained, int(record["variants"]), design.max_seeds, len(design.family), len(last["open"]), last)

    @property
    def fixed(self) -> int:
        return self.variants * self.max_seeds

    @property
    def resolved(self) -> int:
        return self.family - self.still_open

    @property
    def stopped(self) -> bool:
        return self.last["decision"] == STOP

    def against_fixed(self) -> str:
        return (f"{self.trained} runs trained against {self.fixed} for the fixed design at {self.max_seeds} seeds "
                f"({self.variants} variants × {self.max_seeds})")  # fmt: skip


def spend_text(results: Results) -> str:
    """What the sequence spent against the fixed design at its --max-seeds, and why it stopped."""
    spend = Spend.of(_record(results), _trained(results))
    last = spend.last
    state = f"Stopped: {last['reason']}." if spend.stopped else (
        f"In progress: look {last['look']} added {last['reason']}; run the same command with --until-resolved to "
        f"take the next look.")  # fmt: skip
    return (f"Seeds spent: {spend.against_fixed()}; {spend.resolved} of {spend.family} claims resolved, "
            f"{spend.still_open} open. {state}")  # fmt: skip


def spent(results: Results, frame: pd.DataFrame) -> dict[str, Any]:
    """What the sequence spent, as flat keys for the W&B report run: runs trained and the fixed design's, claims
    resolved and open, and per claim the seeds it resolved at (or "open at N")."""
    record = _record(results)
    spend = Spend.of(record, _trained(results))
    out: dict[str, Any] = {
        "sequence/runs_trained": spend.trained, "sequence/runs_fixed_design": spend.fixed,
        "sequence/claims_resolved": spend.resolved, "sequence/claims_open": spend.still_open,
        "sequence/looks": len(record["looks"]), "sequence/stopped": spend.last["reason"] if spend.stopped else "",
    }  # fmt: skip
    family = record["design"]["family"]
    for row in frame[frame["key"].isin(family)].itertuples():
        resolved = row.resolved_at_seeds
        out[f"resolved_at/{row.key}"] = (int(resolved) if pd.notna(resolved)
                                         else f"open at {spend.last['n_seeds']} seeds")  # fmt: skip
    return out


def _record(results: Results) -> Mapping[str, Any]:
    assert results.sequence is not None, "not a grid grown by --until-resolved"
    return results.sequence


def _trained(results: Results) -> int:
    return len(results.expected) if results.expected is not None else len(results.runs)


def _seed_range(looks: Sequence[int]) -> str:
    return f"{looks[0]}" if len(looks) == 1 else f"{looks[0]} to {looks[-1]}"


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _count(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)
