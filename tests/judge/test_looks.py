"""judge.looks: looks.json's one shape. A record read and written again is the same JSON, a file the runner wrote
before these records were typed still reads, and a file that is not a sequence is one ValueError."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from judge import looks, sequential

# A looks.json as `run --until-resolved` wrote it (two claims, two looks: the first added a seed, the second
# stopped), kept literally: results directories written before looks.json was read through judge.looks hold this.
WRITTEN = {
    "schema": 1, "grid": "quick", "base_runs": "0123456789abcdef", "base_seeds": [0, 1, 2], "reserved_seeds": [100],
    "variants": 4,
    "design": {"rule": looks.describe(looks.OBRIEN_FLEMING), "shape": "obrien-fleming", "error": 0.05,
               "family": ["cccp_2_vs_0_accuracy", "dropout_accuracy"], "claim_error": 0.025, "schedule": [2, 3, 4],
               "confidences": [None, 0.99, 0.98], "seeds_per_round": 1, "max_seeds": 4, "boundary_draws": 400000,
               "boundary_seed": 20261201},
    "looks": [
        {"look": 1, "seeds": [0, 1, 2], "n_seeds": 3, "confidence": 0.99,
         "claims": {"cccp_2_vs_0_accuracy": {"verdict": "supported", "qualifier": "", "mean": 0.1, "ci_low": 0.02,
                                             "ci_high": 0.18, "n_seeds": 3, "closed_at": 1, "closed_at_seeds": 3},
                    "dropout_accuracy": {"verdict": "inconclusive", "qualifier": "", "mean": 0.01, "ci_low": -0.2,
                                         "ci_high": 0.22, "n_seeds": 3, "closed_at": None, "closed_at_seeds": None}},
         "open": ["dropout_accuracy"], "decision": "add seeds", "reason": "seed(s) 3 for 2 variants",
         "added_seeds": [3], "added_groups": ["g-do0", "g-do1"], "runs": 12},
        {"look": 2, "seeds": [0, 1, 2, 3], "n_seeds": 4, "confidence": 0.98,
         "claims": {"cccp_2_vs_0_accuracy": {"verdict": "supported", "qualifier": "", "mean": 0.1, "ci_low": 0.02,
                                             "ci_high": 0.18, "n_seeds": 3, "closed_at": 1, "closed_at_seeds": 3},
                    "dropout_accuracy": {"verdict": "equivalent", "qualifier": "", "mean": 0.0, "ci_low": -0.005,
                                         "ci_high": 0.004, "n_seeds": 4, "closed_at": 2, "closed_at_seeds": 4}},
         "open": [], "decision": "stop", "reason": "every claim resolved (2 of 2) at 4 seeds", "added_seeds": [],
         "added_groups": [], "runs": 14},
    ],
}  # fmt: skip


def test_a_written_record_reads_as_typed_looks_and_writes_back_the_same_json(tmp_path: Path) -> None:
    path = tmp_path / "looks.json"
    path.write_text(json.dumps(WRITTEN, indent=1))
    record = looks.read(path)
    assert record.as_record() == WRITTEN  # the same keys, values and order: old results directories stay readable
    assert list(record.as_record()) == list(WRITTEN) and list(record.looks[0].as_record()) == list(WRITTEN["looks"][0])
    assert looks.Sequence.from_record(record.as_record()) == record
    first, last = record.looks
    assert (first.n_seeds, first.adds, first.added_seeds, first.open) == (3, True, (3,), ("dropout_accuracy",))
    assert last.claims["dropout_accuracy"] == looks.ClaimAtLook("equivalent", "", 0.0, -0.005, 0.004, 4, 2, 4)
    assert record.stopped and record.last is last and math.isnan(record.design.confidences[0])
    assert record.design.confidence(1) == 0.99 and record.design.claim_error == 0.025


def test_records_the_loop_makes_round_trip_through_json() -> None:
    design = sequential.plan(["a", "b"], 3, 1, 5)
    look = sequential.next_look(design, [], [0, 1, 2],
                                {"a": looks.ClaimAtLook("supported", "", 0.2, 0.1, 0.3, 3),
                                 "b": looks.ClaimAtLook("inconclusive", "", 0.0, -0.1, 0.1, 3)},
                                lambda keys: sorted(f"{k}-x" for k in keys), runs=6)  # fmt: skip
    assert look.claims["a"].closed_at == 1 and look.claims["b"].closed_at is None and look.added_groups == ("b-x",)
    record = looks.Sequence("g", "digest", (0, 1, 2), (), 2, design).with_look(look)
    again = looks.Sequence.from_record(json.loads(json.dumps(record.as_record())))
    assert again == record and again.looks[0] == look and not again.stopped


def test_an_older_record_without_the_later_fields_still_reads() -> None:
    # A look holding only what the loop needs (no per-claim record, no run count, no confidence): defaults.
    older = {"design": WRITTEN["design"],
             "looks": [{"look": 1, "seeds": [0, 1, 2], "decision": "stop", "open": [], "added_seeds": [],
                        "added_groups": []}]}  # fmt: skip
    record = looks.Sequence.from_record(older)
    assert record.looks[0].claims == {} and record.looks[0].runs == 0 and record.looks[0].confidence is None
    assert record.schema == looks.SCHEMA and record.stopped


@pytest.mark.parametrize("broken", [{}, {"design": {}, "looks": []}, {"design": WRITTEN["design"], "looks": [{}]},
                                    {"design": WRITTEN["design"], "looks": "none"}])  # fmt: skip
def test_a_file_that_is_not_a_sequence_is_one_value_error(broken: dict) -> None:
    with pytest.raises(ValueError, match="not a sequence record"):
        looks.Sequence.from_record(broken)
