"""``make bench``: the scoring service against ``mlflow models serve``.

Every server serves the same registered version on this machine, each as one
uvicorn worker, and is driven by the same load generator (asyncio + aiohttp,
a fixed number of concurrent clients sending a fixed number of requests), in
rounds that interleave the servers; each figure is the median of its rounds.
Reported: requests/s and p50/p99 latency for single-row and 1,000-row
requests, the ratios against MLflow's server and against a ceiling (a bare
ASGI app on the same server settings, :mod:`ml_service.bench_ceiling`)
measured in the same run, rows/s, the
cost of the scoring log (the same service with the log on vs off), the gain
of the model's runtime (the bundle's ONNX form vs scikit-learn), and,
when a Docker engine is reachable, the image size and the time from
``docker run`` to healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml_service.net import free_port, wait_for_http
from ml_service.settings import Settings
from ml_service.spec import ModelSpec

if TYPE_CHECKING:
    from ml_service.registry import Registry


@dataclass
class LoadResult:
    """Throughput and latency of one server under one load shape."""

    server: str
    shape: str
    requests: int
    concurrency: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rounds: int = 1


#: The /score key of the benchmarked services (a deployed stage always has keys, so
#: the figures include checking one); sent to every server alike.
BENCH_KEY = secrets.token_urlsafe(32)
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {BENCH_KEY}"}


async def _drive(url: str, body: bytes, requests: int,
                 concurrency: int) -> tuple[list[float], int, float]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    remaining = iter(range(requests))

    async def client(session: Any) -> None:
        nonlocal errors
        for _ in remaining:
            start = time.perf_counter()
            async with session.post(url, data=body, headers=HEADERS) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, errors, elapsed


def measure(server: str, shape: str, url: str, body: bytes, requests: int,
            concurrency: int) -> LoadResult:
    """Send ``requests`` POSTs of ``body`` to ``url`` after a short warm-up."""
    asyncio.run(_drive(url, body, max(10, requests // 20), concurrency))  # warm-up
    latencies, errors, elapsed = asyncio.run(_drive(url, body, requests, concurrency))
    ms = np.asarray(latencies) * 1000
    return LoadResult(
        server=server, shape=shape, requests=requests, concurrency=concurrency,
        seconds=round(elapsed, 3), rps=round(requests / elapsed, 1),
        p50_ms=round(float(np.percentile(ms, 50)), 2),
        p99_ms=round(float(np.percentile(ms, 99)), 2), errors=errors,
    )


def _median(runs: list[LoadResult]) -> LoadResult:
    """One server and shape over its rounds: the median rate and latencies, all requests."""
    first = runs[0]
    return LoadResult(
        server=first.server, shape=first.shape, requests=sum(r.requests for r in runs),
        concurrency=first.concurrency, seconds=round(sum(r.seconds for r in runs), 3),
        rps=round(statistics.median(r.rps for r in runs), 1),
        p50_ms=round(statistics.median(r.p50_ms for r in runs), 2),
        p99_ms=round(statistics.median(r.p99_ms for r in runs), 2),
        errors=sum(r.errors for r in runs), rounds=len(runs),
    )


@contextlib.contextmanager
def _server(name: str, command: list[str], env: dict[str, str | None], port_flag: str,
            health: str, tmp: Path) -> Iterator[tuple[str, float]]:
    """A server started on a free port: (its base URL, seconds until healthy); stopped after."""
    port = free_port()
    if port_flag.startswith("--"):
        command = [*command, port_flag, str(port)]
    else:
        env = {**env, port_flag: str(port)}
    log = tmp / f"{name.replace(' ', '-').replace(',', '')}.log"
    # MLflow starts `uvicorn` from PATH: make it this environment's.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    merged = {**os.environ, **env, "PATH": path}
    with open(log, "w") as handle:
        process = subprocess.Popen(command, env={k: v for k, v in merged.items()
                                                 if v is not None},
                                   stdout=handle, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        yield base, round(_wait(base + health, process, 120, log), 2)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait(url: str, process: subprocess.Popen[bytes], deadline: float, log: Path) -> float:
    try:
        return wait_for_http(url, deadline, process)
    except (TimeoutError, ChildProcessError) as exc:
        raise RuntimeError(f"{exc}:\n{log.read_text()[-2000:]}") from None


def _rows(settings: Settings, spec: ModelSpec, count: int) -> list[list[float]]:
    import pandas as pd

    frame = pd.read_csv(settings.data_file)[spec.contract.feature_names].astype(float)
    reps = -(-count // len(frame))
    return pd.concat([frame] * reps).head(count).values.tolist()


def run_bench(settings: Settings, spec: ModelSpec, registry: Registry, version: int,
              requests: int, concurrency: int, out_dir: Path,
              rounds: int = 3) -> dict[str, Any]:
    """Benchmark every server on ``version`` in ``rounds`` interleaved rounds; return the report.

    Each figure is the median over the rounds of one server and load shape.
    """
    from ml_service.bundle import checked_model_file, load_skops
    from ml_service.registry.export import export_bundle

    one, thousand = _rows(settings, spec, 1), _rows(settings, spec, 1000)
    ours_bodies = {
        "1 row": json.dumps({"data": one}).encode(),
        "1000 rows": json.dumps({"data": thousand}).encode(),
    }
    columns = spec.contract.feature_names
    mlflow_bodies = {
        "1 row": json.dumps({"dataframe_split": {"columns": columns, "data": one}}).encode(),
        "1000 rows": json.dumps(
            {"dataframe_split": {"columns": columns, "data": thousand}}).encode(),
    }
    shapes = {"1 row": requests, "1000 rows": max(20, requests // 10)}
    startup: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        export_bundle(registry, version, bundle, spec)
        # MLflow's server loads the very copy checked here (skops, default
        # types only), so it may be told to load it: with pickle loading off,
        # MLflow refuses skops models too, as it would trust their MLmodel.
        from ml_service.registry.signed import download_verified

        mlflow_model = download_verified(registry, version, Path(tmp) / "m")
        what = f"{registry.name} version {version}"
        load_skops(checked_model_file(mlflow_model, what)[1], what, spec.trusted_types)
        ours = [sys.executable, "-m", "ml_service.serving"]
        ours_env = {"MLOPS_BUNDLE_DIR": str(bundle), "MLOPS_SERVE_HOST": "127.0.0.1",
                    "MLOPS_API_KEYS": BENCH_KEY}
        servers: dict[str, tuple[list[str], dict[str, str | None], str, str, str,
                                 dict[str, bytes]]] = {
            "scoring service": (
                ours, {**ours_env, "MLOPS_SCORING_LOG_DIR": None},
                "MLOPS_SERVE_PORT", "/health", "/score", ours_bodies,
            ),
            "scoring service, scikit-learn": (
                ours, {**ours_env, "MLOPS_SCORING_LOG_DIR": None,
                       "MLOPS_MODEL_RUNTIME": "sklearn"},
                "MLOPS_SERVE_PORT", "/health", "/score", ours_bodies,
            ),
            "scoring service + log": (
                ours, {**ours_env, "MLOPS_SCORING_LOG_DIR": str(Path(tmp) / "scoring-log")},
                "MLOPS_SERVE_PORT", "/health", "/score", ours_bodies,
            ),
            "bare ASGI (ceiling)": (
                [sys.executable, "-m", "ml_service.bench_ceiling"], {**ours_env},
                "MLOPS_SERVE_PORT", "/health", "/score", ours_bodies,
            ),
            "mlflow models serve": (
                [sys.executable, "-m", "mlflow", "models", "serve", "-m",
                 str(mlflow_model), "--env-manager", "local",
                 "--host", "127.0.0.1", "--workers", "1"],
                {"MLFLOW_TRACKING_URI": settings.resolved_tracking_uri,
                 "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"},
                "--port", "/ping", "/invocations", mlflow_bodies,
            ),
        }
        # Every server runs at once (an idle one costs nothing) and the rounds
        # interleave them: a phase in which the machine runs slower falls on
        # every server alike instead of on whichever was measured then.
        with contextlib.ExitStack() as running:
            bases = {}
            for name, (command, env, port_flag, health, *_) in servers.items():
                bases[name], startup[name] = running.enter_context(
                    _server(name, command, env, port_flag, health, Path(tmp)))
            samples: dict[tuple[str, str], list[LoadResult]] = {}
            for _ in range(rounds):
                for name, (*_, route, bodies) in servers.items():
                    for shape, count in shapes.items():
                        samples.setdefault((name, shape), []).append(
                            measure(name, shape, bases[name] + route, bodies[shape], count,
                                    concurrency))
        results = [_median(runs) for runs in samples.values()]

    report = {
        "model": {"name": registry.name, "version": version},
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "results": [asdict(r) for r in results],
        "ratios": _ratios(results),
        "process_startup_s": startup,
        "image": _image_figures(settings, registry, version),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "bench.md").write_text(render(report))
    return report


#: Rows per request of each load shape.
ROWS = {"1 row": 1, "1000 rows": 1000}


def _ratios(results: list[LoadResult]) -> dict[str, dict[str, float]]:
    by = {(r.server, r.shape): r for r in results}
    ratios = {}
    for shape in sorted({r.shape for r in results}):
        ours, theirs = by[("scoring service", shape)], by[("mlflow models serve", shape)]
        logged = by[("scoring service + log", shape)]
        ceiling = by[("bare ASGI (ceiling)", shape)]
        sklearn = by[("scoring service, scikit-learn", shape)]
        ratios[shape] = {
            "throughput_x": round(ours.rps / theirs.rps, 2),
            "p99_ratio": round(ours.p99_ms / theirs.p99_ms, 2),
            "log_throughput_x": round(logged.rps / ours.rps, 2),
            # the model's runtime: the bundle's (ONNX when it has one) against scikit-learn
            "runtime_vs_sklearn_x": round(ours.rps / sklearn.rps, 2),
            "ceiling_share": round(ours.rps / ceiling.rps, 3),
            "ceiling_p99_ratio": round(ours.p99_ms / ceiling.p99_ms, 2),
            "rows_per_s": round(ours.rps * ROWS[shape]),
            "mlflow_rows_per_s": round(theirs.rps * ROWS[shape]),
        }
    return ratios


def _image_figures(settings: Settings, registry: Registry, version: int) -> dict[str, Any]:
    """Image size and docker-run-to-healthy time, or why they were not measured."""
    from ml_service.errors import MlopsError
    from ml_service.release.engine import docker_client
    from ml_service.release.smoke import wait_healthy

    try:
        client = docker_client()
    except MlopsError as exc:
        return {"skipped": str(exc)}
    image_id = registry.version_tags(version).get("image.id")
    try:
        image = client.images.get(image_id) if image_id else None
    except Exception:  # noqa: BLE001 - image removed since it was built
        image = None
    if image is None:
        return {"skipped": f"no image built for version {version}: run `make image` first"}
    port = free_port()
    times = []
    for _ in range(3):
        started = time.monotonic()
        container = client.containers.run(
            image.id, detach=True, ports={"8080/tcp": ("127.0.0.1", port)},
            environment={"MLOPS_API_KEYS": BENCH_KEY},
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", 120)
            times.append(time.monotonic() - started)
        finally:
            container.remove(force=True)
    return {
        "image": image.tags[0] if image.tags else image.id,
        "size_mb": round(image.attrs["Size"] / 1e6, 1),
        "run_to_healthy_s": round(statistics.median(times), 2),
        "runs": len(times),
    }


def render(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        f"# Scoring benchmark: {report['model']['name']} v{report['model']['version']}",
        "",
        f"One uvicorn worker per server, {report['cpus']} CPUs, same load generator; each "
        f"figure is the median of {report['rounds']} rounds that interleave the servers.",
        "",
        "| server | request | requests | clients | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['server']} | {r['shape']} | {r['requests']} | {r['concurrency']} | "
            f"{r['rps']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |"
        )
    lines += ["", "| request | rows/s | throughput vs MLflow | p99 vs MLflow | share of the "
              "ceiling | p99 vs the ceiling | throughput with the log on | throughput vs "
              "scikit-learn runtime |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for shape, ratio in report["ratios"].items():
        lines.append(f"| {shape} | {ratio['rows_per_s']:,} | {ratio['throughput_x']}x | "
                     f"{ratio['p99_ratio']}x | {ratio['ceiling_share']:.0%} | "
                     f"{ratio['ceiling_p99_ratio']}x | {ratio['log_throughput_x']}x | "
                     f"{ratio['runtime_vs_sklearn_x']}x |")
    lines += ["", "The ceiling is a bare ASGI app on the same server settings that reads the "
              "body and answers a fixed document (`ml_service/bench_ceiling.py`)."]
    image = report["image"]
    lines.append("")
    if "skipped" in image:
        lines.append(f"Image figures skipped: {image['skipped']}")
    else:
        lines.append(
            f"Image {image['image']}: {image['size_mb']} MB; `docker run` to healthy "
            f"{image['run_to_healthy_s']} s (median of {image['runs']})."
        )
    return "\n".join(lines) + "\n"
