"""A throwaway single-node Slurm on this machine: munged, slurmctld and slurmd, each started here and stopped by pid.

Everything lives in one folder: slurm.conf, munge's key and socket, the controller's state, the daemons' logs. Its
ports are free-picked, so it runs beside any other Slurm; clients reach it through SLURM_CONF (`cluster.env`). It
needs root (the daemons and the job's credentials) and Debian's slurmctld, slurmd and munge packages; `missing()`
says in one line why it cannot start here.

The settings make a test cluster quick rather than production-like: no accounting (so no sacct: job state comes
from squeue and scontrol only); a requeued job waits for its credential to expire (cred_expire=5) and the scheduler
looks at pending jobs every second (sched_interval), instead of minutes; a lost slurmd is marked not responding
after one failed ping (every SlurmdTimeout/3, waiting MessageTimeout for the answer) and declared down after
SlurmdTimeout; a finished job stays visible for MinJobAge; the node offers more job slots than the machine has cores.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
NODE = "localhost"
PARTITION = "debug"
CPUS = 4  # job slots: more than the machine's cores is fine (config_overrides), the tests' jobs are tiny
SLURMD_TIMEOUT_S = 6  # a silent slurmd is declared down after this long (Slurm's default is 300 s)
# How long the controller waits for any answer, a ping's included (Slurm's default 10 s): a lost slurmd shows as not
# responding about 6 s after its loss with 3, 13 s with 10. Below 3 a slow answer on a loaded 2-core machine could
# mark a live node not responding, and the runner would fail its jobs.
MESSAGE_TIMEOUT_S = 3
MIN_JOB_AGE_S = 300  # how long a finished job stays in the controller's memory (squeue -t all, scontrol show job)

CONF = """\
ClusterName=nintest
SlurmctldHost={node}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket,cred_expire=5
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout={slurmd_timeout}
MessageTimeout={message_timeout}
MinJobAge={min_job_age}
KillWait=5
InactiveLimit=0
NodeName={node} CPUs={cpus} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def missing() -> str | None:
    """Why a test Slurm cannot start here (one line), or None."""
    if os.geteuid() != 0:
        return "the Slurm tests need root (they start munged, slurmctld and slurmd): run make test as root"
    absent = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None]
    if absent:
        return f"Slurm is not installed ({', '.join(absent)} missing): apt-get install slurmctld slurmd munge"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "the munge user is missing: apt-get install munge"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SlurmCluster:
    root: Path
    env: dict[str, str]  # SLURM_CONF for every client (sbatch, squeue, ...) and for the runner
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """A Slurm client command against this cluster; its stdout."""
        done = subprocess.run(args, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip
        if check and done.returncode:
            raise AssertionError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip()

    def wait_idle(self, timeout: float = 60) -> None:
        """Until the node takes jobs (idle, nothing running); raises with the logs' tails after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.node_state() == "idle" and not self.run("squeue", "-h", check=False).strip():
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited ({proc.returncode}): {self.log_tail()}")
            time.sleep(0.2)
        raise AssertionError(f"the test Slurm node is not idle after {timeout} s ({self.node_state()!r}): "
                             f"{self.log_tail()}")  # fmt: skip

    def cancel_all(self, timeout: float = 60) -> None:
        """Cancel every job on this cluster (the test's own) and wait until the node is idle again."""
        jobs = self.run("squeue", "-h", "-o", "%i", check=False).split()
        if jobs:
            self.run("scancel", *sorted({job.split("_")[0] for job in jobs}), check=False)
        self.wait_idle(timeout)

    def wait_down(self, timeout: float = 60) -> None:
        """Until the controller declares the node down (SlurmdTimeout after its last answer)."""
        deadline = time.monotonic() + timeout
        while "down" not in self.node_state():
            if time.monotonic() > deadline:
                raise AssertionError(f"the test Slurm node is not down after {timeout} s ({self.node_state()!r}): "
                                     f"{self.log_tail()}")  # fmt: skip
            time.sleep(0.2)

    def log_tail(self) -> str:
        tails = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            with contextlib.suppress(OSError):
                tails.append(f"{name}: " + " | ".join((self.root / name).read_text().splitlines()[-5:]))
        return "; ".join(tails)

    def start_slurmd(self) -> None:
        conf = str(self.root / "slurm.conf")
        self.procs["slurmd"] = _spawn(["slurmd", "-D", "-f", conf, "-N", NODE], self.root / "slurmd.out", self.env)

    def job_pids(self) -> list[int]:
        """This cluster's job processes: its slurmstepds (they carry SLURM_CONF from slurmd) and all under them."""
        mark = f"SLURM_CONF={self.env['SLURM_CONF']}".encode()
        children: dict[int, list[int]] = {}
        steps = []
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if not entry.name.isdigit():
                    continue
                pid = int(entry.name)
                children.setdefault(int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(pid)
                if (entry / "comm").read_text().strip() == "slurmstepd" and \
                        mark in (entry / "environ").read_bytes().split(b"\0"):  # fmt: skip
                    steps.append(pid)
        found, todo = [], list(steps)
        while todo:
            found.append(todo.pop())
            todo.extend(children.get(found[-1], []))
        return found

    def lose_node(self) -> None:
        """The node dies: SIGKILL to slurmd and to every job process, as a lost machine takes them all at once."""
        doomed = self.job_pids()
        self.stop("slurmd", signal.SIGKILL)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Stop one daemon this cluster started: `sig`, then SIGKILL after `timeout`."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _spawn(argv: list[str], log: Path, env: dict[str, str], user: str | None = None) -> subprocess.Popen:
    preexec = None
    if user is not None:
        entry = pwd.getpwnam(user)

        def preexec() -> None:  # munged refuses to run as root
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

    return subprocess.Popen(argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, preexec_fn=preexec)  # fmt: skip


@contextlib.contextmanager
def slurm_cluster(cpus: int = CPUS, start_timeout: float = 60) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd in a fresh folder; on the way out, whatever happened, stop each of them by
    pid and remove the folder. The jobs' processes are the daemons' children: slurmd's stop ends them."""
    # Not pytest's tmp_path: munged runs as the munge user, who must reach its folder (tmp_path is root-only).
    root = Path(tempfile.mkdtemp(prefix="nin-slurm-"))
    root.chmod(0o755)
    munge_user = pwd.getpwnam("munge")
    munge_dir = root / "munge"
    munge_dir.mkdir()
    munge_dir.chmod(0o755)  # munged: its socket's folder must be reachable by every client
    for name in ("state", "spool"):
        (root / name).mkdir()
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    for path in (munge_dir, key):
        os.chown(path, munge_user.pw_uid, munge_user.pw_gid)
    conf = root / "slurm.conf"
    conf.write_text(CONF.format(node=NODE, partition=PARTITION, cpus=cpus, root=root, ctld_port=free_port(),
                                slurmd_port=free_port(), slurmd_timeout=SLURMD_TIMEOUT_S,
                                message_timeout=MESSAGE_TIMEOUT_S, min_job_age=MIN_JOB_AGE_S))  # fmt: skip
    cluster = SlurmCluster(root, {"SLURM_CONF": str(conf)})
    try:
        socket_path = munge_dir / "munge.socket"
        cluster.procs["munged"] = _spawn(
            ["munged", "--foreground", f"--socket={socket_path}", f"--key-file={key}",
             f"--pid-file={munge_dir / 'munged.pid'}", f"--seed-file={munge_dir / 'munged.seed'}",
             f"--log-file={root / 'munged.log'}"],
            root / "munged.out", {}, user="munge",
        )  # fmt: skip
        deadline = time.monotonic() + start_timeout
        while not socket_path.exists():
            if cluster.procs["munged"].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"munged did not start: {(root / 'munged.out').read_text(errors='replace')}")
            time.sleep(0.05)
        # -c: a clean start, no state from an earlier controller; -i: ignore a stale state file.
        cluster.procs["slurmctld"] = _spawn(["slurmctld", "-D", "-c", "-i", "-f", str(conf)], root / "slurmctld.out",
                                            cluster.env)  # fmt: skip
        cluster.start_slurmd()
        cluster.wait_idle(max(1.0, deadline - time.monotonic()))
        yield cluster
    finally:
        # A slurmstepd outlives its slurmd by design: the jobs go first, by the pids found under our slurmstepds.
        cluster.lose_node()
        for name in ("slurmctld", "munged"):
            cluster.stop(name)
        shutil.rmtree(root, ignore_errors=True)
