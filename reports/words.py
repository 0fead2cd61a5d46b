"""What judge decided, in words: each Verdict's sentence from its reason code and numbers, and the page's sentences
about the family, the sequence and the runs whose training failed.

    frame = table(verdicts)   # judge.verdicts.table's numbers, with detail, note, sequence and sentence
    csv_frame(frame)          # what report/verdicts.csv holds

judge decides and writes no prose; every sentence a report states about a verdict is made here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from judge import stats
from judge import verdicts as rule
from judge.load import FAILED_TRAINING, FIT_ACCURACY, STALL_MARGIN, Results, training_rates
from judge.looks import Sequence as Record
from judge.looks import describe
from judge.records import ExactHead, Reason, Verdict
from judge.sequential import Spend

# report/verdicts.csv. runs_flagged: runs whose training failed among the claim's pairs (all judged); seeds_needed:
# a planning figure for a new, independent grid; margin_chosen_after: a --margin given to the report, after the runs.
CSV_COLUMNS = ("claim", "verdict", "rule", "margin", "mean", "ci_low", "ci_high", "confidence_adjusted",
               "ci_low_adjusted", "ci_high_adjusted", "family_size", "n_seeds", "n_pairs", "seeds_left_out",
               "seeds_needed", "runs_flagged", "settings", "planned_settings", "margin_chosen_after",
               "resolved_at_seeds", "look", "sentence")  # fmt: skip
SENSITIVITY_CSV_COLUMNS = ("claim", "metric", "runs_left_out", "n_seeds", "n_pairs", "mean", "ci_low_adjusted",
                           "ci_high_adjusted", "confidence_adjusted", "mean_all_runs", "sentence")  # fmt: skip
NO_CANVAS = "localisation not measured (no canvas)"
SEED_UNIT = "The seed is the unit: pairs are averaged within each seed, then a t interval over seeds."
# Reports with any false verdict in the simulations of failed training (tests/verdict_simulation.py, 4,000 reports
# of 5 seeds; docs/EVIDENCE.md "Failed training is an outcome"): what the page quotes where flags fire.
WEAKENED = ("in simulations where a quarter of one arm's runs failed to train, 3–4% of 5-seed reports stated a false "
            "verdict; where a fifth of the seeds fell on a failing branch together, 18%")  # fmt: skip
SENSITIVITY_TEXT = (
    "A sensitivity analysis, not a verdict: each claim again without the runs whose training failed. It is outside "
    "the report's 5% budget and conditional on the seeds that trained, so it answers a different question (how the "
    "arms compare when they train), which selects on an outcome of the method."
)


# ---- one verdict ---------------------------------------------------------------------------------------------------
def table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """The verdicts as a frame: judge.verdicts.table's numbers, then detail (the numbers a sentence states), note
    (what qualifies them, as the page's table says it), sequence (where a grown grid's claim resolved) and the
    sentence (whole, for verdicts.csv)."""
    frame = rule.table(list(verdicts))
    frame["detail"] = [detail(v, brief=True) for v in verdicts]
    frame["note"] = [note(v, brief=True) for v in verdicts]
    frame["sequence"] = [sequence_text(v) for v in verdicts]
    frame["sentence"] = [sentence(v) for v in verdicts]
    return frame


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns report/verdicts.csv holds."""
    return frame[list(CSV_COLUMNS)]


def sentence(v: Verdict) -> str:
    """'<claim>: <verdict> (<qualifier>) — <detail>; <note>.', and where a grown grid's claim resolved."""
    details = "; ".join(part for part in (detail(v), note(v)) if part)
    word = v.verdict + (f" ({v.qualifier})" if v.qualifier else "")
    text = f"{v.claim}: {word}" + (f" — {details}." if details else ".")
    where = sequence_text(v)
    return f"{text.removesuffix('.')}; sequential: {where}." if where else text


