"""`tune:`, a block of the grid file: each arm's value of one setting picked on validation, never on the test set.

    tune: {lr: auto, seeds: [100, 101, 102], pick: val_acc}   # needs `validation: F`

An *arm* is a grid row without its seed and without the tuned setting (the include rows are arms too). Stage 1 trains
every arm at every candidate on the tuning seeds (disjoint from the grid's), in OUT/<grid>/tuning/runs/; each arm's
value is the candidate with the best mean final-epoch validation score over those seeds. Candidates are chosen by
procedure: `auto` is ×½, ×1, ×2 of the grid's shared value; an arm whose pick sits at an edge gets one more ×2 step
beyond it, at most `widen` times, decided from the validation scores alone. Stage 2 trains each arm at its pick on the
grid's seeds, in OUT/<grid>/runs/ as usual. OUT/<grid>/tuning.json records every candidate's scores, every widening
and the picks, and is written before any stage-2 run starts.

Everything here is a function of the grid and the tuning runs' result.json files (their status and validation
scores, nothing else): a rerun re-derives the same candidates, widenings and picks, so an edited candidate list
trains only its new (arm, value, seed) runs and re-picks every arm.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from nin.layout import GridDir, read_result
from nin.variant import Variant
from runners.overrides import Override

if TYPE_CHECKING:
    from runners.spec import Grid

# The settings a grid may tune. Only lr for now: its candidates scale by 2 and every value in (0, 10] is valid, which
# is what the ×½/×1/×2 procedure and its widening assume (weight_decay 0 has no ×2, epochs are not a scale).
TUNABLE_KEYS = ("lr",)
# The validation measure picked on, and whether higher is better.
PICKS = {"val_acc": True, "val_loss": False}
OPTION_KEYS = ("seeds", "pick", "widen")
TUNE_KEYS = (*TUNABLE_KEYS, *OPTION_KEYS)
AUTO = "auto"
AUTO_FACTORS = (0.5, 1.0, 2.0)  # the fixed candidate set around the grid's shared value
WIDEN_FACTOR = 2.0  # one more ×2 step beyond the edge the pick sits at
DEFAULT_WIDEN = 2
MAX_WIDEN = 6
# On digits a 10% hold-out is ~144 images: val_acc moves in 0.7-point steps, too coarse to pick on from fewer seeds.
MIN_SEEDS_FOR_ACC = 3


@dataclass(frozen=True)
class Tune:
    """A grid's `tune:` block, validated (runners.spec) and resolved (`auto` → the candidate values)."""

    key: str
    candidates: tuple[float, ...]  # sorted ascending
    seeds: tuple[int, ...]
    pick: str
    widen: int
    base: float | None  # the shared value `auto` centres on; None for an explicit list

    @property
    def higher_is_better(self) -> bool:
        return PICKS[self.pick]

    def as_record(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "candidates": list(self.candidates),
            "auto": self.base is not None,
            "base": self.base,
            "seeds": list(self.seeds),
            "pick": self.pick,
            "widen": self.widen,
        }


def tuning_run(arm: Variant, key: str, value: float, seed: int) -> Variant:
    """The arm at one value and seed (a tuning run on a tuning seed, a stage-2 run at its pick on a grid seed);
    raises pydantic's ValidationError for a value the variant refuses."""
    return Variant.model_validate({**arm.config(), key: value, "seed": seed})


def initial_runs(grid: Grid, arm: Variant) -> list[Variant]:
    """The arm's tuning runs at the grid file's candidates (before any widening)."""
    assert grid.tune is not None
    return [tuning_run(arm, grid.tune.key, value, seed) for value in grid.tune.candidates for seed in grid.tune.seeds]


@dataclass
class Candidate:
    """One value of one arm: its runs on the tuning seeds and their validation scores."""

    value: float
    runs: list[dict[str, Any]] = field(default_factory=list)  # seed, variant_id, status, score
    mean: float | None = None
    sd: float | None = None
    problem: str | None = None  # why it cannot be picked (a seed diverged or failed)

    def as_record(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "runs": self.runs,
            "mean": self.mean,
            "sd": self.sd,
            "eligible": self.problem is None,
            "problem": self.problem,
        }


