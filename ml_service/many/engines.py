"""Where chunks run: joblib on this machine (the default) or a Ray cluster.

Both run the same function on the same tasks and yield results as they
finish. The engine is chosen by ``MLOPS_MANY_ENGINE`` (``joblib`` or ``ray``);
unset, Ray is used when ``RAY_ADDRESS`` names a cluster, else joblib.
Ray is an optional dependency group (``uv sync --group ray``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from ml_service.errors import UsageError

logger = logging.getLogger(__name__)

#: Tries of a Ray Client (ray://) connection, and the pause before the n-th retry (n x this).
CLIENT_ATTEMPTS = 3
RETRY_PAUSE = 2.0


class Engine(Protocol):
    """Runs ``function`` over ``tasks``; results in completion order."""

    name: str

    @property
    def workers(self) -> int: ...

    def map(self, function: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Any]: ...


class JoblibEngine:
    """Processes on this machine (loky), one per core unless ``n_jobs`` says otherwise."""

    name = "joblib"

    def __init__(self, n_jobs: int | None = None):
        self.n_jobs = n_jobs or os.cpu_count() or 1

    @property
    def workers(self) -> int:
        return self.n_jobs

    def map(self, function: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Any]:
        from joblib import Parallel, delayed

        if self.n_jobs == 1 or len(tasks) == 1:
            yield from (function(task) for task in tasks)
            return
        # One thread per BLAS/OpenMP pool in each worker: the parallelism is the workers.
        parallel = Parallel(n_jobs=self.n_jobs, return_as="generator_unordered",
                            inner_max_num_threads=1)
        yield from parallel(delayed(function)(task) for task in tasks)


class RayEngine:
    """Tasks on a Ray cluster (``address``: ``ray://host:10001`` or ``host:6379``)."""

    name = "ray"

    def __init__(self, address: str):
        try:
            import ray
        except ImportError:
            raise UsageError("Ray is not installed: `uv sync --group ray` (or unset "
                             "RAY_ADDRESS / MLOPS_MANY_ENGINE=joblib for this machine)") from None
        self.address = address
        _check_reachable(address)
        # A Ray Client server starts one process per driver; when that start
        # fails ("Initialization failure from server"), a new connection gets
        # a new process, so a ray:// connection is tried up to three times.
        attempts = CLIENT_ATTEMPTS if address.startswith("ray://") else 1
        for attempt in range(1, attempts + 1):
            if ray.is_initialized():
                break
            try:
                ray.init(address=address, logging_level=logging.WARNING,
                         runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
            except (ConnectionError, RuntimeError, ValueError) as exc:
                ray.shutdown()
                if attempt == attempts or not isinstance(exc, ConnectionError):
                    raise UsageError(f"cannot connect to the Ray cluster at {address}: "
                                     f"{exc}") from None
                logger.warning("cannot connect to the Ray cluster at %s (%s); trying again",
                               address, str(exc).splitlines()[0])
                time.sleep(RETRY_PAUSE * attempt)

    @property
    def workers(self) -> int:
        import ray

        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return max(1, int(resources.get("CPU", 1)))

    def map(self, function: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[Any]:
        import ray

        remote = ray.remote(num_cpus=1)(function)
        pending = [remote.remote(task) for task in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing listens at ``address`` (Ray itself retries for minutes)."""
    import socket

    target = address.removeprefix("ray://")
    if target == "auto":
        return
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"RAY_ADDRESS={address}: expected host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise UsageError(f"cannot connect to the Ray cluster at {address}: {exc} (is it "
                         "running? `ray start --head` starts one on this machine)") from None


def engine_from_env(environ: dict[str, str] | None = None) -> Engine:
    """The engine ``MLOPS_MANY_ENGINE`` / ``RAY_ADDRESS`` choose (see the module doc)."""
    env = os.environ if environ is None else environ
    choice = env.get("MLOPS_MANY_ENGINE", "").strip().lower()
    address = env.get("RAY_ADDRESS", "").strip()
    if choice not in ("", "joblib", "ray"):
        raise UsageError(f"MLOPS_MANY_ENGINE={choice}: use joblib or ray")
    if choice == "ray" or (not choice and address):
        if not address:
            raise UsageError("MLOPS_MANY_ENGINE=ray needs RAY_ADDRESS (the cluster's address)")
        return RayEngine(address)
    jobs = env.get("MLOPS_MANY_JOBS", "").strip()
    try:
        return JoblibEngine(int(jobs) if jobs else None)
    except ValueError:
        raise UsageError(f"MLOPS_MANY_JOBS={jobs}: give a number of processes") from None
