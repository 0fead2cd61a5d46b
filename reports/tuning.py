"""How each arm of a grid with `tune:` was trained: its pick, every candidate's validation score, and the method.

Reads OUT/<grid>/tuning.json only (nin.layout.read_tuning; runners.tuning.record writes it), never a tuning run's
result.json: what the page says about the picks is exactly what the runner picked on. A grid without tuning.json gets
no section and no plot. The section sits on report.html right after the verdicts, because a verdict between heads
tuned at different lrs reads differently from one at a shared lr.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from judge.load import labels
from nin.layout import GridDir, read_tuning

TUNING_PLOT = "tuning"  # plots/tuning.png
TUNING_CAPTION = (
    "Validation score against candidate value per arm: grey dots are the tuning seeds, the line their mean, the star "
    "the pick; a red cross marks a candidate with a diverged or failed seed (never picked)."
)
EDGE_COLOR = "#d62728"
SCORE_NAMES = {"val_acc": "validation accuracy", "val_loss": "validation loss"}


@dataclass(frozen=True)
class CandidateScore:
    """One candidate value of one arm, as tuning.json records it."""

    value: float
    mean: float | None
    sd: float | None
    scores: tuple[float, ...]  # the seeds' scores that exist (a diverged seed has none)
    problem: str | None  # why it cannot be picked


@dataclass(frozen=True)
class TunedArm:
    arm_id: str
    label: str  # the report's label for the arm's runs, e.g. gap/cccp2/do1
    pick: float | None
    at_edge: str | None  # "low" / "high": the pick is still the smallest / largest candidate tried
    edge_note: str | None  # why it was not widened further
    problem: str | None  # no candidate could be picked
    candidates: tuple[float, ...]  # every value tried, widenings included
    scores: tuple[CandidateScore, ...]  # the candidates whose tuning runs have all finished
    widenings: int
    pending: int  # tuning runs not finished yet

    def pick_score(self) -> CandidateScore | None:
        return next((c for c in self.scores if c.value == self.pick), None)


@dataclass(frozen=True)
class Tuning:
    """tuning.json, read for the page."""

    key: str  # the tuned setting (lr)
    pick: str  # val_acc | val_loss
    seeds: tuple[int, ...]
    auto: bool
    base: float | None
    widen: int
    validation: float | None
    n_val: int | None
    complete: bool
    arms: tuple[TunedArm, ...]

    @property
    def higher_is_better(self) -> bool:
        return self.pick != "val_loss"

    def method_line(self) -> str:
        """The sentence the section opens with: how every arm's value was chosen, and on how many images."""
        where = (
            f"{self.n_val} images"
            if self.n_val is not None
            else f"{self.validation:.0%} of the training images"
            if self.validation is not None
            else "images"
        )
        return (
            f"Each arm at its own {self.key}, chosen on a validation split of {where}; "
            "the test set was never used for selection."
        )

    def at_edge(self) -> list[TunedArm]:
        return [arm for arm in self.arms if arm.at_edge and arm.pick is not None]


def read(grid_dir: str | Path) -> Tuning | None:
    """OUT/<grid>/tuning.json for the page; None when the grid has none (no `tune:`). Raises ValueError (or OSError)
    for a file that is not a tuning record."""
    path = GridDir(Path(grid_dir)).tuning_path
    if not path.is_file():
        return None
    record = read_tuning(path)
    try:
        return _parse(record)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a tuning record ({type(exc).__name__}: {exc})") from None


def _parse(record: dict[str, Any]) -> Tuning:
    tune = record["tune"]
    arms = record["arms"]
    names = _arm_labels([arm["config"] for arm in arms], [str(arm["arm_id"]) for arm in arms])
    return Tuning(
        key=str(tune["key"]),
        pick=str(tune["pick"]),
        seeds=tuple(int(s) for s in tune["seeds"]),
        auto=bool(tune.get("auto")),
        base=_number(tune.get("base")),
        widen=int(tune.get("widen", 0)),
        validation=_number(record.get("validation")),
        n_val=int(record["n_val"]) if isinstance(record.get("n_val"), int) else None,
        complete=bool(record.get("complete")),
        arms=tuple(_arm(arm, name) for arm, name in zip(arms, names)),
    )


def _arm(arm: dict[str, Any], label: str) -> TunedArm:
    scores = tuple(
        CandidateScore(
            value=float(c["value"]),
            mean=_number(c.get("mean")),
            sd=_number(c.get("sd")),
            scores=tuple(float(r["score"]) for r in c.get("runs", []) if _number(r.get("score")) is not None),
            problem=c.get("problem"),
        )
        for c in arm.get("scores", [])
    )
    return TunedArm(
        arm_id=str(arm["arm_id"]),
        label=label,
        pick=_number(arm.get("pick")),
        at_edge=arm.get("at_edge"),
        edge_note=arm.get("edge_note"),
        problem=arm.get("problem"),
        candidates=tuple(float(v) for v in arm["candidates"]),
        scores=scores,
        widenings=len(arm.get("widenings", [])),
        pending=len(arm.get("pending", [])),
    )


