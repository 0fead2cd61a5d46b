"""`--executor slurm`: every variant still to train goes to a Slurm cluster as job arrays, through submitit.

The runner (on a login node) submits, then watches the jobs with squeue and sinfo alone: no accounting is needed, and a
job that is gone without a result is known within two polls. Each job trains its variants with run_variant into the
grid's directory, which the cluster's nodes must share; result.json is the only answer the runner reads.

- Arrays respect the cluster's MaxArraySize and MaxJobCount (scontrol show config), or `max_submit_jobs`.
- Which job trains which variant is kept in OUT/<grid>/slurm/jobs.json: a later run (after Ctrl-C, or from another
  login) collects jobs still queued instead of submitting them again.
- Before its time limit (submitit's --signal=USR2@signal_delay_s) or on preemption, a job finishes and checkpoints
  the epoch in flight, then requeues itself (submitit's handler); the requeued job resumes from that checkpoint.
- A job that ends without a result (cancelled, node failure, out of memory, over its time limit) becomes a failed
  result.json naming the Slurm state and reason, marked `slurm`, which the next run replaces by training it again.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nin import store
from nin.errors import InputError
from nin.layout import LOST_JOB_KEY, GridDir, read_result
from runners.slurm_job import SlurmTask

SLURM_DIR = "slurm"  # OUT/<grid>/slurm/: jobs.json and the jobs' logs (logs/<job id>_0_log.out)
JOBS_FILE = "jobs.json"
# What stops a runner on a login node: Ctrl-C, `kill`, the SSH session closing. None may land between sbatch's answer
# and jobs.json: a job submitted but not recorded would be submitted again, and two jobs would train one variant.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
COMMAND_TIMEOUT_S = 60.0  # one squeue/scontrol call; a controller that does not answer in this long is down
# Slurm's end states and what they mean for the user; any other state is still queued or running.
ENDED = {
    "CANCELLED": "cancelled",
    "NODE_FAIL": "node failure",
    "OUT_OF_MEMORY": "out of memory",
    "TIMEOUT": "over its time limit",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "node failure",
    "DEADLINE": "over its deadline",
    "FAILED": "failed",
    "COMPLETED": "completed",
    "SPECIAL_EXIT": "failed",
    "REVOKED": "revoked",
}
NODE_DOWN = ("down", "fail", "not_responding", "drain", "unknown")  # sinfo states of a node that runs nothing


class SlurmSettings(BaseModel):
    """The job's resources, by the names Hydra's submitit launcher uses. Never part of a variant id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_min: int = Field(60, ge=1, description="each job's time limit; a job requeues itself before it")
    partition: str | None = None
    gpus_per_node: int | None = Field(None, ge=0, description="default: the GPUs --device lists")
    cpus_per_task: int | None = Field(None, ge=1, description="default: --cpu-threads (1) per device")
    mem_gb: float | None = Field(None, gt=0)
    array_parallelism: int = Field(256, ge=1, description="jobs of one array running at once")
    additional_parameters: dict[str, Any] = Field(default_factory=dict, description="sbatch flags, e.g. {qos: high}")
    setup: list[str] = Field(default_factory=list, description="shell lines run before each job")
    signal_delay_s: int = Field(90, ge=1, description="the checkpoint signal comes this long before the time limit")
    max_num_timeout: int = Field(3, ge=0, description="time-limit requeues per job (preemptions are not counted)")
    max_submit_jobs: int | None = Field(None, ge=1, description="jobs in the queue at once (default MaxJobCount)")
    poll_s: float = Field(10.0, gt=0, description="seconds between two looks at squeue")