def detail(v: Verdict, brief: bool = False) -> str:
    """The numbers the verdict rests on: the rule and the difference, the exact test, or the parameter ratios.
    `brief`: without the exact test's name and level, which the page's table and its family paragraph state."""
    if v.untested:
        return ""
    if v.kind == "ratio":
        return f"params GAP/{_other(v)} = {_ratios_text(v)}" if v.reason == Reason.EXACT_COUNT else ""
    if v.reason == Reason.PAIRED_EXACT and v.fit is not None:
        fit, name = v.fit, _other(v)
        counts = (f"GAP fit in {fit.fit_a} of {fit.pairs} runs, the {name} head in {fit.fit_b} of {fit.pairs}; "
                  f"discordant pairs {fit.only_a} (GAP alone fit) and {fit.only_b} ({name} alone), "
                  f"p = {fit.p_value:.3g}")  # fmt: skip
        return counts if brief else f"{rule.PAIRED_EXACT} at {1 - v.confidence_adjusted:.4f}; {counts}"
    rule_text = _rule_text(v)
    if v.reason == Reason.NO_PAIRS:
        return rule_text
    difference = difference_text(v.mean, v.ci_low_adjusted, v.ci_high_adjusted, v.n_seeds, v.n_pairs,
                                       f"{v.confidence_adjusted:.2%} CI", v.metric)  # fmt: skip
    return f"{rule_text}; {_what(v.metric)} {difference}"


def note(v: Verdict, brief: bool = False) -> str:
    """What qualifies the numbers: why a claim is untested or undecided, data left out, failed training, planning.
    `brief`: the planning figure without what it means, for a table whose page says that once (How to read this)."""
    if v.untested:
        return untested_text(v)
    if v.kind == "ratio":
        if v.reason == Reason.NO_PAIRS:
            return "no matched pair of runs with a parameter count"
        name = _other(v)
        if v.verdict == rule.INCONCLUSIVE:
            relation = f"the {name} head is larger than GAP in some settings and smaller in others"
        else:
            relation = f"the {name} head is {'larger' if v.verdict == rule.SUPPORTED else 'smaller'} than GAP"
        sizes = f"{'/'.join(str(s) for s in v.image_sizes)} px input" if v.image_sizes else "this input size"
        return f"{relation} at {sizes}"
    if v.reason == Reason.NO_PAIRS:
        return f"{stats.FEW}: no matched pairs"
    if v.reason == Reason.PAIRED_EXACT:
        return _trainability_note(v, brief)
    notes = []
    if v.seeds_left_out:
        notes.append(f"{count(v.seeds_left_out, 'seed')} without a pair at every setting left out (missing "
                     f"data: a run failed for a reason not the method's)")  # fmt: skip
    if v.settings is not None and v.planned_settings is not None and v.settings < v.planned_settings:
        notes.append(f"averages over {v.settings} of the {v.planned_settings} settings the grid launched: every run "
                     f"of the others is missing, so the claim measures less than planned")  # fmt: skip
    if v.runs_flagged:
        notes.append(f"{count(v.runs_flagged, 'run')} whose training failed judged with "
                     f"{'its' if v.runs_flagged == 1 else 'their'} outcome")  # fmt: skip
    if v.reason == Reason.FEW_SEEDS:
        notes.append(f"{stats.FEW} seeds: no interval")
    elif v.verdict == rule.INCONCLUSIVE and v.seeds_needed is not None:
        notes.append(planning_text(v.seeds_needed, brief))
    elif v.verdict == rule.INCONCLUSIVE and (v.n_seeds or 0) >= stats.MIN_INTERVAL_N:
        notes.append(f"at this mean and spread not even a new grid of {rule.MAX_SEEDS_NEEDED} seeds would resolve it")
    if v.metric in stats.TIME_METRICS and v.verdict in (rule.SUPPORTED, rule.CONTRADICTED):
        fewer = v.verdict == rule.SUPPORTED
        notes.append(f"GAP needs {'fewer' if fewer else 'more'} epochs" if v.metric == "epochs_to_fit"
                     else f"GAP needs {'less' if fewer else 'more'} wall time")  # fmt: skip
    if not math.isnan(v.machine_load):
        notes.append(machine_load_text(v.machine_load, v.machine_cores))
    return "; ".join(notes)


# Above this many runnable processes per core, a run shared its core with other work (the grid's own workers count).
SHARED_LOAD_PER_CORE = 1.5


def machine_load_text(load: float, cores: int | None) -> str:
    """What the machine was doing while the wall-time claim's runs trained: the load they met, and what it means."""
    on = f" on {count(cores, 'core')}" if cores else ""
    text = f"the machine's 1-minute load average reached {load:.1f}{on} while the grid trained"
    if cores and load > SHARED_LOAD_PER_CORE * cores:
        text += (": its runs shared the CPU with other work, and their wall times measure that work too (a rerun on a "
                 "quiet machine can decide otherwise)")
    return text


