"""Grids: spec parsing and validation (with --set overrides), executors (local, ray), resume, the runner lock and the
`nin-ablate` CLI. The results directory itself belongs to nin.layout."""

# Exit codes of every nin-ablate command: diverged runs are results (0); failed runs 1; bad input 2; Ctrl-C 130.
EXIT_OK, EXIT_FAILED_RUNS, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
