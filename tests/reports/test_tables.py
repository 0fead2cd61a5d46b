"""reports/tables.py: the ablation table's rows, order and bold cells, in Markdown and LaTeX.

Covered elsewhere, not repeated here: the paper grid's Markdown table and its pdflatex build
(tests/reports/test_reports.py, test_ablation_markdown_rows_labels_bold_and_reference_last,
test_ablation_tex_compiles_with_pdflatex_and_renders), `report --format` printing the same text
(tests/reports/test_reports.py), the split note (tests/judge/test_verdicts.py).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from judge.stats import MIN_INTERVAL_N, summarize
from reports import load_results
from reports.tables import ablation_frame, ablation_latex, ablation_markdown, best
from tests.reports_fixtures import result, write_grid

N = MIN_INTERVAL_N
# (head, cccp): (runs, test accuracy, overfitting gap). gap/cccp0 is best on accuracy and gap but has too few runs
# to compete there; fc/cccp2 and gap/cccp2 tie on accuracy; the reference beats every NiN variant and is never bold.
VARIANTS = {
    ("fc", 0): (N, 0.80, 0.03),
    ("fc", 2): (N, 0.85, 0.05),
    ("gap", 0): (N - 1, 0.90, 0.01),
    ("gap", 2): (N, 0.85, 0.02),
}
REFERENCE = (N, 0.95, 0.0)
# The report fixtures' counts: 1,992,166 (gap) and 2,053,386 (fc) at cccp 2, 100,000 fewer per cccp layer less.
PARAMS = {("fc", 0): 1_853_386, ("fc", 2): 2_053_386, ("gap", 0): 1_792_166, ("gap", 2): 1_992_166}
LABEL = {("fc", 0): "FC, cccp 0", ("fc", 2): "FC, cccp 2", ("gap", 0): "GAP, cccp 0", ("gap", 2): "GAP, cccp 2"}
REFERENCE_LABEL = "AlexNet (reference)"
# Bold cells by hand: fewest params gap/cccp0; equal MACs (762 M) all bold; best accuracy among n >= N the tie
# fc/cccp2 and gap/cccp2; smallest gap among n >= N gap/cccp2.
BOLD = {
    ("fc", 0): {"macs"},
    ("fc", 2): {"macs", "acc_mean"},
    ("gap", 0): {"params", "macs"},
    ("gap", 2): {"macs", "acc_mean", "gap_mean"},
}
COLUMNS = ("params", "macs", "acc_mean", "gap_mean")


def _runs() -> list[dict]:
    # The reference first in the directory listing: its place in the table must not come from there.
    runs = [result(REFERENCE[1], REFERENCE[1] + REFERENCE[2], model="alexnet", seed=s) for s in range(REFERENCE[0])]
    for (head, cccp), (n, acc, gap) in VARIANTS.items():
        runs += [result(acc, acc + gap, head=head, cccp=cccp, seed=s) for s in range(n)]
    return runs


def _load(tmp_path: Path, **spec) -> tuple:
    results = load_results(write_grid(tmp_path, "table", _runs(), **spec))
    return results, summarize(results)


@pytest.mark.parametrize(
    ("axes", "order"),
    [
        ({"head": ["fc", "gap"], "cccp": [0, 2]}, [("fc", 0), ("fc", 2), ("gap", 0), ("gap", 2)]),
        ({"cccp": [2, 0], "head": ["gap", "fc"]}, [("gap", 2), ("fc", 2), ("gap", 0), ("fc", 0)]),
        (None, [("fc", 0), ("fc", 2), ("gap", 0), ("gap", 2)]),  # no axes: by label ("AlexNet" would sort first)
    ],
)
def test_rows_follow_the_axis_order_then_the_reference(tmp_path: Path, axes: dict | None, order: list) -> None:
    frame = ablation_frame(*_load(tmp_path, **({"axes": axes} if axes else {})))
    assert list(frame["variant"]) == [LABEL[key] for key in order] + [REFERENCE_LABEL]
    assert list(frame["reference"]) == [False] * 4 + [True]


def test_frame_holds_each_variants_numbers(tmp_path: Path) -> None:
    frame = ablation_frame(*_load(tmp_path)).set_index("variant")
    for key, (n, acc, gap) in VARIANTS.items():
        row = frame.loc[LABEL[key]]
        assert (row["n"], row["params"], row["macs"]) == (n, PARAMS[key], 762_000_000)
        assert (row["acc_mean"], row["gap_mean"]) == pytest.approx((acc, gap))
    assert frame.loc[REFERENCE_LABEL, "params"] == 46_764_746  # DESIGN.md: d2l AlexNet


def test_bold_is_the_best_nin_value_among_variants_with_enough_runs(tmp_path: Path) -> None:
    frame = ablation_frame(*_load(tmp_path))
    mask = best(frame)
    for i, row in frame.iterrows():
        key = next((k for k, label in LABEL.items() if label == row["variant"]), None)
        expected = BOLD[key] if key else set()  # the reference: nothing, though its accuracy and gap are best
        assert {c for c in COLUMNS if mask.loc[i, c]} == expected, row["variant"]


def test_a_column_without_a_contender_has_no_bold(tmp_path: Path) -> None:
    # Every variant below MIN_INTERVAL_N runs: accuracy and gap have no best; params and MACs still do.
    runs = [result(0.8 + 0.01 * s, 0.85, head=head, seed=s) for head in ("gap", "fc") for s in range(N - 1)]
    results = load_results(write_grid(tmp_path, "few", runs))
    mask = best(ablation_frame(results, summarize(results)))
    assert not mask["acc_mean"].any() and not mask["gap_mean"].any()
    assert mask["params"].sum() == 1 and mask["macs"].all()


def _cells(text: str) -> dict[str, list[str]]:
    """Markdown or LaTeX table rows by their first cell."""
    rows = {}
    for line in text.splitlines():
        line = line.strip().removesuffix("\\\\").strip()
        sep = " | " if line.startswith("|") else " & "
        parts = [part.strip() for part in line.strip("| ").split(sep)]
        if len(parts) == 5:
            rows[parts[0]] = parts[1:]
    return rows


def _expected_cells(key: tuple | None, style: str) -> list[str]:
    n, acc, gap = VARIANTS[key] if key else REFERENCE
    pm = " $\\pm$ " if style == "tex" else " ± "
    params = f"{PARAMS[key]:,}" if key else "46,764,746"
    macs = "762" if key else "939"
    return [params, macs, f"{100 * acc:.1f}{pm}0.0 ({n})", f"{100 * gap:.1f}{pm}0.0 ({n})"]


@pytest.mark.parametrize("style", ["md", "tex"])
def test_markdown_and_latex_render_the_rows_with_their_bold_cells(tmp_path: Path, style: str) -> None:
    results, summary = _load(tmp_path, axes={"head": ["fc", "gap"], "cccp": [0, 2]})
    text = (ablation_markdown if style == "md" else ablation_latex)(results, summary)
    rows = _cells(text)
    wrap = (lambda s: f"\\textbf{{{s}}}") if style == "tex" else (lambda s: f"**{s}**")
    for key in [*VARIANTS, None]:
        plain = _expected_cells(key, style)
        bold = BOLD[key] if key else set()
        shown = [wrap(cell) if column in bold else cell for column, cell in zip(COLUMNS, plain)]
        assert rows[LABEL[key] if key else REFERENCE_LABEL] == shown, key
    names = list(rows)
    assert names.index(REFERENCE_LABEL) == len(names) - 1  # the last row
    if style == "tex":
        lines = text.splitlines()
        assert lines[lines.index("\\bottomrule") - 2] == "\\midrule"  # a rule above the reference only
        assert text.count("\\midrule") == 2


SENTENCE = "GAP raises accuracy by ≥ 1 point ± 0.5 — 100% “δ” → naïve_x & #1 {a} ~ ^ $5"


def test_latex_is_ascii_with_the_verdicts_escaped(tmp_path: Path) -> None:
    results, summary = _load(tmp_path)
    claims = pd.DataFrame({"sentence": [SENTENCE]})
    tex = ablation_latex(results, summary, claims)
    tex.encode("ascii")
    item = next(line for line in tex.splitlines() if line.startswith("\\item "))
    assert item == (
        "\\item GAP raises accuracy by $\\geq$ 1 point $\\pm$ 0.5 --- 100\\% ``$\\delta$'' $\\to$ naive\\_x \\& \\#1 "
        "\\{a\\} \\~{} \\^{} \\$5"
    )
    assert "\\begin{itemize}" in tex and "\\paragraph{Verdicts}" in tex
    markdown = ablation_markdown(results, summary, claims)
    assert f"**Verdicts**\n\n- {SENTENCE}\n" in markdown  # Markdown keeps the sentence as written