def untested_text(v: Verdict) -> str:
    """Why the grid cannot test the claim."""
    if v.reason == Reason.NO_CANVAS:
        return NO_CANVAS
    if v.reason == Reason.NOT_MEASURED:
        return f"{_what(v.metric)} not measured"
    if v.reason == Reason.NO_AXIS:
        return f"the grid has no {v.axis} axis"
    return f"no {v.axis} {' or '.join(stats.level_text(v.axis, level) for level in v.absent)} among the NiN runs"


def sequence_text(v: Verdict) -> str:
    """Where a grown grid's family claim resolved ('resolved at 3 seeds (look 1 of 4)', 'open at 6 seeds'); ''
    for any other claim or grid."""
    if v.looks is None:
        return ""
    if v.resolved_at_seeds is not None:
        return f"resolved at {v.resolved_at_seeds} seeds (look {v.look} of {v.looks})"
    return f"open at {v.open_at_seeds} seeds" + (", the most this sequence plans" if v.max_seeds_reached else "")


def planning_text(needed: int, brief: bool = False) -> str:
    """Seeds needed, as what it is: a planning figure for a new grid, never a reason to add seeds to this one."""
    if brief:
        return f"planning figure: a new grid of about {needed} seeds would resolve it"
    return (f"a planning figure: a new, independent grid of about {needed} seeds would resolve it at this seed-level "
            f"spread; adding seeds to this grid and reporting again looks twice without correction "
            f"(run --until-resolved plans its looks)")  # fmt: skip


def _trainability_note(v: Verdict, brief: bool = False) -> str:
    """Which way a contradicted share goes; in full, also why no pair could decide, and the test's unit (which the
    page's How to read this states once)."""
    fit = v.fit
    assert fit is not None
    if v.verdict == rule.CONTRADICTED:
        text = f"GAP fits {'less' if fit.only_b > fit.only_a else 'more'} often"
    elif not fit.only_a + fit.only_b and not brief:
        text = "no pair where one side fit and the other did not"
    else:
        text = ""
    return text if brief else text + ("; " if text else "") + "the unit is the pair of runs at one setting and seed"


def _rule_text(v: Verdict) -> str:
    if v.rule == rule.PAIRED_EXACT:
        return v.rule
    text = f"{v.rule}, margin {margin_text(v.metric, v.margin)}"
    return text + (" (chosen after the runs: --margin)" if v.margin_chosen_after else "")


def _ratios_text(v: Verdict) -> str:
    """'0.45 (61,370 vs 136,010)', or one such part per setting that changes the ratio ('... at cccp 0; ...')."""
    parts = []
    for ratio in v.ratios:
        where = ", ".join(f"{name} {stats.level_text(name, level)}" for name, level in ratio.where)
        part = f"{ratio.params_a / ratio.params_b:.2f} ({ratio.params_a:,.0f} vs {ratio.params_b:,.0f}"
        parts.append(part + (f" at {where})" if where else ")"))
    return "; ".join(parts)


def _other(v: Verdict) -> str:
    return rule.OTHER_HEADS.get(str(v.b), str(v.b))


def _what(metric: str | None) -> str:
    return METRIC_NAMES.get(metric or "", metric or "")


def exact_head_note(head: ExactHead | None) -> str | None:
    """The seeds' exact GAP head in one sentence, apart from the GAP lines; None where the grid has none."""
    if head is None:
        return None
    text = (f"The seeds' exact GAP head ({', '.join(head.labels)} on the class maps), reported apart from the GAP "
            f"lines above: stalled in {head.stalled} of {count(head.runs, 'run')}")  # fmt: skip
    if head.runs > head.ok:
        text += f" ({head.runs - head.ok} not ok)"
    if not head.trained:
        return text + "; it never trained."
    text += f"; when it trained, test accuracy {100 * head.mean:.1f}%"
    if head.trained < stats.MIN_INTERVAL_N:
        return text + f" ({count(head.trained, 'run')}, {stats.FEW}: no interval)."
    return text + f" (95% CI {100 * head.ci_low:.1f} to {100 * head.ci_high:.1f}%, {head.trained} runs)."


# ---- the sensitivity analysis ------------------------------------------------------------------------------------
def sensitivity_table(frame: pd.DataFrame) -> pd.DataFrame:
    """judge.verdicts.sensitivity's frame with each claim's sentence: without the failed runs, then with every run."""
    out = frame.copy()
    out["sentence"] = [_sensitivity_sentence(row) for row in frame.itertuples()]
    return out


