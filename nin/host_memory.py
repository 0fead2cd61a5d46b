"""Keep freed host memory in the process while a CPU variant trains.

A training step on the CPU frees and allocates the same activation buffers every step (143 MB each for the seed
NiN's first block at batch 128). glibc hands allocations that large to mmap and returns them to the kernel when
they are freed, so every step touches fresh pages, and each first touch is a page fault: on the 2-core AMD EPYC
this project measures on, that was ~1 s of kernel time in a ~5 s step (docs/BENCHMARKS.md, "CPU peak and MFU").
While `retained()` is active glibc serves those allocations from its heap and keeps what is freed for the next
step. Afterwards glibc's defaults come back and the kept memory is returned to the kernel.

Only the allocator's bookkeeping changes; no value a variant computes depends on it. Elsewhere than on glibc
(macOS, musl) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt(3) parameters and glibc's defaults for them.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_UP_TO = 2**31 - 1  # bytes of free memory at the heap's top kept before any goes back (mallopt takes an int)

_lock = threading.Lock()
_depth = 0  # nested variant settings (a bench around a training run) keep memory until the outermost ends


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def supported() -> bool:
    """Whether this process's C library lets us keep freed memory (glibc on Linux)."""
    return _glibc() is not None


def _keep(libc: ctypes.CDLL) -> None:
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO)


def _release(libc: ctypes.CDLL) -> None:
    libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
    libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
    libc.malloc_trim(0)


@contextmanager
def retained() -> Iterator[None]:
    """Large allocations come from the heap and freed memory stays in the process until the outermost exit."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _keep(libc)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _release(libc)


@contextmanager
def released() -> Iterator[None]:
    """glibc's defaults inside, even within `retained()`: what keeping memory buys, measured
    (`python -m bench.profile_step --release-freed-memory`)."""
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        _release(libc)
    try:
        yield
    finally:
        with _lock:
            if _depth:
                _keep(libc)
