"""The paper-ready ablation table (report/ablation.md, report/ablation.tex) and the page's short summary.

One row per variant under a readable label (no hash); params, MACs, test accuracy and the overfitting gap as
mean ± sd (n) over the runs the statistics use; the best value per column in bold among the NiN variants; the
AlexNet reference row last, below a rule, and never bold (it is a reference, not a contender).
"""

from __future__ import annotations

import math
import unicodedata
from typing import Any

import pandas as pd

from judge.load import PAPER_LABELS, Results, labels
from judge.stats import MIN_INTERVAL_N, same_level

HEADERS = ("Variant", "Params", "MACs (M)", "Test accuracy (%)", "Overfitting gap (points)")
CAPTION = (
    "Ablation of NiN's head, cccp 1x1 layers and dropout. Test accuracy and overfitting gap (train minus test "
    "accuracy, points): mean +/- sd (n runs) over seeds, every run that ended, failed training included (stalled, "
    "under-fitted, diverged: intention to treat); runs missing for a reason not the method's left out. MACs: fvcore "
    "multiply-adds per image, forward. Bold: best NiN variant per column (accuracy and gap: among variants "
    f"with n >= {MIN_INTERVAL_N})."
)


def ablation_frame(results: Results, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per variant, NiN variants in the grid's axis order, then the reference: variant (the readable
    label), params, macs, acc_* and gap_* (mean, std; fractions), n, stalled, not_ok, reference, group_id."""
    paper = labels(results.runs, PAPER_LABELS, ", ")
    names = dict(zip(results.runs["group_id"], paper))
    rows = summary[summary["model"].notna()].copy()
    rows["variant"] = rows["group_id"].map(names)
    rows["reference"] = rows["model"] != "nin"
    rows["_order"] = [_order_key(results, row) for _, row in rows.iterrows()]
    rows = rows.sort_values(["reference", "_order"], kind="stable")
    return pd.DataFrame(
        {
            "variant": rows["variant"],
            "params": rows["params"],
            "macs": rows["macs"],
            "acc_mean": rows["test_acc_mean"],
            "acc_std": rows["test_acc_std"],
            "gap_mean": rows["gap_acc_mean"],
            "gap_std": rows["gap_acc_std"],
            "split": rows["split"] if "split" in rows else False,
            "acc_median": rows["test_acc_median"] if "test_acc_median" in rows else math.nan,
            "acc_iqm": rows["test_acc_iqm"] if "test_acc_iqm" in rows else math.nan,
            "n": rows["n"],
            "stalled": rows["stalled"],
            "did_not_fit": rows["did_not_fit"],
            "missing": rows["missing"],
            "not_ok": rows["not_ok"],
            "reference": rows["reference"],
            "group_id": rows["group_id"],
        }
    ).reset_index(drop=True)


def best(frame: pd.DataFrame) -> pd.DataFrame:
    """Which cells are bold: the best NiN value per column (ties all bold). Accuracy and gap compete only among
    variants with at least MIN_INTERVAL_N runs trained: two lucky seeds out of five (a head that mostly stalls)
    are not a best."""
    nin = ~frame["reference"]
    enough = nin & (frame["n"] >= MIN_INTERVAL_N)
    rules = {"params": "min", "macs": "min", "acc_mean": "max", "gap_mean": "min"}
    mask = pd.DataFrame(False, index=frame.index, columns=list(rules))
    for column, how in rules.items():
        competing = nin if column in ("params", "macs") else enough
        values = frame.loc[competing, column].dropna()
        if not values.empty:
            target = values.min() if how == "min" else values.max()
            mask[column] = competing & (frame[column] == target)
    return mask


SPLIT_NOTE = ("split: the seeds fall into two groups (a gap between sorted values over 3 robust sds and 10 points); "
              "median and interquartile mean (IQM) shown beside mean ± sd.")  # fmt: skip


def ablation_markdown(results: Results, summary: pd.DataFrame, claims: pd.DataFrame | None = None) -> str:
    """The ablation table in Markdown, and below it the verdicts in the report's own words (when given)."""
    frame = ablation_frame(results, summary)
    bold = best(frame)
    lines = ["| " + " | ".join(HEADERS) + " |", "|:--|--:|--:|--:|--:|"]
    for i, row in frame.iterrows():
        if row["reference"] and not frame["reference"].iloc[:i].any():
            lines.append("| *Reference* | | | | |")
        shown = [str(row["variant"])]
        for column, text in cells(row, "md").items():
            shown.append(f"**{text}**" if bold.loc[i, column] else text)
        lines.append("| " + " | ".join(shown) + " |")
    text = "\n".join(lines) + "\n\n" + CAPTION.replace("+/-", "±").replace(">=", "≥") + "\n"
    if frame["split"].astype(bool).any():
        text += "\n" + SPLIT_NOTE + "\n"
    if claims is not None and len(claims):
        text += "\n**Verdicts**\n\n" + "".join(f"- {sentence}\n" for sentence in claims["sentence"])
    return text


