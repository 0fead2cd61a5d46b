"""What one Slurm array element runs (`--executor slurm`, runners.slurm submits it): its variants with run_variant.

Torch-free at import: submitit unpickles this call before it installs its signal handler, and a time-limit signal
that arrives while torch is still importing would kill the job instead of requeueing it. Everything heavy is
imported inside the call, after the handlers are in place.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class SlurmTask:
    """Pickled by submitit: the runner's RunContext as a dict of plain values, and the devices of one job."""

    context: dict[str, Any]  # runners.worker.RunContext's fields
    devices: tuple[str, ...]

    def __call__(self, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        requeue = signal.getsignal(signal.SIGUSR2)  # submitit's: checkpoint (self.checkpoint), requeue, exit
        caught: list[Any] = []
        stopping: list[bool] = []

        def stop(signum: int, frame: Any) -> None:
            stopping.append(True)
            if "nin.train" in sys.modules:  # training stops once the epoch in flight is checkpointed
                sys.modules["nin.train"].request_stop()

        def stop_and_requeue(signum: int, frame: Any) -> None:
            caught.append((signum, frame))
            stop(signum, frame)

        signal.signal(signal.SIGUSR2, stop_and_requeue)
        # scancel (and a preemption that requeues by itself) sends SIGTERM, then SIGKILL after KillWait: stop after
        # the epoch in flight, without requeueing. submitit would ignore it and let SIGKILL lose the epoch.
        signal.signal(signal.SIGTERM, stop)

        import torch

        from nin import train
        from nin.variant import Variant
        from runners.executor import run_local
        from runners.worker import RunContext

        if stopping:  # a signal came while torch was importing
            train.request_stop()
        variants = [Variant.model_validate(c) for c in configs]
        devices = [torch.device(d) for d in self.devices][: len(variants)]
        if len(devices) > 1:  # workers in processes: stopped at once, each keeps its last epoch's checkpoint

            def stop_workers(signum: int, frame: Any) -> None:
                caught.append((signum, frame))
                raise train.StopAfterEpoch("stopping the workers")

            signal.signal(signal.SIGUSR2, stop_workers)
        context = RunContext(**self.context)
        cpus = len(os.sched_getaffinity(0))
        threads = context.cpu_threads or max(1, cpus // max(1, sum(d.type == "cpu" for d in devices)))
        context = replace(context, cpu_threads=threads, progress=False)
        results: list[dict[str, Any]] = []
        with contextlib.suppress(train.StopAfterEpoch):
            run_local(variants, context, devices, results.append)
        if caught and len(results) < len(variants) and callable(requeue):
            print(f"nin-ablate: {len(variants) - len(results)} variant(s) checkpointed; requeueing", flush=True)
            wandb = sys.modules.get("wandb")
            if wandb is not None:  # the requeue SIGTERMs the whole step, W&B's service too: flush this part first
                with contextlib.suppress(Exception):
                    wandb.teardown(exit_code=1)
            requeue(*caught[0])  # exits the process
        return results

    def checkpoint(self, configs: list[dict[str, Any]]) -> Any:
        """submitit's hook on its signal: the same call again, which resumes every variant from its checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, configs)
