"""W&B tracking through real offline runs, read back from the run files wandb writes (run-<id>.wandb)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nin.errors import InputError
from nin.tracking import NullTracker, WandbTracker, make_tracker, resolve_mode
from nin.variant import Variant
from reports.wandb_report import log_report
from tests.conftest import REPO
from tests.wandb_records import offline_runs

VARIANT = Variant(dataset="synthetic", arch="cifar", width=0.125)
PROFILE = {"params": 12_345, "trainable_params": 12_345, "macs": 678_900, "flops": 1_357_800, "input_shape": (1, 32)}
FAKE_KEY = "fake0key0for0tests0" + "9" * 21  # 40 characters, the length wandb expects
# A failed online init leaves its run id "in use" for the rest of the process (wandb 0.31): online tests take their own.
UNREACHABLE_VARIANT = VARIANT.model_copy(update={"seed": 7})


def epoch(n: int, **extra: float) -> dict:
    return dict(
        epoch=n, train_loss=2.0 / n, train_acc=0.3 * n, test_loss=2.2 / n, test_acc=0.25 * n,
        lr=0.1, epoch_seconds=1.5, images_per_s=640.0, **extra,
    )  # fmt: skip


def result(status: str = "ok", **overrides) -> dict:
    return dict(
        variant_id=VARIANT.id, status=status, error=None, axes={"head": "gap", "cccp": 2, "dropout": True},
        params=12_345, macs=678_900, flops=1_357_800, epochs_done=2, train_acc=0.6, test_acc=0.5, train_loss=1.0,
        test_loss=1.1, gap_acc=0.1, gap_loss=0.1, best_test_acc=0.5, train_seconds=3.0, images_per_s=640.0, mfu=None,
        device="cpu", versions={"torch": "2.14.1", "cuda": None},
    ) | overrides  # fmt: skip


# ---- per-variant runs ------------------------------------------------------------------------------------------------
def test_offline_run_has_config_epochs_summary_group_and_job_type(tmp_path: Path) -> None:
    tracker = make_tracker("offline", tmp_path, group="quick")  # explicit mode beats the suite's WANDB_MODE=disabled
    assert isinstance(tracker, WandbTracker)
    tracker.start(VARIANT, PROFILE, resumed=False)
    tracker.log_epoch(epoch(1))
    tracker.log_epoch(epoch(2, eval_train_loss=0.9, eval_train_acc=0.7, gap_acc=0.2, gap_loss=0.3))
    tracker.finish(result())

    (run,) = offline_runs(tmp_path)
    assert (run.run.run_id, run.run.display_name) == (VARIANT.id, VARIANT.id)
    assert (run.run.run_group, run.run.job_type, run.run.project) == ("quick", "train", "nin-ablate")
    assert list(run.run.tags) == ["ok"] and run.exit_code == 0

    for field, value in VARIANT.config().items():
        assert run.config[field] == value, field
    assert {k: run.config[k] for k in ("params", "trainable_params", "macs", "flops")} == {
        "params": 12_345, "trainable_params": 12_345, "macs": 678_900, "flops": 1_357_800,
    }  # fmt: skip
    assert (run.config["variant_id"], run.config["group_id"]) == (VARIANT.id, VARIANT.group_id)
    assert "input_shape" not in run.config

    rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in run.history]
    assert rows[0] == {
        "epoch": 1, "train/loss": 2.0, "train/acc": 0.3, "test/loss": 2.2, "test/acc": 0.25,
        "lr": 0.1, "epoch_seconds": 1.5, "images_per_s": 640.0,
    }  # fmt: skip
    assert rows[1]["epoch"] == 2 and rows[1]["test/acc"] == 0.5
    assert (rows[1]["gap/acc"], rows[1]["gap/loss"]) == (0.2, 0.3)
    assert (rows[1]["train_eval/loss"], rows[1]["train_eval/acc"]) == (0.9, 0.7)
    assert [row["_step"] for row in run.history] == [1, 2]  # step = epoch, so a resumed run stays in order

    assert run.summary["status"] == "ok" and run.summary["test_acc"] == 0.5 and run.summary["best_test_acc"] == 0.5
    assert run.summary["versions/torch"] == "2.14.1" and run.summary["axes/head"] == "gap"
    assert run.summary["test/acc"] == 0.5  # the last epoch's values stay in the summary too


def test_resumed_variant_continues_the_same_run(tmp_path: Path) -> None:
    first = make_tracker("offline", tmp_path, group="quick")
    first.start(VARIANT, PROFILE, resumed=False)
    first.log_epoch(epoch(1))
    first.finish(result("failed", error="killed"))

    second = make_tracker("offline", tmp_path, group="quick")
    second.start(VARIANT, PROFILE, resumed=True)
    second.log_epoch(epoch(2))
    second.finish(result())

    runs = offline_runs(tmp_path)
    assert len(runs) == 2  # one file per process session; `wandb sync` uploads both into the one run id
    assert {run.run.run_id for run in runs} == {VARIANT.id}
    resumed = [run for run in runs if run.run.resume]
    assert len(resumed) == 1 and [row["epoch"] for row in resumed[0].history] == [2]
    assert list(resumed[0].run.tags) == ["ok"] and resumed[0].exit_code == 0
    (killed,) = [run for run in runs if not run.run.resume]
    assert list(killed.run.tags) == ["failed"] and killed.exit_code == 1


def test_one_tracker_tracks_variant_after_variant(tmp_path: Path) -> None:
    other = Variant(dataset="synthetic", arch="cifar", width=0.125, seed=1)
    tracker = make_tracker("offline", tmp_path, group="quick")
    for variant in (VARIANT, other):
        tracker.start(variant, PROFILE, resumed=False)
        tracker.log_epoch(epoch(1))
        tracker.finish(result(variant_id=variant.id))
    assert sorted(run.run.run_id for run in offline_runs(tmp_path)) == sorted([VARIANT.id, other.id])


# ---- failure never propagates ----------------------------------------------------------------------------------------
def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("nin-ablate: W&B")]


def test_init_failure_is_one_warning_and_calls_keep_working(tmp_path, monkeypatch, capsys) -> None:
    import wandb

    def refuse(*args, **kwargs):
        raise ConnectionError("server unreachable\nsecond line of detail")

    monkeypatch.setattr(wandb, "init", refuse)
    tracker = make_tracker("offline", tmp_path, group="quick")
    tracker.start(VARIANT, PROFILE, resumed=False)
    tracker.log_epoch(epoch(1))
    tracker.finish(result())
    stderr = capsys.readouterr().err
    assert stderr.splitlines() == [
        f"nin-ablate: W&B tracking off for {VARIANT.id}: ConnectionError: server unreachable; training continues"
    ]


def test_log_failure_turns_tracking_off_and_closes_the_run_as_failed(tmp_path, capsys) -> None:
    tracker = make_tracker("offline", tmp_path, group="quick")
    tracker.start(VARIANT, PROFILE, resumed=False)
    tracker.log_epoch(epoch(1))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    tracker._run.log = broken
    tracker.log_epoch(epoch(2))
    tracker.log_epoch(epoch(3))
    tracker.finish(result())
    assert _warnings(capsys.readouterr().err) == [
        f"nin-ablate: W&B tracking off for {VARIANT.id}: OSError: disk full; training continues"
    ]
    (run,) = offline_runs(tmp_path)
    assert run.exit_code == 1 and [row["epoch"] for row in run.history] == [1]


def test_online_without_reachable_server_costs_seconds_and_leaks_no_key(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    tracker = make_tracker("online", tmp_path / "grid", group="quick", init_timeout=2)
    began = time.monotonic()
    tracker.start(UNREACHABLE_VARIANT, PROFILE, resumed=False)
    assert time.monotonic() - began < 30
    tracker.log_epoch(epoch(1))
    tracker.finish(result())
    (line,) = _warnings(capsys.readouterr().err)
    assert line.startswith(f"nin-ablate: W&B tracking off for {UNREACHABLE_VARIANT.id}: CommError: ")
    assert line.endswith("; training continues")
    assert_key_absent(tmp_path)


def run_on_terminal(script: str, env: dict[str, str], timeout: float = 30) -> tuple[int | None, str]:
    """Run python -c script with stdin and stderr on a pseudo-terminal, as a user at a shell would."""
    import pty
    import select

    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", script], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    if process.poll() is None:  # still waiting for an answer at the prompt
        process.kill()
    process.wait()
    os.close(master)
    return process.returncode, output.decode(errors="replace")


def test_online_without_credentials_warns_instead_of_prompting(tmp_path: Path) -> None:
    script = f"""
