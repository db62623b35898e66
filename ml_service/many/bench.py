"""``make bench-many``: a many-models set trained, re-run and batch-scored, per engine.

For each engine (joblib on this machine; Ray when installed, on the cluster
``RAY_ADDRESS`` names), in one run and on the same dataset, with a fresh
embedded registry per engine:

- train: every partition validated, trained, gated and the set registered;
- cached re-run: the same data again (every partition ``unchanged``);
- batch scoring: the whole dataset, each partition by its model.

Reported: wall times, partitions/s and rows/s, the peak resident memory of
this process and its workers (sampled from /proc), and each engine's times as
a ratio to joblib's.

    python -m ml_service.many.bench --data DIR --work DIR [--engines joblib,ray]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any


class PeakMemory:
    """Peak summed RSS of this process and its descendants, sampled every 0.2 s (Linux)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(os.getpid()))
            self._stop.wait(0.2)


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and its descendants (0 where /proc is absent)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def bench_engine(name: str, data: str, work: Path) -> dict[str, Any]:
    """Train, re-run and batch-score with engine ``name``; the figures."""
    from ml_service.many.engines import JoblibEngine, engine_from_env
    from ml_service.many.pipeline import run_many
    from ml_service.registry.signed import download_set
    from ml_service.many.scoring import score_many
    from ml_service.registry import connect
    from ml_service.settings import Settings
    from ml_service.spec import load_spec
    from ml_service.training.config import load_config

    home = work / name
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    os.environ.update(MLOPS_STORE_DIR=str(home / ".mlflow"), MLFLOW_TRACKING_URI="",
                      MLOPS_CACHE_DIR=str(home / "cache"), MLOPS_REPORTS_DIR=str(home / "reports"))
    spec = load_spec(os.environ.get("MLOPS_MODEL") or None)
    settings = Settings().for_model(spec)
    config = load_config(settings.config_file, spec)
    registry = connect(settings)
    engine = JoblibEngine() if name == "joblib" else engine_from_env(
        {**os.environ, "MLOPS_MANY_ENGINE": "ray"})
    figures: dict[str, Any] = {"engine": name, "workers": engine.workers}
    with PeakMemory() as memory:
        started = time.perf_counter()
        first = run_many(data, spec, config, settings, registry, engine)
        figures["train_s"] = time.perf_counter() - started
        started = time.perf_counter()
        again = run_many(data, spec, config, settings, registry, engine)
        figures["cached_rerun_s"] = time.perf_counter() - started
        version = first.version or 0
        started = time.perf_counter()
        models = download_set(registry, version, home / "set")
        models.close()
        scored = score_many(data, home / "predictions", models.directory, version, spec, engine)
        figures["batch_score_s"] = time.perf_counter() - started
    if version:
        figures["signing"] = bench_signing(registry, version, home / "signing",
                                           figures["train_s"])
    rows = sum(first.counts.values()) and scored.rows
    figures.update(
        partitions=first.partitions, counts=first.counts, registered=first.registered,
        rerun_counts=again.counts, rerun_registered=again.registered, rows_scored=rows,
        train_partitions_per_s=first.partitions / figures["train_s"],
        batch_rows_per_s=scored.rows / figures["batch_score_s"],
        batch_partitions_per_s=scored.partitions / figures["batch_score_s"],
        peak_memory_mb=memory.peak / 2**20,
    )
    return figures


def bench_signing(registry: Any, version: int, work: Path, train_s: float) -> dict[str, Any]:
    """What signing costs a set: sign and verify it, against the plain download of it.

    The set as it is signed (archive, indexes, metadata, card); ``sign_s`` is
    what registration adds, ``verify_s`` what every loader adds after the
    download, measured in the same run as the download itself.
    """
    import mlflow.artifacts

    from ml_service import signing
    from ml_service.registry.signed import download_verified

    started = time.perf_counter()
    mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{registry.name}/{version}",
                                        dst_path=str(work / "plain"))
    download_s = time.perf_counter() - started
    started = time.perf_counter()
    signed = download_verified(registry, version, work / "verified")
    verified_download_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in signed.rglob("*") if p.is_file())
    (signed / signing.SIGNATURE_FILE).unlink()
    signer = signing.signer(registry.settings)
    started = time.perf_counter()
    signer.sign(signed)
    sign_s = time.perf_counter() - started
    started = time.perf_counter()
    signing.verify(signed, "the benchmark's set", registry.settings.signing_trusted)
    verify_s = time.perf_counter() - started
    return {"signed_mb": size / 2**20, "sign_s": sign_s, "verify_s": verify_s,
            "download_s": download_s, "verified_download_s": verified_download_s,
            "sign_share_of_train": sign_s / train_s}