@dataclass
class ArmPlan:
    """Where one arm's tuning stands: its candidates (widenings included), the scores, the pick or what is missing."""

    arm: Variant  # the arm's row at its first candidate and the grid's first seed (a template)
    arm_id: str
    candidates: list[float]
    scored: list[Candidate] = field(default_factory=list)
    widenings: list[dict[str, Any]] = field(default_factory=list)
    pending: list[Variant] = field(default_factory=list)  # tuning runs of the current candidates not finished yet
    pick: float | None = None
    edge: str | None = None  # "low" / "high": the pick is still the smallest / largest candidate
    edge_note: str | None = None  # why it was not widened further
    problem: str | None = None  # every run finished but no candidate can be picked
    n_val: int | None = None

    def runs(self, tune: Tune) -> list[Variant]:
        return [tuning_run(self.arm, tune.key, value, seed) for value in self.candidates for seed in tune.seeds]

    def as_record(self, tune: Tune) -> dict[str, Any]:
        config = self.arm.config()
        for key in ("seed", tune.key):
            config.pop(key)
        return {
            "arm_id": self.arm_id,
            "config": config,
            "candidates": self.candidates,
            "scores": [c.as_record() for c in self.scored],
            "widenings": self.widenings,
            "pick": self.pick,
            "at_edge": self.edge,
            "edge_note": self.edge_note,
            "problem": self.problem,
            "pending": [v.id for v in self.pending],
        }


def plan(grid: Grid, layout: GridDir) -> list[ArmPlan]:
    """Every arm's tuning state from the tuning runs on disk (layout = OUT/<grid>/tuning)."""
    assert grid.tune is not None
    return [_plan_arm(arm, grid.tune, layout) for arm in grid.arms]


def _plan_arm(arm: Variant, tune: Tune, layout: GridDir) -> ArmPlan:
    state = ArmPlan(arm=arm, arm_id=arm.arm_id((tune.key,)), candidates=list(tune.candidates))
    while True:
        runs = state.runs(tune)
        state.pending = [v for v in runs if not layout.is_settled(v.id)]
        if state.pending:  # nothing is picked from part of the candidates; the finished ones are shown
            waiting = {v.id for v in state.pending}
            done = [
                value
                for value in state.candidates
                if not any(tuning_run(arm, tune.key, value, seed).id in waiting for seed in tune.seeds)
            ]
            state.scored = [_score(value, tune, layout, state) for value in done]
            state.pick, state.edge = None, None
            return state
        state.scored = [_score(value, tune, layout, state) for value in state.candidates]
        eligible = [c for c in state.scored if c.problem is None]
        if not eligible:
            why = "; ".join(f"{c.value:g}: {c.problem}" for c in state.scored)
            state.problem = f"no candidate can be picked: {why}"
            return state
        # Best mean; on a tie the smaller value (the gentler step: the one less likely to diverge at other seeds).
        sign = -1.0 if tune.higher_is_better else 1.0
        best = min(eligible, key=lambda c: (sign * c.mean, c.value))  # type: ignore[operator]
        state.pick = best.value
        side = "low" if best.value == state.candidates[0] else "high" if best.value == state.candidates[-1] else None
        state.edge, state.edge_note = side, None
        if side is None:
            return state
        if len(state.widenings) >= tune.widen:
            state.edge_note = (
                f"widened {tune.widen} time(s), the most tune.widen allows" if tune.widen else "tune.widen is 0"
            )
            return state
        edge_value = state.candidates[0 if side == "low" else -1]
        added = edge_value / WIDEN_FACTOR if side == "low" else edge_value * WIDEN_FACTOR
        try:
            tuning_run(arm, tune.key, added, tune.seeds[0])
        except ValidationError as exc:
            state.edge_note = f"cannot widen to {added:g}: {exc.errors()[0]['msg']}"
            return state
        state.widenings.append(
            {
                "side": side,
                "added": added,
                "pick_before": best.value,
                "candidates_before": list(state.candidates),
                "means_before": {f"{c.value!r}": c.mean for c in state.scored},
            }
        )
        state.candidates = sorted([*state.candidates, added])


