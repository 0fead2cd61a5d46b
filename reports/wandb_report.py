"""The report as one W&B run (job_type "report") in the grid's group: every table and every plot.

Like the per-variant runs, it never gets in the way: any W&B failure is one warning line and the report on disk
stands. wandb and pandas are imported only when a run is made; nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from nin.tracking import tracking_off, wandb_target


def log_report(
    report_dir: Path,
    grid_name: str,
    mode: str | None,
    wandb_dir: Path,
    tables: dict[str, Path],
    plots: dict[str, Path],
    project: str | None = None,
    entity: str | None = None,
    verdicts: dict[str, str] | None = None,
    spent: dict[str, object] | None = None,
) -> None:
    """Log `tables` (name -> CSV) as wandb.Table under tables/<name> and `plots` (name -> PNG) as wandb.Image
    under plots/<name>, in one run named "<grid>-report", and each claim's verdict word (claim key -> word) as the
    run's summary key verdict/<key>; for a grid grown by --until-resolved, `spent` (judge.sequential.spent: runs
    trained against the fixed design, each claim's resolution seed count) too. Mode "disabled" does nothing and
    imports nothing."""
    target = wandb_target(mode, wandb_dir, grid_name, project, entity)
    if target is None:
        return
    run = None
    try:
        import pandas as pd
        import wandb

        run = target.init(
            wandb,
            name=f"{grid_name}-report",
            job_type="report",
            config={"grid": grid_name, "report_dir": str(report_dir)},
        )
        payload = {f"tables/{name}": wandb.Table(dataframe=pd.read_csv(path)) for name, path in tables.items()}
        payload.update({f"plots/{name}": wandb.Image(str(path)) for name, path in plots.items()})
        run.log(payload)
        run.summary.update({f"verdict/{key}": word for key, word in (verdicts or {}).items()})
        run.summary.update(spent or {})
        run.finish()
    except Exception as error:
        tracking_off(f"W&B report logging off for {grid_name}", error, run, "the report on disk is complete")


def write_and_log_report(grid_root: Path, wandb_mode: str, project: str | None = None, entity: str | None = None,
                         margins: dict[str, float] | None = None):  # fmt: skip
    """Write OUT/<grid>/report/ and log it as the grid's W&B report run; returns reports.Report."""
    from reports import write_report

    report = write_report(grid_root, margins)
    log_report(
        report.html.parent,
        grid_root.name,
        wandb_mode,
        grid_root,
        report.tables,
        report.plots,
        project=project,
        entity=entity,
        verdicts=report.verdicts,
        spent=report.spent,
    )
    return report
