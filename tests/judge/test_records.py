"""judge.records: a verdict is numbers and a reason code. Every verdict of the recorded grid (tests/fixtures/
recorded_grid), plain and grown by a sequence, survives JSON unchanged, and carries no sentence."""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from pathlib import Path

import pytest

from judge import looks, sequential, verdicts
from judge.load import Results, load_results
from judge.records import UNTESTED, Fit, Ratio, Reason, Verdict

RECORDED = Path(__file__).parents[1] / "fixtures" / "recorded_grid" / "quick"


@pytest.fixture(scope="module")
def recorded() -> Results:
    return load_results(RECORDED)


def grown(results: Results) -> Results:
    """The recorded grid as if a sequence had looked at seeds 0-1, added seed 2, and looked again."""
    design = sequential.plan([c.key for c in verdicts.testable_claims(results)], 2, 1, 3)
    taken = (looks.Look(1, (0, 1), None, decision=looks.ADD, added_seeds=(2,)),
             looks.Look(2, (0, 1, 2), design.confidences[-1], decision=looks.STOP))  # fmt: skip
    return replace(results, sequence=looks.Sequence("quick", "", (0, 1), (), 14, design, taken))


def test_every_verdict_round_trips_through_json(recorded: Results) -> None:
    found = [*verdicts.verdicts(recorded), *sequential.report_verdicts(grown(recorded))]
    reasons = {v.reason for v in found}
    assert {Reason.INTERVAL, Reason.PAIRED_EXACT, Reason.EXACT_COUNT, Reason.NO_CANVAS} <= reasons
    for verdict in found:
        record = json.loads(json.dumps(verdict.as_record()))  # JSON-safe: no NaN, no numpy
        assert Verdict.from_record(record) == _nan_free(verdict), verdict.key
    resolved = [v for v in found if v.looks is not None]
    assert resolved and all(v.look in (1, 2) and (v.resolved_at_seeds or v.open_at_seeds) for v in resolved)


def test_a_verdict_holds_numbers_and_codes_never_sentences(recorded: Results) -> None:
    params = next(v for v in verdicts.verdicts(recorded) if v.key == "gap_params_vs_fc")
    assert params.reason == Reason.EXACT_COUNT and params.ratios[0] == Ratio(29_298.0, 26_898.0, (("cccp", 0),))
    assert params.image_sizes == (99,) and params.verdict == verdicts.CONTRADICTED
    trains = next(v for v in verdicts.verdicts(recorded) if v.key == "gap_trains_as_often_as_fc")
    assert trains.fit == Fit(6, 6, 12, 2, 2, 1.0)
    untested = next(v for v in verdicts.verdicts(recorded) if v.key == "gap_localisation_vs_fc")
    assert untested.untested and untested.reason in UNTESTED and untested.verdict == verdicts.NOT_TESTED
    text = [f.name for f in fields(Verdict) if isinstance(getattr(untested, f.name), str)]
    assert "sentence" not in text and "note" not in text and "detail" not in text


def _nan_free(verdict: Verdict) -> Verdict:
    """NaN != NaN: the same record with every NaN as the one float('nan') object from_record makes."""
    changes = {f.name: math.nan for f in fields(verdict) if isinstance(getattr(verdict, f.name), float)
               and math.isnan(getattr(verdict, f.name))}  # fmt: skip
    return replace(verdict, **changes)
