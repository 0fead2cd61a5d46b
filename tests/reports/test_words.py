"""reports.words: a verdict's sentence comes from its record alone. The recorded grid's verdicts, sent through JSON
and back, say exactly the sentences of its recorded verdicts.csv; each reason code reads as what it means."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd

from judge import sequential, verdicts
from judge.load import load_results
from judge.looks import Sequence
from judge.records import Fit, Reason, Verdict
from reports import words

RECORDED = Path(__file__).parents[1] / "fixtures" / "recorded_grid"


def test_the_recorded_sentences_come_back_from_records_read_from_json() -> None:
    found = verdicts.verdicts(load_results(RECORDED / "quick"))
    rebuilt = [Verdict.from_record(json.loads(json.dumps(v.as_record()))) for v in found]
    expected = pd.read_csv(RECORDED / "expected" / "verdicts.csv")["sentence"].tolist()
    assert [words.sentence(v) for v in rebuilt] == expected
    assert words.csv_frame(words.table(rebuilt))["sentence"].tolist() == expected


def test_each_reason_reads_as_what_it_means() -> None:
    claim = Verdict("k", "cccp raises test accuracy", "difference", verdicts.SUPERIORITY, verdicts.NOT_TESTED,
                    Reason.NO_LEVEL, metric="test_acc", direction=1, margin=0.01, axis="cccp", absent=(1, 2))
    assert words.sentence(claim) == ("cccp raises test accuracy: not tested by this grid — no cccp 1 or 2 among the "
                                     "NiN runs.")
    assert words.note(Verdict("k", "c", "difference", "superiority", verdicts.NOT_TESTED, Reason.NO_AXIS,
                              axis="dropout")) == "the grid has no dropout axis"  # fmt: skip
    assert words.note(Verdict("k", "c", "difference", "superiority", verdicts.NOT_TESTED, Reason.NO_CANVAS,
                              metric="loc_pointing")) == words.NO_CANVAS  # fmt: skip
    few = Verdict("k", "c", "difference", verdicts.SUPERIORITY, verdicts.INCONCLUSIVE, Reason.FEW_SEEDS,
                  metric="test_acc", margin=0.01, mean=0.05, confidence_adjusted=0.99, n_seeds=2, n_pairs=2,
                  seeds_left_out=0, runs_flagged=1)  # fmt: skip
    assert words.note(few) == "1 run whose training failed judged with its outcome; n < 3 seeds: no interval"
    assert words.detail(few).startswith("superiority, margin 1 point; test accuracy +5.0 points (2 seeds, 2 pairs")
    fits = Verdict("k", "c", "difference", verdicts.PAIRED_EXACT, verdicts.CONTRADICTED, Reason.PAIRED_EXACT, b="fc",
                   confidence_adjusted=0.99, fit=Fit(2, 9, 10, 0, 7, 0.0156))  # fmt: skip
    assert "GAP fit in 2 of 10 runs, the FC head in 9 of 10" in words.detail(fits)
    assert words.note(fits).startswith("GAP fits less often")
    assert words.note(fits, brief=True) == "GAP fits less often"  # which way goes on the page's table too
    assert words.sequence_text(few.resolved(4, 2, 5, False)) == "resolved at 5 seeds (look 2 of 4)"
    still = few.resolved(4, None, 8, True)
    assert words.sequence_text(still) == "open at 8 seeds, the most this sequence plans"
    assert words.sentence(still).endswith("; sequential: open at 8 seeds, the most this sequence plans.")
    assert words.sequence_text(few) == "" and "sequential" not in words.sentence(few)


def _described(first: int, max_seeds: int) -> str:
    design = sequential.plan(["a"], first, 1, max_seeds)
    return words.sequence_family_text(Sequence("g", "digest", tuple(range(first)), (), 1, design))


def test_a_sequence_whose_looks_all_have_too_few_seeds_for_an_interval_is_described() -> None:
    """A 1-seed grid with --max-seeds 2 looks at 1 and 2 seeds: no interval at either, and the page says so."""
    assert all(math.isnan(c) for c in sequential.plan(["a"], 1, 1, 2).confidences)
    assert "judged on no interval (every look has fewer than 3 seeds" in _described(1, 2)
    assert "judged on a 95.00% t interval" in _described(3, 3)


def test_a_wall_time_claim_says_how_busy_the_machine_was(tmp_path: Path) -> None:
    """The recorded runs, as if trained while other work kept 6 processes runnable on 2 cores: every wall-time
    verdict says so, and warns that its wall times measure that work too; no other claim mentions the machine."""
    grid = tmp_path / "quick"
    shutil.copytree(RECORDED / "quick", grid)
    for path in grid.glob("runs/*/result.json"):
        result = json.loads(path.read_text())
        path.write_text(json.dumps({**result, "load_avg_max": 6.0 if "fc" in result["variant_id"] else 2.2,
                                    "cpu_count": 2}))  # fmt: skip
    found = {v.key: v for v in verdicts.verdicts(load_results(grid))}
    timed = [v for key, v in found.items() if key.startswith(verdicts.WALL_TIME_KEY)]
    assert timed and all(v.machine_load == 6.0 and v.machine_cores == 2 for v in timed)
    for v in timed:
        assert "load average reached 6.0 on 2 cores" in words.sentence(v) and "shared the CPU" in words.sentence(v)
    assert all(math.isnan(v.machine_load) and "load average" not in words.sentence(v)
               for key, v in found.items() if not key.startswith(verdicts.WALL_TIME_KEY))  # fmt: skip
    assert Verdict.from_record(json.loads(json.dumps(timed[0].as_record()))) == timed[0]


def test_a_quiet_machine_is_named_without_the_warning() -> None:
    quiet = "the machine's 1-minute load average reached 2.2 on 2 cores while the grid trained"
    assert words.machine_load_text(2.2, 2) == quiet
    assert "shared the CPU" in words.machine_load_text(3.1, 2) and "shared" not in words.machine_load_text(3.0, 2)
    assert words.machine_load_text(0.5, None).endswith("reached 0.5 while the grid trained")


def test_a_training_time_verdict_says_which_way_in_plain_words() -> None:
    def timed(metric: str, verdict: str) -> str:
        return words.note(Verdict("k", "c", "difference", verdicts.SUPERIORITY, verdict, Reason.INTERVAL,
                                  metric=metric, direction=-1, margin=0.1, n_seeds=5, n_pairs=20))  # fmt: skip

    assert timed("log_seconds_to_fit", verdicts.SUPPORTED) == "GAP needs less wall time"
    assert timed("log_seconds_to_fit", verdicts.CONTRADICTED) == "GAP needs more wall time"
    assert timed("epochs_to_fit", verdicts.SUPPORTED) == "GAP needs fewer epochs"
