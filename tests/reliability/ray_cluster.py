"""A throwaway Ray cluster on this machine for the multi-node tests: a head with no CPUs and two 1-CPU worker nodes.

The cluster lives in a child process of its own (`python -m tests.reliability.ray_cluster DIR`), never in the test
process: Ray keeps per-process state (its config, the token cache, the driver) that would leak into later tests. The
child prints one JSON line (address, node pids), then obeys lines on stdin: `kill` removes the first worker node
ungracefully (SIGKILL to its raylet and everything under it). When stdin closes, because the test is done or the test
process died, it shuts the whole cluster down.

Everything Ray writes goes under DIR (RAY_TMPDIR; sockets, logs, the current-cluster file), every node binds
127.0.0.1, and every port is free-picked, so several of these can run beside other Ray users on a shared machine.
Token authentication is on, as a cluster user turns it on: RAY_AUTH_MODE=token and the token file named by
RAY_AUTH_TOKEN_PATH, in the environment of every node and of the driver (`cluster_env`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
# A lost node is declared dead after 3 missed 1 s health checks instead of Ray's default ~15 s: the retry of its
# task, and so the test, waits that much less. A raylet that answers late (a loaded machine) still gets 5 s a check.
FAST_NODE_DEATH = {"health_check_period_ms": 1000, "health_check_timeout_ms": 5000, "health_check_failure_threshold": 3}
ENV_MARK = "NIN_ABLATE_TEST_RAY_CLUSTER"  # set in every process a test cluster starts: how leftovers are found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def cluster_env(root: Path) -> dict[str, str]:
    """What every node and every driver of the cluster at `root` needs in its environment."""
    token = root / "auth_token"
    if not token.exists():
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_TMPDIR": str(root),  # Ray's default temp dir and its current-cluster file: ours, not /tmp/ray
        ENV_MARK: str(root),
    }


def marked_pids(root: Path) -> set[int]:
    """Live processes started for the cluster at `root` (they inherit ENV_MARK), the calling process aside."""
    mark = f"{ENV_MARK}={root}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if mark in (entry / "environ").read_bytes().split(b"\0") and _alive(entry):
                found.add(int(entry.name))
    return found


def _alive(proc_dir: Path) -> bool:
    with contextlib.suppress(OSError):
        return (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone, not yet reaped
    return False


@dataclass
class LocalCluster:
    address: str
    env: dict[str, str]
    root: Path
    proc: subprocess.Popen
    node_pids: dict[str, list[int]] = field(default_factory=dict)

    def kill_worker_node(self, timeout: float = 30) -> None:
        """SIGKILL one worker node's raylet and everything it started; returns once they are gone."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("kill\n")
        self.proc.stdin.flush()
        line = _read_line(self.proc, timeout)
        assert line.strip() == "killed", line


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    os.set_blocking(proc.stdout.fileno(), False)
    buffer = ""
    while time.monotonic() < deadline:
        chunk = proc.stdout.readline()
        if chunk:
            buffer += chunk
            if buffer.endswith("\n"):
                return buffer
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.05)
    raise AssertionError(f"the test cluster did not answer in {timeout} s (exit {proc.poll()}): {buffer!r}")


@contextlib.contextmanager
def local_cluster(root: Path, repo: Path, start_timeout: float = 60) -> Iterator[LocalCluster]:
    """Start the cluster in its own process; on the way out, whatever happened, end it and everything it started."""
    env = {**os.environ, **cluster_env(root), "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.ray_cluster", str(root)],
        cwd=repo,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(root / "cluster.log").open("w"),
        text=True,
        start_new_session=True,  # its own process group: the last-resort kill reaches Ray's processes and no other
    )
    try:
        info = json.loads(_read_line(proc, start_timeout))
        yield LocalCluster(info["address"], cluster_env(root), root, proc, info["node_pids"])
    finally:
        _stop(proc, root)


def _stop(proc: subprocess.Popen, root: Path) -> None:
    with contextlib.suppress(OSError):
        proc.stdin.close()  # type: ignore[union-attr]  # the child shuts its cluster down when stdin closes
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    # Whatever the clean shutdown left (or all of it, if the child hung): our process group, then our marked pids.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in marked_pids(root):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _tree(pid: int) -> list[int]:
    """`pid` and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            if entry.name.isdigit():
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def _serve(root: Path) -> None:
    """The child: start the cluster, report it, obey stdin, shut down when stdin closes."""
    from ray.cluster_utils import Cluster

    common = {"node_ip_address": LOOPBACK, "temp_dir": str(root / "ray"), "include_dashboard": False}
    head = {**common, "num_cpus": 0, "gcs_server_port": free_port(), "dashboard_port": free_port(),
            "dashboard_agent_listen_port": free_port(), "_system_config": FAST_NODE_DEATH}  # fmt: skip
    (root / "ray").mkdir(exist_ok=True)
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        workers = [cluster.add_node(num_cpus=1, **common) for _ in range(2)]
        cluster.wait_for_nodes()
        pids = {
            node.unique_id: [p.process.pid for procs in node.all_processes.values() for p in procs]
            for node in cluster.list_all_nodes()
        }
        print(json.dumps({"address": cluster.address, "node_pids": pids}), flush=True)
        for line in sys.stdin:
            if line.strip() == "kill" and workers:
                node = workers.pop(0)
                # A lost machine takes its task processes with it. Ray's remove_node kills the node's own processes
                # only; a task process outlives its raylet for a moment and may still deliver its result, so
                # everything under the node goes in the same sweep.
                tops = [p.process.pid for procs in node.all_processes.values() for p in procs]
                for pid in {pid for top in tops for pid in _tree(top)}:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                cluster.remove_node(node, allow_graceful=False)
                print("killed", flush=True)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]))