def ablation_latex(results: Results, summary: pd.DataFrame, claims: pd.DataFrame | None = None) -> str:
    """A booktabs table for pdflatex (\\usepackage{booktabs}), then the verdicts as a list (when given); ASCII
    only."""
    frame = ablation_frame(results, summary)
    bold = best(frame)
    shown = pd.DataFrame(
        [[row["variant"], *cells(row, "tex").values()] for _, row in frame.iterrows()], columns=list(HEADERS)
    )
    props = pd.DataFrame("", index=shown.index, columns=shown.columns)
    for column, header in zip(("params", "macs", "acc_mean", "gap_mean"), HEADERS[1:]):
        props[header] = bold[column].map(lambda b: "textbf:--rwrap;" if b else "")
    styler = shown.style.hide(axis="index").apply(lambda _: props, axis=None)
    styler = styler.format(escape="latex", subset=["Variant"]).format_index(escape="latex", axis=1)
    tex = styler.to_latex(
        hrules=True, column_format="lrrrr", position="htbp", position_float="centering",
        caption=_latex_escape(CAPTION), label="tab:ablation",
    )  # fmt: skip
    lines = tex.splitlines()
    references = int(frame["reference"].sum())
    if references and references < len(frame):
        bottom = lines.index("\\bottomrule")
        lines.insert(bottom - references, "\\midrule")
    text = "% nin-ablate ablation table: \\input{} it after \\usepackage{booktabs}\n" + "\n".join(lines) + "\n"
    if claims is not None and len(claims):
        items = "".join(f"\\item {_tex_text(sentence)}\n" for sentence in claims["sentence"])
        text += "\n\\paragraph{Verdicts}\n\\begin{itemize}\n" + items + "\\end{itemize}\n"
    text.encode("ascii")  # plain pdflatex input: a non-ASCII character here is a bug, not something to ship
    return text


def cells(row: pd.Series, style: str) -> dict[str, str]:
    """The four compared columns of one ablation_frame row as text: style "md" (also HTML) or "tex"."""
    params = "–" if pd.isna(row["params"]) else f"{row['params']:,.0f}"
    macs = "–" if pd.isna(row["macs"]) else f"{row['macs'] / 1e6:.3g}"
    if style == "tex":
        params, macs = params.replace("–", "--"), macs.replace("–", "--")
    accuracy = _mean_sd(100 * row["acc_mean"], 100 * row["acc_std"], int(row["n"]), style)
    if bool(row.get("split", False)):  # two groups of seeds: robust summaries beside mean ± sd
        accuracy += f"; split: median {100 * row['acc_median']:.1f}, IQM {100 * row['acc_iqm']:.1f}"
    return {
        "params": params,
        "macs": macs,
        "acc_mean": accuracy,
        "gap_mean": _mean_sd(100 * row["gap_mean"], 100 * row["gap_std"], int(row["n"]), style),
    }