def _arm_labels(configs: Sequence[dict[str, Any]], arm_ids: Sequence[str]) -> list[str]:
    """The report's own labels (judge.load.labels) from the arms' configurations: an arm's configuration is its
    runs' without seed and lr, so the arm and its runs are named alike on the page."""
    if not configs:
        return []
    frame = pd.DataFrame.from_records(
        [{**config, "variant_id": a, "group_id": a} for config, a in zip(configs, arm_ids)]
    )
    if "model" not in frame:
        frame["model"] = "nin"
    return [str(name) for name in labels(frame.reset_index(drop=True))]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# ---- the page -----------------------------------------------------------------------------------------------------


def section(grid_dir: str | Path, plot: Path | None, embed: Callable[[str, Path, str], str]) -> str:
    """report.html's "How each arm was trained": the method line, the arms still at an edge, a table of the picks and
    the plot (`embed(name, path, caption)` writes its <figure>). '' for a grid without tuning.json."""
    head = "<h2>How each arm was trained</h2>"
    try:
        tuning = read(grid_dir)
    except (OSError, ValueError) as exc:
        path = GridDir(Path(grid_dir)).tuning_path
        return head + f"<p>{html.escape(str(path))}: unreadable ({html.escape(str(exc))}); the picks are not shown.</p>"
    if tuning is None:
        return ""
    parts = [head, f"<p class='lead'><strong>{html.escape(tuning.method_line())}</strong></p>"]
    parts.append(
        f"<p>{html.escape(_procedure(tuning))} Every candidate's per-seed scores and every widening: "
        "<a href='../tuning.json'>tuning.json</a>.</p>"
    )
    if not tuning.complete:
        pending = sum(arm.pending for arm in tuning.arms)
        parts.append(
            f"<p><strong>Tuning is not finished</strong>: when tuning.json was last written (before each round of "
            f"tuning runs), {pending} tuning run(s) were still to train; an arm without a pick has no runs in this "
            "report yet. Running the grid again resumes it.</p>"
        )
    edge = tuning.at_edge()
    if edge:
        named = "; ".join(f"{arm.label}: {edge_text(tuning, arm)}" for arm in edge)
        parts.append(
            f"<p><strong>{len(edge)} arm(s) picked at an edge of their candidates</strong>: the best {tuning.key} "
            f"may lie beyond the values tried, so these arms may be compared below their best. "
            f"{html.escape(named)}.</p>"
        )
    parts.append(_table(tuning))
    if plot is not None:
        parts.append(embed(TUNING_PLOT, plot, TUNING_CAPTION))
    return "\n".join(parts)


def edge_text(tuning: Tuning, arm: TunedArm) -> str:
    """e.g. 'picked 0.016, the high edge of 0.001–0.016 (widened 2 time(s), the most tune.widen allows)'."""
    values = f"{arm.candidates[0]:g}–{arm.candidates[-1]:g}"
    note = arm.edge_note or "not widened further"
    return f"{tuning.key} {arm.pick:g} is the {arm.at_edge} edge of {values} ({note})"


def _procedure(tuning: Tuning) -> str:
    best = "highest" if tuning.higher_is_better else "lowest"
    seeds = ", ".join(map(str, tuning.seeds))
    if tuning.auto and tuning.base is not None:
        candidates = f"×½, ×1 and ×2 of the grid's shared {tuning.key} {tuning.base:g}"
    else:
        candidates = "the grid file's list"
    widen = (
        f"an arm whose pick is its smallest or largest candidate gets one more ×2 step beyond it, at most "
        f"{tuning.widen} time(s)"
        if tuning.widen
        else "no widening at an edge (tune.widen 0)"
    )
    return (
        f"The pick is the candidate with the {best} mean final-epoch {tuning.pick} over the tuning seeds {seeds} "
        f"(disjoint from the grid's seeds; a tie goes to the smaller {tuning.key}; a candidate with a diverged or "
        f"failed seed is never picked). Candidates: {candidates}; {widen}. The tuning runs (tuning/runs/) enter no "
        f"table, statistic or verdict of this report; each arm's runs here are at its pick on the grid's seeds."
    )