from pathlib import Path
from nin.tracking import make_tracker
from nin.variant import Variant
tracker = make_tracker("online", Path({str(tmp_path / "grid")!r}), group="quick")
tracker.start(Variant(dataset="synthetic", arch="cifar", width=0.125), {{"params": 1}}, resumed=False)
tracker.finish({{"status": "ok"}})
print("finished")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        PYTHONPATH=str(REPO), HOME=str(tmp_path), NETRC=str(tmp_path / "no-netrc"), TERM="xterm",
        WANDB_CONFIG_DIR=str(tmp_path / "config"), WANDB_BASE_URL="http://127.0.0.1:9",
    )  # fmt: skip
    code, output = run_on_terminal(script, env)
    assert code == 0, output
    lines = output.replace("\r", "").splitlines()
    assert _warnings(output) == [
        f"nin-ablate: W&B tracking off for {VARIANT.id}: UsageError: No API key configured. "
        "Use `wandb login` to log in; training continues"
    ], output
    assert lines[-1] == "finished"


# ---- disabled, modes, environment ------------------------------------------------------------------------------------
def test_disabled_imports_no_wandb_and_creates_nothing(tmp_path: Path) -> None:
    script = f"""
import sys
from pathlib import Path
from nin.tracking import make_tracker
from nin.variant import Variant
from reports.wandb_report import log_report
out = Path({str(tmp_path / "out")!r})
tracker = make_tracker("disabled", out, group="quick")
variant = Variant(dataset="synthetic", arch="cifar", width=0.125)
tracker.start(variant, {{"params": 1, "macs": 1, "flops": 2}}, resumed=False)
tracker.log_epoch({{"epoch": 1, "test_acc": 0.5}})
tracker.finish({{"status": "ok"}})
log_report(out / "report", "quick", "disabled", out, {{"results": out / "results.csv"}}, {{}})
print(type(tracker).__name__, "wandb" in sys.modules, "torch" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}  # the explicit mode wins over the env
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["NullTracker", "False", "False"]
    assert done.stderr == "" and not (tmp_path / "out").exists()


def test_mode_resolution(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert isinstance(make_tracker(None, tmp_path, group="g"), NullTracker)
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode(None) == "offline"
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_mode(None) == "offline" and resolve_mode("Online") == "online"
    with pytest.raises(InputError, match=r"^--wandb 'ofline' is not a W&B mode: use offline, online or disabled$"):
        make_tracker("ofline", tmp_path, group="g")
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(InputError, match=r"^WANDB_MODE 'sometimes'"):
        resolve_mode(None)


def test_flags_win_and_wandb_env_fills_the_rest(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "env-dir"))
    tracker = make_tracker("offline", tmp_path / "grid", group="quick", project="from-flag")
    assert tracker.target.project == "from-flag" and tracker.target.dir == tmp_path / "env-dir"
    assert make_tracker("offline", tmp_path, group="quick").target.project == "from-env"
    tracker.start(VARIANT, PROFILE, resumed=False)
    tracker.finish(result())
    (run,) = offline_runs(tmp_path / "env-dir")
    assert run.run.project == "from-flag" and not (tmp_path / "grid").exists()


def test_api_key_never_written(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    tracker = make_tracker("offline", tmp_path, group="quick")
    tracker.start(VARIANT, PROFILE, resumed=False)
    tracker.log_epoch(epoch(1))
    tracker.finish(result())
    tables, plots = report_inputs(tmp_path / "report")
    log_report(tmp_path / "report", "quick", "offline", tmp_path, tables, plots)
    assert len(offline_runs(tmp_path)) == 2
    assert_key_absent(tmp_path)


def assert_key_absent(root: Path) -> None:
    files = [path for path in root.rglob("*") if path.is_file()]
    assert files
    leaked = [str(path) for path in files if FAKE_KEY.encode() in path.read_bytes()]
    assert leaked == []


# ---- the report run --------------------------------------------------------------------------------------------------
def report_inputs(report_dir: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    from PIL import Image

    (report_dir / "plots").mkdir(parents=True)
    tables = {}
    for name, frame in {
        "results": pd.DataFrame({"variant_id": [VARIANT.id], "head": ["gap"], "test_acc": [0.5]}),
        "summary": pd.DataFrame({"head": ["gap", "fc"], "test_acc_mean": [0.5, 0.4]}),
        "effects": pd.DataFrame({"axis": ["head"], "effect": [0.1], "ci_low": [0.05], "ci_high": [0.15]}),
    }.items():
        tables[name] = report_dir / f"{name}.csv"
        frame.to_csv(tables[name], index=False)
    plots = {"test_acc": report_dir / "plots" / "test_acc.png"}
    Image.new("RGB", (16, 12), "navy").save(plots["test_acc"])
    return tables, plots


def test_report_run_holds_tables_and_images(tmp_path: Path, capsys) -> None:
    tables, plots = report_inputs(tmp_path / "report")
    log_report(tmp_path / "report", "quick", "offline", tmp_path, tables, plots, project="reports-here")
    assert _warnings(capsys.readouterr().err) == []

    (run,) = offline_runs(tmp_path)
    assert (run.run.job_type, run.run.run_group, run.run.project) == ("report", "quick", "reports-here")
    assert run.run.display_name == "quick-report" and run.exit_code == 0
    (row,) = run.history
    for name in ("results", "summary", "effects"):
        table = row[f"tables/{name}"]
        assert table["_type"] == "table-file" and table["nrows"] == len(pd.read_csv(tables[name]))
        stored = json.loads((run.dir / "files" / table["path"]).read_text())
        assert stored["columns"] == list(pd.read_csv(tables[name]).columns)
    assert row["tables/results"]["ncols"] == 3
    image = row["plots/test_acc"]
    assert image["_type"] == "image-file" and (image["width"], image["height"]) == (16, 12)
    assert (run.dir / "files" / image["path"]).is_file()


def test_report_failure_is_one_warning(tmp_path: Path, capsys) -> None:
    tables, plots = report_inputs(tmp_path / "report")
    log_report(tmp_path / "report", "quick", "offline", tmp_path, {"missing": tmp_path / "nope.csv"}, plots)
    (line,) = _warnings(capsys.readouterr().err)
    assert line.startswith("nin-ablate: W&B report logging off for quick: FileNotFoundError: ")
    (run,) = offline_runs(tmp_path)
    assert run.exit_code == 1


# ---- through the trainer ---------------------------------------------------------------------------------------------
TINY_TRAINING = dict(dataset="synthetic", arch="cifar", width=0.125, head="fc", batch_size=50, epochs=3, train_size=200)


class InterruptAfter(WandbTracker):
    """The real tracker, with a Ctrl-C after the given epoch."""

    def __init__(self, tracker: WandbTracker, epoch: int) -> None:
        super().__init__(tracker.target)
        self.stop_after = epoch

    def log_epoch(self, metrics: dict) -> None:
        super().log_epoch(metrics)
        if metrics["epoch"] == self.stop_after:
            raise KeyboardInterrupt


def test_trained_and_resumed_variant_is_one_run_matching_its_files(tmp_path: Path) -> None:
    from nin import layout
    from nin.train import train

    variant = Variant(**TINY_TRAINING)
    run_dir = tmp_path / "runs" / variant.id
    tracker = InterruptAfter(make_tracker("offline", tmp_path, group="quick"), epoch=2)
    with pytest.raises(KeyboardInterrupt):
        train(variant, run_dir, device="cpu", progress=False, tracker=tracker, log=lambda *_: None)
    result = train(variant, run_dir, device="cpu", progress=False, tracker=tracker, log=lambda *_: None)

    interrupted, resumed = offline_runs(tmp_path)
    assert interrupted.run.run_id == resumed.run.run_id == variant.id and resumed.run.resume
    assert interrupted.exit_code == 1 and resumed.exit_code == 0 and list(resumed.run.tags) == ["ok"]
    metrics = [json.loads(line) for line in (run_dir / layout.METRICS_FILE).read_text().splitlines()]
    logged = interrupted.history + resumed.history
    assert [row["epoch"] for row in logged] == [row["epoch"] for row in metrics] == [1, 2, 3]
    for row, line in zip(logged, metrics):
        assert row["test/acc"] == line["test_acc"] and row["train/loss"] == line["train_loss"]
    assert logged[-1]["gap/acc"] == metrics[-1]["gap_acc"]
    assert resumed.config["params"] == result["params"] and resumed.config["variant_id"] == variant.id
    written = json.loads((run_dir / layout.RESULT_FILE).read_text())
    for key in ("test_acc", "train_acc", "gap_acc", "best_test_acc", "epochs_done", "params", "macs"):
        assert resumed.summary[key] == written[key], key