def _score(value: float, tune: Tune, layout: GridDir, state: ArmPlan) -> Candidate:
    """The candidate's per-seed final-epoch validation scores. Reads status, the pick's key and n_val only: what a
    tuning run measured on the test set can never move a pick."""
    candidate = Candidate(value=value)
    problems: list[str] = []
    for seed in tune.seeds:
        variant = tuning_run(state.arm, tune.key, value, seed)
        try:
            result = read_result(layout.result_path(variant.id))
        except (OSError, ValueError) as exc:
            result = {"status": "unreadable", "error": str(exc)}
        status = result.get("status")
        score = result.get(tune.pick)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            score = None
        if status == "ok" and score is None:
            status = f"ok without {tune.pick}"
        candidate.runs.append({"seed": seed, "variant_id": variant.id, "status": status, "score": score})
        if status != "ok":
            problems.append(f"seed {seed} {status}")
        n_val = result.get("n_val")
        if state.n_val is None and isinstance(n_val, int) and not isinstance(n_val, bool):
            state.n_val = n_val
    if problems:
        # A diverged seed rules a value out (too large a step for this arm); a failed one leaves it unmeasured.
        candidate.problem = ", ".join(problems)
        return candidate
    scores = [run["score"] for run in candidate.runs]
    candidate.mean = statistics.fmean(scores)
    candidate.sd = statistics.stdev(scores) if len(scores) > 1 else None
    return candidate


def finished(plans: Sequence[ArmPlan]) -> bool:
    """Stage 1 is over: every arm has its tuning runs (widenings included) and either a pick or a problem."""
    return not any(p.pending for p in plans)


def picked_grid(grid: Grid, plans: Sequence[ArmPlan]) -> Grid:
    """The grid with its stage-2 runs: every arm that has a pick, at its pick, on the grid's seeds."""
    from dataclasses import replace

    assert grid.tune is not None and finished(plans)
    key = grid.tune.key
    variants = tuple(
        tuning_run(p.arm, key, p.pick, seed)
        for p in plans
        if p.pick is not None
        for seed in grid.seeds
    )
    return replace(grid, variants=variants)


def record(grid: Grid, plans: Sequence[ArmPlan]) -> dict[str, Any]:
    """tuning.json: what the report's picks table and plots need, with no timestamp (a rerun that changes nothing
    rewrites the same bytes)."""
    assert grid.tune is not None
    n_val = next((p.n_val for p in plans if p.n_val is not None), None)
    return {
        "grid": grid.name,
        "tune": grid.tune.as_record(),
        "validation": grid.arms[0].validation if grid.arms else None,
        "n_val": n_val,
        "complete": finished(plans),
        "picks": {p.arm_id: p.pick for p in plans},
        "arms": [p.as_record(grid.tune) for p in plans],
    }


