"""Serving commands: bundle, serve, bench."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ml_service.cli.common import VersionOption, chosen_version, connected, guarded, out

app = typer.Typer()


@app.command()
@guarded
def bundle(
    version: VersionOption = None,
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Bundle directory [default: MLOPS_BUNDLE_DIR].")
    ] = None,
) -> None:
    """Export a registered version as a scoring bundle (model file + metadata.json)."""
    from ml_service.training.data import check_rows
    from ml_service.registry.export import export_bundle

    settings, spec, registry = connected()
    chosen = chosen_version(registry, version)
    target = out_dir or settings.bundle_dir
    metadata = export_bundle(registry, chosen, target, spec, check=check_rows(settings, spec))
    runtime = metadata.runtime
    served_by = (f"ONNX, checked on {runtime['checked_rows']} rows: max difference "
                 f"{runtime['max_abs_difference']:.2g}" if metadata.runtime_kind == "onnx"
                 else f"scikit-learn: {runtime.get('reason')}")
    out.print(f"exported {metadata.name} v{metadata.version} to {target} "
              f"(sha256 {metadata.sha256[:12]}…; served by {served_by})")


@app.command()
@guarded
def serve(
    version: VersionOption = None,
    host: Annotated[Optional[str], typer.Option(
        help="Bind address [default: MLOPS_SERVE_HOST].")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port [default: MLOPS_SERVE_PORT].")] = None,
) -> None:
    """Serve a registered version locally with uvicorn (no Docker)."""
    from ml_service.training.data import check_rows
    from ml_service.registry.export import export_bundle
    from ml_service.serving import create_app, http_server
    from ml_service.serving.auth import describe, loopback

    settings, spec, registry = connected()
    chosen = chosen_version(registry, version)
    export_bundle(registry, chosen, settings.bundle_dir, spec, check=check_rows(settings, spec))
    bind_host, bind_port = host or settings.serve_host, port or settings.serve_port
    app_ = create_app(settings, bind_host)
    keys = app_.state.api_keys
    access = (f"/score needs an API key: {describe(keys.ids())} accepted" if keys is not None
              else "no API keys: /score is open to " + (
                  "anyone on this machine" if loopback(bind_host) else "anyone who reaches it"))
    out.print(f"serving {registry.name} v{chosen} on http://{bind_host}:{bind_port} "
              f"(docs at /docs; {access})")
    http_server.run(app_, bind_host, bind_port, request_timeout=settings.request_timeout,
                    keep_alive=settings.keep_alive_timeout)


@app.command()
@guarded
def bench(
    version: VersionOption = None,
    requests: Annotated[int, typer.Option(help="Single-row requests per server.")] = 3000,
    concurrency: Annotated[int, typer.Option(help="Concurrent clients.")] = 8,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds over all servers; figures are "
                                        "medians.")] = 3,
) -> None:
    """Load-test the scoring service against `mlflow models serve` on the same model."""
    from ml_service.bench import render, run_bench

    settings, spec, registry = connected()
    chosen = chosen_version(registry, version)
    report = run_bench(settings, spec, registry, chosen, requests, concurrency,
                       settings.reports_dir, rounds)
    out.print(render(report), markup=False)
    out.print(f"[dim]written to {settings.reports_dir / 'bench.md'} and bench.json[/]")
