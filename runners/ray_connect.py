"""Joining a running Ray cluster for `--executor ray --ray-address ADDR`: bounded, and before anything is written.

Left to itself, `ray.init(address=...)` retries an unreachable or refusing cluster for minutes, logging as it goes.
So `run_grid` calls `connect_ray` before it creates the results directory, and each step has a bound:

1. a plain TCP connect to the address Ray will dial (a few seconds): nothing listening is one line;
2. one request to the head's GCS with a time limit: a token the cluster refuses, or a port that is not a Ray head,
   is one line naming the fix;
3. `ray.init` itself, in a thread we stop waiting for.

Steps 1 and 2 use two of Ray's internal helpers (its address canonicalization and its standalone GCS client). Where
a Ray release lacks them, they are skipped and step 3's bound still holds.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

from nin.errors import InputError

TCP_TIMEOUT_S = 5.0
GCS_PROBE_TIMEOUT_S = 10.0
INIT_TIMEOUT_S = 40.0  # the three bounds add up to less than a minute
TOKEN_FIX = (
    "start this driver as every node was started: RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN_PATH "
    "(a file), RAY_AUTH_TOKEN or ~/.ray/auth_token (see the README, Ray)"
)
_ADDRESS_HELP = "pass the address 'ray start --head' printed, e.g. 10.0.0.5:6379"
# Ray's own arguments for a driver: no dashboard of its own, worker output and Ray's logging kept out of the grid bar.
INIT_KWARGS: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}

_joined: str | None = None  # the address connect_ray joined, until run_ray (or release) lets go of it


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install 'nin-ablate[ray]'") from None
    return ray


def connect_ray(address: str) -> None:
    """Join the Ray cluster at `address` (HOST:PORT as `ray start --head` prints it, or auto) or raise InputError."""
    global _joined
    ray = import_ray()
    if ray.is_initialized():
        return
    target = _dial_address(address)
    _check_tcp(address, target)
    _probe_gcs(address, target)
    failure: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(address=address, **INIT_KWARGS)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=init, name="ray-connect", daemon=True)  # daemon: a hung init cannot block exit
    thread.start()
    thread.join(INIT_TIMEOUT_S)
    if thread.is_alive():
        raise InputError(
            f"--ray-address {address}: Ray did not finish connecting within {INIT_TIMEOUT_S:.0f} s although its head "
            f"answered: check that this machine can reach every node (firewall) and that the versions of Ray and "
            f"Python match the cluster's"
        )
    if failure:
        raise InputError(f"--ray-address {address}: Ray could not connect: {_one_line(failure[0])}") from None
    _joined = address


def joined_here() -> bool:
    """True while a connection made by connect_ray is open: whoever uses it last shuts it down."""
    return _joined is not None


def release() -> None:
    global _joined
    if _joined is not None:
        _joined = None
        import_ray().shutdown()


def _dial_address(address: str) -> tuple[str, int]:
    """The host and port Ray will dial for `address` (it resolves auto, and turns a loopback host into this
    machine's network address unless told the cluster is single-host)."""
    resolved: str | None = address
    try:
        from ray._private.services import canonicalize_bootstrap_address

        resolved = canonicalize_bootstrap_address(address)
    except (ImportError, AttributeError):
        pass  # a Ray without this helper: check the address as given
    except Exception as exc:  # Ray's own complaint about the address, e.g. a port out of range
        raise InputError(f"--ray-address {address}: {_one_line(exc)}; {_ADDRESS_HELP}") from None
    if resolved is None:
        raise InputError(f"--ray-address {address}: no running Ray cluster found on this machine; {_ADDRESS_HELP}")
    host, sep, port = resolved.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--ray-address {address}: expected HOST:PORT; {_ADDRESS_HELP}")
    return host.strip("[]"), int(port)



def _check_tcp(address: str, target: tuple[str, int]) -> None:
    try:
        with socket.create_connection(target, timeout=TCP_TIMEOUT_S):
            return
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
    dialed = "" if address == f"{target[0]}:{target[1]}" else f" (Ray dials {target[0]}:{target[1]})"
    raise InputError(
        f"--ray-address {address}: nothing answers there{dialed}: {reason}. Start the cluster's head with "
        f"'ray start --head --port {target[1]}' on that machine, or {_ADDRESS_HELP}"
    )


def _probe_gcs(address: str, target: tuple[str, int]) -> None:
    """One bounded request to the head's GCS: where ray.init would retry for minutes, this fails in seconds."""
    try:
        from ray._raylet import InnerGcsClient
        from ray.exceptions import AuthenticationError
    except ImportError:
        return
    if not hasattr(InnerGcsClient, "standalone"):
        return
    try:
        with _stderr_silenced():  # Ray's C++ client logs each failed attempt; the user gets our one line instead
            InnerGcsClient.standalone(f"{target[0]}:{target[1]}", None, int(GCS_PROBE_TIMEOUT_S * 1000))
    except AuthenticationError:
        raise InputError(f"--ray-address {address}: the Ray cluster refused this driver's token: {TOKEN_FIX}") from None
    except Exception as exc:
        raise InputError(
            f"--ray-address {address}: something answers there but not as a Ray head ({_one_line(exc)[:160]}); "
            f"{_ADDRESS_HELP} (its GCS port, 6379 unless --port was given)"
        ) from None


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