def bench_serving(work: Path, requests: int = 2000, capacity: int = 1000) -> dict[str, Any]:
    """Latency of /score on the joblib run's set (in-process ASGI client): hits and misses.

    Hits: the same 100 partitions over and over (all cached after the first
    round). Misses: ``requests`` distinct partitions in a cache of
    ``capacity``, so every request loads a model and, past ``capacity``, evicts
    one. Memory: resident size before and after the misses.
    """
    import numpy as np
    from fastapi.testclient import TestClient

    from ml_service.registry import connect
    from ml_service.registry.export import export_bundle
    from ml_service.serving import create_app
    from ml_service.settings import Settings
    from ml_service.spec import load_spec

    os.environ.update(MLOPS_STORE_DIR=str(work / "joblib" / ".mlflow"))
    spec = load_spec(os.environ.get("MLOPS_MODEL") or None)
    settings = Settings().for_model(spec)
    registry = connect(settings)
    version = registry.alias_version("champion") or 1
    bundle = work / "bundle"
    export_bundle(registry, version, bundle, spec)
    # In-process and keyless (whatever MLOPS_API_KEYS this shell exports for the stages):
    # the figures are the cache's, not the key check's.
    app = create_app(Settings(bundle_dir=bundle, scoring_log_dir=None, api_keys=None,
                              api_keys_file=None, model_cache_size=capacity), host="127.0.0.1")
    keys = list(json.loads((bundle / "index.json").read_text()))
    rows = [list(r) for r in spec.example]

    def body(key: str) -> dict[str, Any]:
        values = dict(part.split("=", 1) for part in key.split("/"))
        return {"partition": {k: int(v) for k, v in values.items()}, "data": rows}

    def timed(client: TestClient, chosen: list[str]) -> list[float]:
        spent = []
        for key in chosen:
            started = time.perf_counter()
            response = client.post("/score", json=body(key))
            spent.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"/score answered {response.status_code}: {response.text}")
        return spent

    with TestClient(app) as client:
        hot = keys[:100]
        timed(client, hot)  # load them once
        hits = timed(client, [hot[i % len(hot)] for i in range(requests)])
        before = tree_rss(os.getpid())
        misses = timed(client, keys[100:100 + requests])
        after = tree_rss(os.getpid())
        metrics = {line.split()[0]: float(line.split()[1])
                   for line in client.get("/metrics").text.splitlines()
                   if line.startswith("model_cache_")}
    return {
        "hit_p50_ms": float(np.percentile(hits, 50) * 1e3),
        "hit_p99_ms": float(np.percentile(hits, 99) * 1e3),
        "miss_p50_ms": float(np.percentile(misses, 50) * 1e3),
        "miss_p99_ms": float(np.percentile(misses, 99) * 1e3),
        "requests": requests, "capacity": capacity,
        "models_held": metrics.get("model_cache_models"),
        "evictions": metrics.get("model_cache_evictions"),
        "rss_growth_mb": (after - before) / 2**20,
    }


def render(results: list[dict[str, Any]], data: str) -> str:
    base = next((r for r in results if r["engine"] == "joblib"), results[0])
    lines = [f"# Many-models benchmark ({data})", "",
             "| engine | workers | partitions | train s | cached re-run s | batch score s | "
             "batch rows/s | batch partitions/s | peak MB | train vs joblib |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['engine']} | {r['workers']} | {r['partitions']} | {r['train_s']:.1f} | "
            f"{r['cached_rerun_s']:.1f} | {r['batch_score_s']:.1f} | "
            f"{r['batch_rows_per_s']:,.0f} | {r['batch_partitions_per_s']:,.0f} | "
            f"{r['peak_memory_mb']:,.0f} | {r['train_s'] / base['train_s']:.2f}x |")
    signed = base.get("signing")
    if signed:
        lines += ["", f"Signing the {base['partitions']}-partition set ({signed['signed_mb']:.1f} "
                  f"MB signed): sign {signed['sign_s']:.3f} s ({signed['sign_share_of_train']:.2%} "
                  f"of training it), verify {signed['verify_s']:.3f} s; a verified download "
                  f"{signed['verified_download_s']:.2f} s vs {signed['download_s']:.2f} s plain "
                  f"({signed['verified_download_s'] / signed['download_s']:.2f}x)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="partitioned Parquet dataset")
    parser.add_argument("--work", type=Path, default=Path(".cache/bench-many"))
    parser.add_argument("--engines", default="joblib,ray")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    results, skipped = [], []
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        if name == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                skipped.append("ray: not installed (uv sync --group ray)")
                continue
            if not os.environ.get("RAY_ADDRESS"):
                skipped.append("ray: RAY_ADDRESS is not set (ray start --head, then export it)")
                continue
        print(f"benchmarking {name} ...", file=sys.stderr)
        results.append(bench_engine(name, args.data, args.work))
    report = render(results, args.data)
    serving = None
    if any(r["engine"] == "joblib" for r in results):
        print("benchmarking serving ...", file=sys.stderr)
        serving = bench_serving(args.work)
        report += (
            f"\nServing the set (in-process ASGI client, {serving['requests']} requests each, "
            f"cache of {serving['capacity']}): hit p50 {serving['hit_p50_ms']:.2f} ms, "
            f"p99 {serving['hit_p99_ms']:.2f} ms; miss p50 {serving['miss_p50_ms']:.2f} ms, "
            f"p99 {serving['miss_p99_ms']:.2f} ms; {serving['models_held']:.0f} models held "
            f"after {serving['evictions']:.0f} evictions, resident memory "
            f"{serving['rss_growth_mb']:+.0f} MB over the misses\n")
    for line in skipped:
        report += f"\nskipped {line}"
    print(report)
    if args.json_out:
        args.json_out.write_text(json.dumps({"results": results, "serving": serving,
                                             "skipped": skipped}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