def parse_block(
    value: Any,
    settings: dict[str, Any],
    axes: dict[str, list],
    include: list[dict[str, Any]],
    seeds: list[int],
    seeds_where: tuple,
    grid_level: dict[str, Any],
    *,
    fail: Callable[[tuple, str], Exception],
    unknown_field: Callable[[tuple, Any, tuple[str, ...], str], Exception],
) -> Tune | None:
    """The `tune:` block of a grid file as a Tune, checked against the rest of the grid; None without one. `fail`
    and `unknown_field` make the grid reader's one-line error at a place in the file (runners.spec passes its own)."""
    if value is None:
        return None
    where = ("tune",)
    if not isinstance(value, dict):
        raise fail(where, "tune must be a mapping, e.g. {lr: auto, seeds: [100, 101, 102], pick: val_acc}")
    for key in value:
        if key not in TUNE_KEYS:
            raise unknown_field((*where, key), key, TUNE_KEYS, "tune key")
    tuned = [key for key in value if key in TUNABLE_KEYS]
    if len(tuned) != 1:
        raise fail(where, f"tune names {'no' if not tuned else 'more than one'} setting to tune: give one of "
                               f"{', '.join(TUNABLE_KEYS)} with its candidates (e.g. lr: auto)")  # fmt: skip
    key = tuned[0]
    if grid_level.get("validation") is None:
        raise fail(where, "tune picks on the validation split: set validation: F (e.g. validation: 0.1) at "
                               "the top level of the grid, so that no pick reads the test set")  # fmt: skip
    if key in axes:
        raise fail(("axes", key), f"'{key}' is tuned (tune.{key}): it cannot also be an axis")
    for index, row in enumerate(include):
        if key in row:
            raise fail(("include", index, key), f"'{key}' is tuned (tune.{key}) for every row, include rows "
                                                     f"too: remove it here")  # fmt: skip
    candidates, base = _candidates(value[key], key, settings, fail)
    tune_seeds = value.get("seeds")
    if tune_seeds is None:
        raise fail(where, "tune needs its own seeds, disjoint from the grid's, e.g. seeds: [100, 101, 102]")
    if (
        not isinstance(tune_seeds, list)
        or not tune_seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in tune_seeds)
    ):
        raise fail((*where, "seeds"), "tune.seeds must be a non-empty list of non-negative integers, "
                                           "e.g. [100, 101, 102]")  # fmt: skip
    if len(set(tune_seeds)) != len(tune_seeds):
        raise fail((*where, "seeds"), "a tuning seed is listed twice")
    shared = sorted(set(tune_seeds) & set(seeds))
    if shared:
        place = seeds_where[0].flag if isinstance(seeds_where[0], Override) else "seeds"
        raise fail((*where, "seeds"), f"tuning seed(s) {', '.join(map(str, shared))} are also grid seeds "
                                           f"({place}): the two must be disjoint, or an arm would be judged on the "
                                           f"runs its value was picked on")  # fmt: skip
    pick = value.get("pick")
    if pick not in PICKS:
        raise fail((*where, "pick") if "pick" in value else where,
                        f"tune.pick must be one of {', '.join(PICKS)}, got {pick!r}")  # fmt: skip
    if pick == "val_acc" and len(tune_seeds) < MIN_SEEDS_FOR_ACC:
        raise fail((*where, "seeds"), f"pick val_acc needs at least {MIN_SEEDS_FOR_ACC} tuning seeds (a "
                                           f"small hold-out moves val_acc in coarse steps), got "
                                           f"{len(tune_seeds)}: add seeds or pick val_loss")  # fmt: skip
    widen = value.get("widen", DEFAULT_WIDEN)
    if isinstance(widen, bool) or not isinstance(widen, int) or not 0 <= widen <= MAX_WIDEN:
        raise fail(
            (*where, "widen"),
            f"tune.widen (the ×2 steps an arm's candidates may grow by at an edge) must be an integer from 0 to "
            f"{MAX_WIDEN}, got {widen!r}",
        )
    return Tune(key=key, candidates=candidates, seeds=tuple(tune_seeds), pick=pick, widen=widen, base=base)

def _candidates(
    value: Any, key: str, settings: dict[str, Any], fail: Callable[[tuple, str], Exception]
) -> tuple[tuple[float, ...], float | None]:
    where = ("tune", key)
    if value == AUTO:
        base = settings.get(key)
        if base is None:
            raise fail(where, f"{key}: auto takes ×½, ×1 and ×2 of the grid's shared {key}: set it under "
                                   f"settings (e.g. {key}: 0.002), or list the candidates")  # fmt: skip
        if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 0:
            raise fail(("settings", key), f"{key} must be a positive number for tune.{key}: auto, got "
                                               f"{base!r}")  # fmt: skip
        return tuple(float(base) * f for f in AUTO_FACTORS), float(base)
    if not isinstance(value, list) or len(value) < 2:
        raise fail(where, f"{key}: expected auto or a list of at least 2 candidate values "
                               f"(e.g. [0.001, 0.002, 0.004]), got {value!r}")  # fmt: skip
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item) or item <= 0:
            raise fail((*where, index), f"{key}: each candidate must be a positive number, got {item!r}")
    twice = next((i for i, item in enumerate(value) if item in value[:i]), None)  # numbers by now
    if twice is not None:
        raise fail((*where, twice), f"{key}: candidate {value[twice]!r} is listed twice")
    return tuple(sorted(float(item) for item in value)), None



def write_record(grid: Grid, grid_dir: GridDir, plans: Sequence[ArmPlan]) -> None:
    from nin import store  # imports torch (checkpoints): grid files are read and refused without it

    store.write_json(grid_dir.tuning_path, record(grid, plans))