def load_settings(pairs: Sequence[str] = (), config: str | Path | None = None) -> SlurmSettings:
    """--slurm-config FILE (a YAML mapping), then --slurm KEY=VALUE flags (YAML values) over it; or one line."""
    values: dict[str, Any] = {}
    if config is not None:
        try:
            loaded = yaml.safe_load(Path(config).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"--slurm-config {config}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise InputError(f"--slurm-config {config}: expected a mapping such as 'timeout_min: 120'")
        values.update(loaded or {})
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--slurm {pair!r}: use KEY=VALUE, e.g. --slurm timeout_min=120")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            values[key.strip()] = text
    try:
        return SlurmSettings(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        known = ", ".join(SlurmSettings.model_fields)
        hint = f" (settings: {known})" if error["type"] == "extra_forbidden" else ""
        raise InputError(f"Slurm setting {where}: {error['msg']}{hint}") from None


def job_devices(spec: str, settings: SlurmSettings) -> list[Any]:
    """What each job trains on, from --device as the job sees its node: cpu, cuda (gpus_per_node GPUs, default 1),
    cuda:0,cuda:1 (that many GPUs, a worker each) or cpu,cpu (that many CPU workers); auto is cuda when
    gpus_per_node asks for GPUs, else cpu. The login node needs no GPU."""
    import torch

    if spec == "auto":
        spec = "cuda" if settings.gpus_per_node else "cpu"
    if spec == "cuda":
        return [torch.device("cuda", i) for i in range(settings.gpus_per_node or 1)]
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    devices = []
    for part in parts:
        try:
            device = torch.device(part)
        except RuntimeError:
            raise InputError(f"--device {part!r}: use cpu, cuda or cuda:N with --executor slurm") from None
        if device.type not in ("cpu", "cuda"):
            raise InputError(f"--device {part!r}: use cpu, cuda or cuda:N with --executor slurm")
        devices.append(device)
    if not devices:
        raise InputError("--device is empty: use auto, cpu, cuda or a list such as cuda:0,cuda:1")
    if len({d for d in devices if d.type == "cuda"}) != sum(d.type == "cuda" for d in devices):
        raise InputError(f"--device {spec} lists a GPU twice: one worker per GPU")
    # Slurm numbers the GPUs it grants from 0 in each job: cuda:2,cuda:3 asks for two GPUs, used as cuda:0,cuda:1.
    gpus = iter(range(len(devices)))
    return [torch.device("cuda", next(gpus)) if d.type == "cuda" else d for d in devices]


# --- the cluster, seen through its client commands -------------------------------------------------------------


class SlurmUnavailable(InputError):
    """The Slurm commands are missing or the controller does not answer."""


def _command(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise SlurmUnavailable(f"{args[0]} is not installed here: run from a Slurm login node") from None
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(f"'{' '.join(args[:2])}' got no answer in {COMMAND_TIMEOUT_S:.0f} s") from None
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.returncode}"]
        raise SlurmUnavailable(f"'{' '.join(args[:3])}' failed: {lines[-1]}")
    return done.stdout


@dataclass(frozen=True)
class Limits:
    max_array_size: int  # an array's indices run from 0 to MaxArraySize - 1
    max_jobs: int  # jobs in the queue at once


def cluster_limits(settings: SlurmSettings) -> Limits:
    config = {}
    for line in _command("scontrol", "show", "config").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    max_jobs = settings.max_submit_jobs or _int(config.get("MaxJobCount"), 10000)
    return Limits(max(1, _int(config.get("MaxArraySize"), 1001)), max(1, max_jobs))


def _int(text: str | None, default: int) -> int:
    try:
        return int(str(text).split()[0])
    except (ValueError, IndexError):
        return default


def check(settings: SlurmSettings) -> Limits:
    """Everything about the cluster that can be wrong before the first byte is written: commands, controller,
    partition. Returns the cluster's array limits."""
    if shutil.which("sbatch") is None:
        raise SlurmUnavailable("sbatch is not installed here: run --executor slurm from a Slurm login node")
    limits = cluster_limits(settings)
    if settings.partition is not None:
        known = [p.strip().rstrip("*") for p in _command("sinfo", "-h", "-o", "%P").split()]
        if settings.partition not in known:
            raise InputError(f"Slurm partition {settings.partition!r} does not exist: use one of "
                             f"{', '.join(sorted(set(known))) or '(none)'} (sinfo lists them)")  # fmt: skip
    return limits


@dataclass(frozen=True)
class JobState:
    state: str  # RUNNING, PENDING, COMPLETED, ... as squeue names it
    reason: str
    node: str


def queue_states(job_ids: Sequence[str]) -> dict[str, JobState]:
    """squeue's view of these jobs (array elements one by one, ended jobs while the controller keeps them)."""
    if not job_ids:
        return {}
    arrays = sorted({job.split("_")[0] for job in job_ids})
    out = _command("squeue", "-h", "-r", "-t", "all", "-j", ",".join(arrays), "-o", "%i|%T|%r|%N")
    states = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            states[parts[0]] = JobState(parts[1], parts[2], parts[3])
    return states


def down_nodes() -> set[str]:
    """Nodes that run nothing now: down, failing, drained, or not answering (sinfo's '*')."""
    down = set()
    for line in _command("sinfo", "-h", "-N", "-o", "%N|%T|%t").splitlines():
        name, _, states = line.strip().partition("|")
        long, _, short = states.partition("|")
        if short.endswith("*") or any(word in long.lower() for word in NODE_DOWN):
            down.add(name)
    return down


def scancel(job_ids: Sequence[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)


# --- the runner -------------------------------------------------------------------------------------------------


def repo_root() -> Path:
    """The folder the runner imported `runners` from: put first on the jobs' path so they run this very code."""
    return Path(__file__).resolve().parent.parent


def forget_lost(grid_dir: GridDir) -> list[str]:
    """Remove the failed results of jobs Slurm lost, in the grid and its tuning runs, so that this run trains them
    again (from their checkpoints), and their jobs from jobs.json: such a job was cancelled, but may still be
    completing (its node just back), and must not be collected. Returns their variant ids."""
    forgotten = []
    for layout in (grid_dir, grid_dir.tuning):
        lost = [variant_id for variant_id in layout.finished_ids() if layout.is_lost_job(variant_id)]
        book = JobBook(layout.root / SLURM_DIR)
        if any(variant_id in book.jobs for variant_id in lost):
            book.jobs = {vid: job for vid, job in book.jobs.items() if vid not in lost}
            book.save()
        for variant_id in lost:
            layout.result_path(variant_id).unlink(missing_ok=True)
        forgotten.extend(lost)
    return forgotten


def refuse_live_jobs(grid_dir: GridDir) -> None:
    """Another executor must not train a variant that a Slurm job an earlier run submitted is still training: one
    line naming the jobs. Silent where no job was ever submitted, or where Slurm cannot be asked."""
    for layout in (grid_dir, grid_dir.tuning):
        book = JobBook(layout.root / SLURM_DIR)
        open_jobs = sorted({job for vid, job in book.jobs.items() if not layout.is_finished(vid)})
        if not open_jobs:
            continue
        try:
            states = queue_states(open_jobs)
        except SlurmUnavailable:
            return
        live = [job for job in open_jobs if job in states and states[job].state not in ENDED]
        if live:
            raise InputError(
                f"{len(live)} Slurm job(s) an earlier run submitted still train runs of {grid_dir.root} "
                f"({', '.join(live[:4])}{' ...' if len(live) > 4 else ''}): add --executor slurm to collect them, "
                f"or scancel them first"
            )


class JobBook:
    """OUT/<grid>/slurm/jobs.json: the job that trains each variant, so that no variant is ever submitted twice."""

    def __init__(self, folder: Path):
        self.path = folder / JOBS_FILE
        self.jobs: dict[str, str] = {}
        try:
            self.jobs = {str(k): str(v) for k, v in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            pass

    def save(self) -> None:
        store.write_json(self.path, self.jobs)


def run_slurm(
    variants: Sequence[Any],
    context: Any,
    devices: Sequence[Any],
    on_result: Any,
    settings: SlurmSettings,
) -> None:
    """Train `variants` as Slurm jobs (one per len(devices) variants), calling on_result as each result appears.

    Ctrl-C leaves the jobs queued: a later run of the same grid collects them."""
    from tqdm.auto import tqdm

    grid = GridDir(Path(context.grid_dir))
    folder = grid.root / SLURM_DIR
    book = JobBook(folder)
    limits = cluster_limits(settings)
    by_id = {v.id: v for v in variants}
    # Jobs an earlier runner left in the queue keep their variants: they are collected, not submitted again.
    earlier = {vid: book.jobs[vid] for vid in by_id if vid in book.jobs}
    live = queue_states(sorted(set(earlier.values())))
    waiting = {vid: job for vid, job in earlier.items() if job in live and live[job].state not in ENDED}
    to_submit = [v for v in variants if v.id not in waiting]
    if waiting:
        print(f"{context.grid_name}: collecting {len(waiting)} run(s) from Slurm jobs an earlier run left queued "
              f"({', '.join(sorted(set(waiting.values()))[:4])}{' ...' if len(set(waiting.values())) > 4 else ''})",
              flush=True)  # fmt: skip
    pack = max(1, len(devices))
    task = SlurmTask(asdict(replace(context, progress=False)), tuple(str(d) for d in devices))
    executor = _executor(folder, settings, devices, context)
    suspects: dict[str, int] = {}  # job -> polls in a row it looked lost
    with tqdm(total=len(variants), desc="slurm jobs", unit="run", position=1, leave=False, dynamic_ncols=True,
              disable=None if context.progress else True) as bar:  # fmt: skip
        try:
            while waiting or to_submit:
                room = limits.max_jobs - len(set(waiting.values()))
                if to_submit and room > 0:
                    batch, to_submit = to_submit[: room * pack], to_submit[room * pack :]
                    waiting.update(_submit(executor, task, batch, pack, limits, book))
                states = queue_states(sorted(set(waiting.values())))
                down = down_nodes() if waiting else set()
                lost = {job: _lost(states.get(job), down) for job in set(waiting.values())}
                for job, why in lost.items():
                    suspects[job] = suspects.get(job, 0) + 1 if why else 0
                for vid, job in list(waiting.items()):
                    if grid.is_finished(vid):
                        on_result(read_result(grid.result_path(vid)))
                        del waiting[vid]
                        bar.update(1)
                    elif lost[job] and suspects[job] >= 2:  # two polls: a result written between squeue and our look
                        scancel([job])  # a job on a lost node must not come back and train after its result
                        on_result(_write_lost(grid, by_id[vid], job, lost[job], context))
                        del waiting[vid]
                        bar.update(1)
                counts: dict[str, int] = {}
                for job in set(waiting.values()):
                    state = states[job].state.lower() if job in states else "submitted"
                    counts[state] = counts.get(state, 0) + 1
                bar.set_postfix_str(", ".join(f"{n} {s}" for s, n in sorted(counts.items())), refresh=True)
                if waiting or to_submit:
                    time.sleep(settings.poll_s)
        except KeyboardInterrupt:
            queued = sorted({book.jobs[vid] for vid in by_id if vid in book.jobs and not grid.is_finished(vid)}
                            | set(waiting.values()))  # fmt: skip
            if queued:
                print(f"nin-ablate: {len(queued)} Slurm job(s) stay queued ({', '.join(queued[:4])}"
                      f"{' ...' if len(queued) > 4 else ''}); run the same command to collect their results, or "
                      f"scancel {' '.join(sorted({j.split('_')[0] for j in queued}))} to drop them",
                      file=sys.stderr)  # fmt: skip
            raise


def _executor(folder: Path, settings: SlurmSettings, devices: Sequence[Any], context: Any) -> Any:
    try:
        import submitit
    except ImportError:
        raise InputError("--executor slurm needs submitit: pip install submitit") from None
    gpus = sum(d.type == "cuda" for d in devices)
    executor = submitit.SlurmExecutor(folder=folder / "logs", max_num_timeout=settings.max_num_timeout)
    root = repo_root()
    params: dict[str, Any] = dict(
        time=settings.timeout_min,
        job_name=f"nin-{context.grid_name}",
        gpus_per_node=settings.gpus_per_node if settings.gpus_per_node is not None else (gpus or None),
        cpus_per_task=settings.cpus_per_task or (context.cpu_threads or 1) * len(devices),
        array_parallelism=settings.array_parallelism,
        additional_parameters=dict(settings.additional_parameters),
        setup=[f"export PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:$PYTHONPATH}}", *settings.setup],
        signal_delay_s=settings.signal_delay_s,
        stderr_to_stdout=True,
    )
    if settings.partition is not None:
        params["partition"] = settings.partition
    if settings.mem_gb is not None:
        params["mem"] = f"{max(1, round(settings.mem_gb * 1024))}MB"
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def _submit(
    executor: Any, task: SlurmTask, variants: Sequence[Any], pack: int, limits: Limits, book: JobBook
) -> dict[str, str]:
    """Submit `variants` `pack` to a job, in arrays of at most MaxArraySize, each recorded in `book` as soon as
    sbatch answers; returns {variant id: job id}."""
    packs = [list(variants[i : i + pack]) for i in range(0, len(variants), pack)]
    assigned: dict[str, str] = {}
    for start in range(0, len(packs), limits.max_array_size):
        chunk = packs[start : start + limits.max_array_size]
        with stop_signals_held():  # until the array is on record
            try:
                jobs = executor.map_array(task, [[v.config() for v in group] for group in chunk])
            except Exception as exc:  # sbatch refused: one line; what was submitted before stays recorded
                lines = str(exc).strip().splitlines() or [type(exc).__name__]
                raise InputError(f"sbatch refused the jobs: {lines[-1]}") from None
            for group, job in zip(chunk, jobs):
                assigned.update({v.id: str(job.job_id) for v in group})
            book.jobs.update(assigned)
            book.save()
    return assigned


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """STOP_SIGNALS that arrive inside wait until it ends, then act as they would have (Ctrl-C raises, kill ends the
    process). Blocked in this thread, and so in the sbatch it starts, which a Ctrl-C at the terminal would reach too;
    and caught in Python as well: the kernel hands a signal this thread blocks to another (numpy's and torch's thread
    pools), where SIGTERM's default action would end the process at once."""
    held: list[int] = []
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    caught = []
    if threading.current_thread() is threading.main_thread():  # only it may set handlers
        caught = [sig for sig, handler in previous.items() if handler not in (signal.SIG_IGN, None)]
    for sig in caught:
        signal.signal(sig, lambda number, _frame: held.append(number))
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # what was pending reaches the holding handler
        _run_pending_handlers()
        for sig in caught:
            signal.signal(sig, previous[sig])
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)


def _run_pending_handlers() -> None:
    """Nothing: calling a Python function is what makes the interpreter run the handlers of signals just received."""


def _lost(state: JobState | None, down: set[str]) -> str | None:
    """Why a job that has no result yet will never give one, or None while it may still do."""
    if state is None:
        return "UNKNOWN (gone from the queue)"
    if state.state in ENDED:
        return state.state
    if state.node and state.node in down and state.state in ("RUNNING", "COMPLETING", "CONFIGURING"):
        return f"NODE_FAIL (node {state.node} is down or not responding)"
    if state.state == "PENDING" and ("NodeDown" in state.reason or "launch failed" in state.reason.lower()):
        return f"NODE_FAIL ({state.reason})"
    return None


def _write_lost(grid: GridDir, variant: Any, job: str, lost: str, context: Any) -> dict[str, Any]:
    """The failed result.json of a variant whose job ended without one (unless the job wrote one meanwhile)."""
    from nin.results import failed_result, now_iso

    state = lost.split()[0]
    details = _job_details(job)
    reason = details.get("Reason") or ""
    meaning = ENDED.get(state, "node failure" if state == "NODE_FAIL" else "lost")
    message = f"Slurm job {job} ended {lost}: {meaning}" + (f", reason {reason}" if reason and reason != "None" else "")
    message += f"; log: {grid.root / SLURM_DIR / 'logs'}/{job}_0_log.out; the next run trains it again"
    tuned = {key: getattr(variant, key) for key in context.tuned}
    result = failed_result(variant, SlurmJobLost(message), now_iso(), None, run_dir=grid.run_dir(variant.id),
                           tuned=tuned)  # fmt: skip
    result[LOST_JOB_KEY] = {"job_id": job, "state": state, "reason": reason, "meaning": meaning}
    path = grid.result_path(variant.id)
    if path.is_file():  # the job's own result came first
        return read_result(path)
    store.write_json(path, result)
    print(f"{variant.id}: failed: {message}", file=sys.stderr)
    return result


class SlurmJobLost(RuntimeError):
    """A Slurm job ended without writing its variant's result."""


def _job_details(job: str) -> dict[str, str]:
    try:
        text = _command("scontrol", "show", "job", job)
    except SlurmUnavailable:
        return {}
    details = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep:
            details.setdefault(key, value)
    return details
