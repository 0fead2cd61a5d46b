"""Executors: train a list of variants on the devices given, calling `on_result` as each one ends.

local: one worker per listed device pulling variants from a shared queue (in-process when there is one device, so
Ctrl-C stops between two steps and only the epoch in flight is lost). ray: one Ray task per variant.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from nin.variant import Variant
from runners.ray_connect import INIT_KWARGS, connect_ray, import_ray, joined_here, release
from runners.worker import RunContext, run_variant

OnResult = Callable[[dict[str, Any]], None]


def run_local(
    variants: Sequence[Variant], context: RunContext, devices: Sequence[torch.device], on_result: OnResult
) -> None:
    if len(devices) == 1:  # each variant sets its threads (context.cpu_threads) and restores them when it ends
        for variant in variants:
            on_result(run_variant(variant, context, devices[0]))
        return
    _run_processes(variants, context, devices, on_result)


def _worker_main(device: str, context: RunContext, tasks, results, threads: int) -> None:
    # One grid bar; per-epoch bars from several workers would interleave. Each variant runs at this worker's share
    # of the cores and restores the thread count after it.
    quiet = replace(context, progress=False, cpu_threads=threads)
    while True:
        try:
            config = tasks.get_nowait()
        except queue.Empty:
            return
        try:
            result = run_variant(Variant.model_validate(config), quiet, torch.device(device))
        except KeyboardInterrupt:
            return
        results.put(result)


def _run_processes(
    variants: Sequence[Variant], context: RunContext, devices: Sequence[torch.device], on_result: OnResult
) -> None:
    spawn = mp.get_context("spawn")  # CUDA cannot be used in forked children
    tasks, results = spawn.Queue(), spawn.Queue()
    for variant in variants:
        tasks.put(variant.config())
    cpu_workers = sum(d.type == "cpu" for d in devices) or 1
    threads = context.cpu_threads or max(1, (os.cpu_count() or 1) // cpu_workers)
    workers = [
        spawn.Process(target=_worker_main, args=(str(d), context, tasks, results, threads), daemon=True)
        for d in devices
    ]
    for worker in workers:
        worker.start()
    received = 0
    try:
        while received < len(variants):
            try:
                on_result(results.get(timeout=1.0))
                received += 1
            except queue.Empty:
                if not any(w.is_alive() for w in workers) and results.empty():
                    break  # a worker died: what it was training has a checkpoint and resumes on the next run
    except KeyboardInterrupt:
        for worker in workers:
            worker.terminate()
        raise
    finally:
        for worker in workers:
            worker.join(timeout=5)


def run_ray(
    variants: Sequence[Variant],
    context: RunContext,
    devices: Sequence[torch.device],
    on_result: OnResult,
    address: str | None = None,
    max_retries: int = 2,
) -> None:
    """One Ray task per variant. Each task writes into context.grid_dir, which must be a path every node sees.

    With an address, the cluster there (joined already by connect_ray, or joined here); without, a local Ray instance
    with one CPU (or GPU) per listed device. A task retried after a lost node finds the variant's result.json
    (written once, atomically) and returns it, or resumes from its checkpoint: a retry never trains a finished
    variant again nor writes a second result.
    """
    ray = import_ray()
    use_gpus = any(d.type == "cuda" for d in devices)
    owned = joined_here() or not ray.is_initialized()  # a session we opened is ours to close; a caller's is not
    if not ray.is_initialized():
        if address:
            connect_ray(address)
        else:
            local: dict[str, Any] = {"num_cpus": max(1, len(devices))}
            if use_gpus:
                local["num_gpus"] = len(devices)
            ray.init(**INIT_KWARGS, **local)
    try:
        resources = {"num_gpus": 1, "num_cpus": 1} if use_gpus else {"num_cpus": 1}
        task = ray.remote(max_retries=max_retries, **resources)(_ray_task)
        quiet = replace(context, progress=False)
        pending = [task.remote(v.config(), quiet, "cuda" if use_gpus else "cpu") for v in variants]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            on_result(ray.get(done[0]))
    finally:
        if owned:
            release()
            if ray.is_initialized():
                ray.shutdown()


def _ray_task(config: dict[str, Any], context: RunContext, device: str) -> dict[str, Any]:
    # Ray sets CUDA_VISIBLE_DEVICES to the one GPU it granted, so "cuda" is that GPU. The task holds one CPU: the
    # variant trains on one thread unless --cpu-threads says otherwise, and restores the worker's count after it.
    one_cpu = replace(context, cpu_threads=context.cpu_threads or 1)
    return run_variant(Variant.model_validate(config), one_cpu, torch.device(device))
