"""Deciding what a results directory shows: its runs as frames, the statistics, the claims and the rule each
claim's words mean, and the sequential design of `run --until-resolved` with the record of its looks.

Below runners/ and reports/: both import it, it imports neither, and it never imports torch (a test checks this).
It decides; its verdicts and looks are typed records, and reports/ says them in words (reports.words).

    load      OUT/<grid> → Results (runs and epochs as pandas frames, the grid's spec, tuning and looks records)
    stats     summaries, paired effects, seed-level differences, t intervals
    verdicts  the claims, their rules (superiority, non-inferiority) and the report's one error budget
    sequential  the planned looks of --until-resolved, their boundaries, and the verdicts of a grown grid
    records   a verdict as a record: its numbers and a reason code (Verdict), the exact GAP head (ExactHead)
    looks     looks.json's one shape: Sequence, Look, ClaimAtLook, Design (as_record / from_record, read)
"""