def _sensitivity_sentence(row) -> str:
    label = f"{row.confidence_adjusted:.2%} CI"
    without = difference_text(row.mean, row.ci_low_adjusted, row.ci_high_adjusted, row.n_seeds, row.n_pairs,
                                    label, row.metric)  # fmt: skip
    everything = difference_text(row.mean_all_runs, row.ci_low_adjusted_all_runs, row.ci_high_adjusted_all_runs,
                                       row.n_seeds_all_runs, row.n_pairs_all_runs, label, row.metric)  # fmt: skip
    return (f"{row.claim}, without {count(row.runs_left_out, 'run')} whose training failed: "
            f"{_what(row.metric)} {without}; with every run: {everything}")  # fmt: skip


# ---- the page's sentences about the family and the runs ----------------------------------------------------------
def family_text(frame: pd.DataFrame, results: Results | None = None) -> str:
    """The family and its size, and the condition the 5% holds under, in sentences for the page; `results` adds
    where this grid's runs weaken it."""
    sizes = frame["family_size"].dropna()
    if sizes.empty:
        return "No difference claim is tested by this grid."
    k = int(sizes.iloc[0])
    confidence = rule.family_confidence(k)
    weakened = weakened_text(results) if results is not None else ""
    return (
        f"One error budget for the report: the family is the {count(k, 'claim')} this grid tests; each "
        f"interval is at {confidence:.2%} (Bonferroni, 1 − 0.05/{k}) and each exact test at 0.05/{k}, so the chance "
        f"that any supported, contradicted or equivalent verdict here is wrong is at most 5%, provided each claim's "
        f"seed-level differences are near normal (the t interval's condition; the exact tests need none). "
        f"{SEED_UNIT}" + (f" {weakened}" if weakened else "")
    )


def weakened_text(results: Results) -> str:
    """Where this grid's runs break the 5% statement's condition (failed training, seeds on two branches): one
    sentence with the simulated figure; '' where they do not."""
    runs = results.runs
    failed = int(runs["training"].isin(FAILED_TRAINING).sum()) if "training" in runs else 0
    if not failed:
        return ""
    return (
        f"Here {count(failed, 'run')} failed to train: seed-level differences with a failed run on one side "
        f"are far from normal, so the 5% guarantee is weakened ({WEAKENED})."
    )


def training_text(results: Results) -> str:
    """Each variant whose training failed in some seeds, as a rate ('GAP, cccp 2: 2 of 5 seeds did not fit'); ''
    where every run fit."""
    rates = [(name, failed, launched) for name, failed, launched in training_rates(results) if failed]
    if not rates:
        return ""
    parts = "; ".join(f"{name}: {failed} of {launched} seeds did not fit" for name, failed, launched in rates)
    return (
        f"{parts}. Did not fit: stalled (final training accuracy ≤ chance + {100 * STALL_MARGIN:g} points), "
        f"under-fitted (never reached the criterion: {criterion_text()}) or diverged; read from training data only, "
        f"never the test set. Every one of them is judged with its outcome (intention to treat)."
    )


def criterion_text() -> str:
    return (f"a training accuracy of {100 * FIT_ACCURACY:g}% in some epoch; under the stopping rule, its stop_reason "
            f"\"criterion\" (not \"cap\") at a training accuracy of {100 * FIT_ACCURACY:g}% or more")  # fmt: skip


# ---- a grid grown by --until-resolved ----------------------------------------------------------------------------
def sequence_family_text(record: Record) -> str:
    """The sequential design and its one error budget, in a sentence for the page."""
    design, looks = record.design, record.looks
    levels = [c for c in design.confidences if not math.isnan(c)]
    if not levels:  # every look below 3 seeds (--max-seeds 2): seeds are added, but no claim can ever close
        interval = "no interval (every look has fewer than 3 seeds, too few for one: each claim stays open)"
    elif len(set(levels)) == 1:
        interval = f"a {levels[0]:.2%} t interval"
    else:
        interval = f"a {levels[0]:.2%} (first look) to {levels[-1]:.2%} (last) t interval"
    k = len(design.family)
    seeds = design.schedule
    seed_range = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}"
    return (
        f"Seeds on demand (run --until-resolved): {len(design.schedule)} looks at {seed_range} "
        f"seeds ({design.seeds_per_round} more per look, only to the variants of claims still open), all planned "
        f"before the first. One error budget: at each look each of the {k} difference claims is judged on "
        f"{interval} — {describe(design.shape)} — so that for each claim the chance that any "
        f"look's interval misses the truth is 0.05/{k}, and the chance that any supported, contradicted or "
        f"equivalent verdict here is wrong is at most 5%, wherever the sequence stopped, provided the seed-level "
        f"differences are near normal (the exact trainability tests take the same levels, set for t statistics: "
        f"an approximation for them). A verdict is frozen at the "
        f"look that closed it; {len(looks)} look(s) taken. {SEED_UNIT}"
    )