def _table(tuning: Tuning) -> str:
    score_head = f"mean {tuning.pick} at the pick (± sd over the tuning seeds)"
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in ("arm", f"{tuning.key} picked", "candidates tried", score_head, "at an edge")
    )
    rows = []
    for arm in tuning.arms:
        if arm.pick is not None:
            pick = f"{arm.pick:g}"
        elif arm.problem:
            pick = f"none: {arm.problem}"
        else:
            pick = f"pending ({arm.pending} tuning run(s) to train)"
        tried = ", ".join(f"{v:g}" for v in arm.candidates)
        if arm.widenings:
            tried += f" (widened {arm.widenings}×)"
        chosen = arm.pick_score()
        score = "–" if chosen is None or chosen.mean is None else _score(tuning, chosen.mean, chosen.sd)
        edge = "–" if not arm.at_edge or arm.pick is None else f"{arm.at_edge}: {arm.edge_note or 'not widened'}"
        cells = [arm.label, pick, tried, score, edge]
        style = " style='color: #8a1a10'" if arm.at_edge and arm.pick is not None else ""
        rows.append(f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _score(tuning: Tuning, mean: float, sd: float | None) -> str:
    if tuning.pick == "val_acc":
        return f"{100 * mean:.1f}%" + (f" (± {100 * sd:.1f} pts)" if sd is not None else "")
    return f"{mean:.3f}" + (f" (± {sd:.3f})" if sd is not None else "")


# ---- the plot -----------------------------------------------------------------------------------------------------


def tuning_figure(grid_dir: str | Path) -> Figure | None:
    """plots/tuning.png: one small panel per arm, the mean validation score against the candidate value on a log
    axis, the seeds' scores as dots and the pick starred. None for a grid without (or with an unreadable)
    tuning.json: the page's section says which."""
    try:
        tuning = read(grid_dir)
    except (OSError, ValueError):
        return None
    if tuning is None:
        return None
    arms = tuning.arms
    ncols = max(1, min(4, len(arms)))
    nrows = max(1, -(-len(arms) // ncols))
    fig = Figure(figsize=(3.3 * ncols, 2.6 * nrows + 0.9), layout="constrained")
    scale = 100.0 if tuning.pick == "val_acc" else 1.0
    unit = " (%)" if tuning.pick == "val_acc" else ""
    fig.suptitle(
        f"{SCORE_NAMES.get(tuning.pick, tuning.pick).capitalize()} vs candidate {tuning.key} per arm "
        f"(final epoch, {len(tuning.seeds)} tuning seeds; {'higher' if tuning.higher_is_better else 'lower'} is "
        f"better; star: the pick)"
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(arms):
            ax.set_visible(False)
            continue
        _panel(ax, tuning, arms[index], scale)
        if index % ncols == 0:
            ax.set_ylabel(f"{tuning.pick}{unit}")
        ax.set_xlabel(f"{tuning.key} (log scale)")
    handles = [
        Line2D([], [], color="0.55", marker="o", linestyle="none", markersize=4, label="one tuning seed"),
        Line2D([], [], color="C0", marker="o", label="mean over the tuning seeds"),
        Line2D([], [], color="C3", marker="*", linestyle="none", markersize=12, label="the pick"),
        Line2D([], [], color=EDGE_COLOR, marker="x", linestyle="none", label="diverged or failed seed: not pickable"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize="small")
    return fig


def _panel(ax: Any, tuning: Tuning, arm: TunedArm, scale: float) -> None:
    edge = arm.at_edge and arm.pick is not None
    ax.set_title(arm.label + (f"\npick at the {arm.at_edge} edge" if edge else ""), fontsize="small",
                 color=EDGE_COLOR if edge else "black")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xticks(list(arm.candidates), [f"{v:g}" for v in arm.candidates], fontsize="x-small", rotation=30)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="y", labelsize="x-small")
    if not arm.scores:
        ax.text(0.5, 0.5, "no finished tuning runs yet", ha="center", va="center", transform=ax.transAxes,
                fontsize="small")  # fmt: skip
        ax.set_xlim(arm.candidates[0] / 1.5, arm.candidates[-1] * 1.5)
        return
    for candidate in arm.scores:
        ax.plot([candidate.value] * len(candidate.scores), [scale * s for s in candidate.scores], "o", color="0.55",
                markersize=3, alpha=0.8)  # fmt: skip
        if candidate.problem is not None:  # no mean to draw: crossed at the foot of the panel
            ax.plot(candidate.value, 0.05, "x", color=EDGE_COLOR, markersize=8, transform=ax.get_xaxis_transform())
    eligible = [c for c in arm.scores if c.mean is not None]
    if eligible:
        ax.plot([c.value for c in eligible], [scale * c.mean for c in eligible], "-o", color="C0", markersize=4)
    chosen = arm.pick_score()
    if chosen is not None and chosen.mean is not None:
        ax.plot(chosen.value, scale * chosen.mean, "*", color="C3", markersize=14, zorder=5)
    ax.set_xlim(arm.candidates[0] / 1.5, arm.candidates[-1] * 1.5)