def _mean_sd(mean: float, sd: float, n: int, style: str) -> str:
    if math.isnan(mean):
        return f"-- ({n})" if style == "tex" else f"– ({n})"
    if style == "tex":  # text mode, so that \\textbf makes it bold; $-$ and $\\pm$ are the real signs in ASCII
        number = f"{mean:.1f}".replace("-", "$-$")
        return f"{number} ({n})" if math.isnan(sd) else f"{number} $\\pm$ {sd:.1f} ({n})"
    body = f"{mean:.1f}" if math.isnan(sd) else f"{mean:.1f} ± {sd:.1f}"
    return f"{body} ({n})"


def variant_groups(results: Results, runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """`runs` (rows of results.runs) per variant, named and ordered as the summary table names and orders them: the
    paper's words, the grid file's axis order, the reference last."""
    names = labels(results.runs, PAPER_LABELS, ", ")[runs.index]
    groups = [(str(name), group) for name, group in runs.groupby(names, sort=False)]

    def order(item: tuple[str, pd.DataFrame]) -> tuple:
        first = item[1].iloc[0]
        return str(first["model"]) != "nin", _order_key(results, first)

    return sorted(groups, key=order)


def _order_key(results: Results, row: pd.Series) -> tuple:
    """The grid file's axis order (spec.yaml `axes`), then the label: GAP before FC when the file says so."""
    key: list[Any] = []
    axes = results.spec.get("axes")
    for axis in axes if isinstance(axes, dict) else {}:
        order = results.level_order(axis) or []
        value = row.get(axis)
        missing = value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
        position = next((i for i, level in enumerate(order) if not missing and same_level(level, value)), len(order))
        key.append(position)
    key.append(str(row["label"]))
    return tuple(key)


_TEX_SYMBOLS = {"\\": "\\textbackslash{}", "%": "\\%", "_": "\\_", "&": "\\&", "#": "\\#", "$": "\\$", "{": "\\{",
                "}": "\\}", "~": "\\~{}", "^": "\\^{}", "−": "$-$", "±": "$\\pm$", "×": "$\\times$",
                "—": "---", "–": "--", "≥": "$\\geq$", "≤": "$\\leq$", "δ": "$\\delta$", "→": "$\\to$",
                "“": "``", "”": "\'\'", "’": "\'"}  # fmt: skip


def _tex_text(text: str) -> str:
    """Plain text (a verdict sentence) as ASCII LaTeX: specials escaped, the report's few symbols spelled out."""
    out = "".join(_TEX_SYMBOLS.get(char, char) for char in text)
    return unicodedata.normalize("NFKD", out).encode("ascii", "ignore").decode("ascii")


def _latex_escape(text: str) -> str:
    return text.replace("%", "\\%").replace("+/-", "$\\pm$").replace("_", "\\_").replace(">=", "$\\geq$")


ENDING_HEADERS = ("Variant", "Runs", "Stopped by", "Epochs (median, range)", "LR drops after epoch", "Train s (mean)")


def ending_frame(results: Results) -> pd.DataFrame:
    """How training ended, per variant (every run that trained, ok or diverged): how many stopped by the stopping
    rule's criterion, by its epoch cap or at a fixed budget, the epochs trained, the epochs after which the rate
    dropped (each run's list), and the mean training seconds. Empty for results from before stop_reason existed."""
    runs = results.runs
    if "stop_reason" not in runs or runs["stop_reason"].isna().all():
        return pd.DataFrame(columns=ENDING_HEADERS)
    rows = []
    for label, group in variant_groups(results, runs[runs["epochs_done"].notna()]):
        reasons = group["stop_reason"].fillna(group["status"]).value_counts()
        epochs = group["epochs_done"]
        drops = [str(d) for d in group["lr_drop_epochs"].fillna("") if d] if "lr_drop_epochs" in group else []
        rows.append({
            "Variant": label,
            "Runs": len(group),
            "Stopped by": ", ".join(f"{reason} {count}" for reason, count in reasons.items()),
            "Epochs (median, range)": f"{epochs.median():g} ({epochs.min():g}–{epochs.max():g})",
            "LR drops after epoch": "; ".join(drops) or "–",
            "Train s (mean)": f"{group['train_seconds'].mean():.0f}",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=ENDING_HEADERS)