def spend_text(results: Results) -> str:
    """What the sequence spent against the fixed design at its --max-seeds, and why it stopped."""
    spend = Spend.of_results(results)
    last = spend.last
    state = f"Stopped: {last.reason}." if spend.stopped else (
        f"In progress: look {last.look} added {last.reason}; run the same command with --until-resolved to "
        f"take the next look.")  # fmt: skip
    return (f"Seeds spent: {spend.against_fixed()}; {spend.resolved} of {spend.family} claims resolved, "
            f"{spend.still_open} open. {state}")  # fmt: skip


# The effects section's words: metric names and units, and one sentence per axis and pair of levels.
METRIC_NAMES = {"test_acc": "test accuracy", "gap_acc": "overfitting gap", "loc_pointing": "pointing-game hits",
                "epochs_to_fit": "epochs to the training criterion",
                "log_seconds_to_fit": "wall time to the training criterion (log ratio)",
                "fit": "share of runs that fit"}  # fmt: skip
# How a difference of each metric reads: (scale, unit). Accuracy-like outcomes in points (0.01 = 1 point); epochs as
# they are; log seconds ×100, about a percentage for small ratios.
UNITS = {"epochs_to_fit": (1.0, "epochs"), "log_seconds_to_fit": (100.0, "log-% (100 × ln ratio)")}
DEFAULT_UNIT = (100.0, "points")


def margin_text(metric: str, margin: float) -> str:
    scale, unit = UNITS.get(metric, DEFAULT_UNIT)
    value = scale * margin
    return f"{value:g} {unit if value != 1 or unit != 'points' else 'point'}".replace("1 epochs", "1 epoch")


def effect_sentences(table: pd.DataFrame) -> list[str]:
    """One plain sentence per axis and pair of levels, in accuracy points (1 point = 0.01 accuracy)."""
    out = []
    for by_metric in stats.pairs(table):
        row = by_metric["test_acc"]
        head = f"{row.axis} {stats.level_text(row.axis, row.level_a)} vs {stats.level_text(row.axis, row.level_b)}"
        head += f" (where {row.subset}): " if row.subset else ": "
        parts = [_clause(METRIC_NAMES.get(metric, metric), metric_row) for metric, metric_row in by_metric.items()]
        tail = []
        if row.unpaired:
            tail.append(f"{count(row.unpaired, 'run')} left out without a pair")
        if row.pairs_failed_training:
            tail.append(f"{count(row.pairs_failed_training, 'pair')} with a failed training run, kept in")
        if row.seeds_left_out:
            tail.append(f"{count(row.seeds_left_out, 'seed')} without a pair at every setting left out (a run "
                        f"missing: failed for a reason not the method's)")  # fmt: skip
        if row.confounded_with:
            tail.append(f"confounded with {row.confounded_with}")
        out.append(head + "; ".join(parts) + (f" ({'; '.join(tail)})" if tail else "") + ".")
    return out


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def difference_text(mean: float, low: float, high: float, n_seeds: int, n_pairs: int,
                    interval: str = "95% CI", metric: str = "test_acc") -> str:  # fmt: skip
    """'+1.2 points (95% CI +0.3 to +2.1, 5 seeds, 20 pairs)', or without an interval below MIN_INTERVAL_N seeds;
    in the metric's unit (UNITS)."""
    if n_pairs == 0:
        return "no matched pairs"
    scale, unit = UNITS.get(metric, DEFAULT_UNIT)
    units = f"{count(n_seeds, 'seed')}, {count(n_pairs, 'pair')}"
    if n_seeds < stats.MIN_INTERVAL_N:
        return f"{scale * mean:+.1f} {unit} ({units}; {stats.FEW} seeds: too few for an interval)"
    return f"{scale * mean:+.1f} {unit} ({interval} {scale * low:+.1f} to {scale * high:+.1f}, {units})"


def _clause(what: str, row: Any) -> str:
    if row.n_pairs == 0:
        return f"{what}: no matched pairs"
    interval = difference_text(row.mean_diff, row.ci_low, row.ci_high, row.n_seeds, row.n_pairs, metric=row.metric)
    text = f"{what} {interval}"
    if row.n_seeds < stats.MIN_INTERVAL_N:
        return text
    return text + (": the unadjusted CI excludes zero" if row.ci_excludes_zero else ": the unadjusted CI includes zero")
